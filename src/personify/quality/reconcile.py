"""``personify reconcile``: audit sources against the warehouse, and repair the difference.

For each source (default: every REST and file source): re-read it whole — its API, its files
(:mod:`~personify.quality.read`) —
compare its rows with the stored ones in the warehouse engine (:mod:`~personify.quality.compare`)
and classify each differing key:

* ``missing_in_warehouse`` — the source has it, the warehouse has not;
* ``missing_at_source`` — the warehouse has it (from this source), the source no longer has;
* ``mismatch`` — both have it and compared fields differ (their names are kept, never values).

A difference on a record the source changed after its last finished sync is *pending* (the next
sync brings it), counted apart and not an error. The run and every discrepant key are stored
(``reconciliation_runs``, ``reconciliation_discrepancies``); a run whose discrepancies (not
pending) exceed ``quality.reconcile.threshold`` is *flagged*, and ``personify status`` shows it
for review until a later run is within the threshold.

``repair=True`` re-syncs the keys missing in the warehouse or mismatched (pending ones included)
through the sync's own mapping and validation, upserting them; keys missing at the source are
reported, never deleted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify import clock
from personify.config import FileSource, RestSource
from personify.errors import ConfigError
from personify.quality.compare import Comparison, compare, key_columns, key_text
from personify.quality.drift import observe, typed_fields
from personify.quality.read import TableRows, read_file_source, read_rest_source
from personify.session import Session
from personify.warehouse import Warehouse
from personify.warehouse.schema import RECONCILIATION_DISCREPANCIES, RECONCILIATION_RUNS

log = logging.getLogger(__name__)

KINDS = ("missing_in_warehouse", "missing_at_source", "mismatch")


@dataclass
class TableResult:
    """One table of one resource of one source."""

    source: str
    resource: str
    table: str
    source_rows: int = 0
    warehouse_rows: int = 0
    matched: int = 0
    missing_in_warehouse: int = 0
    missing_at_source: int = 0
    mismatched: int = 0
    pending: int = 0
    repaired: int = 0
    quarantined_at_source: int = 0
    """Source records the sync's validation refuses (they are in the quarantine, not compared)."""
    fields: dict[str, int] = field(default_factory=dict)
    """Mismatched (not pending) keys per column."""
    sample: list[dict[str, Any]] = field(default_factory=list)
    """Up to ``quality.reconcile.sample_size`` discrepant keys."""

    @property
    def discrepancies(self) -> int:
        return self.missing_in_warehouse + self.missing_at_source + self.mismatched


@dataclass
class ReconcileReport:
    run_id: str
    started_at: datetime
    finished_at: datetime
    sources: list[str]
    tables: list[TableResult]
    threshold: int
    repaired: int = 0

    @property
    def discrepancies(self) -> int:
        return sum(t.discrepancies for t in self.tables)

    @property
    def pending(self) -> int:
        return sum(t.pending for t in self.tables)

    @property
    def unresolved(self) -> int:
        """Discrepancies (not pending) left after the run: a repair leaves those missing at the
        source."""
        if self.repaired:
            return sum(t.missing_at_source for t in self.tables)
        return self.discrepancies

    @property
    def flagged(self) -> bool:
        """More discrepancies left than the threshold tolerates: for review."""
        return self.unresolved > self.threshold

    @property
    def status(self) -> str:
        if self.repaired:
            return "repaired"
        return "discrepancies" if self.discrepancies or self.pending else "clean"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "sources": self.sources,
            "status": self.status,
            "discrepancies": self.discrepancies,
            "pending": self.pending,
            "repaired": self.repaired,
            "threshold": self.threshold,
            "unresolved": self.unresolved,
            "flagged": self.flagged,
            "tables": [{**asdict(t), "discrepancies": t.discrepancies} for t in self.tables],
        }


def reconcile(
    session: Session, names: Sequence[str] | None = None, *, repair: bool = False
) -> ReconcileReport:
    """Reconcile the named sources (default: every REST and file source); see the module
    docstring."""
    config = session.project.config
    settings = config.quality.reconcile
    if names:
        chosen = [session.project.source(n) for n in names]
        for s in chosen:
            if not isinstance(s, RestSource | FileSource):
                raise ConfigError(
                    f"source {s.name!r} is a {s.kind} source: pushed data has no source to "
                    "read again",
                    hint="name a REST or file source, or none for all of them",
                )
    else:
        chosen = [s for s in config.sources if isinstance(s, RestSource | FileSource)]
    wh = session.warehouse
    run_id = uuid.uuid4().hex
    started = clock.now()
    results: list[TableResult] = []
    all_rows: list[tuple[TableResult, list[str], TableRows]] = []
    for source in chosen:
        assert isinstance(source, RestSource | FileSource)
        resources = (
            [read_file_source(session, source)]
            if isinstance(source, FileSource)
            else read_rest_source(session, source)
        )
        for resource in resources:
            if resource.fields:  # REST records: their keys and types, for schema drift
                observe(
                    wh, source.name, f"resource:{resource.resource}", typed_fields(resource.fields)
                )
            for rows in resource.tables:
                result, keys = _compare_table(
                    wh, source.name, resource.resource, rows, run_id, settings.sample_size
                )
                results.append(result)
                all_rows.append((result, keys, rows))
    report = ReconcileReport(
        run_id=run_id,
        started_at=started,
        finished_at=clock.now(),
        sources=[s.name for s in chosen],
        tables=results,
        threshold=settings.threshold,
    )
    if repair:
        with wh.transaction():
            for result, keys, rows in all_rows:
                result.repaired = _repair(wh, rows, keys)
                report.repaired += result.repaired
            if report.repaired:
                wh.execute(
                    f"UPDATE {RECONCILIATION_DISCREPANCIES.name} SET repaired = TRUE "
                    "WHERE run_id = ? AND kind <> 'missing_at_source'",
                    [run_id],
                )
        report.finished_at = clock.now()
    _record_run(wh, report)
    for t in results:
        log.info(
            "reconcile %s/%s → %s: %d source rows, %d stored, %d missing in the warehouse, "
            "%d missing at the source, %d mismatched, %d pending, %d repaired",
            t.source,
            t.resource,
            t.table,
            t.source_rows,
            t.warehouse_rows,
            t.missing_in_warehouse,
            t.missing_at_source,
            t.mismatched,
            t.pending,
            t.repaired,
        )
    return report


def _dedupe(rows: pa.Table, pending: pa.Array, keys: Sequence[str]) -> tuple[pa.Table, pa.Array]:
    """The last row per key (a record returned twice while it changed under the paginator)."""
    if rows.num_rows == 0:
        return rows, pending
    pos = pa.array(np.arange(rows.num_rows, dtype=np.int64))
    last = (
        rows.select(list(keys))
        .append_column("__pos", pos)
        .group_by(list(keys), use_threads=False)
        .aggregate([("__pos", "max")])
        .column("__pos_max")
    )
    if len(last) == rows.num_rows:
        return rows, pending
    take = pc.sort_indices(last)
    idx = pc.take(last, take)
    return rows.take(idx), pc.take(pending, idx)


def _compare_table(
    wh: Warehouse, source: str, resource: str, rows: TableRows, run_id: str, sample_size: int
) -> tuple[TableResult, list[str]]:
    data, pending = rows.rows()
    keys = key_columns(rows.stored)
    data, pending = _dedupe(data, pending, keys)
    found: Comparison = compare(wh, rows.stored, source, data, pending)
    result = TableResult(
        source,
        resource,
        rows.stored.name,
        source_rows=found.source_rows,
        warehouse_rows=found.warehouse_rows,
        quarantined_at_source=rows.quarantined,
    )
    repair_keys: list[str] = []
    for d in found.discrepancies:
        if d.kind != "missing_at_source":
            repair_keys.append(d.key)
        if d.pending:
            result.pending += 1
        elif d.kind == "missing_in_warehouse":
            result.missing_in_warehouse += 1
        elif d.kind == "missing_at_source":
            result.missing_at_source += 1
        else:
            result.mismatched += 1
            for f in d.fields:
                result.fields[f] = result.fields.get(f, 0) + 1
    differing = sum(1 for d in found.discrepancies if d.kind != "missing_at_source")
    result.matched = found.source_rows - differing
    result.sample = [
        {"key": d.key, "kind": d.kind, "fields": d.fields, "pending": d.pending}
        for d in found.discrepancies[:sample_size]
    ]
    _record_discrepancies(wh, run_id, result, found)
    return result, repair_keys


def _record_discrepancies(
    wh: Warehouse, run_id: str, result: TableResult, found: Comparison
) -> None:
    if not found.discrepancies:
        return
    n = len(found.discrepancies)
    data = pa.table(
        {
            "run_id": pa.array([run_id] * n, pa.string()),
            "source": pa.array([result.source] * n, pa.string()),
            "resource": pa.array([result.resource] * n, pa.string()),
            "table_name": pa.array([result.table] * n, pa.string()),
            "record_key": pa.array([d.key for d in found.discrepancies], pa.string()),
            "kind": pa.array([d.kind for d in found.discrepancies], pa.string()),
            "fields": pa.array(
                [_json(d.fields) if d.fields else None for d in found.discrepancies], pa.string()
            ),
            "pending": pa.array([d.pending for d in found.discrepancies], pa.bool_()),
            "repaired": pa.array([False] * n, pa.bool_()),
        }
    )
    wh.load(RECONCILIATION_DISCREPANCIES, data, on_conflict="ignore")


def _json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _repair(wh: Warehouse, rows: TableRows, keys: list[str]) -> int:
    """Upsert the source's rows of ``keys`` into their table (the sync's rows, as mapped)."""
    if not keys:
        return 0
    data, _ = rows.rows()
    key_cols = key_columns(rows.stored)
    data, _ = _dedupe(data, pa.array([False] * data.num_rows, pa.bool_()), key_cols)
    wanted = pc.is_in(key_text(data, key_cols), value_set=pa.array(keys, pa.string()))
    chosen = data.filter(wanted)
    if not chosen.num_rows:
        return 0
    update = [c for c in chosen.column_names if c not in rows.stored.primary_key]
    wh.load(rows.stored, chosen, on_conflict="update", update_columns=update or None)
    return int(chosen.num_rows)


def _record_run(wh: Warehouse, report: ReconcileReport) -> None:
    def total(name: str) -> int:
        return int(sum(getattr(t, name) for t in report.tables))

    row = {
        "run_id": [report.run_id],
        "started_at": [report.started_at],
        "finished_at": [report.finished_at],
        "sources": [_json(report.sources)],
        "status": [report.status],
        "source_rows": [total("source_rows")],
        "warehouse_rows": [total("warehouse_rows")],
        "matched": [total("matched")],
        "missing_in_warehouse": [total("missing_in_warehouse")],
        "missing_at_source": [total("missing_at_source")],
        "mismatched": [total("mismatched")],
        "pending": [total("pending")],
        "repaired": [report.repaired],
        "flagged": [report.flagged],
        "detail": [
            _json([{k: v for k, v in asdict(t).items() if k != "sample"} for t in report.tables])
        ],
    }
    ts = pa.timestamp("us", tz="UTC")
    types = {c.name: c.type for c in RECONCILIATION_RUNS.columns}
    arrow = {"TIMESTAMPTZ": ts, "BIGINT": pa.int64(), "BOOLEAN": pa.bool_()}
    schema = pa.schema([pa.field(n, arrow.get(types[n], pa.string())) for n in row])
    wh.load(RECONCILIATION_RUNS, pa.table(row).cast(schema))


def latest_run(wh: Warehouse) -> dict[str, Any] | None:
    """The last reconciliation run, as ``personify status`` shows it (``None``: never run)."""
    rows = wh.fetch(
        "SELECT run_id, finished_at, status, missing_in_warehouse, missing_at_source, "
        "mismatched, pending, repaired, flagged FROM reconciliation_runs "
        "ORDER BY started_at DESC LIMIT 1"
    )
    if not rows:
        return None
    r = rows[0]
    discrepancies = int(r[3] or 0) + int(r[4] or 0) + int(r[5] or 0)
    return {
        "run_id": r[0],
        "finished_at": r[1].isoformat() if isinstance(r[1], datetime) else None,
        "status": r[2],
        "discrepancies": discrepancies,
        "missing_in_warehouse": int(r[3] or 0),
        "missing_at_source": int(r[4] or 0),
        "mismatched": int(r[5] or 0),
        "pending": int(r[6] or 0),
        "repaired": int(r[7] or 0),
        "flagged": bool(r[8]),
    }
