"""Re-read a source as its sync would store it, without storing anything.

A file source is read file by file through the importer's own reader and validator (the rows
of a file not imported yet are *pending*). A REST source is read through the same engine as its
sync (preset, client with its auth,
politeness and retries, paginators, the ``local:`` demo APIs), from its initial value — the
whole source, not the increment — and every page's records are mapped and validated exactly as
the sync maps them (:mod:`personify.sources.rest.mapping`). What comes out is, per table, the
rows the sync would have loaded (Arrow) and, per row, whether the record changed at the source
after the last finished sync (its cursor is newer than the saved one): such a difference is
*pending*, not an error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from personify import clock
from personify.config import FileSource, RestResource, RestSource, duration_seconds
from personify.http import HttpClient
from personify.http.errors import RestResponseError
from personify.ingest.validate import RAW_COLUMN, Validator
from personify.profiles.records import route
from personify.quality.drift import PAGE_SAMPLE, add_record_fields
from personify.session import Session
from personify.sources.files import already_imported, expand, file_digest, reshape
from personify.sources.formats import detect_format, read_batches
from personify.sources.presets import resolve_preset
from personify.sources.rest.incremental import ResourceState, as_instant, later, load_state
from personify.sources.rest.mapping import (
    Target,
    compile_target,
    last_per_key,
    rows_of,
    targets_for,
)
from personify.sources.rest.paginators import next_request
from personify.sources.rest.paths import find_records, get_path
from personify.sources.rest.sync import (
    begin_run,
    largest,
    local_api,
    oldest_first,
    paginator_of,
)
from personify.warehouse.schema import Table
from personify.warehouse.schema import table as schema_table

_encode = msgspec.json.Encoder().encode


FIELD_SAMPLE = PAGE_SAMPLE
"""Records per page whose keys are observed for schema drift (as a sync observes them)."""


@dataclass
class TableRows:
    """The rows one resource yields for one table."""

    target: Target
    stored: Table
    parts: list[pa.Table] = field(default_factory=list)
    pending: list[pa.Array] = field(default_factory=list)
    quarantined: int = 0

    def rows(self) -> tuple[pa.Table, pa.Array]:
        """All rows (columns unified) and their pending flags."""
        if not self.parts:
            names = [c.name for c in self.stored.columns]
            empty = pa.table({n: pa.array([], pa.string()) for n in names})
            return empty, pa.array([], pa.bool_())
        rows = pa.concat_tables(self.parts, promote_options="default")
        return rows, pa.concat_arrays(self.pending)


@dataclass
class ResourceRows:
    source: str
    resource: str
    records: int = 0
    tables: list[TableRows] = field(default_factory=list)
    fields: dict[str, set[str]] = field(default_factory=dict)
    """Record keys and their value types (from the first records of every page): the
    resource's schema, for drift (:mod:`personify.quality.drift`)."""


def read_rest_source(session: Session, source: RestSource) -> Iterator[ResourceRows]:
    """Every resource of ``source``, read whole (see the module docstring)."""
    spec = resolve_preset(source)
    now = clock.now()
    with contextlib.ExitStack() as stack:
        spec = local_api(stack, session, spec)
        http = stack.enter_context(HttpClient(spec.client, source=spec.name))
        for resource in spec.resources:
            yield _read_resource(session, spec, resource, http, now)


def _read_resource(
    session: Session, source: RestSource, resource: RestResource, http: HttpClient, now: Any
) -> ResourceRows:
    state = load_state(session.warehouse, source.name, resource.name)
    inc = resource.endpoint.incremental
    fmt = inc.start_format if inc else "auto"
    synced = as_instant(state.cursor, fmt) if state.cursor is not None else None
    key = (resource.primary_key,) if isinstance(resource.primary_key, str) else resource.primary_key
    targets = targets_for(
        source.name, resource.name, resource.table, resource.mapping, resource.nested
    )
    out = ResourceRows(source.name, resource.name)
    with contextlib.ExitStack() as stack:
        for target in targets:
            target.open(now)
            stack.callback(target.close)
            stored = schema_table(route(target.table))
            out.tables.append(TableRows(target, stored))
        run = begin_run(source, resource, ResourceState())  # from the start: the whole source
        request = search = run.next
        paginator = paginator_of(source, resource)
        pages = 0
        top: Any = None  # the largest cursor value read
        earlier: set[Any] = set()  # record keys earlier searches read (a new search reads
        current: set[Any] = set()  # its start again); and this one's
        while request is not None:
            response, body = http.get_json(
                resource.endpoint.method,
                request.url,
                params=request.params or None,
                json=request.json,
            )
            records = find_records(body, resource.endpoint.data_selector)
            if records is None:
                raise RestResponseError(
                    f"{source.name}/{resource.name}: {http.shown(response.url)} answered no "
                    "list of records",
                    hint="set the resource's endpoint.data_selector to where the records are",
                )
            pages += 1
            nxt = next_request(paginator, request, response, body, records)
            if inc is not None:
                top = later(top, largest(records, inc), inc.start_format)
            capped = resource.max_pages is not None and pages >= resource.max_pages and nxt
            if capped:
                # as the sync does: oldest first, a new search from the largest value read
                # (HubSpot's result window); else the cap ends the read
                again = inc is not None and oldest_first(records, inc, top)
                nxt = begin_run(source, resource, ResourceState(top)).next if again else None
                if nxt == search:  # (no progress: every record of one value)
                    nxt = None
                search = nxt
            records = [r for r in last_per_key(records, key) if _unread(r, key, earlier, current)]
            if capped:
                pages, earlier, current = 0, earlier | current, set()
            add_record_fields(out.fields, records[:FIELD_SAMPLE])
            out.records += len(records)
            fresh, old = _split(records, inc.cursor_path if inc else None, fmt, synced)
            for rows in out.tables:
                for group, pending in ((old, False), (fresh, True)):
                    _add(rows, group, pending, now)
            request = nxt
    return out


def _unread(record: Any, key: Sequence[str], earlier: set[Any], current: set[Any]) -> bool:
    """Whether an earlier search did not read ``record`` (noted as read by this one)."""
    if not isinstance(record, dict):
        return True
    values = tuple(get_path(record, k) for k in key)
    values = tuple(v if isinstance(v, str | int | float | bool) else _encode(v) for v in values)
    if any(v is None for v in values):
        return True
    current.add(values)
    return values not in earlier


def _split(
    records: list[Any], cursor_path: str | None, fmt: str, synced: Any
) -> tuple[list[Any], list[Any]]:
    """``(pending, settled)``: records changed after the last sync, and the others."""
    if cursor_path is None:
        return [], records
    fresh: list[Any] = []
    old: list[Any] = []
    for record in records:
        value = get_path(record, cursor_path) if isinstance(record, dict) else None
        instant = as_instant(value, fmt) if value is not None else None
        if instant is not None and (synced is None or instant > synced):
            fresh.append(record)
        else:
            old.append(record)
    return fresh, old


def _add(rows: TableRows, records: list[Any], pending: bool, now: Any) -> None:
    target = rows.target
    inputs = rows_of(target, records)
    if not inputs:
        return
    assert target.validator is not None
    target.validator.params["now"] = now
    lines = np.arange(target.line + 1, target.line + len(inputs) + 1, dtype=np.int64)
    target.line += len(inputs)
    raw = pa.table({RAW_COLUMN: pa.array([_encode(r) for r in inputs], pa.binary())})
    checked = target.validator.check(raw, pa.array(lines))
    rows.quarantined += checked.bad.num_rows
    good = reshape(target.validator.table, checked.good, target.source, now)
    if good.num_rows:
        rows.parts.append(good)
        rows.pending.append(pa.array([pending] * good.num_rows, pa.bool_()))


FILE_BATCH_ROWS = 250_000


def read_file_source(session: Session, source: FileSource) -> ResourceRows:
    """Every file of ``source``, read and validated as the importer does (nothing loaded)."""
    now = clock.now()
    target = schema_table(source.table)
    stored = schema_table(route(target.name))
    # (the Target only carries the table for TableRows; files are validated below)
    rows = TableRows(compile_target(source.name, source.table, {}, label=source.name), stored)
    out = ResourceRows(source.name, "files", tables=[rows])
    for path in expand(session.project, source.path):
        pending = not already_imported(session.warehouse, source.name, file_digest(path))
        fmt = detect_format(path, source.format)
        fields, batches = read_batches(path, fmt, rows=FILE_BATCH_ROWS, delimiter=source.delimiter)
        with Validator(
            target,
            fmt=fmt,
            fields=fields,
            label=path.name,
            source=source.name,
            mapping=source.mapping,
            now=now,
            delimiter=source.delimiter,
            future_tolerance=duration_seconds(source.future_tolerance),
        ) as validator:
            for batch in batches:
                checked = validator.check(batch.data, batch.lines)
                out.records += checked.read + len(batch.malformed)
                rows.quarantined += checked.bad.num_rows + len(batch.malformed)
                good = reshape(target, checked.good, source.name, now)
                if good.num_rows:
                    rows.parts.append(good)
                    rows.pending.append(pa.array([pending] * good.num_rows, pa.bool_()))
    return out
