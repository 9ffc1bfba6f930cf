"""The file importer caps a DuckDB warehouse's memory while it loads, and restores it after; it
sizes the events' key filter once for a source's rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personify import clock
from personify.config import FileSource, Project, ProjectConfig
from personify.session import Session
from personify.sources.files import import_file_source
from personify.warehouse import connect
from personify.warehouse.duckdb import keyfilter
from personify.warehouse.duckdb.backend import (
    BULK_MEMORY_LIMIT,
    BULK_THREADS,
    SERVE_MEMORY_LIMIT,
    DuckDBWarehouse,
)


def _limit(wh: DuckDBWarehouse) -> int:
    rows = wh.fetch("SELECT current_setting('memory_limit')")
    number, unit = str(rows[0][0]).split()
    scale = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
    return int(float(number) * scale)


def _threads(wh: DuckDBWarehouse) -> int:
    return int(wh.fetch("SELECT current_setting('threads')")[0][0])


def test_bulk_memory_caps_the_limit_and_restores_it(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(wh, DuckDBWarehouse)
    try:
        before, threads = _limit(wh), _threads(wh)
        with wh.bulk_memory():
            assert _limit(wh) <= BULK_MEMORY_LIMIT and _threads(wh) == BULK_THREADS
            with wh.bulk_memory():  # nested: one cap, kept until the outer block ends
                assert _limit(wh) <= BULK_MEMORY_LIMIT
            assert _limit(wh) <= BULK_MEMORY_LIMIT and _threads(wh) == BULK_THREADS
        assert _limit(wh) == before and _threads(wh) == threads
    finally:
        wh.close()


def test_a_server_keeps_its_limit_across_bulk_loads(tmp_path: Path) -> None:
    """``limit_memory`` (what ``personify serve`` calls) stays in force; a bulk load raises the
    cap for its block and comes back to the server's, not to DuckDB's default."""
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(wh, DuckDBWarehouse)
    try:
        wh.limit_memory()
        assert _limit(wh) == SERVE_MEMORY_LIMIT
        with wh.bulk_memory():
            assert SERVE_MEMORY_LIMIT < _limit(wh) <= BULK_MEMORY_LIMIT
        assert _limit(wh) == SERVE_MEMORY_LIMIT
        wh.limit_memory(64 << 20)
        assert _limit(wh) == 64 << 20
    finally:
        wh.close()


def test_a_parquet_source_sizes_the_events_filter_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The importer announces a Parquet source's rows (from the files' footers), so the events'
    key filter is built once for all its files — not rebuilt, re-reading every stored key, each
    time it fills (≈ 15 CPU-s over the 1 M world) — and the keys stay unique."""
    monkeypatch.setattr(keyfilter, "MIN_CAPACITY", 16)
    built: list[int] = []

    class Counted(keyfilter.KeyFilter):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            built.append(self.capacity)

    monkeypatch.setattr(keyfilter, "KeyFilter", Counted)
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    ts = datetime(2025, 5, 1, tzinfo=UTC)
    for part in range(3):  # 3 files of 100 events, each repeating 10 of the one before
        ids = [f"m{i}" for i in range(part * 90, part * 90 + 100)]
        events = {"messageId": ids, "type": ["page"] * 100, "userId": ["u"] * 100}
        events["timestamp"] = [ts] * 100  # type: ignore[list-item]
        pq.write_table(pa.table(events), root / "data" / f"part-{part}.parquet")
    project = Project(ProjectConfig(warehouse="duckdb:///w.duckdb"), root, root / "personify.yml")
    source = FileSource(name="web", path="data/*.parquet", table="events")
    with Session(project) as session, clock.frozen(ts):
        counts = import_file_source(session, source).counts
        assert (counts["rows_loaded"], counts["rows_duplicate"]) == (280, 20)
        assert built == [450]  # 1.5 x the 300 rows announced, built at the first load
        assert session.warehouse.scalar("SELECT count(DISTINCT message_id) FROM events") == 280
        assert session.warehouse._writers.expected == {}  # type: ignore[attr-defined]
