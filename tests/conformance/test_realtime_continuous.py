"""Continuous mode on every backend: stored events reach their customers' profiles at once,
through the same pass as the batch path, and the profile cache follows."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from tests.conformance.test_profiles import NOW, T0, TS, load_world, session_on, snapshot
from tests.conformance.test_realtime_cache import project_with

from personify import clock
from personify.identity.sightings import Scope
from personify.ingest.tracking.normalize import EVENT_COLUMNS, micros
from personify.ingest.tracking.store import DUPLICATE, NEW
from personify.messages.context import read_customers
from personify.profiles import build_customers
from personify.profiles.realtime import apply
from personify.realtime import profile_cache
from personify.realtime.continuous import Applier, _Item, _merged
from personify.realtime.drift import recompute
from personify.warehouse import Warehouse
from personify.warehouse.schema import table


def test_applier_builds_profiles_like_the_batch(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = project_with(tmp_path, warehouse.url)
    load_world(warehouse)
    seen: list[tuple[int, float]] = []
    with clock.frozen(NOW):
        profile_cache(warehouse, proj)
        session = session_on(warehouse, proj)
        for (rid,) in warehouse.fetch("SELECT record_id FROM customer_records ORDER BY 1"):
            apply(session, Scope(records=("record_id = ?", (rid,))))  # what webhooks/syncs do
        applier = Applier(session_on(warehouse, proj), on_applied=lambda n, s: seen.append((n, s)))
        # generous waits that end on their condition: a loaded machine's PostgreSQL passes (and
        # the applier's journey ticks between them) can take many seconds
        started = time.perf_counter()
        try:
            ids = [str(r[0]) for r in warehouse.fetch("SELECT message_id FROM events ORDER BY 1")]
            applier.submit(ids[:2])
            assert applier.wait_idle(120)
            applier.submit(ids[2:])
            applier.submit(ids[:1])  # applying twice changes nothing
            assert applier.wait_idle(120)
            waited = time.perf_counter() - started
        finally:
            stopped = applier.close(120)
        assert stopped, "the applier's thread ended: nothing runs beside the checks below"
        assert applier.applied >= len(ids) and applier.failures == 0
        assert sum(n for n, _ in seen) == applier.applied  # each pass reports its inputs' age
        assert all(0 <= s <= waited for _, s in seen), (seen, waited)
        realtime = snapshot(warehouse)
        assert realtime, "the events made customers"
        ann = str(warehouse.scalar("SELECT customer_id FROM customers WHERE email = 'ann@x.org'"))
        before = read_customers(warehouse, [ann])[ann]
        for (oid,) in warehouse.fetch("SELECT order_id FROM orders ORDER BY 1"):
            apply(session, Scope(orders=("order_id = ?", (oid,))))
        realtime = snapshot(warehouse)
        build_customers(warehouse, proj)  # the batch path agrees with what was applied
        assert snapshot(warehouse) == realtime
        assert read_customers(warehouse, [ann])[ann]["email"] == before["email"]
        drift = recompute(session_on(warehouse, proj))  # nothing missed: nothing to report
        assert not drift.drifted and drift.customers == len(realtime), drift
        warehouse.execute("UPDATE customers SET total_spent = 1.0 WHERE customer_id = ?", [ann])
        read_customers(warehouse, [ann])  # cached before the recompute …
        drift = recompute(session_on(warehouse, proj))
        assert drift.drifted and drift.changed == {"total_spent": 1}, drift
        assert read_customers(warehouse, [ann])[ann]["total_spent"] == 20.0  # … and corrected


def _stored_rows(warehouse: Warehouse) -> list[tuple[object, ...]]:
    """The stored events as a writer hands them over: ``EVENT_COLUMNS`` (only the id and the
    receive instant, in µs, matter to the applier)."""
    out = []
    for mid, received in warehouse.fetch(
        "SELECT message_id, received_at FROM events ORDER BY received_at, message_id"
    ):
        row: list[object] = [None] * len(EVENT_COLUMNS)
        row[0], row[EVENT_COLUMNS.index("received_at")] = str(mid), micros(received)
        out.append(tuple(row))
    return out


def test_a_full_queue_applies_new_events_by_their_receive_window(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Past ``max_queued_events`` a writer's new events wait as a window of their
    ``received_at`` (a bounded backlog under any load): every one is applied all the same, and
    the profiles are the batch build's."""
    proj = project_with(tmp_path, warehouse.url)
    load_world(warehouse)
    with clock.frozen(NOW):
        profile_cache(warehouse, proj)
        session = session_on(warehouse, proj)
        for (rid,) in warehouse.fetch("SELECT record_id FROM customer_records ORDER BY 1"):
            apply(session, Scope(records=("record_id = ?", (rid,))))
        warehouse.load(  # a visitor each, received after the world's events (the window's end)
            table("events"),
            pa.table(
                {
                    "message_id": [f"solo{i}" for i in range(3)],
                    "type": ["page"] * 3,
                    "anonymous_id": [f"solo{i}" for i in range(3)],
                    "timestamp": pa.array([T0 + timedelta(days=40 + i) for i in range(3)], TS),
                    "received_at": pa.array([T0 + timedelta(days=40 + i) for i in range(3)], TS),
                    "source": ["web"] * 3,
                }
            ),
        )
        rows = _stored_rows(warehouse)
        assert len(rows) > 4 and rows[-1][0] == "solo2"
        applier = Applier(session_on(warehouse, proj), max_queued_events=2, tick_every=None)
        try:
            by_id = applier.submit_stored(rows[:2], [NEW, NEW])  # under the bound: by id
            window = applier.submit_stored(rows[2:], [NEW] * (len(rows) - 2))  # over it: a window
            assert applier.submit_stored(rows[:1], [DUPLICATE]) is None  # nothing new
            assert applier.wait_idle(120)
        finally:
            assert applier.close(120)
        assert by_id is not None and window is not None
        assert by_id.result(0) is None and window.result(0) is None  # applied: a worker acks
        assert applier.windowed == len(rows) - 2
        assert applier.applied == len(rows) and applier.failures == 0
        seen = warehouse.fetch(
            "SELECT value FROM identity_nodes WHERE kind = 'anonymous_id' AND value LIKE 'solo%' "
            "ORDER BY 1"
        )
        assert seen == [("solo0",), ("solo1",), ("solo2",)]  # the window's last one included
        for (oid,) in warehouse.fetch("SELECT order_id FROM orders ORDER BY 1"):
            apply(session, Scope(orders=("order_id = ?", (oid,))))
        realtime = snapshot(warehouse)
        assert realtime, "the events made customers"
        build_customers(warehouse, proj)
        assert snapshot(warehouse) == realtime
        drift = recompute(session_on(warehouse, proj))
        assert not drift.drifted, drift


def test_windows_merge_where_they_overlap() -> None:
    def window(first: int, last: int) -> _Item:
        return _Item("window", ((first, last),), 0.0, 1)

    batch = [window(5, 9), window(1, 3), window(8, 12), window(14, 14), window(3, 4)]
    assert _merged([*batch, _Item("event", ("m",), 0.0)]) == [(1, 4), (5, 12), (14, 14)]
