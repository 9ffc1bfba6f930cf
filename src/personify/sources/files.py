"""Files as a source: CSV, JSON Lines and Parquet into the modelled tables.

A ``kind: file`` source names a file or a glob (expanded and sorted), the target table and a
mapping. Each file is hashed (SHA-256, streamed); a file whose ``(source, sha256)`` is already in
``file_imports`` is skipped, so re-importing loads nothing twice. Otherwise it is read in bounded
batches, validated (:mod:`personify.ingest.validate`) and loaded — valid rows into the table,
failed rows into ``quarantine`` with the reason — all in ONE warehouse transaction together with
its ``file_imports`` row: a crash mid-file leaves nothing behind, and the rerun does it once.

Person records are not loaded into ``customers`` (which identity and profiles derive): rows for the
``customers`` target are validated as ``customers`` rows, then reshaped
(:func:`personify.profiles.records.to_customer_records`) and appended to ``customer_records``,
every version kept. Orders and tickets keep the source's customer id in ``source_customer_id``;
their ``customer_id`` is the resolved one, filled by identity.

What happens to a row whose key is already stored (:data:`CONFLICT_POLICY`, overridable per source
with ``on_conflict``): the append-only ``events`` log, ``customer_records`` (a version is keyed by
source, id and observation time) and ``order_items`` **ignore** it (a re-sent event is not
doubled; it counts as ``rows_duplicate``); the entity tables — ``products``, ``orders``,
``tickets``, ``consents``, ``identities`` — **update** it to the newer file's values (columns the
file does not provide are left as stored; ``identities.first_seen`` is never moved), unless the
stored row's ``updated_at`` is later than the file row's (:func:`newer_only`: an old export
imported after newer updates does not roll them back).

Counts reported: ``files`` (imported now), ``files_skipped`` (already imported), ``rows_read``,
``rows_loaded``, ``rows_quarantined`` and ``rows_duplicate``, with
``rows_read = rows_loaded + rows_duplicate + rows_quarantined``.

Building blocks other sources and readers share (public, so they do not reach into this
module's privates): :func:`expand` (a path or glob → files), :func:`file_digest` and
:func:`already_imported` (the skip test), :func:`reshape` (validated rows → the stored table's
rows) and :func:`load_rows` (load them under a conflict policy) — the REST and webhook sources
(:mod:`personify.sources.rest.mapping`) store exactly as files do, and reconciliation
(:mod:`personify.quality.read`) re-reads a source as its import would store it.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import glob
import hashlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, get_args

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from personify import clock
from personify.config import FileFormat, FileSource, Project, TableName, duration_seconds
from personify.errors import FileImportError
from personify.ingest import quarantine
from personify.ingest.engine import arrow, open_engine, registered
from personify.ingest.fields import resolve
from personify.ingest.validate import Validator
from personify.profiles.records import route, to_customer_records
from personify.progress import Progress
from personify.session import Session
from personify.sources import SyncResult
from personify.sources.formats import RawBatch, detect_format, read_batches, stored_rows
from personify.sources.schedule import still_held
from personify.warehouse import Warehouse
from personify.warehouse.base import UNNEST, OnConflict, quote
from personify.warehouse.duckdb import keyfilter, keyless
from personify.warehouse.schema import FILE_IMPORTS, Table, table

__all__ = [
    "BATCH_ROWS",
    "CONFLICT_POLICY",
    "expand",
    "file_digest",
    "import_file",
    "import_file_source",
]

log = logging.getLogger(__name__)

BATCH_ROWS: Final = 250_000
"""Rows validated and loaded at a time (bounds memory whatever the file's size)."""
KEYLESS_LOAD_ROWS: Final = 500_000
"""Valid rows gathered before one load into a table without an engine key (``key_by_construction``
where keys are dear): a load whose keys the table's filter cannot rule out probes every stored key
once, so fewer, larger loads. At most :data:`MAX_AHEAD` batches' worth: the worker validates that
many while a load runs, so the next load finds its rows ready (1 M rows of 250 k-row batches, two
ahead, left the loads waiting for half of each gather's validation: in the 1 M world's load the
events' inserts — one core's work — stopped for about half the validation time)."""
MAX_AHEAD: Final = 2
"""At most this many batches are validated ahead of the loads (bounds memory: each validated
batch of web events is ~135 MB; 4 ahead, the 1 M world's load held ~270 MB more at its peak)."""
SIDE_BY_SIDE = False
"""Import a source's Parquet parts of events two at a time (:func:`_side_by_side`). Off: in the
1 M world's load on this 2-core machine it showed no gain (the events lane's insert and its
validation already keep both cores busy beside the other lane) and held ~1.3 GB more (web events
alone: 4.8–4.95 GB against 3.5–3.6), over the 4 GB goal — see benchmarks/RESULTS.md,
``world_load.py``, session 7. Kept for a machine with more cores (and the tests)."""
CONFLICT_POLICY: Final[dict[str, OnConflict]] = {
    "events": "ignore",
    "order_items": "ignore",
    "customer_records": "ignore",
    "customers": "update",
    "products": "update",
    "orders": "update",
    "tickets": "update",
    "consents": "update",
    "identities": "update",
}
"""Per table: what a row whose primary key is already stored does (see the module docstring)."""
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,62}")
NEVER_UPDATED: Final = frozenset({"first_seen"})
COUNTS: Final = (
    "files",
    "files_skipped",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "rows_duplicate",
    "quarantine_cleared",
)


@dataclass
class _FileCounts:
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_quarantined: int = 0
    quarantine_cleared: int = 0


def import_file_source(
    session: Session, source: FileSource, *, progress: Progress | None = None
) -> SyncResult:
    """Import every file the source's ``path`` (a file or a glob) names that is not imported yet."""
    paths = expand(session.project, source.path)
    return _import(session, source, paths, progress=progress, batch_rows=BATCH_ROWS)


def import_file(
    session: Session,
    path: str | Path,
    *,
    table: str,
    mapping: Mapping[str, str] | None = None,
    source_name: str,
    format: FileFormat | None = None,  # noqa: A002  (the config key's name)
    delimiter: str = ",",
    on_conflict: OnConflict | None = None,
    progress: Progress | None = None,
    batch_rows: int = BATCH_ROWS,
    corrects: bool = False,
) -> SyncResult:
    """Import one file ad hoc into ``table``, recorded under ``source_name`` (as a ``file``
    source with that name would); a file already imported under that name loads nothing.
    ``corrects``: it is a corrected version of the file imported before at that path
    (:attr:`~personify.config.FileSource.corrects`)."""
    if table not in get_args(TableName):
        raise FileImportError(
            f"cannot import into table {table!r}",
            hint=f"choose one of: {', '.join(get_args(TableName))}",
        )
    if on_conflict == "error":
        raise FileImportError("on_conflict must be 'ignore' or 'update'")
    if not _NAME.fullmatch(source_name):
        raise FileImportError(
            f"{source_name!r} is not a valid source name",
            hint="use letters, digits, _ and -, starting with a letter or _",
        )
    file = Path(path).expanduser().resolve()
    spec = FileSource(
        name=source_name,
        path=str(file),
        table=table,  # type: ignore[arg-type]
        format=format,
        mapping=dict(mapping or {}),
        delimiter=delimiter,
        on_conflict=on_conflict,
        corrects=corrects,
    )
    if file.is_dir():
        raise FileImportError(f"{path} is a folder, not a file", hint="name a file in it")
    if not file.is_file():
        raise FileImportError(f"{path}: no such file", hint="check the path")
    return _import(session, spec, [file], progress=progress, batch_rows=batch_rows)


def expand(project: Project, pattern: str) -> list[Path]:
    """The files ``pattern`` (relative to the project) names, sorted. A plain path that does not
    exist is an error; a glob that matches nothing is no files."""
    full = project.path(pattern)
    if not glob.has_magic(str(full)):
        if full.is_dir():
            raise FileImportError(
                f"{pattern} is a folder, not a file",
                hint="name a file, or its files with a glob (e.g. data/*.csv)",
            )
        if not full.is_file():
            raise FileImportError(
                f"{pattern}: no such file (looked in {full.parent})",
                hint="check the source's `path`; it is relative to the project folder",
            )
        return [full]
    return sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file())


def file_digest(path: Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's content (streamed)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while block := f.read(chunk):
                h.update(block)
    except OSError as e:
        raise FileImportError(f"{path}: cannot read it ({e.strerror})") from None
    return h.hexdigest()


# ------------------------------------------------------------------------------------ internals
def _import(
    session: Session,
    source: FileSource,
    paths: list[Path],
    *,
    progress: Progress | None,
    batch_rows: int,
) -> SyncResult:
    started = time.perf_counter()
    wh = session.warehouse
    counts = dict.fromkeys(COUNTS, 0)
    # (a DuckDB warehouse would otherwise keep gigabytes of the blocks it writes cached)
    bulk = getattr(wh, "bulk_memory", contextlib.nullcontext)
    expecting = getattr(wh, "expecting", None)
    coming = (
        expecting(route(source.table), sum(stored_rows(p, source.format) for p in paths))
        if expecting is not None
        else contextlib.nullcontext()
    )
    # The next file's SHA-256 is taken in a worker while this one imports (hashlib lets go of the
    # GIL): 1.2 GB of web-event parts cost ~2 s on the events lane, one core's insert otherwise.
    keys = _side_by_side(wh, source, paths)
    with (
        bulk(),
        coming,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="personify-digest") as hashing,
    ):
        if keys is not None:
            _import_side_by_side(
                session, source, paths, keys, counts, progress, batch_rows, hashing
            )
            return SyncResult(source.name, "file", counts, time.perf_counter() - started)
        identities = [hashing.submit(_identify, p) for p in paths[:1]]
        try:
            for i, path in enumerate(paths):
                if i + 1 < len(paths):
                    identities.append(hashing.submit(_identify, paths[i + 1]))
                before, digest = identities[i].result()
                _import_path(session, source, path, counts, progress, batch_rows, before, digest)
        finally:
            for future in identities:
                future.cancel()
    return SyncResult(source.name, "file", counts, time.perf_counter() - started)


def _identify(path: Path) -> tuple[tuple[int, int, int], str]:
    """The file's fingerprint (taken first: a change after it is noticed at the end of the
    import) and its SHA-256."""
    before = _fingerprint(path)
    return before, file_digest(path)


# -------------------------------------------------------------------- files side by side
class _Abandoned(Exception):
    """A file imported beside an earlier one that failed: rolled back, as if never started."""


@dataclass(frozen=True)
class _Member:
    future: Future[dict[str, int]]
    keys: np.ndarray
    """Sorted hashes of the file's keys (every row's, valid or not)."""
    digest: str


def _side_by_side(wh: Warehouse, source: FileSource, paths: list[Path]) -> list[str] | None:
    """Per file, the column holding the stored key, when the files can be imported two at a
    time (``None``: one after another; always while :data:`SIDE_BY_SIDE` is off). The events
    lane's insert is one core's work per file (DuckDB's own multi-threaded insert has its
    checkpoint rewrite the rows), so two files' transactions append side by side. Only where
    that keeps every key stored once without the table's lock: a DuckDB table keeping its keys
    by construction with a filter (:data:`~personify.warehouse.duckdb.keyfilter.FILTERED`),
    appended under ``ignore``, from Parquet files whose key is a plain text column — the
    stored key is then the file's value, so two files whose key hashes are disjoint cannot
    store a common key, and files whose hashes meet import one after another
    (:func:`_import_side_by_side`)."""
    locks = getattr(wh, "_writers", None)
    target = table(source.table)
    stored = table(route(target.name))
    policy = source.on_conflict or CONFLICT_POLICY[stored.name]
    if (
        not SIDE_BY_SIDE
        or len(paths) < 2
        or not isinstance(locks, keyless.TableLocks)
        or stored.name != target.name
        or stored.name not in keyfilter.FILTERED
        or len(stored.primary_key) != 1
        or policy != "ignore"
    ):
        return None
    columns: list[str] = []
    for path in paths:
        try:
            if detect_format(path, source.format) != "parquet":
                return None
            fields = {f.name: f.type for f in pq.read_schema(path)}
            resolved = resolve(target, source.mapping, fmt="parquet", fields=fields, label="")
        except (FileImportError, pa.ArrowException, OSError):
            return None  # (the import says why, file by file)
        key = next(f for f in resolved.fields if f.name == stored.primary_key[0])
        found = [n for n in fields if key.sql == quote(n)]
        if key.kind != "text" or key.column.type != "VARCHAR" or key.default or not found:
            return None
        columns.append(found[0])
    return columns


def _identify_keys(path: Path, column: str) -> tuple[tuple[int, int, int], str, np.ndarray]:
    """:func:`_identify`, and the sorted DuckDB hashes of the file's key column."""
    before, digest = _identify(path)
    try:
        data = pq.read_table(path, columns=[column])
    except (pa.ArrowException, OSError):
        return before, digest, np.empty(0, dtype=np.uint64)  # (its import says why)
    with contextlib.closing(open_engine()) as con, registered(con, data) as view:
        con.execute("SET threads = 1")
        column_hashes = arrow(con, f"SELECT hash({quote(column)}) FROM {view}").column(0)
    return before, digest, np.sort(keyfilter.as_hashes(column_hashes))


def _meet(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two sorted hash arrays share a value."""
    if not len(a) or not len(b):
        return False
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    at = np.minimum(np.searchsorted(large, small), len(large) - 1)
    return bool((large[at] == small).any())


def _import_side_by_side(
    session: Session,
    source: FileSource,
    paths: list[Path],
    keys: list[str],
    counts: dict[str, int],
    progress: Progress | None,
    batch_rows: int,
    hashing: ThreadPoolExecutor,
) -> None:
    """Import ``paths`` in order, two at a time: each file in its own transaction and thread
    (a member of the table's :class:`~personify.warehouse.duckdb.keyless.Group`), the next one
    starting while the previous imports unless their key hashes meet or their SHA-256 are the
    same (then it waits for it to end). The outcome is the one-after-another import's: a file
    commits only after the file before it has (its ``file_imports`` row, then this one's), and
    if that one failed, this one rolls back and the earlier error is raised; no two files in
    flight together share a key, so every key is stored once, by the first file carrying it."""
    wh = session.warehouse
    locks = wh._writers  # type: ignore[attr-defined]  # (a DuckDB warehouse: _side_by_side)
    name = route(table(source.table).name)
    identities = [hashing.submit(_identify_keys, paths[0], keys[0])]

    def member(
        group: keyless.Group,
        path: Path,
        before: tuple[int, int, int],
        digest: str,
        after: Future[dict[str, int]] | None,
    ) -> dict[str, int]:
        own = dict.fromkeys(COUNTS, 0)

        def wait_for_earlier() -> None:
            if after is not None and after.exception() is not None:
                raise _Abandoned(path)

        with group.member():
            _import_path(
                session, source, path, own, progress, batch_rows, before, digest, wait_for_earlier
            )
        return own

    def finish(done: _Member) -> None:
        for key, value in done.future.result().items():
            counts[key] += value

    inflight: collections.deque[_Member] = collections.deque()
    with (
        locks.sharing(name) as group,
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="personify-side") as pool,
    ):
        try:
            for i, path in enumerate(paths):
                if i + 1 < len(paths):
                    identities.append(hashing.submit(_identify_keys, paths[i + 1], keys[i + 1]))
                try:
                    before, digest, hashes = identities[i].result()
                except BaseException:
                    while inflight:  # the files before it first, as one after another would
                        finish(inflight.popleft())
                    raise
                while len(inflight) >= 2:
                    finish(inflight.popleft())
                if inflight and (inflight[-1].digest == digest or _meet(inflight[-1].keys, hashes)):
                    finish(inflight.popleft())
                after = inflight[-1].future if inflight else None
                # (in a copy of this context: the pinned clock, as the lanes do)
                run = contextvars.copy_context().run
                future = pool.submit(run, member, group, path, before, digest, after)
                inflight.append(_Member(future, hashes, digest))
            while inflight:
                finish(inflight.popleft())
        finally:
            for pending in identities:
                pending.cancel()


def _import_path(
    session: Session,
    source: FileSource,
    path: Path,
    counts: dict[str, int],
    progress: Progress | None,
    batch_rows: int,
    before: tuple[int, int, int],
    digest: str,
    before_commit: Callable[[], None] | None = None,
) -> None:
    wh = session.warehouse
    if already_imported(wh, source.name, digest):
        counts["files_skipped"] += 1
        return
    label = file_label(session.project, path)
    try:
        done = _import_one(
            wh, source, path, digest, label, progress, batch_rows, before, before_commit
        )
    finally:
        # The pool keeps what the file's batches freed for reuse, per thread — across files and
        # sources side by side that held over a gigabyte (1 M world: 1.1 GB after one part of
        # the web events, given back here); the next file's reads allocate afresh cheaply.
        pa.default_memory_pool().release_unused()
    counts["files"] += 1
    for key in (
        "rows_read",
        "rows_loaded",
        "rows_quarantined",
        "rows_duplicate",
        "quarantine_cleared",
    ):
        counts[key] += getattr(done, key)
    log.info(
        "imported %s into %s: %d read, %d loaded, %d duplicate, %d quarantined",
        label,
        source.table,
        done.rows_read,
        done.rows_loaded,
        done.rows_duplicate,
        done.rows_quarantined,
    )


def _import_one(
    wh: Warehouse,
    source: FileSource,
    path: Path,
    digest: str,
    label: str,
    progress: Progress | None,
    batch_rows: int,
    before: tuple[int, int, int],
    before_commit: Callable[[], None] | None = None,
) -> _FileCounts:
    target = table(source.table)
    stored = table(route(target.name))
    fmt = detect_format(path, source.format)
    fields, batches = read_batches(path, fmt, rows=batch_rows, delimiter=source.delimiter)
    now = clock.now()
    policy = source.on_conflict or CONFLICT_POLICY[stored.name]
    gather = _gathers(wh, stored, policy)
    if before_commit is not None:  # side by side: two files' rows in memory, so half each
        gather = min(gather, batch_rows)
    ahead = _ahead(gather, batch_rows) if before_commit is None else 1
    counts = _FileCounts()
    kept: list[pa.Array] = []  # the quarantine ids of this version's bad rows
    with (
        Validator(
            target,
            fmt=fmt,
            fields=fields,
            label=label,
            source=source.name,
            mapping=source.mapping,
            now=now,
            delimiter=source.delimiter,
            future_tolerance=duration_seconds(source.future_tolerance),
        ) as validator,
        wh.transaction(),
        contextlib.closing(_prepared(validator, batches, source.name, now, ahead=ahead)) as ready,
    ):
        pending = _Pending(wh, stored, policy, counts, gather=gather)
        for batch in ready:
            # (rows stored as validated: their key hashes are the stored keys')
            hashes = batch.key_hashes if stored.name == target.name else None
            pending.add(reshape(target, batch.good, source.name, now), hashes)
            if batch.quarantined.num_rows:
                quarantine.write(wh, batch.quarantined)
                kept.extend(batch.quarantined.column("id").chunks)
            counts.rows_read += batch.read
            counts.rows_quarantined += batch.quarantined.num_rows
            if progress is not None:
                progress(f"{source.name}: {path.name}", batch.done, batch.total)
        pending.flush()
        if _fingerprint(path) != before:
            raise FileImportError(
                f"{label} changed while it was being imported; nothing was loaded from it",
                hint="import it again once it is completely written",
            )
        if source.corrects:
            counts.quarantine_cleared = quarantine.supersede(wh, source.name, label, kept, now)
        if before_commit is not None:
            before_commit()  # (side by side: the file before it has committed, or it rolls back)
        still_held(wh, source.name)  # (PostgreSQL: its lock, lost with a dropped connection?)
        _record(wh, source.name, label, digest, stored.name, counts, now)
    return counts


@dataclass(frozen=True)
class _Ready:
    """One batch read and validated, ready to load."""

    good: pa.Table
    quarantined: pa.Table
    read: int
    done: int
    total: int
    key_hashes: np.ndarray | None


def _prepared(
    validator: Validator,
    batches: Iterator[RawBatch],
    source: str,
    now: datetime,
    *,
    ahead: int = 1,
) -> Generator[_Ready, None, None]:
    """The batches read and validated in a worker thread, up to ``ahead`` batches ahead of the
    caller, which loads into the warehouse meanwhile (both mostly run outside the GIL). When the
    caller gathers several batches per load, ``ahead`` covers part of the next load
    (:data:`MAX_AHEAD` batches), so validation goes on while the gathered rows are loaded."""

    def step() -> _Ready | None:
        batch = next(batches, None)
        if batch is None:
            return None
        checked = validator.check(batch.data, batch.lines)
        bad = checked.bad
        if batch.malformed:
            rows = [(m.line, m.text, m.fields, m.expected) for m in batch.malformed]
            bad = pa.concat_tables([quarantine.malformed_rows(rows, label=validator.label), bad])
        rows_q = quarantine.to_rows(
            validator.con, bad, source=source, origin=validator.label, received_at=now, same=True
        )
        read = checked.read + len(batch.malformed)
        return _Ready(checked.good, rows_q, read, batch.done, batch.total, checked.key_hashes)

    # One worker: the steps run one after another, in order (the validator tracks keys across
    # batches). Its queue holds the steps submitted ahead; on an early exit they are cancelled.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="personify-import") as pool:
        queued = collections.deque(pool.submit(step) for _ in range(max(ahead, 1)))
        try:
            while (ready := queued.popleft().result()) is not None:
                queued.append(pool.submit(step))
                yield ready
        finally:
            for future in queued:
                future.cancel()


_OWNED: Final = frozenset({"orders", "tickets"})
"""Tables whose ``customer_id`` in a file is the source's id (moved to ``source_customer_id``)."""


_STAMPED: Final = frozenset({"orders", "order_items", "tickets"})
"""Tables whose rows carry the instant they were stored (``received_at``)."""


def _stamped(good: pa.Table, now: datetime) -> pa.Table:
    stamp = pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), good.num_rows)
    if "received_at" in good.column_names:
        return good.set_column(good.schema.get_field_index("received_at"), "received_at", stamp)
    return good.append_column("received_at", stamp)


def reshape(target: Table, good: pa.Table, source: str, now: datetime) -> pa.Table:
    """Valid rows for ``target`` (as the validator passed them) → the rows of the table they
    are stored in: person records as ``customer_records`` versions, orders' and tickets' own
    customer id as ``source_customer_id``; orders, their items and tickets stamped with
    ``received_at`` = ``now`` (continuous mode applies what a sync stored since its last pass);
    other tables unchanged. Used by every source that validates like the importer (REST,
    webhooks) and by reconciliation."""
    if target.name == "customers":
        return to_customer_records(good, source, now)
    if target.name in _STAMPED:
        good = _stamped(good, now)
    if target.name not in _OWNED or "customer_id" not in good.column_names:
        return good
    own = good["customer_id"]
    if "source_customer_id" in good.column_names:
        own = pc.coalesce(good["source_customer_id"], own)
        good = good.drop_columns(["source_customer_id"])
    return good.drop_columns(["customer_id"]).append_column("source_customer_id", own)


def _ahead(gather: int, batch_rows: int) -> int:
    """Batches validated ahead of the loads: enough to cover one gathered load, at most
    :data:`MAX_AHEAD` (small batches would otherwise queue thousands of steps)."""
    return max(1, min(-(-gather // max(batch_rows, 1)), MAX_AHEAD))


def _gathers(wh: Warehouse, target: Table, policy: OnConflict) -> int:
    """Rows to gather before loading into ``target``: one batch, except for appends to a table
    whose key the warehouse checks by probing the stored keys (once per load)."""
    keyless = target.key_by_construction and not wh.capabilities.cheap_keys
    return KEYLESS_LOAD_ROWS if keyless and policy == "ignore" else 1


class _Pending:
    """Valid rows waiting to be loaded, in the file's transaction (so gathering several batches
    changes nothing a crash could see: the file is loaded whole or not at all)."""

    def __init__(
        self, wh: Warehouse, target: Table, policy: OnConflict, counts: _FileCounts, gather: int
    ) -> None:
        self.wh, self.target, self.policy, self.counts = wh, target, policy, counts
        self.gather = gather
        self.tables: list[pa.Table] = []
        self.hashes: list[np.ndarray | None] = []
        self.rows = 0

    def add(self, good: pa.Table, key_hashes: np.ndarray | None = None) -> None:
        """Gather ``good`` (and its rows' key hashes, if known: distinct in the file)."""
        if self.tables and good.schema != self.tables[0].schema:
            self.flush()  # (JSON Lines batches may provide other columns)
        known = key_hashes is not None and len(key_hashes) == good.num_rows
        self.tables.append(good)
        self.hashes.append(key_hashes if known else None)
        self.rows += good.num_rows
        if self.rows >= self.gather:
            self.flush()

    def flush(self) -> None:
        if not self.tables:
            return
        good = self.tables[0] if len(self.tables) == 1 else pa.concat_tables(self.tables)
        parts = [h for h in self.hashes if h is not None]
        hashes = np.concatenate(parts) if len(parts) == len(self.hashes) else None
        self.tables, self.hashes, self.rows = [], [], 0
        given = good.num_rows
        newer = self.policy == "update"
        if newer:  # an older version than the one stored is not loaded (counted a duplicate)
            kept = newer_only(self.wh, self.target, good)
            if kept.num_rows != given:
                good, hashes = kept, None
        loaded = load_rows(self.wh, self.target, good, self.policy, hashes, only_newer=newer)
        self.counts.rows_loaded += loaded
        self.counts.rows_duplicate += given - loaded


def load_rows(
    wh: Warehouse,
    target: Table,
    good: pa.Table,
    policy: OnConflict,
    key_hashes: np.ndarray | None = None,
    *,
    only_newer: bool = False,
) -> int:
    """Load reshaped rows into ``target`` under ``policy`` (:data:`CONFLICT_POLICY`): on
    ``update``, every column the rows carry but the key and :data:`NEVER_UPDATED` is updated.
    Returns the rows inserted or updated (the rest were duplicates). In the caller's
    transaction. ``key_hashes``: the rows' key hashes as validation computed them (distinct).
    ``only_newer``: a stored row with a later ``updated_at`` is kept (:meth:`Warehouse.load`)."""
    if not good.num_rows:
        return 0
    update = [
        c for c in good.column_names if c not in target.primary_key and c not in NEVER_UPDATED
    ]
    # validation checked (or wrote) every JSON value
    return wh.load(
        target,
        good,
        on_conflict=policy,
        update_columns=update or None,
        valid_json=True,
        key_hashes=key_hashes,
        only_newer=only_newer,
    )


def newer_only(wh: Warehouse, stored: Table, good: pa.Table) -> pa.Table:
    """``good`` without the rows older than the version stored: a row whose ``updated_at`` is
    before the stored row's would overwrite newer values (a webhook delivered late — senders
    retry a failed delivery after later ones, Shopify says so —, a page read before a newer
    delivery was stored, last week's export imported after this week's updates). Those leave
    the stored row as it is (counted as duplicates). Rows without ``updated_at``, or whose
    stored row has none, are loaded as before."""
    if "updated_at" not in good.column_names or "updated_at" not in stored.column_names:
        return good
    keys = [c for c in stored.primary_key if c in good.column_names]
    if len(keys) != len(stored.primary_key):
        return good
    ids = list(zip(*(pc.cast(good.column(k), pa.string()).to_pylist() for k in keys), strict=True))
    stored_keys = ", ".join(f"CAST({k} AS VARCHAR)" for k in keys)
    given = ", ".join(UNNEST for _ in keys)
    rows = wh.fetch(
        f"SELECT {stored_keys}, updated_at FROM {stored.name} "
        f"WHERE updated_at IS NOT NULL AND ({stored_keys}) IN (SELECT {given})",
        [list(column) for column in zip(*ids, strict=True)],
    )
    if not rows:
        return good
    newest = {tuple(row[:-1]): row[-1] for row in rows}
    incoming = good.column("updated_at").to_pylist()
    keep = [
        not (at is not None and i in newest and at < newest[i])
        for i, at in zip(ids, incoming, strict=True)
    ]
    return good if all(keep) else good.filter(pa.array(keep))


def already_imported(wh: Warehouse, source: str, digest: str) -> bool:
    """Whether ``source`` has imported a file of this SHA-256 (:func:`file_digest`) before."""
    found = wh.scalar(
        f"SELECT count(*) FROM {FILE_IMPORTS.name} WHERE source = ? AND sha256 = ?",
        [source, digest],
    )
    return bool(found)


def _record(
    wh: Warehouse,
    source: str,
    label: str,
    digest: str,
    table_name: str,
    counts: _FileCounts,
    now: datetime,
) -> None:
    wh.execute(
        f"INSERT INTO {FILE_IMPORTS.name} (source, path, sha256, table_name, rows_read, "
        "rows_loaded, rows_quarantined, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            source,
            label,
            digest,
            table_name,
            counts.rows_read,
            counts.rows_loaded,
            counts.rows_quarantined,
            now,
        ],
    )


def _fingerprint(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


def file_label(project: Project, path: Path) -> str:
    """How messages name the file: relative to the project when it is inside it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(project.root.resolve()))
    except ValueError:
        return str(resolved)
