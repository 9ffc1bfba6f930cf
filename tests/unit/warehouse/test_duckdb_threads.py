"""``personify serve`` runs DuckDB statements on one thread each (the ingest path first), gives a
forwarded command or a scheduled rebuild every core, and bulk loads keep their own setting."""

from __future__ import annotations

import os
from pathlib import Path

from personify.warehouse import connect
from personify.warehouse.duckdb.backend import BULK_THREADS, SERVE_THREADS, DuckDBWarehouse


def _threads(wh: DuckDBWarehouse) -> int:
    return int(wh.fetch("SELECT current_setting('threads')")[0][0])


def test_serve_threads_and_the_blocks_that_lift_them(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(wh, DuckDBWarehouse)
    try:
        every = _threads(wh)
        assert every == len(os.sched_getaffinity(0))  # DuckDB's default: one per core
        wh.limit_threads()
        assert _threads(wh) == SERVE_THREADS
        with wh.all_threads():
            assert _threads(wh) == every
            with wh.all_threads():  # nested: still every core
                assert _threads(wh) == every
            assert _threads(wh) == every
            with wh.bulk_memory():  # a bulk load inside a forwarded command: its own setting
                assert _threads(wh) == BULK_THREADS
            assert _threads(wh) == every
        assert _threads(wh) == SERVE_THREADS
        with wh.bulk_memory():
            assert _threads(wh) == BULK_THREADS
        assert _threads(wh) == SERVE_THREADS  # back to the server's, not DuckDB's default
        wh.limit_threads(0)  # every core again
        assert _threads(wh) == every
    finally:
        wh.close()


def test_without_limit_all_threads_changes_nothing(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(wh, DuckDBWarehouse)
    try:
        every = _threads(wh)
        with wh.all_threads():
            assert _threads(wh) == every
        assert _threads(wh) == every
    finally:
        wh.close()
