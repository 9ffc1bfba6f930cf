"""The file importer caps a DuckDB warehouse's memory while it loads, and restores it after."""

from __future__ import annotations

from pathlib import Path

from personify.warehouse import connect
from personify.warehouse.duckdb.backend import BULK_MEMORY_LIMIT, DuckDBWarehouse


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
