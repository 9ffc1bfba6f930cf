"""Journey files (``journeys/*.yml``): a trigger, steps, a goal, a re-entry policy.

A journey file::

    name: abandoned_cart                 # default: the file name
    description: Remind shoppers of the cart they left
    trigger:                             # exactly one of event / segment / tag / schedule
      event: Product Added
      key: properties.cart_id            # one journey per cart (default: one per event)
      within: 24h                        # lookback (default journeys.lookback, 24h)
    goal:                                # leave the journey when this happens
      event: Order Completed
      key: properties.cart_id            # ... for the same cart
    exit_when: {segment: shoppers}       # leave when no longer in this segment
    reentry: always                      # always | never | after 30d
    purpose: email_marketing             # consent purpose (default journeys.purpose)
    capped: true                         # counts toward (and obeys) the frequency cap
    steps:
      - wait: 1h                         # a duration, or {until: "09:00"} in local time
      - wait_for:                        # wait for an event, at most `within`; then branch
          event: Order Completed
          key: properties.cart_id          # the same trigger key (like goal.key)
          where: "properties.total > 50"   # the trigger's event filter language
          within: 3d
          then: thanks                     # a step id | next (default) | exit
          else: next                       # when `within` passed without it
      - id: remind                       # optional step id (default step1, step2 …)
        send: abandoned_cart             # a template; `with:` gives its variables
        with:
          cart: {from: cart, url: "https://shop.example/cart/{cart_id}"}
          recommendations: {from: recommendations, k: 4}
          discount: {from: discount, campaign: cart_rescue}
          currency: "€"                  # anything else is a literal
      - branch: {if: "engagement_score > 50 OR message.remind.clicked", then: thanks}
      - tag: rescued_cart
      - exit

A send step may run an **experiment**: ``variants`` (each a ``name``, a ``weight`` — default 1 —
and what it changes: ``subject`` (Liquid, replaces the template's — of every language version,
or per version: ``{default: ..., fr: ...}``), ``template``, ``with``
(variables merged over the step's) or ``discount`` (the campaign of the step's ``{from:
discount}`` variables: a discount level)), and a ``holdout`` share (``10%`` or ``0.1``) that
receives nothing. ``experiment`` names it (default ``JOURNEY.STEP``); each customer's variant is
:func:`personify.engagement.assign` of that name — the same on every run — and recorded::

      - id: remind
        send: abandoned_cart
        holdout: 10%
        variants:
          - {name: plain}
          - {name: ten_off, discount: cart_rescue_10, subject: "10 % off your cart"}

A ``holdout`` without ``variants`` holds out that share from the step as written (variant
``control``).

Mistakes raise :class:`~personify.errors.DefinitionError` (or
:class:`~personify.errors.ConfigError` for the YAML) naming the file, line and key.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal

from personify import clock
from personify._yamlmarks import parse_marked
from personify.audiences.expressions import (
    ExpressionError,
    Kind,
    check_expression,
    profile_columns,
)
from personify.config import _dotted
from personify.errors import DefinitionError
from personify.journeys._reader import Where, _kind, _Reader
from personify.journeys._sends import (
    _EXPERIMENT_KEYS,
    _check_event_variables,
    _experiment,
    _variables,
)
from personify.journeys._sends import PROVIDERS as PROVIDERS
from personify.journeys.model import Experiment as Experiment
from personify.journeys.model import Goal as Goal
from personify.journeys.model import Journey as Journey
from personify.journeys.model import Step as Step
from personify.journeys.model import Trigger as Trigger
from personify.journeys.model import Variable as Variable
from personify.journeys.model import Variant as Variant
from personify.journeys.model import WaitFor as WaitFor

_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")


def load_journeys(
    folder: Path,
    *,
    lookback: timedelta,
    purpose: str,
    root: Path | None = None,
    segments: Collection[str] | None = None,
) -> list[Journey]:
    """Every journey in ``folder``'s ``*.yml`` / ``*.yaml`` files, by name. ``segments``: the
    project's segment names — a journey naming another is refused (``None``: not checked)."""
    if not folder.is_dir():
        return []
    out: dict[str, Journey] = {}
    for path in sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]):
        shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        journey = parse_journey(
            path.read_text(encoding="utf-8"),
            file=shown,
            default_name=path.stem,
            lookback=lookback,
            purpose=purpose,
            segments=segments,
        )
        if journey is None:
            continue
        if journey.name in out:
            raise DefinitionError(
                f"journey {journey.name!r} is also defined in {out[journey.name].file}",
                file=shown,
                line=1,
                key="name",
            )
        out[journey.name] = journey
    return list(out.values())


def parse_journey(
    text: str,
    *,
    file: str,
    default_name: str,
    lookback: timedelta,
    purpose: str,
    segments: Collection[str] | None = None,
) -> Journey | None:
    """The journey of one file's text (``None`` for an empty file). ``segments``: the names a
    segment trigger, a broadcast or ``exit_when`` may use (``None``: not checked)."""
    doc = parse_marked(text, file=file)
    if doc.data is None:
        return None
    r = _Reader(doc, file)
    top = r.mapping(
        doc.data,
        (),
        {
            "name",
            "description",
            "trigger",
            "goal",
            "exit_when",
            "reentry",
            "purpose",
            "capped",
            "enabled",
            "steps",
        },
    )
    name = r.text(top.get("name", default_name), ("name",), name=True)
    if "trigger" not in top:
        raise r.fail((), "a journey needs a trigger", hint="e.g. trigger: {event: Product Added}")
    trigger = _trigger(r, top["trigger"], lookback)
    goal = _goal(r, top["goal"]) if top.get("goal") is not None else None
    if goal is not None and goal.key and not trigger.key:
        raise r.fail(
            ("goal", "key"),
            "a goal matches the trigger's key, but the trigger has none",
            hint="add key: to the trigger (e.g. key: properties.cart_id)",
        )
    exit_when = _exit_when(r, top["exit_when"]) if "exit_when" in top else None
    if segments is not None:
        if trigger.kind in ("segment", "schedule"):
            _known_segment(r, trigger.name, ("trigger", "segment"), segments)
        if exit_when is not None:
            _known_segment(r, exit_when, ("exit_when", "segment"), segments)
    reentry, after = _reentry(r, top.get("reentry", "always"))
    steps_raw = top.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise r.fail(("steps",), "a journey needs a list of steps", hint="e.g. - send: TEMPLATE")
    steps = _steps(r, steps_raw, name)
    _check_event_variables(r, steps, trigger)
    for i, step in enumerate(steps):
        if step.wait_for is not None and step.wait_for.key and not trigger.key:
            raise r.fail(
                ("steps", i, "wait_for", "key"),
                "wait_for matches the trigger's key, but the trigger has none",
                hint="add key: to the trigger (e.g. key: properties.cart_id), or drop this key",
            )
    for flag in ("capped", "enabled"):
        if not isinstance(top.get(flag, True), bool):
            raise r.fail((flag,), f"expected true or false, got {_kind(top[flag])}")
    return Journey(
        name=name,
        description=str(top.get("description") or ""),
        trigger=trigger,
        steps=steps,
        goal=goal,
        reentry=reentry,
        reentry_after=after,
        purpose=r.text(top.get("purpose", purpose), ("purpose",)),
        capped=bool(top.get("capped", True)),
        enabled=bool(top.get("enabled", True)),
        file=file,
        exit_when=exit_when,
    )


def _exit_when(r: _Reader, raw: Any) -> str:
    spec = r.mapping(raw, ("exit_when",), {"segment"})
    if "segment" not in spec:
        raise r.fail(
            ("exit_when",), "exit_when names a segment", hint="e.g. exit_when: {segment: lapsed}"
        )
    return r.text(spec["segment"], ("exit_when", "segment"), name=True)


def _known_segment(r: _Reader, name: str, where: Where, segments: Collection[str]) -> None:
    """Refuse a segment the project does not define: its memberships would never change (a
    refresh closes those of segments no longer in ``segments/``), so the journey would silently
    do nothing."""
    if name in segments:
        return
    close = difflib.get_close_matches(name, list(segments), n=3)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "segments: " + (", ".join(sorted(segments)) or "none — add segments/NAME.sql")
    raise r.fail(where, f"no segment {name!r} in segments/", hint=hint)


def _trigger(r: _Reader, raw: Any, lookback: timedelta) -> Trigger:
    where: Where = ("trigger",)
    spec = r.mapping(
        raw, where, {"event", "segment", "tag", "schedule", "key", "within", "every", "where"}
    )
    kinds: list[str] = [k for k in ("event", "tag", "schedule") if k in spec]
    if "segment" in spec and "schedule" not in spec:
        kinds.append("segment")
    if len(kinds) != 1:
        raise r.fail(
            where,
            "give exactly one of event, segment, tag or schedule",
            hint="schedule broadcasts take a segment too: {schedule: 2026-12-01T09:00:00Z, "
            "segment: newsletter}",
        )
    kind = kinds[0]
    within = r.duration(spec["within"], (*where, "within")) if "within" in spec else lookback
    if "key" in spec and kind != "event":
        raise r.fail((*where, "key"), "only event triggers have a key")
    if "every" in spec and kind != "schedule":
        raise r.fail((*where, "every"), "only schedule triggers repeat")
    if "where" in spec and kind != "event":
        raise r.fail((*where, "where"), "only event triggers have a filter")
    if kind == "event":
        key = r.key(spec["key"], (*where, "key")) if "key" in spec else None
        name = r.text(spec["event"], (*where, "event"))
        condition = _event_filter(r, spec["where"], where) if "where" in spec else None
        return Trigger("event", name, key, within, where=condition)
    if kind == "segment" or kind == "tag":
        audience = r.text(spec[kind], (*where, kind), name=True)
        return Trigger("segment" if kind == "segment" else "tag", audience, within=within)
    if "segment" not in spec:
        raise r.fail(where, "a schedule broadcasts to a segment: add segment: NAME")
    raw_at = spec["schedule"]
    try:
        at = clock.parse_instant(raw_at if isinstance(raw_at, str) else raw_at.isoformat())
    except (ValueError, AttributeError):
        raise r.fail(
            (*where, "schedule"), f"{raw_at!r} is not an ISO 8601 instant (2026-12-01T09:00:00Z)"
        ) from None
    every = r.duration(spec["every"], (*where, "every")) if "every" in spec else None
    segment = r.text(spec["segment"], (*where, "segment"), name=True)
    return Trigger("schedule", segment, within=within, at=at, every=every)


def _event_filter(r: _Reader, raw: Any, where: Where, *, waiting: bool = False) -> str:
    from personify.journeys.filters import WAIT_BOUND, check_event_filter

    if not isinstance(raw, str) or not raw.strip():
        raise r.fail(
            (*where, "where"),
            "a filter is one condition on the event, as text",
            hint='e.g. where: "properties.total > 50"',
        )
    try:
        return check_event_filter(raw, bound=WAIT_BOUND) if waiting else check_event_filter(raw)
    except ExpressionError as e:
        raise _expression_error(r, e, (*where, "where")) from None


def _expression_error(r: _Reader, e: ExpressionError, where: Where) -> DefinitionError:
    """An expression's mistake, located in the journey file (the key's line, the column inside
    the expression)."""
    return DefinitionError(
        e.message, file=r.file, line=r.doc.line(where), col=e.col, key=_dotted(where), hint=e.hint
    )


def _goal(r: _Reader, raw: Any) -> Goal:
    spec = r.mapping(raw, ("goal",), {"event", "key"})
    if "event" not in spec:
        raise r.fail(("goal",), "a goal names an event", hint="e.g. goal: {event: Order Completed}")
    key = r.key(spec["key"], ("goal", "key")) if "key" in spec else None
    return Goal(r.text(spec["event"], ("goal", "event")), key)


def _reentry(r: _Reader, raw: Any) -> tuple[Literal["always", "never", "after"], timedelta | None]:
    text = str(raw).strip().lower()
    if text == "always":
        return "always", None
    if text == "never":
        return "never", None
    if text.startswith("after "):
        return "after", r.duration(text[6:], ("reentry",))
    raise r.fail(
        ("reentry",), f"{raw!r} is not a re-entry policy", hint="always, never or after 30d"
    )


_STEP_KEYS = {
    "id",
    "wait",
    "wait_for",
    "branch",
    "send",
    "with",
    "tag",
    "exit",
    "variants",
    "holdout",
    "experiment",
}


def _steps(r: _Reader, raw: list[Any], journey: str) -> tuple[Step, ...]:
    ids: list[str] = []
    for i, item in enumerate(raw):
        step_id = item.get("id") if isinstance(item, dict) else None
        ids.append(r.text(step_id, ("steps", i, "id"), name=True) if step_id else f"step{i + 1}")
    for i, step_id in enumerate(ids):
        if step_id in ids[:i]:
            raise r.fail(("steps", i, "id"), f"two steps have the id {step_id!r}")
    sends = [isinstance(item, dict) and "send" in item for item in raw]
    return tuple(_step(r, item, i, ids, journey, sends) for i, item in enumerate(raw))


def _step(r: _Reader, raw: Any, i: int, ids: list[str], journey: str, sends: list[bool]) -> Step:
    where: Where = ("steps", i)
    line = r.doc.line(where) or 1
    if raw == "exit":
        return Step(ids[i], "exit", line)
    spec = r.mapping(raw, where, _STEP_KEYS)
    kinds = [k for k in ("wait", "wait_for", "branch", "send", "tag", "exit") if k in spec]
    if len(kinds) != 1:
        raise r.fail(where, "a step is exactly one of wait, wait_for, branch, send, tag or exit")
    kind = kinds[0]
    if "with" in spec and kind != "send":
        raise r.fail((*where, "with"), "only send steps take variables")
    for key in _EXPERIMENT_KEYS:
        if key in spec and kind != "send":
            raise r.fail((*where, key), f"only send steps take {key}:")
    if kind == "wait":
        value = spec["wait"]
        if isinstance(value, dict):
            until = r.mapping(value, (*where, "wait"), {"until"}).get("until")
            return Step(
                ids[i], "wait_until", line, until=_clock(r, until, (*where, "wait", "until"))
            )
        return Step(ids[i], "wait", line, duration=r.duration(value, (*where, "wait")))
    if kind == "wait_for":
        return _wait_for(r, spec["wait_for"], (*where, "wait_for"), ids, i, line)
    if kind == "branch":
        earlier = [ids[n] for n in range(i) if sends[n]]
        return _branch(r, spec["branch"], (*where, "branch"), ids, i, line, earlier)
    if kind == "send":
        template = r.text(spec["send"], (*where, "send"))
        variables = _variables(r, spec.get("with") or {}, (*where, "with"))
        experiment = _experiment(r, spec, where, f"{journey}.{ids[i]}", variables)
        return Step(
            ids[i], "send", line, template=template, variables=variables, experiment=experiment
        )
    if kind == "tag":
        return Step(ids[i], "tag", line, tag=r.text(spec["tag"], (*where, "tag"), name=True))
    return Step(ids[i], "exit", line)


def _clock(r: _Reader, value: Any, where: Where) -> time:
    if isinstance(value, int):  # YAML 1.1 reads 09:00 as sexagesimal 540
        value = f"{value // 60:02d}:{value % 60:02d}"
    match = _CLOCK.match(str(value or "").strip())
    if not match:
        raise r.fail(where, f"{value!r} is not a local time", hint='write "HH:MM", e.g. "09:00"')
    return time(int(match.group(1)), int(match.group(2)))


ENGAGEMENT = ("opened", "clicked")
"""What a branch may ask of an earlier send step's email: ``message.STEP.opened`` (a person
opened or clicked it — a click proves an open the pixel missed), ``message.STEP.clicked``."""


def engagement_columns(send_steps: list[str]) -> dict[str, Kind]:
    """The booleans a branch may read about the emails of the send steps ``send_steps``."""
    return {f"message.{s.lower()}.{what}": Kind.BOOL for s in send_steps for what in ENGAGEMENT}


def _branch(
    r: _Reader, raw: Any, where: Where, ids: list[str], i: int, line: int, earlier: list[str]
) -> Step:
    spec = r.mapping(raw, where, {"if", "then", "else"})
    if "if" not in spec:
        raise r.fail(where, "a branch needs a condition: if: SQL over the profile")
    source = spec["if"]
    if isinstance(source, bool):
        source = "TRUE" if source else "FALSE"
    columns = {**profile_columns(), **engagement_columns(earlier)}
    try:
        condition = check_expression(str(source), dialect="duckdb", columns=columns)
    except ExpressionError as e:
        if not earlier and e.message.startswith("qualified column message."):
            e.message = "message.STEP.opened / .clicked name an earlier send step's email"
            e.hint = "no send step comes before this branch"
        raise _expression_error(r, e, (*where, "if")) from None
    if condition.kind not in (Kind.BOOL, Kind.NULL):
        raise r.fail((*where, "if"), f"`if` must be a condition, not a {condition.kind.value}")

    return Step(
        ids[i],
        "branch",
        line,
        condition=condition,
        then=_target(r, spec, "then", where, ids, i),
        otherwise=_target(r, spec, "else", where, ids, i),
    )


def _target(
    r: _Reader, spec: dict[str, Any], name: str, where: Where, ids: list[str], i: int
) -> int | None:
    """A branch's (or wait_for's) ``then`` / ``else``: a step index, ``None`` for exit."""
    value = spec.get(name, "next")
    if value == "next":
        return i + 1
    if value == "exit":
        return None
    if value not in ids:
        raise r.fail(
            (*where, name),
            f"no step with the id {value!r}",
            hint="name a step's id, next or exit; steps: " + ", ".join(ids),
        )
    return ids.index(value)


def _wait_for(r: _Reader, raw: Any, where: Where, ids: list[str], i: int, line: int) -> Step:
    spec = r.mapping(raw, where, {"event", "key", "where", "within", "then", "else"})
    if "event" not in spec:
        raise r.fail(
            where,
            "wait_for names the event to wait for",
            hint="e.g. wait_for: {event: Order Completed, within: 3d, then: thanks}",
        )
    if "within" not in spec:
        raise r.fail(
            where,
            "wait_for needs within: — how long to wait for the event at most",
            hint="e.g. within: 3d (then the step's else: target)",
        )
    event = r.text(spec["event"], (*where, "event"))
    key = r.key(spec["key"], (*where, "key")) if "key" in spec else None
    source = spec.get("where")
    condition = _event_filter(r, source, where, waiting=True) if "where" in spec else None
    wait = WaitFor(
        event,
        r.duration(spec["within"], (*where, "within")),
        key=key,
        where=condition,
        where_source=str(source).strip() if condition else None,
    )
    return Step(
        ids[i],
        "wait_for",
        line,
        then=_target(r, spec, "then", where, ids, i),
        otherwise=_target(r, spec, "else", where, ids, i),
        wait_for=wait,
    )
