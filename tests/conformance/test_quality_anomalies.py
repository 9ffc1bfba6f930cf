"""Volume anomalies on every backend: the last 24 hours of each source and event against the
median of the week before — a drop below half is ``low``, more than three times is a ``spike``,
steady and tiny series are not reported."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from personify.quality.anomalies import volume_anomalies
from personify.warehouse import Warehouse
from personify.warehouse.schema import EVENTS

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def events(wh: Warehouse, source: str, event: str, per_day: list[int]) -> None:
    """``per_day[0]`` events in the last 24 h, ``per_day[d]`` d days before that."""
    ts: list[datetime] = []
    for day, n in enumerate(per_day):
        ts += [NOW - timedelta(days=day, minutes=10 + i) for i in range(n)]
    n = len(ts)
    wh.load(
        EVENTS,
        pa.table(
            {
                "message_id": [f"{source}-{event}-{i}" for i in range(n)],
                "type": ["track"] * n,
                "event": [event] * n,
                "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "received_at": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "source": [source] * n,
            }
        ),
    )


def test_drops_and_spikes_are_flagged(warehouse: Warehouse) -> None:
    events(warehouse, "web", "Order Completed", [5, 20, 20, 20, 20, 20, 20, 20])  # low
    events(warehouse, "web", "Page Viewed", [90, 20, 22, 18, 20, 20, 21, 19])  # spike
    events(warehouse, "web", "Product Viewed", [20, 20, 20, 20, 20, 20, 20, 20])  # steady
    events(warehouse, "app", "Tiny", [0, 3, 2, 3, 2, 3, 2, 3])  # too small to judge
    found = {(a.source, a.name): a for a in volume_anomalies(warehouse, NOW)}
    assert set(found) == {("web", "Order Completed"), ("web", "Page Viewed")}
    low = found[("web", "Order Completed")]
    assert (low.kind, low.last_day, low.median) == ("low", 5, 20.0)
    assert found[("web", "Page Viewed")].kind == "spike"
