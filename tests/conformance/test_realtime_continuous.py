"""Continuous mode on every backend: stored events reach their customers' profiles at once,
through the same pass as the batch path, and the profile cache follows."""

from __future__ import annotations

import time
from pathlib import Path

from tests.conformance.test_profiles import NOW, load_world, session_on, snapshot
from tests.conformance.test_realtime_cache import project_with

from personify import clock
from personify.identity.sightings import Scope
from personify.messages.context import read_customers
from personify.profiles import build_customers
from personify.profiles.realtime import apply
from personify.realtime import profile_cache
from personify.realtime.continuous import Applier
from personify.realtime.drift import recompute
from personify.warehouse import Warehouse


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
