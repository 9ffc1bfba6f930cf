"""Compacting a DuckDB warehouse file: erased values leave the file; a held file is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from personify.errors import PersonifyError
from personify.privacy.compact import compact_file, duckdb_path
from personify.warehouse import connect, table


def test_compact_drops_freed_pages(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    with connect(f"duckdb:///{path}") as wh:
        n = 2000
        wh.load(
            table("customers"),
            pa.table(
                {
                    "customer_id": [f"c{i}" for i in range(n)],
                    "email": [f"zorblatt{i}@example.org" for i in range(n)],
                    "updated_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
                }
            ),
        )
        wh.execute("CHECKPOINT")
        wh.execute("DELETE FROM customers WHERE customer_id = 'c7'")
    assert b"zorblatt7@" in path.read_bytes()  # freed, not overwritten
    compact_file(path)
    data = path.read_bytes()
    assert b"zorblatt7@" not in data and b"zorblatt8@" in data
    with connect(f"duckdb:///{path}") as wh:
        assert wh.scalar("SELECT count(*) FROM customers") == 1999
        assert "sendable" in wh.relations()
        with pytest.raises(PersonifyError):  # the file is held (a running serve)
            compact_file(path)


def test_duckdb_path() -> None:
    assert duckdb_path("duckdb:///w.duckdb") == Path("w.duckdb")
    assert duckdb_path("duckdb:///:memory:") is None
    assert duckdb_path("postgresql://x/y") is None
