"""A journey file's send step: its ``with:`` variables (literals and ``{from: …}`` providers)
and its experiment (``variants``, ``holdout``, ``experiment``; per-locale subject lines)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from personify.config import _dotted
from personify.errors import DefinitionError
from personify.journeys._reader import _NAME, Where, _kind, _Reader
from personify.journeys.model import Experiment, Step, Trigger, Variable, Variant

_PATH = re.compile(
    r"^(event|timestamp|message_id|(properties|context|traits)(\.[A-Za-z0-9_\-]+)*)$"
)
PROVIDERS = ("cart", "recommendations", "new_arrivals", "discount", "profile", "tag", "event")
"""What ``{from: …}`` may name in a send step's ``with:``."""


_EXPERIMENT_KEYS = ("variants", "holdout", "experiment")

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
