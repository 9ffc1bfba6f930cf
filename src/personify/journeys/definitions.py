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
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from personify import clock
from personify._yamlmarks import MarkedDocument, parse_marked
from personify.audiences.expressions import (
    Expression,
    ExpressionError,
    Kind,
    check_expression,
    profile_columns,
)
from personify.audiences.schedule import parse_duration
from personify.config import _dotted
from personify.errors import DefinitionError

Where = tuple[str | int, ...]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
_KEY = re.compile(r"^(properties|context)\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")
_PATH = re.compile(
    r"^(event|timestamp|message_id|(properties|context|traits)(\.[A-Za-z0-9_\-]+)*)$"
)
_CLOCK = re.compile(r"^([01]?[0-9]|2[0-3]):([0-5][0-9])$")
PROVIDERS = ("cart", "recommendations", "new_arrivals", "discount", "profile", "tag", "event")
"""What ``{from: …}`` may name in a send step's ``with:``."""


@dataclass(frozen=True)
class Trigger:
    """How customers enter."""

    kind: Literal["event", "segment", "tag", "schedule"]
    name: str
    """The event name, the segment, the tag, or (schedule) the segment broadcast to."""
    key: str | None = None
    """Event triggers: the event field (``properties.cart_id``) that keys an entry."""
    within: timedelta = timedelta(hours=24)
    """Lookback: older triggers never enter."""
    at: datetime | None = None
    """Schedule: the (first) occurrence."""
    every: timedelta | None = None
    """Schedule: repeat at this interval after ``at``."""
    where: str | None = None
    """Event triggers: the filter an entering event must pass, compiled to SQL over the events
    alias ``e`` (:mod:`personify.journeys.filters`)."""

    def occurrence(self, now: datetime) -> datetime | None:
        """Schedule: the latest occurrence at or before ``now`` (``None`` before the first)."""
        if self.at is None or now < self.at:
            return None
        if self.every is None:
            return self.at
        n = (now - self.at) // self.every
        return self.at + n * self.every


@dataclass(frozen=True)
class Goal:
    """An event that ends the journey for the customer (optionally for the same key)."""

    event: str
    key: str | None = None


@dataclass(frozen=True)
class Variable:
    """One template variable of a send step: a literal or a provider (``{from: …}``)."""

    name: str
    value: Any = None
    provider: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One arm of a send step's experiment."""

    name: str
    weight: float
    line: int
    template: str | None = None
    """Another template (``None``: the step's)."""
    subject: str | None = None
    """A Liquid subject line replacing the template's (``None``: the template's) — of every
    language version of the template but those :attr:`subjects` names."""
    variables: tuple[Variable, ...] = ()
    """Variables merged over the step's (same name: this one wins)."""
    subjects: tuple[tuple[str, str], ...] = ()
    """Per locale (``subject: {default: ..., fr: ...}``): the tag (``fr``, ``fr-CA``) and the
    Liquid subject line its recipients get (exact locale, else language, else :attr:`subject`)."""

    def subject_lines(self) -> dict[str, str]:
        """The subject line of each language version this variant changes: the variant suffix
        (``""``: every version not named) → Liquid source. Empty: the templates' own."""
        lines = {"": self.subject} if self.subject else {}
        return lines | dict(self.subjects)


@dataclass(frozen=True)
class Experiment:
    """Variants with weights and a holdout share (receives nothing), on one send step."""

    name: str
    """What :func:`personify.engagement.assign` hashes with the customer id (``JOURNEY.STEP``
    by default)."""
    variants: tuple[Variant, ...]
    holdout: float = 0.0

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}

    def variant(self, name: str | None) -> Variant | None:
        for v in self.variants:
            if v.name == name:
                return v
        return None


@dataclass(frozen=True)
class WaitFor:
    """A ``wait_for`` step's event: the first one of the customer after the step became due and
    within ``within`` of it moves the instance on (to ``then``) at that event's time; none by the
    deadline moves it on (to ``else``) at the deadline."""

    event: str
    within: timedelta
    key: str | None = None
    """The event field that must equal the instance's trigger key (``properties.cart_id``)."""
    where: str | None = None
    """The filter the event must pass, compiled to SQL over the events alias ``e``
    (:mod:`personify.journeys.filters`)."""
    where_source: str | None = None
    """The filter as written (for reports)."""


@dataclass(frozen=True)
class Step:
    """One step. ``kind`` says which of the fields matter."""

    id: str
    kind: Literal["wait", "wait_until", "wait_for", "branch", "send", "tag", "exit"]
    line: int
    duration: timedelta | None = None
    until: time | None = None
    condition: Expression | None = None
    then: int | None = None
    """Branch target when the condition is TRUE (``wait_for``: when the event happened): a step
    index, or ``None`` for exit."""
    otherwise: int | None = None
    """Branch target when the condition is not TRUE (``wait_for``: when ``within`` passed)."""
    wait_for: WaitFor | None = None
    template: str | None = None
    variables: tuple[Variable, ...] = ()
    tag: str | None = None
    experiment: Experiment | None = None
    """Send steps: variants and a holdout (``None``: everyone gets the step as written)."""

    def arm(self, variant: str | None) -> Step:
        """This send step as ``variant`` sends it: its template and variables (the subject
        override is :attr:`Variant.subject`)."""
        chosen = self.experiment.variant(variant) if self.experiment else None
        if chosen is None:
            return self
        names = {v.name for v in chosen.variables}
        merged = tuple(v for v in self.variables if v.name not in names) + chosen.variables
        return replace(self, template=chosen.template or self.template, variables=merged)


@dataclass(frozen=True)
class Journey:
    """One checked journey file."""

    name: str
    description: str
    trigger: Trigger
    steps: tuple[Step, ...]
    goal: Goal | None
    reentry: Literal["always", "never", "after"]
    reentry_after: timedelta | None
    purpose: str
    capped: bool
    enabled: bool
    file: str
    exit_when: str | None = None
    """``exit_when: {segment: NAME}``: instances end (``exit_reason = 'left_segment'``) once
    the customer has left that segment since entering and is not back in it."""

    def step(self, step_id: str) -> Step | None:
        for s in self.steps:
            if s.id == step_id:
                return s
        return None


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


class _Reader:
    """Checks one document's keys and values, raising errors that name file, line and key."""

    def __init__(self, doc: MarkedDocument, file: str) -> None:
        self.doc, self.file = doc, file

    def fail(self, where: Where, message: str, hint: str | None = None) -> DefinitionError:
        return DefinitionError(
            message,
            file=self.file,
            line=self.doc.line(where),
            key=_dotted(where) or None,
            hint=hint,
        )

    def mapping(self, value: Any, where: Where, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*where, key),
                    f"unknown key {key!r}",
                    hint="allowed here: " + ", ".join(sorted(allowed)),
                )
        return value

    def text(self, value: Any, where: Where, *, name: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected text, got {_kind(value)}")
        if name and not _NAME.match(value):
            raise self.fail(where, f"{value!r} is not a name (letters, digits, _ and -)")
        return value.strip()

    def duration(self, value: Any, where: Where) -> timedelta:
        try:
            return parse_duration(str(value))
        except ValueError as e:
            raise self.fail(where, str(e)) from None

    def key(self, value: Any, where: Where) -> str:
        text = self.text(value, where)
        if not _KEY.match(text):
            raise self.fail(
                where,
                f"{text!r} is not an event field",
                hint="write properties.NAME (e.g. properties.cart_id) or context.NAME",
            )
        return text


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
_EXPERIMENT_KEYS = ("variants", "holdout", "experiment")


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


_VARIANT_KEYS = {"name", "weight", "template", "subject", "with", "discount"}


def _experiment(
    r: _Reader,
    spec: dict[str, Any],
    where: Where,
    default_name: str,
    step_vars: tuple[Variable, ...],
) -> Experiment | None:
    """A send step's ``variants`` / ``holdout`` / ``experiment`` (``None`` when it has none)."""
    if not any(k in spec for k in _EXPERIMENT_KEYS):
        return None
    if "variants" not in spec and "holdout" not in spec:
        raise r.fail(
            (*where, "experiment"),
            "an experiment needs variants: or a holdout:",
            hint="e.g. holdout: 10% and variants: [{name: a}, {name: b, subject: ...}]",
        )
    name = (
        r.text(spec["experiment"], (*where, "experiment")) if "experiment" in spec else default_name
    )
    holdout = _share(r, spec.get("holdout", 0), (*where, "holdout"))
    raw = spec.get("variants")
    if raw is None:
        variants: tuple[Variant, ...] = (Variant("control", 1.0, r.doc.line(where) or 1),)
    else:
        if not isinstance(raw, list) or not raw:
            raise r.fail(
                (*where, "variants"),
                f"expected a list of variants, got {_kind(raw)}",
                hint="e.g. variants: [{name: plain}, {name: urgent, subject: ...}]",
            )
        variants = tuple(
            _variant(r, item, (*where, "variants", n), step_vars) for n, item in enumerate(raw)
        )
    seen: set[str] = set()
    for n, v in enumerate(variants):
        if v.name in seen:
            raise r.fail((*where, "variants", n, "name"), f"two variants are named {v.name!r}")
        seen.add(v.name)
    if sum(v.weight for v in variants) <= 0:
        raise r.fail(
            (*where, "variants"),
            "the variants' weights add up to 0: nobody would get any of them",
            hint="give at least one variant a weight above 0 (the default weight is 1)",
        )
    return Experiment(name, variants, holdout)


def _share(r: _Reader, value: Any, where: Where) -> float:
    """A share in [0, 1): ``0.1`` or ``"10%"``."""
    share: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            share = None
    if share is None or share != share or not 0.0 <= share < 1.0:
        raise r.fail(
            where,
            f"{value!r} is not a holdout share",
            hint="a share from 0 up to (not including) 1, e.g. 0.1 or 10%",
        )
    return share


def _variant(r: _Reader, raw: Any, where: Where, step_vars: tuple[Variable, ...]) -> Variant:
    spec = r.mapping(raw, where, _VARIANT_KEYS)
    if "name" not in spec:
        raise r.fail(where, "a variant needs a name", hint="e.g. - {name: urgent, weight: 1}")
    name = r.text(spec["name"], (*where, "name"), name=True)
    if name == "holdout":
        raise r.fail(
            (*where, "name"),
            "'holdout' is the name of the share that receives nothing",
            hint="name the variant otherwise; set the share with the step's holdout:",
        )
    weight = spec.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float):
        raise r.fail((*where, "weight"), f"a weight is a number, got {_kind(weight)}")
    if not 0 <= weight < float("inf"):
        raise r.fail(
            (*where, "weight"), f"a weight cannot be {weight!r}", hint="a number 0 or above"
        )
    template = r.text(spec["template"], (*where, "template")) if "template" in spec else None
    subject, subjects = _variant_subject(r, spec, where) if "subject" in spec else (None, ())
    variables = _variables(r, spec.get("with") or {}, (*where, "with"))
    if "discount" in spec:
        campaign = r.text(spec["discount"], (*where, "discount"))
        discounts = [v for v in step_vars if v.provider == "discount"]
        if not discounts:
            raise r.fail(
                (*where, "discount"),
                "the step has no {from: discount} variable whose campaign this would change",
                hint="add one to the step's with:, or give the variant "
                "with: {NAME: {from: discount, campaign: ...}}",
            )
        names = {v.name for v in variables}
        variables += tuple(
            Variable(v.name, provider="discount", options={**v.options, "campaign": campaign})
            for v in discounts
            if v.name not in names
        )
    return Variant(
        name, float(weight), r.doc.line(where) or 1, template, subject, variables, subjects
    )


def _variant_subject(
    r: _Reader, spec: dict[str, Any], where: Where
) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """A variant's ``subject``: text (every language version) or a mapping of locales (``fr``,
    ``fr-CA``: BCP 47 tags Babel knows) to text, ``default`` for the others (without it they keep
    their own subject). A recipient gets the line of their exact locale, else of their language,
    else ``default`` — as template files are chosen, whether or not a file exists for it."""
    from personify.messages.locale import known_locale, normalize

    value = spec["subject"]
    if not isinstance(value, dict):
        subject = r.text(value, (*where, "subject"))
        _check_subject(r, subject, (*where, "subject"))
        return subject, ()
    if not value:
        raise r.fail(
            (*where, "subject"),
            "a subject mapping names no language",
            hint='e.g. subject: {default: "10 % off", fr: "10 % de remise"}',
        )
    default: str | None = None
    subjects: dict[str, str] = {}
    for key, line in value.items():
        at = (*where, "subject", str(key))
        text = r.text(line, at)
        _check_subject(r, text, at)
        if key == "default":
            default = text
            continue
        tag = known_locale(key) if isinstance(key, str) else None
        if tag is None:
            said = "a locale Babel knows" if normalize(key) else "a locale tag"
            quote = " (YAML reads an unquoted no, yes, on or off as true/false: quote it)"
            raise DefinitionError(
                f"{key!r} is not {said}",
                file=r.file,
                line=_key_line(r, (*where, "subject"), key, value),
                key=_dotted(at),
                hint="a BCP 47 tag such as fr, fr-CA or pt-BR, or default"
                + (quote if isinstance(key, bool) else ""),
            )
        if tag in subjects:
            raise r.fail(at, f"language {tag} is given twice")
        subjects[tag] = text
    return default, tuple(sorted(subjects.items()))


def _key_line(r: _Reader, where: Where, key: Any, mapping: dict[Any, Any]) -> int | None:
    """The line of ``key`` of the mapping at ``where`` — also when YAML read it as another type
    than the text written (``no:`` is false): the written key no other key of it is."""
    if isinstance(key, str):
        return r.doc.line((*where, key))
    written = [p[-1] for p in r.doc.marks if len(p) == len(where) + 1 and p[:-1] == where]
    others = [w for w in written if w not in mapping]
    return r.doc.marks[(*where, others[0])] if len(others) == 1 else r.doc.line(where)


def _check_subject(r: _Reader, subject: str, where: Where) -> None:
    from liquid.exceptions import LiquidError

    from personify.messages.liquid_env import check_zones, text_environment

    try:  # (a date filter's time zone written in the line is checked here, as a template's is)
        check_zones(text_environment().from_string(subject))
    except LiquidError as e:
        raise r.fail(where, f"the subject is not valid Liquid: {e}") from None


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


def _variables(r: _Reader, raw: Any, where: Where) -> tuple[Variable, ...]:
    spec = r.mapping(raw, where, set(raw) if isinstance(raw, dict) else set())
    out = []
    for name, value in spec.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise r.fail((*where, name), f"{name!r} is not a variable name")
        if isinstance(value, dict) and "from" in value:
            provider = value["from"]
            if provider not in PROVIDERS:
                raise r.fail(
                    (*where, name, "from"),
                    f"unknown provider {provider!r}",
                    hint="one of: " + ", ".join(PROVIDERS),
                )
            options = {k: v for k, v in value.items() if k != "from"}
            _check_options(r, provider, options, (*where, name))
            out.append(Variable(name, provider=provider, options=options))
        else:
            out.append(Variable(name, value=_plain(value)))
    return tuple(out)


_OPTIONS: dict[str, set[str]] = {
    "cart": {"url"},
    "recommendations": {"k"},
    "new_arrivals": {"k"},
    "discount": {"campaign"},
    "profile": {"field", "default"},
    "tag": {"tag", "variable", "default"},
    "event": {"path", "default"},
}


def _check_event_variables(r: _Reader, steps: tuple[Step, ...], trigger: Trigger) -> None:
    """Refuse ``{from: event}`` variables unless the journey has an event trigger (only event
    triggers have an event to read; content resolution is given the trigger when it sends)."""
    for step in steps:
        arms = [step.variables]
        if step.experiment is not None:
            arms += [v.variables for v in step.experiment.variants]
        for variables in arms:
            for var in variables:
                if var.provider == "event" and trigger.kind != "event":
                    raise r.fail(
                        ("trigger",),
                        f"variable {var.name!r} reads the triggering event ({{from: event}}), "
                        f"but this journey's trigger is a {trigger.kind}",
                        hint="use {from: event} in journeys triggered by an event",
                    )


def _check_options(r: _Reader, provider: str, options: dict[str, Any], where: Where) -> None:
    r.mapping(options, where, _OPTIONS[provider] | {"from"})
    path = options.get("path")
    if provider == "event" and path is not None and not _PATH.match(str(path)):
        raise r.fail(
            (*where, "path"),
            f"{path!r} is not a field of the event",
            hint="event, timestamp, properties, context, or a field inside them: properties.items",
        )
    if "k" in options and (not isinstance(options["k"], int) or not 1 <= options["k"] <= 50):
        raise r.fail((*where, "k"), "k is a whole number from 1 to 50")
    required = {"discount": "campaign", "profile": "field", "tag": "tag"}.get(provider)
    if required and required not in options:
        raise r.fail(where, f"{{from: {provider}}} needs {required}:")


def _plain(value: Any) -> Any:
    """YAML dates back to text (templates print them as written)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
