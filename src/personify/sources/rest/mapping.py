"""Records (nested JSON) to validated rows of the modelled tables — through the file importer's
mapping and validation (:class:`personify.ingest.validate.Validator`, JSON Lines flavour).

A page's records are encoded as JSON lines and validated exactly as a JSON Lines file would be:
the same mapping rules (``a.b`` reaches into nested objects; unmapped columns come from a field of
the same name or its camelCase form), the same types, the same quarantine reasons and details.
On top of that, REST and webhook mappings may say:

* ``field|unix`` / ``field|unix_ms`` — epoch seconds / milliseconds to a timestamp;
* ``field|cents`` — an amount in minor units (``1299`` → ``12.99``);
* ``field|string`` — a number or anything else as text (``12345`` → ``"12345"``);
* ``=text`` — a constant (``event: =Charge Succeeded``).

These are computed in Python into extra fields before validation. A :class:`~personify.config.
Nested` array becomes rows of its own table: each element with ``_parent`` (the record) and
``_index`` (1-based position).

Repeats of one key within a page keep the last record (an API may return a record twice while
it changes under the paginator); across pages the later page wins by upsert. Records without
their key are each kept (and quarantined by validation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.config import Nested
from personify.errors import ConfigError
from personify.ingest import quarantine
from personify.ingest.validate import RAW_COLUMN, Validator
from personify.profiles.records import route
from personify.sources.files import CONFLICT_POLICY, load_rows, newer_only, reshape
from personify.sources.rest.paths import get_path
from personify.warehouse import Warehouse
from personify.warehouse.schema import table as schema_table

TRANSFORMS: Final = ("unix", "unix_ms", "cents", "string")
_encode = msgspec.json.Encoder().encode


def _unix(value: Any, scale: float) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value  # left as it is: validation says it is no timestamp
    return datetime.fromtimestamp(number / scale, UTC).isoformat()


def _cents(value: Any) -> Any:
    try:
        return round(float(value) / 100, 2)
    except (TypeError, ValueError):
        return value


def _apply(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "unix":
        return _unix(value, 1)
    if name == "unix_ms":
        return _unix(value, 1000)
    if name == "cents":
        return _cents(value)
    return value if isinstance(value, str) else _encode(value).decode().strip('"')


@dataclass(frozen=True)
class _Computed:
    column: str
    path: str | None
    transform: str | None
    constant: str | None

    @property
    def key(self) -> str:
        return f"__personify_{self.column}"

    def value(self, record: Any) -> Any:
        if self.constant is not None:
            return self.constant
        raw = get_path(record, self.path)
        return _apply(self.transform, raw) if self.transform else raw


@dataclass
class Target:
    """One table a resource's records (or an array inside them) go to."""

    source: str
    table: str
    mapping: dict[str, str]
    label: str
    nested_path: str | None = None
    computed: list[_Computed] = field(default_factory=list)
    validator: Validator | None = None
    line: int = 0

    def open(self, now: datetime) -> None:
        target = schema_table(self.table)
        self.validator = Validator(
            target,
            fmt="jsonl",
            fields=None,
            label=self.label,
            source=self.source,
            mapping=self.mapping,
            now=now,
        )
        # Repeats across pages are updates, not duplicates in a file: the last one wins.
        self.validator.keys = None

    def close(self) -> None:
        if self.validator is not None:
            self.validator.close()


def compile_target(
    source: str,
    table: str,
    mapping: Mapping[str, str],
    *,
    label: str,
    nested_path: str | None = None,
) -> Target:
    """A :class:`Target` for ``mapping`` (its transforms and constants split off)."""
    plain: dict[str, str] = {}
    computed: list[_Computed] = []
    for column, spec in mapping.items():
        spec = spec.strip()
        if spec.startswith("="):
            computed.append(_Computed(column, None, None, spec[1:].strip()))
            continue
        path, bar, transform = (part.strip() for part in spec.partition("|"))
        if bar:
            if transform not in TRANSFORMS:
                raise ConfigError(
                    f"{label}: mapping of {column!r}: unknown transform {transform!r}",
                    hint=f"use one of: {', '.join(TRANSFORMS)}",
                )
            computed.append(_Computed(column, path, transform, None))
        else:
            plain[column] = path
    for c in computed:
        plain[c.column] = c.key
    return Target(source, table, plain, label, nested_path, computed)


def targets_for(
    source: str, name: str, table: str, mapping: Mapping[str, str], nested: Sequence[Nested]
) -> list[Target]:
    """The record's own table first, then one target per nested array."""
    out = [compile_target(source, table, mapping, label=f"{source}/{name}")]
    for n in nested:
        label = f"{source}/{name}.{n.path}"
        out.append(compile_target(source, n.table, n.mapping, label=label, nested_path=n.path))
    return out


def rows_of(target: Target, records: Iterable[Any]) -> list[Any]:
    """The inputs of ``target``: the records, or the elements of their nested array."""
    if target.nested_path is None:
        out = list(records)
    else:
        out = []
        for record in records:
            items = get_path(record, target.nested_path)
            if isinstance(items, list):
                for i, item in enumerate(items, 1):
                    element = dict(item) if isinstance(item, dict) else {"value": item}
                    element["_parent"] = record
                    element["_index"] = i
                    out.append(element)
    if target.computed:
        out = [
            {**r, **{c.key: c.value(r) for c in target.computed}} if isinstance(r, dict) else r
            for r in out
        ]
    return out


def last_per_key(records: list[Any], key: Sequence[str]) -> list[Any]:
    """The records with repeats of a key removed, the last kept (order otherwise kept). A record
    without its key (a part missing or null) repeats nothing: each is kept, so validation
    quarantines every one of them rather than one for all."""
    seen: dict[Any, int] = {}
    for i, record in enumerate(records):
        values = tuple(get_path(record, k) for k in key) if isinstance(record, dict) else (None,)
        if any(v is None for v in values):
            seen[("__no_key", i)] = i
        else:
            seen[tuple(_hashable(v) for v in values)] = i
    keep = sorted(seen.values())
    return records if len(keep) == len(records) else [records[i] for i in keep]


def _from_origin(rows: pa.Table, target: Target, origin: str, first: int) -> pa.Table:
    """Quarantine ``rows`` located by ``origin`` (see :func:`load_records`); ``first``: the line
    number of the call's first input."""
    ids, locations, details = [], [], []
    for location, detail in zip(
        rows.column("location").to_pylist(), rows.column("detail").to_pylist(), strict=True
    ):
        line = int(location.rsplit(":", 1)[1]) - first + 1
        where = f"{target.label}:{origin}"
        if target.nested_path is not None:
            where += f"#{line}"
        ids.append(quarantine_id_of(target, where))
        locations.append(where)
        prefix = f"{location}: "
        details.append(
            where + ": " + detail[len(prefix) :] if detail.startswith(prefix) else detail
        )
    for name, values in (("id", ids), ("location", locations), ("detail", details)):
        rows = rows.set_column(
            rows.schema.get_field_index(name), name, pa.array(values, pa.string())
        )
    return rows


def quarantine_id_of(target: Target, where: str) -> str:
    """The id of the quarantine row of ``target`` at ``where`` (a location)."""
    return hashlib.sha256(f"{target.source}:{where}".encode()).hexdigest()[:32]


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else _encode(value)


@dataclass
class Loaded:
    read: int = 0
    loaded: int = 0
    duplicate: int = 0
    quarantined: int = 0


def load_records(
    wh: Warehouse,
    target: Target,
    records: list[Any],
    *,
    received_at: datetime,
    origin: str | None = None,
    payload: str | None = None,
) -> Loaded:
    """Validate ``records`` for ``target`` and load them — valid rows into the table, the others
    into the quarantine — in the caller's transaction.

    ``origin``: what the records arrived in (a webhook's delivery id): a quarantine row's
    location is then ``label:origin`` (``label:origin#n`` for the n-th element of a nested
    array), its id made of them, instead of a line counted since the process started.
    ``payload``: what to keep as each quarantine row's payload (the body as received) instead of
    the record as mapped (with its ``_parent`` and internal keys)."""
    assert target.validator is not None
    inputs = rows_of(target, records)
    done = Loaded(read=len(inputs))
    if not inputs:
        return done
    target.validator.params["now"] = received_at  # defaults (received_at …): this arrival
    lines = np.arange(target.line + 1, target.line + len(inputs) + 1, dtype=np.int64)
    target.line += len(inputs)
    raw = pa.table({RAW_COLUMN: pa.array([_encode(r) for r in inputs], pa.binary())})
    checked = target.validator.check(raw, pa.array(lines))
    schema = target.validator.table
    stored = schema_table(route(schema.name))
    good = reshape(schema, checked.good, target.source, received_at)
    if good.num_rows:
        valid = good.num_rows
        policy = CONFLICT_POLICY[stored.name]
        if policy == "update":  # (counted apart here; the upsert itself checks again, in case
            good = newer_only(wh, stored, good)  # another process stored a newer one since)
        loaded = (
            load_rows(wh, stored, good, policy, only_newer=policy == "update")
            if good.num_rows
            else 0
        )
        done.loaded, done.duplicate = loaded, valid - loaded
    if checked.bad.num_rows:
        rows = quarantine.to_rows(
            target.validator.con,
            checked.bad,
            source=target.source,
            origin=target.label,
            received_at=received_at,
        )
        ids = pa.array(
            [
                hashlib.sha256(f"{target.source}:{target.label}:{p}".encode()).hexdigest()[:32]
                for p in rows.column("payload").to_pylist()
            ]
        )
        rows = rows.set_column(rows.schema.get_field_index("id"), "id", ids)
        if origin is not None:
            rows = _from_origin(rows, target, origin, lines[0])
        if payload is not None:
            column = pa.array([payload] * rows.num_rows, pa.string())
            rows = rows.set_column(rows.schema.get_field_index("payload"), "payload", column)
        for c in target.computed:  # name the mapping as written, not its internal field
            shown = f"/{c.path}|{c.transform}" if c.path else f"={c.constant}"
            detail = pc.replace_substring(rows.column("detail"), f"/{c.key}", shown)
            rows = rows.set_column(rows.schema.get_field_index("detail"), "detail", detail)
        quarantine.write(wh, rows)
        done.quarantined = checked.bad.num_rows
    return done
