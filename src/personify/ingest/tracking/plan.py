"""The tracking plan: one JSON Schema per event, in the project's ``tracking-plan/`` folder.

``tracking-plan/<Event Name>.json`` checks the ``properties`` of ``track`` calls named
``<Event Name>``; four file names are reserved for the other calls: ``identify.json`` and
``group.json`` check ``traits``, ``page.json`` and ``screen.json`` check ``properties``. Events with
no schema pass (the plan lists what it knows, it does not forbid the rest).

Schemas are JSON Schema (2020-12 by default). Each is checked against its meta-schema when the plan
loads and compiled with
``fastjsonschema`` into plain Python — about 25 times faster than the ``jsonschema`` library, which
matters at tens of thousands of events per second. Schemas using 2019-09/2020-12 keywords that
``fastjsonschema`` lacks (``prefixItems``, ``unevaluatedProperties`` …) are validated by
``jsonschema`` instead. An event that fails is re-checked by ``jsonschema`` to list *every*
violation with its JSON pointer. Formats (``email``, ``date-time`` …) are asserted. ``$ref`` to
other files or URLs is not followed (nothing is fetched).

:class:`PlanCache` re-reads the folder when a file in it changes (checked every two seconds), so a
fixed plan applies to the next events without restarting the server.

A file the plan cannot use — not JSON, not an object, not a valid JSON Schema — is
:class:`Unreadable`: it takes down nothing but its own event. The events it would check are
quarantined (``tracking_plan_unreadable``, naming the file, replayable once it is fixed), never
accepted unchecked; every other file checks its events as usual. A live edit that breaks a file
that was good keeps that file's last good version in use instead. Either way the file is a
problem :class:`PlanCache` logs and :func:`plan_problems` reports (``/healthz``, ``personify
status`` and ``run``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import fastjsonschema
import jsonschema
import msgspec

from personify.errors import ConfigError

log = logging.getLogger("personify.ingest.tracking")

SPECIAL: Final[dict[str, str]] = {
    "identify": "traits",
    "group": "traits",
    "page": "properties",
    "screen": "properties",
}
"""Reserved file names → the part of those calls their schema checks."""
_SLOW_KEYWORDS: Final = frozenset(
    {
        "prefixItems",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$anchor",
    }
)
RECHECK_SECONDS: Final = 2.0
"""How often :class:`PlanCache` looks for changed files."""


_TYPED_ROOT: Final = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "examples", "type", "properties"}
    | {"required", "additionalProperties"}
)
_TYPED_FIELD: Final = frozenset({"type", "title", "description", "$comment", "examples"})
_TYPED_BOUNDS: Final = {
    "string": {"minLength": "min_length", "maxLength": "max_length", "pattern": "pattern"},
    "number": {
        "minimum": "ge",
        "maximum": "le",
        "exclusiveMinimum": "gt",
        "exclusiveMaximum": "lt",
    },
    "integer": {
        "minimum": "ge",
        "maximum": "le",
        "exclusiveMinimum": "gt",
        "exclusiveMaximum": "lt",
    },
    "boolean": {},
}
_TYPED_BASE: Final[dict[str, type]] = {
    "string": str,
    "number": float,
    "integer": int,
    "boolean": bool,
}
_DOLLAR: Final = re.compile(r"(?<!\\)\$")
"""An unescaped ``$`` (fastjsonschema reads it as end of text, ``\\Z``, as JSON Schema means)."""


def typed_decoder(document: Any) -> msgspec.json.Decoder[Any] | None:
    """A msgspec decoder that accepts a JSON object only if it conforms to ``document`` — for the
    common shape of a tracking-plan schema (an object of typed properties: strings with length
    bounds and patterns, numbers and integers with bounds, booleans; ``required``;
    ``additionalProperties``) — or ``None`` for any other schema. It decodes the raw bytes in C
    without building the dict, ~5× cheaper than decoding then running the compiled validator.
    It only *accepts*: an event it refuses is checked the full way, which alone decides and says
    why (so a subtle difference — an integer written ``1.0``, a number too large for a float —
    can only cost time, never let a violation through)."""
    if not isinstance(document, dict) or set(document) - _TYPED_ROOT:
        return None
    properties = document.get("properties", {})
    required = document.get("required", [])
    extra = document.get("additionalProperties", True)
    if document.get("type") != "object" or not isinstance(properties, dict):
        return None
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        return None
    if extra not in (True, False) or set(required) - set(properties):
        return None
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    rename: dict[str, str] = {}
    for i, (name, sub) in enumerate(properties.items()):
        kind = _typed_field(sub)
        if kind is None:
            return None
        rename[f"f{i}"] = name
        if name in required:
            fields.append((f"f{i}", kind))
        else:
            fields.append((f"f{i}", kind | msgspec.UnsetType, msgspec.UNSET))
    try:
        struct = msgspec.defstruct(
            "TypedPart", fields, kw_only=True, rename=rename, forbid_unknown_fields=extra is False
        )
        return msgspec.json.Decoder(struct)
    except (TypeError, ValueError, re.error):
        return None


def _typed_field(sub: Any) -> Any:
    if not isinstance(sub, dict) or not isinstance(sub.get("type"), str):
        return None
    kind = sub["type"]
    bounds = _TYPED_BOUNDS.get(kind)
    if bounds is None or set(sub) - _TYPED_FIELD - set(bounds):
        return None
    meta: dict[str, Any] = {}
    for key, arg in bounds.items():
        if key not in sub:
            continue
        value = sub[key]
        if arg == "pattern":
            if not isinstance(value, str):
                return None
            value = _DOLLAR.sub(r"\\Z", value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return None  # (draft-04's boolean exclusiveMinimum, …: the full way)
        elif arg in ("min_length", "max_length") and (not isinstance(value, int) or value < 0):
            return None
        meta[arg] = value
    base = _TYPED_BASE[kind]
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


@dataclass(frozen=True, slots=True)
class Violation:
    """One way an event breaks its schema."""

    pointer: str
    """JSON pointer inside the event (``/properties/price``)."""
    message: str
    """What the schema expected (never the offending value itself)."""


def _uses_slow_keywords(node: Any) -> bool:
    if isinstance(node, dict):
        return any(k in _SLOW_KEYWORDS for k in node) or any(
            _uses_slow_keywords(v) for v in node.values()
        )
    if isinstance(node, list):
        return any(_uses_slow_keywords(v) for v in node)
    return False


def _no_remote(uri: str) -> Any:
    raise ValueError(f"the tracking plan does not fetch remote schemas ({uri})")


def _meta_check(file: Path, document: dict[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The validator class of ``document``, once it is checked against its meta-schema."""
    cls: type[jsonschema.protocols.Validator] = jsonschema.validators.validator_for(
        document, jsonschema.Draft202012Validator
    )
    try:
        cls.check_schema(document)
    except jsonschema.SchemaError as e:
        where = _pointer(e.absolute_path) or "/"
        raise ConfigError(
            f"not a valid JSON Schema at {where}: {e.message}", file=str(file)
        ) from None
    return cls


def _pointer(parts: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


@dataclass
class Schema:
    """One compiled schema."""

    file: Path
    part: str
    """``properties`` or ``traits``: what it checks."""
    document: dict[str, Any]
    full: jsonschema.protocols.Validator = field(init=False)
    fast: Callable[[Any], Any] | None = field(init=False)
    typed: msgspec.json.Decoder[Any] | None = field(init=False)
    """Accepts raw JSON that conforms, without decoding it to a dict (:func:`typed_decoder`)."""

    def __post_init__(self) -> None:
        cls = _meta_check(self.file, self.document)
        self.full = cls(self.document, format_checker=cls.FORMAT_CHECKER)
        self.fast = None
        if not _uses_slow_keywords(self.document):
            handlers = {"http": _no_remote, "https": _no_remote, "file": _no_remote}
            try:
                self.fast = fastjsonschema.compile(
                    self.document, handlers=handlers, use_default=False
                )
            except Exception:  # anything it cannot compile, jsonschema validates
                self.fast = None
        self.typed = typed_decoder(self.document) if self.fast is not None else None

    def accepts(self, raw: bytes) -> bool:
        """``True`` when the part's raw JSON certainly conforms (a typed decode, no dict built);
        ``False`` means *check it* with :meth:`check`, not that it fails."""
        if self.typed is None:
            return False
        try:
            self.typed.decode(raw)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False
        return True

    def check(self, value: Any) -> list[Violation]:
        """Every violation of ``value`` (the part this schema checks), or none."""
        if self.fast is not None:
            try:
                self.fast(value)
                return []
            except fastjsonschema.JsonSchemaValueException as e:
                first = Violation(f"/{self.part}{_pointer(e.path[1:])}", _safe(e.message))
        elif self.full.is_valid(value):
            return []
        else:
            first = None
        errors = sorted(self.full.iter_errors(value), key=lambda err: [str(p) for p in err.path])
        found = [_violation(self.part, err) for err in errors]
        return found or ([first] if first else [])


def _safe(message: str) -> str:
    # fastjsonschema says "data.price must be …": keep the rule (the pointer says where)
    head, sep, rest = message.partition(" must ")
    return f"must {rest}" if sep and head.startswith("data") else message


def _violation(part: str, error: jsonschema.ValidationError) -> Violation:
    """A violation pointing at the value (for ``required``: where the missing one belongs)."""
    path = [*error.absolute_path]
    if error.validator == "required" and str(error.message).count("'") >= 2:
        missing = str(error.message).split("'")[1]
        return Violation(f"/{part}{_pointer([*path, missing])}", "is required")
    return Violation(f"/{part}{_pointer(path)}", _describe(error))


def _describe(error: jsonschema.ValidationError) -> str:
    rule = error.validator
    if rule in ("type", "enum", "const", "format", "pattern"):
        return f"must match the schema's {rule} ({json.dumps(error.validator_value)[:80]})"
    return f"breaks the schema's {rule} rule ({json.dumps(error.validator_value)[:80]})"


Key = tuple[str, str | None]
"""``(type, event name or None)``: what one file of the plan checks."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A file of the plan that cannot be used: not JSON, not an object, not a valid JSON Schema."""

    file: Path
    problem: str
    """What is wrong with it (a JSON error with its line and column)."""
    kept: bool = False
    """A live edit broke a file that was good: its last good version is still in use (else the
    events it checks are quarantined)."""

    @property
    def name(self) -> str:
        """The file as the project names it: ``tracking-plan/Signed Up.json``."""
        return f"{self.file.parent.name}/{self.file.name}"

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}"

    @property
    def consequence(self) -> str:
        """What becomes of its events until it is fixed."""
        if self.kept:
            return "its last good version stays in use until the file is fixed"
        return (
            "its events are quarantined (tracking_plan_unreadable) until the file is fixed; "
            "then `personify quarantine replay`"
        )


class Plan:
    """The compiled schemas of one folder."""

    def __init__(
        self,
        schemas: Mapping[Key, Schema],
        unreadable: Mapping[Key, Unreadable] | None = None,
        kept: Mapping[Key, Unreadable] | None = None,
    ) -> None:
        self.schemas = dict(schemas)
        """``(type, event name or None)`` → schema."""
        self.unreadable = dict(unreadable or {})
        """The files that cannot be used, whose events are quarantined unchecked."""
        self.kept = dict(kept or {})
        """The files broken by a live edit, whose last good version is among ``schemas``."""

    @property
    def problems(self) -> list[Unreadable]:
        """Every file of the folder the plan could not read, by name."""
        found = [*self.unreadable.values(), *self.kept.values()]
        return sorted(found, key=lambda u: u.file.name)

    def unreadable_for(self, kind: str, event: str | None) -> Unreadable | None:
        """The unusable file that should check this call, if any."""
        return self.unreadable.get((kind, event if kind == "track" else None))

    def __len__(self) -> int:
        return len(self.schemas)

    def schema_for(self, kind: str, event: str | None) -> Schema | None:
        """The schema checking this call, if any."""
        return self.schemas.get((kind, event if kind == "track" else None))

    def check(
        self,
        kind: str,
        event: str | None,
        properties: dict[str, Any] | None,
        traits: dict[str, Any] | None,
    ) -> list[Violation]:
        """The violations of one call (none when it has no schema)."""
        schema = self.schemas.get((kind, event if kind == "track" else None))
        if schema is None:
            return []
        value = traits if schema.part == "traits" else properties
        return schema.check({} if value is None else value)


def _key(file: Path) -> Key:
    name = file.stem
    return (name, None) if name in SPECIAL else ("track", name)


def _read(file: Path) -> dict[str, Any]:
    """One file's schema document (:class:`ConfigError` saying what is wrong with it)."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte {e.start})", file=str(file)) from None
    except OSError as e:
        raise ConfigError(
            f"cannot be read ({e.strerror or type(e).__name__})", file=str(file)
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"not JSON at line {e.lineno}, column {e.colno}: {e.msg}", file=str(file)
        ) from None
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"not JSON: {e}", file=str(file)) from None
    if not isinstance(document, dict):
        raise ConfigError("a tracking-plan schema must be a JSON object", file=str(file))
    return document


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def load_plan(folder: Path) -> Plan:
    """Compile every ``*.json`` in ``folder`` (none, or no folder: an empty plan). A file that
    cannot be used is :class:`Unreadable` in :attr:`Plan.unreadable`, not an error: the rest of
    the plan works."""
    schemas: dict[Key, Schema] = {}
    unreadable: dict[Key, Unreadable] = {}
    for file in _files(folder):
        key = _key(file)
        try:
            schemas[key] = Schema(file, SPECIAL.get(key[0], "properties"), _read(file))
        except ConfigError as e:
            unreadable[key] = Unreadable(file, e.reason)
        except Exception as e:  # a schema the validators choke on (``"$schema": []`` …)
            unreadable[key] = Unreadable(file, _unusable(e))
    return Plan(schemas, unreadable)


def _unusable(error: Exception) -> str:
    return f"not a usable JSON Schema ({type(error).__name__}: {str(error)[:200]})"


def plan_problems(folder: Path) -> list[Unreadable]:
    """The files of ``folder`` a plan could not use — read and checked against their meta-schema,
    not compiled (cheaper than :func:`load_plan`, for ``personify status`` and ``run``)."""
    found = []
    for file in _files(folder):
        try:
            _meta_check(file, _read(file))
        except ConfigError as e:
            found.append(Unreadable(file, e.reason))
        except Exception as e:
            found.append(Unreadable(file, _unusable(e)))
    return found


def _signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    if not folder.is_dir():
        return ()
    out = []
    for file in sorted(folder.glob("*.json")):
        try:
            st = file.stat()
        except OSError:
            continue
        out.append((file.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


class PlanCache:
    """A folder's plan, re-read when its files change (looked at every few seconds).

    Each file that cannot be used is logged (a warning naming it and what is wrong) when the
    cache is made and whenever a change makes it so."""

    def __init__(self, folder: Path, *, recheck: float = RECHECK_SECONDS) -> None:
        self.folder = folder
        self.recheck = recheck
        self._lock = threading.Lock()
        self._signature = _signature(folder)
        self._plan = load_plan(folder)
        for broken in self._plan.problems:
            log.warning("tracking plan: %s — %s", broken, broken.consequence)
        self._loaded: tuple[tuple[str, int, int], ...] | None = self._signature
        """The signature of the files ``_plan`` was read from; ``None`` when it keeps the last
        good version of a file since broken (no other process can read it again)."""
        self._checked = time.monotonic()

    def get(self) -> Plan:
        """The current plan. A file changed into a broken one keeps its last good version."""
        if time.monotonic() - self._checked < self.recheck:
            return self._plan
        with self._lock:
            self._checked = time.monotonic()
            signature = _signature(self.folder)
            if signature != self._signature:
                self._signature = signature
                self._plan = self._reload(self._plan)
                self._loaded = None if self._plan.kept else signature
            return self._plan

    def _reload(self, last: Plan) -> Plan:
        """The folder's plan now, a file broken since ``last`` replaced by its last good
        version; what changed about the broken files is logged."""
        plan = load_plan(self.folder)
        kept: dict[Key, Unreadable] = {}
        for key, broken in list(plan.unreadable.items()):
            good = last.schemas.get(key)
            if good is not None and good.file == broken.file:
                del plan.unreadable[key]
                plan.schemas[key] = good
                broken = kept[key] = Unreadable(broken.file, broken.problem, kept=True)
            before = last.unreadable.get(key) or last.kept.get(key)
            if before is None or before.problem != broken.problem:
                log.warning("tracking plan: %s — %s", broken, broken.consequence)
        plan.kept = kept
        for key, broken in {**last.unreadable, **last.kept}.items():
            if key in plan.schemas and key not in kept:
                log.info("tracking plan: %s is readable again and in use", broken.name)
        return plan

    def problems(self) -> list[Unreadable]:
        """The files of the current plan that cannot be used (looking for changes first)."""
        return self.get().problems

    def key(self) -> PlanKey | None:
        """Where the plan :meth:`get` returned last came from: another process holding the same
        key reads the same plan (:func:`plan_for`). ``None`` when no other process can: the plan
        keeps the last good version of a file since broken."""
        if self._loaded is None:
            return None
        return (str(self.folder), self._loaded)


PlanKey = tuple[str, tuple[tuple[str, int, int], ...]]
"""A plan's folder and the names, modification times and sizes of its files."""
_by_key: dict[str, tuple[PlanKey, Plan]] = {}


def plan_for(key: PlanKey) -> Plan:
    """The plan a :meth:`PlanCache.key` names, read once per process and change (raises
    :class:`ConfigError` when the folder no longer holds it, e.g. it was changed meanwhile)."""
    found = _by_key.get(key[0])
    if found is not None and found[0] == key:
        return found[1]
    folder = Path(key[0])
    if _signature(folder) != key[1]:
        raise ConfigError(f"the tracking plan in {folder} changed; read it again")
    plan = load_plan(folder)
    _by_key[key[0]] = (key, plan)
    return plan
