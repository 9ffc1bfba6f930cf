"""Write-write conflicts are recognised on real engines' errors and retried with a bounded,
jittered backoff; anything else is raised at once."""

from __future__ import annotations

import random
import threading

import duckdb
import pytest

from personify.errors import WarehouseBusy, WarehouseError
from personify.warehouse.retry import is_write_conflict, retry_conflicts


def real_duckdb_conflict() -> duckdb.Error:
    """Two transactions deleting the same row: DuckDB's own error, not a made-up one."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id INTEGER)")
    con.execute("INSERT INTO t VALUES (1)")
    a, b = con.cursor(), con.cursor()
    a.execute("BEGIN")
    a.execute("DELETE FROM t WHERE id = 1")
    b.execute("BEGIN")
    try:
        b.execute("DELETE FROM t WHERE id = 1")
    except duckdb.Error as e:
        return e
    finally:
        a.execute("ROLLBACK")
    raise AssertionError("DuckDB did not report the conflict")


def test_real_conflicts_and_their_translations_are_recognised() -> None:
    error = real_duckdb_conflict()
    assert is_write_conflict(error)
    translated = WarehouseError(f"DuckDB: {str(error).splitlines()[0]}")
    assert is_write_conflict(translated)
    try:
        raise WarehouseError("wrapped") from error
    except WarehouseError as e:
        assert is_write_conflict(e)  # found through the cause
    assert is_write_conflict(WarehouseBusy("busy"))
    assert not is_write_conflict(WarehouseError("DuckDB: Binder Error: no column x"))
    assert not is_write_conflict(ValueError("bad value"))


def test_a_conflict_is_retried_until_the_work_succeeds() -> None:
    calls: list[int] = []
    slept: list[float] = []
    seen: list[BaseException] = []

    def work() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise real_duckdb_conflict()
        return "done"

    out = retry_conflicts(
        work, patience=30, on_conflict=seen.append, rng=random.Random(1), sleep=slept.append
    )
    assert out == "done" and len(calls) == 4 and len(seen) == 3
    # full jitter below a doubling ceiling: 20 ms, 40 ms, 80 ms
    assert all(0 <= s <= cap for s, cap in zip(slept, (0.02, 0.04, 0.08), strict=True))


def test_other_errors_are_raised_at_once() -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise WarehouseError("DuckDB: Catalog Error: no table x")

    with pytest.raises(WarehouseError, match="Catalog"):
        retry_conflicts(work, patience=30, sleep=lambda _: None)
    assert calls == [1]


def test_patience_runs_out_after_a_few_attempts_at_least() -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        raise WarehouseError("DuckDB: TransactionContext Error: Conflict on tuple deletion!")

    with pytest.raises(WarehouseError, match="Conflict"):
        retry_conflicts(work, patience=0, sleep=lambda _: None)
    assert len(calls) == 3  # however late: three attempts


def test_a_retry_succeeds_once_the_other_writer_commits() -> None:
    """Real DuckDB: the other transaction holds the row; the retried one lands after it."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id INTEGER, v INTEGER)")
    con.execute("INSERT INTO t VALUES (1, 0)")
    holder = con.cursor()
    holder.execute("BEGIN")
    holder.execute("DELETE FROM t WHERE id = 1")
    holder.execute("INSERT INTO t VALUES (1, 1)")
    conflicts: list[BaseException] = []
    timer = threading.Timer(0.3, lambda: holder.execute("COMMIT"))
    timer.start()

    def work() -> None:
        cur = con.cursor()
        cur.execute("BEGIN")
        try:
            cur.execute("DELETE FROM t WHERE id = 1")  # a rebuild, as the real-time apply does
            cur.execute("INSERT INTO t VALUES (1, 2)")
            cur.execute("COMMIT")
        except duckdb.Error:
            cur.execute("ROLLBACK")
            raise

    retry_conflicts(work, patience=30, on_conflict=conflicts.append)
    timer.join()
    assert conflicts and con.execute("SELECT id, v FROM t").fetchall() == [(1, 2)]
