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


def test_threads_opening_cursors_while_another_closes_never_see_a_busy_connection(
    tmp_path: Path,
) -> None:
    """DuckDB refuses a call on a connection busy with another thread's instead of waiting
    (``connection is busy with another call``): threads running statements while the warehouse
    closes must not make the close fail; theirs fail as warehouse errors, not the engine's own."""
    import threading
    import time

    from personify.errors import WarehouseError

    problems: list[str] = []
    for _ in range(10):
        wh = connect(f"duckdb:///{tmp_path / 'w.duckdb'}")
        assert isinstance(wh, DuckDBWarehouse)

        def statements(wh: DuckDBWarehouse = wh) -> None:
            while True:
                try:
                    wh.scalar("SELECT 1")
                except WarehouseError:  # closed under it ("closed", "no open result set")
                    return
                except Exception as e:  # noqa: BLE001 (the engine's own, untranslated)
                    problems.append(f"{type(e).__name__}: {e}")
                    return
                finally:
                    wh.release_thread()  # the next statement opens a new cursor

        threads = [threading.Thread(target=statements) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        try:
            wh.close()
        except Exception as e:  # noqa: BLE001
            problems.append(f"close: {type(e).__name__}: {e}")
        for t in threads:
            t.join(30)
    assert problems == []
