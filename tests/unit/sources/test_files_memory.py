"""The file importer caps a DuckDB warehouse's memory while it loads, and restores it after."""

from __future__ import annotations

from pathlib import Path

from personify.warehouse import connect
from personify.warehouse.duckdb.backend import (
    BULK_MEMORY_LIMIT,
    SERVE_MEMORY_LIMIT,
    DuckDBWarehouse,
)


def _limit(wh: DuckDBWarehouse) -> int:
    rows = wh.fetch("SELECT current_setting('memory_limit')")
    number, unit = str(rows[0][0]).split()
    scale = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
    return int(float(number) * scale)


def test_bulk_memory_caps_the_limit_and_restores_it(tmp_path: Path) -> None:
    wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert isinstance(wh, DuckDBWarehouse)
    try:
        before = _limit(wh)
        with wh.bulk_memory():
            assert _limit(wh) <= BULK_MEMORY_LIMIT
            with wh.bulk_memory():  # nested: one cap, kept until the outer block ends
                assert _limit(wh) <= BULK_MEMORY_LIMIT
            assert _limit(wh) <= BULK_MEMORY_LIMIT
        assert _limit(wh) == before
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
