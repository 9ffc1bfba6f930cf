"""The audit log on every backend: append-only (UPDATE, DELETE, TRUNCATE and upserts refused —
a trigger on PostgreSQL, the warehouse layer on DuckDB) and hash-chained, so an entry altered,
removed or inserted behind Personify's back is found by :func:`verify`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from personify.errors import WarehouseError
from personify.privacy.audit import GENESIS, log_action, read_log, verify
from personify.warehouse import Warehouse


def _log(wh: Warehouse, n: int) -> None:
    for i in range(n):
        log_action(
            wh,
            action="consent",
            actor="cli",
            customer_id=f"c{i}",
            key=b"k",
            detail={"purpose": "email_marketing", "status": "granted", "n": i},
        )


def _behind_the_back(wh: Warehouse) -> Callable[[str], Any]:
    """Run SQL on the engine itself, past Personify's guard (an attacker with database access)."""
    conn = getattr(wh, "_conn", None)
    if conn is not None:  # PostgreSQL: the owner may disable the trigger
        c = conn()

        def run_pg(sql: str) -> Any:
            c.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            c.execute(sql)
            c.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")

        return run_pg
    cur = wh._cursor()  # type: ignore[attr-defined]
    return lambda sql: cur.execute(sql)


def test_entries_are_chained_and_verify(warehouse: Warehouse) -> None:
    assert verify(warehouse).ok and verify(warehouse).entries == 0
    _log(warehouse, 5)
    rows = warehouse.fetch("SELECT seq, prev_hash, entry_hash FROM audit_log ORDER BY seq")
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0][1] == GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 5))
    result = verify(warehouse, batch=2)  # across batch boundaries
    assert result.ok, result
    assert (result.entries, result.head_seq, result.head_hash) == (5, 5, rows[-1][2])
    assert read_log(warehouse, limit=1)[0]["detail"]["n"] == 4


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log WHERE seq = 1",
        "delete from AUDIT_LOG",
        "TRUNCATE audit_log",
        "TRUNCATE TABLE audit_log",
    ],
)
def test_updates_and_deletes_are_refused(warehouse: Warehouse, statement: str) -> None:
    _log(warehouse, 2)
    with pytest.raises(WarehouseError, match="append-only"):
        warehouse.execute(statement)
    assert warehouse.scalar("SELECT count(*) FROM audit_log") == 2
    assert warehouse.fetch("SELECT DISTINCT actor FROM audit_log") == [("cli",)]
    assert verify(warehouse).ok


def test_an_upsert_over_an_entry_is_refused_on_duckdb(warehouse: Warehouse) -> None:
    _log(warehouse, 1)
    entry = warehouse.scalar("SELECT id FROM audit_log")
    with pytest.raises(WarehouseError):
        warehouse.execute(
            "INSERT INTO audit_log (id, occurred_at, action, actor) VALUES (?, now(), 'x', 'y') "
            "ON CONFLICT (id) DO UPDATE SET actor = excluded.actor",
            [entry],
        )
    assert warehouse.scalar("SELECT actor FROM audit_log") == "cli"


@pytest.mark.parametrize(
    ("tamper", "broken_at", "words"),
    [
        ("UPDATE audit_log SET actor = 'nobody' WHERE seq = 3", 3, "altered"),
        (
            "UPDATE audit_log SET detail = CAST('{\"n\": 99}' AS JSON) WHERE seq = 2",
            2,
            "altered",
        ),
        ("DELETE FROM audit_log WHERE seq = 2", 2, "missing"),
        ("UPDATE audit_log SET occurred_at = occurred_at + INTERVAL 1 HOUR WHERE seq = 4", 4, ""),
    ],
)
def test_tampering_past_the_guard_is_detected(
    warehouse: Warehouse, tamper: str, broken_at: int, words: str
) -> None:
    _log(warehouse, 5)
    run = _behind_the_back(warehouse)
    if getattr(warehouse, "_conn", None) is not None:
        tamper = tamper.replace("INTERVAL 1 HOUR", "INTERVAL '1 hour'").replace(
            "CAST('{\"n\": 99}' AS JSON)", "'{\"n\": 99}'::jsonb"
        )
    run(tamper)
    result = verify(warehouse)
    assert not result.ok
    assert result.broken_at == broken_at
    assert words in (result.problem or "")


def test_concurrent_appends_keep_one_chain(warehouse: Warehouse) -> None:
    import threading

    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(8):
                log_action(warehouse, action="export", actor=f"t{n}", customer_id=f"c{i}", key=b"k")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [r[0] for r in warehouse.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 33))
    assert verify(warehouse).ok
