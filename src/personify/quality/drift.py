"""Schema drift: fields a source's records gained, lost, or that changed type.

Each observation is a set of ``field → type`` for one *stream* of one source, compared with the
fields that stream was last seen with (``source_fields``); differences become rows of
``schema_changes`` (``added``, ``removed``, ``type_changed``) that ``personify status`` and the
quality report show as anomalies for a day (:data:`WINDOW`). The first observation of a stream is
its baseline and changes nothing. Types are JSON's (``string``, ``number``, ``boolean``,
``object``, ``array``) or, for typed files, ``timestamp`` / ``date``; a field holding several
(``number|string``) is mixed; nulls carry no type.

Streams and when they are observed:

* ``file:<table>`` — the columns of each file a file source (or ``personify import``) loaded,
  after the load: a CSV file's header (every column ``string``), a Parquet file's schema, the
  keys and value types of a JSON Lines file's first :data:`SAMPLE` records;
* ``event:<name>`` — per tracking source and event (``track`` events by name; ``identify`` …
  by type), the keys and JSON types of ``properties`` of the events received since the last
  observation — compared per event, as a tracking plan declares them;
* ``resource:<name>`` — the keys and value types of a REST resource's records (the first
  :data:`PAGE_SAMPLE` of each page): at every sync, over the records it pulled
  (:func:`observe_resource`), and when ``personify reconcile`` reads the whole source.

``personify status`` lists the changes of the last :data:`WINDOW`; ``/metrics`` counts them
(:func:`change_counts`, ``personify_schema_changes{source, stream, change}``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.types as pat
import sqlglot

from personify import clock
from personify.config import FileSource, TrackingSource
from personify.session import Session
from personify.warehouse import Warehouse
from personify.warehouse.schema import SCHEMA_CHANGES, SOURCE_FIELDS

log = logging.getLogger(__name__)

WINDOW: Final = timedelta(days=1)
"""How long a change stays on ``personify status``."""
SAMPLE: Final = 1000
"""Records of a JSON Lines file whose keys are observed."""
MIN_EVENTS: Final = 100
"""Events of one name an observation needs before a property missing from all of them is
reported removed (optional properties come and go in small windows)."""
PAGE_SAMPLE: Final = 200
"""Records per page of a REST resource whose keys are observed."""
MIN_RECORDS: Final = 100
"""Records a sync must have observed before a field missing from all of them is reported
removed (an incremental sync may pull only a few changed records)."""


@dataclass(frozen=True)
class SchemaChange:
    source: str
    stream: str
    field: str
    change: str
    """``added``, ``removed`` or ``type_changed``."""
    old_type: str | None
    new_type: str | None
    detected_at: datetime


# ----------------------------------------------------------------------------------- core
def json_type(value: Any) -> str | None:
    """The JSON type of a decoded value (``None`` for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def add_record_fields(seen: dict[str, set[str]], records: Iterable[Any]) -> None:
    """Add the top-level keys of ``records`` and their value types to ``seen``."""
    for record in records:
        if not isinstance(record, dict):
            continue
        for key, value in record.items():
            types = seen.setdefault(str(key), set())
            t = json_type(value)
            if t is not None:
                types.add(t)


def typed_fields(seen: Mapping[str, set[str]]) -> dict[str, str]:
    """``field → type`` (mixed types joined by ``|``; ``null``: only nulls seen)."""
    return {k: "|".join(sorted(v)) or "null" for k, v in seen.items()}


def record_fields(records: Iterable[Any]) -> dict[str, str]:
    """``field → type`` over the top-level keys of ``records``."""
    seen: dict[str, set[str]] = {}
    add_record_fields(seen, records)
    return typed_fields(seen)


def _merge(old: str, new: str) -> str:
    """``null`` (only nulls seen) is no type: it neither changes nor hides one."""
    return old if new == "null" else new


def observe(
    wh: Warehouse,
    source: str,
    stream: str,
    fields: Mapping[str, str],
    now: datetime | None = None,
    *,
    complete: bool = True,
) -> list[SchemaChange]:
    """Compare ``fields`` with what ``source``/``stream`` was last seen with, record the
    changes and the new baseline; returns the changes (none on a first observation).
    ``complete=False``: the observation is too small to say a field is gone (a few events
    without an optional property), so nothing is reported removed."""
    if not fields:
        return []
    now = now or clock.now()
    stored = wh.fetch(
        "SELECT field, type, present, first_seen, last_seen FROM source_fields "
        "WHERE source = ? AND stream = ?",
        [source, stream],
    )
    before = {str(r[0]): (str(r[1]), bool(r[2])) for r in stored}
    first = {str(r[0]): r[3] for r in stored}
    last = {str(r[0]): r[4] for r in stored}
    changes: list[SchemaChange] = []
    if before:
        for name, new_type in sorted(fields.items()):
            old = before.get(name)
            if old is None or not old[1]:
                changes.append(SchemaChange(source, stream, name, "added", None, new_type, now))
            elif new_type != "null" and old[0] != "null" and new_type != old[0]:
                changes.append(
                    SchemaChange(source, stream, name, "type_changed", old[0], new_type, now)
                )
        for name, (old_type, present) in sorted(before.items()):
            if complete and present and name not in fields:
                changes.append(SchemaChange(source, stream, name, "removed", old_type, None, now))
    rows = []
    for name, new_type in fields.items():
        old = before.get(name)
        kept = _merge(old[0], new_type) if old else new_type
        rows.append((name, kept, True))
    rows += [(n, t, p and not complete) for n, (t, p) in before.items() if n not in fields]
    ts = pa.timestamp("us", tz="UTC")
    data = pa.table(
        {
            "source": [source] * len(rows),
            "stream": [stream] * len(rows),
            "field": [r[0] for r in rows],
            "type": [r[1] for r in rows],
            "present": pa.array([r[2] for r in rows], pa.bool_()),
            "first_seen": pa.array([first.get(r[0], now) for r in rows], ts),
            "last_seen": pa.array(
                [now if r[0] in fields else last.get(r[0], now) for r in rows], ts
            ),
        }
    )
    with wh.transaction():
        wh.load(SOURCE_FIELDS, data, on_conflict="update")
        if changes:
            wh.load(
                SCHEMA_CHANGES,
                pa.table(
                    {
                        "detected_at": pa.array([c.detected_at for c in changes], ts),
                        "source": [c.source for c in changes],
                        "stream": [c.stream for c in changes],
                        "field": [c.field for c in changes],
                        "change": [c.change for c in changes],
                        "old_type": pa.array([c.old_type for c in changes], pa.string()),
                        "new_type": pa.array([c.new_type for c in changes], pa.string()),
                    }
                ),
                on_conflict="ignore",
            )
    for c in changes:  # field names only, never values
        log.warning(
            "schema drift in %s/%s: field %s %s (%s → %s)",
            c.source,
            c.stream,
            c.field,
            c.change,
            c.old_type,
            c.new_type,
        )
    return changes


def recent_changes(wh: Warehouse, now: datetime | None = None) -> list[SchemaChange]:
    """The changes of the last :data:`WINDOW` (what ``personify status`` shows)."""
    now = now or clock.now()
    rows = wh.fetch(
        "SELECT source, stream, field, change, old_type, new_type, detected_at "
        "FROM schema_changes WHERE detected_at > ? AND detected_at <= ? "
        "ORDER BY detected_at, source, stream, field",
        [now - WINDOW, now],
    )
    return [
        SchemaChange(str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], r[5], r[6]) for r in rows
    ]


def change_counts(wh: Warehouse, now: datetime | None = None) -> dict[tuple[str, ...], float]:
    """``(source, stream, change) → how many`` of the last :data:`WINDOW` (for ``/metrics``)."""
    counts: dict[tuple[str, ...], float] = {}
    for c in recent_changes(wh, now):
        key = (c.source, c.stream, c.change)
        counts[key] = counts.get(key, 0.0) + 1.0
    return counts


# ------------------------------------------------------------------------------- collectors
def observe_resource(
    wh: Warehouse,
    source: str,
    resource: str,
    seen: Mapping[str, set[str]],
    records: int,
    now: datetime | None = None,
) -> list[SchemaChange]:
    """What a sync saw of a REST resource: ``seen`` (:func:`add_record_fields` over the first
    :data:`PAGE_SAMPLE` records of each page), from ``records`` records. Fewer than
    :data:`MIN_RECORDS` report nothing removed."""
    if not seen:
        return []
    return observe(
        wh,
        source,
        f"resource:{resource}",
        typed_fields(seen),
        now,
        complete=records >= MIN_RECORDS,
    )


ARROW_KINDS: Final = (
    (pat.is_boolean, "boolean"),
    (lambda t: pat.is_integer(t) or pat.is_floating(t) or pat.is_decimal(t), "number"),
    (lambda t: pat.is_string(t) or pat.is_large_string(t), "string"),
    (pat.is_timestamp, "timestamp"),
    (pat.is_date, "date"),
    (lambda t: pat.is_list(t) or pat.is_large_list(t), "array"),
    (pat.is_struct, "object"),
)


def arrow_kind(t: pa.DataType) -> str:
    for test, name in ARROW_KINDS:
        if test(t):
            return name
    return str(t)


def file_fields(path: Path, fmt: str, delimiter: str = ",") -> dict[str, str]:
    """``column → type`` of one file (module docstring); ``{}`` when it cannot be read."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return {f.name: arrow_kind(f.type) for f in pq.read_schema(path)}
        if fmt == "csv":
            import csv

            with path.open(newline="", encoding="utf-8-sig") as text:
                header = next(csv.reader(text, delimiter=delimiter), [])
            return {h.strip(): "string" for h in header if h.strip()}
        decode = msgspec.json.Decoder().decode
        records: list[Any] = []
        with path.open("rb") as f:
            for line in f:
                if line.strip():
                    try:
                        records.append(decode(line))
                    except msgspec.DecodeError:
                        continue  # malformed lines are the importer's business
                if len(records) >= SAMPLE:
                    break
        return record_fields(records)
    except (OSError, UnicodeDecodeError):
        return {}


def observe_files(session: Session, now: datetime | None = None) -> list[SchemaChange]:
    """Observe the columns of the files imported since each file stream was last observed
    (file sources and ``personify import``), oldest first; a stream never observed takes its
    newest file as the baseline (not every file of its history)."""
    wh = session.warehouse
    now = now or clock.now()
    configured = {s.name: s for s in session.project.config.sources if isinstance(s, FileSource)}
    seen = {
        (str(r[0]), str(r[1])): r[2]
        for r in wh.fetch(
            "SELECT source, stream, max(last_seen) FROM source_fields "
            "WHERE stream LIKE 'file:%' GROUP BY 1, 2"
        )
    }
    rows = wh.fetch(
        "SELECT source, table_name, path, imported_at FROM file_imports WHERE imported_at <= ? "
        "ORDER BY imported_at",
        [now],
    )
    newest = {(str(r[0]), f"file:{r[1]}"): i for i, r in enumerate(rows)}
    changes: list[SchemaChange] = []
    for i, (source, table, path, imported_at) in enumerate(rows):
        stream = f"file:{table}"
        last = seen.get((str(source), stream))
        if last is not None and imported_at <= last:
            continue
        if last is None and newest[(str(source), stream)] != i:
            continue  # a stream never observed: its newest file is the baseline
        spec = configured.get(str(source))
        file = Path(str(path))
        if not file.is_absolute():
            file = session.project.path(str(path))
        fmt = spec.format if spec is not None and spec.format else _format_of(file)
        delimiter = spec.delimiter if spec is not None else ","
        fields = file_fields(file, fmt, delimiter)
        if fields:  # observed as of its import: each file against the files before it
            changes += observe(wh, str(source), stream, fields, imported_at)
    return changes


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}.get(
        suffix, "csv"
    )


_PROPERTY_TYPES: Final = {
    # DuckDB: one JSON structure per distinct shape (json_each over every event is ~5× dearer)
    "duckdb": (
        "SELECT source, coalesce(event, type) AS name, json_structure(properties) AS shape, "
        "max(received_at) FROM events "
        "WHERE received_at > ? AND received_at <= ? AND json_type(properties) = 'OBJECT' "
        "GROUP BY 1, 2, 3"
    ),
    "postgres": (
        "SELECT e.source, coalesce(e.event, e.type) AS name, k.key, jsonb_typeof(k.value) AS t, "
        "max(e.received_at) FROM events AS e, jsonb_each(e.properties) AS k "
        "WHERE e.received_at > ? AND e.received_at <= ? "
        "AND jsonb_typeof(e.properties) = 'object' GROUP BY 1, 2, 3, 4"
    ),
}
"""Per dialect: the property keys and JSON types of the events received in a window — rows of
``(source, name, key, type, received)``, or on DuckDB ``(source, name, shape, received)`` where
``shape`` is ``json_structure`` (``{"key": "VARCHAR", "tags": ["UBIGINT"], …}``)."""
_JSON_TYPES: Final = {
    "VARCHAR": "string",
    "BIGINT": "number",
    "UBIGINT": "number",
    "HUGEINT": "number",
    "INTEGER": "number",
    "DOUBLE": "number",
    "BOOLEAN": "boolean",
    "OBJECT": "object",
    "ARRAY": "array",
    "NULL": "null",
}


def _decode_shape(shape: Any) -> dict[str, Any]:
    try:
        got = msgspec.json.decode(shape) if isinstance(shape, str | bytes) else shape
    except msgspec.DecodeError:
        return {}
    return got if isinstance(got, dict) else {}


def _shape_type(t: Any) -> str:
    """A ``json_structure`` entry as a type name of :data:`_JSON_TYPES`."""
    if isinstance(t, list):
        return "ARRAY"
    if isinstance(t, dict):
        return "OBJECT"
    return str(t)


def observe_events(session: Session, now: datetime | None = None) -> list[SchemaChange]:
    """Observe the properties of the events each tracking source received since its event
    streams were last observed (the first time: the last :data:`WINDOW`)."""
    wh = session.warehouse
    now = now or clock.now()
    tracking = [s.name for s in session.project.config.sources if isinstance(s, TrackingSource)]
    if not tracking:
        return []
    since = {
        str(r[0]): r[1]
        for r in wh.fetch(
            "SELECT source, max(last_seen) FROM source_fields WHERE stream LIKE 'event:%' "
            "GROUP BY 1"
        )
    }
    start = min((since.get(s) or now - WINDOW) for s in tracking)
    if wh.dialect not in _PROPERTY_TYPES:
        return []
    sql = _PROPERTY_TYPES[wh.dialect]  # written in the engine's own dialect: not transpiled
    rows = wh.fetch(
        sql if wh.dialect == "duckdb" else sqlglot.parse_one(sql, read=wh.dialect), [start, now]
    )
    counts = {
        (str(r[0]), f"event:{r[1]}"): int(r[2])
        for r in wh.fetch(
            "SELECT source, coalesce(event, type), count(*) FROM events "
            "WHERE received_at > ? AND received_at <= ? GROUP BY 1, 2",
            [start, now],
        )
    }
    if wh.dialect == "duckdb":
        rows = [
            (source, name, key, _shape_type(t), received)
            for source, name, shape, received in rows
            for key, t in _decode_shape(shape).items()
        ]
    streams: dict[tuple[str, str], dict[str, set[str]]] = {}
    for source, name, key, t, received in rows:
        if str(source) not in tracking:
            continue
        floor = since.get(str(source))
        if floor is not None and received <= floor:
            continue
        types = streams.setdefault((str(source), f"event:{name}"), {}).setdefault(str(key), set())
        kind = _JSON_TYPES.get(str(t).upper(), str(t).lower())
        if kind != "null":
            types.add(kind)
    changes: list[SchemaChange] = []
    for (source, stream), fields in sorted(streams.items()):
        complete = counts.get((source, stream), 0) >= MIN_EVENTS
        changes += observe(wh, source, stream, typed_fields(fields), now, complete=complete)
    return changes


def observe_after_load(session: Session) -> list[SchemaChange]:
    """The drift checks run after every load (sync, import, run): files and events."""
    return [*observe_files(session), *observe_events(session)]
