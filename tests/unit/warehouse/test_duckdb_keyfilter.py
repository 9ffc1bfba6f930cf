"""The Bloom filter of ``events`` keys on DuckDB: loads whose keys it rules out skip the probe of
stored keys, and no key is ever stored twice — across restarts, rollbacks, deletes and resends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from personify.errors import WarehouseError
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.duckdb import keyfilter

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def events(*ids: str) -> pa.Table:
    ts = pa.array([T0] * len(ids), pa.timestamp("us", tz="UTC"))
    n = len(ids)
    return pa.table(
        {"message_id": list(ids), "type": ["track"] * n, "timestamp": ts, "received_at": ts}
        | {"source": ["web"] * n}
    )


@pytest.fixture
def path(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'w.duckdb'}"


@pytest.fixture
def wh(path: str) -> Iterator[Warehouse]:
    with connect(path) as warehouse:
        yield warehouse


def stored(wh: Warehouse) -> int:
    return int(wh.scalar("SELECT count(*) FROM events"))


def test_no_false_negatives_and_few_false_positives() -> None:
    rng = np.random.default_rng(5)
    found = keyfilter.KeyFilter(1 << 20)
    keys = rng.integers(0, 2**63, size=1 << 20, dtype=np.uint64)  # full to capacity
    found.add(keys)
    assert found.might_contain(keys).all()
    others = found.might_contain(rng.integers(0, 2**63, size=200_000, dtype=np.uint64))
    assert others.sum() <= 10  # ~7e-6 expected when full
    assert not found.full


def test_test_and_add_answers_as_before_adding() -> None:
    rng = np.random.default_rng(11)
    found, twin = keyfilter.KeyFilter(1 << 16), keyfilter.KeyFilter(1 << 16)
    old = rng.integers(0, 2**63, size=5000, dtype=np.uint64)
    found.add(old)
    twin.add(old)
    batch = np.concatenate([rng.integers(0, 2**63, size=5000, dtype=np.uint64), old[:100]])
    expected = twin.might_contain(batch)
    assert (found.test_and_add(batch) == expected).all()
    assert expected[-100:].all() and expected[:5000].sum() < 5
    assert found.might_contain(batch).all() and found.count == 10_100
    twin.add(batch)
    assert (found.words == twin.words).all()


def test_a_large_load_mixing_new_and_stored_keys_stores_each_key_once(wh: Warehouse) -> None:
    events_table = table("events")
    assert wh.load(events_table, events(*(f"m{i}" for i in range(0, 3000, 3)))) == 1000
    mixed = events(*(f"m{i}" for i in range(3000)), "m7", "m8")  # stored, new, repeated
    assert wh.load(events_table, mixed, on_conflict="ignore") == 2000
    assert stored(wh) == 3000
    assert wh.scalar("SELECT count(DISTINCT message_id) FROM events") == 3000


def test_every_load_keeps_the_key_unique(wh: Warehouse) -> None:
    events_table = table("events")
    assert wh.load(events_table, events("a", "b", "b"), on_conflict="ignore") == 2
    assert wh.load(events_table, events("c", "a", "d"), on_conflict="ignore") == 2
    with pytest.raises(WarehouseError, match="already stored"):
        wh.load(events_table, events("e", "c"))
    assert wh.load(events_table, events("e")) == 1
    assert stored(wh) == 5
    with pytest.raises(RuntimeError), wh.transaction():  # rolled back: bits stay, rows do not
        wh.load(events_table, events("f", "g"), on_conflict="ignore")
        raise RuntimeError
    assert wh.load(events_table, events("f", "g", "a"), on_conflict="ignore") == 2
    wh.execute("DELETE FROM events WHERE message_id = 'b'")  # erased: may be stored again
    assert wh.load(events_table, events("b", "c"), on_conflict="ignore") == 1
    ids = [r[0] for r in wh.fetch("SELECT message_id FROM events ORDER BY 1")]
    assert ids == ["a", "b", "c", "d", "e", "f", "g"]


def test_a_restart_rebuilds_it_from_the_stored_keys(path: str) -> None:
    with connect(path) as wh:
        wh.load(table("events"), events(*(f"k{i}" for i in range(3000))))
    with connect(path) as wh:
        batch = events(*(f"k{i}" for i in range(2990, 3010)))
        assert wh.load(table("events"), batch, on_conflict="ignore") == 10
        assert stored(wh) == 3010


def test_a_full_filter_is_rebuilt_larger(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyfilter, "MIN_CAPACITY", 16)
    for start in range(0, 200, 20):
        wh.load(table("events"), events(*(f"r{i}" for i in range(start, start + 20))))
    again = events(*(f"r{i}" for i in range(0, 200, 7)))
    assert wh.load(table("events"), again, on_conflict="ignore") == 0
    found = wh._writers.filters["events"]  # type: ignore[attr-defined]
    assert found.capacity >= 200 and found.count >= 200
    assert stored(wh) == 200


def test_rows_announced_size_it_once(wh: Warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bulk load that announces its rows gets a filter sized for them at its first load, not
    one rebuilt (re-reading every stored key) each time it fills; keys stay unique."""
    monkeypatch.setattr(keyfilter, "MIN_CAPACITY", 16)
    wh.load(table("events"), events(*(f"s{i}" for i in range(20))))
    small = wh._writers.filters["events"]  # type: ignore[attr-defined]
    with wh.expecting("events", 200):  # type: ignore[attr-defined]
        wh.load(table("events"), events(*(f"r{i}" for i in range(20))))
        sized = wh._writers.filters["events"]  # type: ignore[attr-defined]
        assert sized is not small and sized.capacity >= 1.5 * 220
        for start in range(20, 200, 20):
            wh.load(table("events"), events(*(f"r{i}" for i in range(start, start + 20))))
        assert wh._writers.filters["events"] is sized  # type: ignore[attr-defined]
    again = events(*(f"r{i}" for i in range(0, 200, 7)), "s3", "new")
    assert wh.load(table("events"), again, on_conflict="ignore") == 1
    assert stored(wh) == 221
    assert wh._writers.expected == {}  # type: ignore[attr-defined]
