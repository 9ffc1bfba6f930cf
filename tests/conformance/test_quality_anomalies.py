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


def test_a_jump_in_the_share_of_nulls_is_flagged(warehouse: Warehouse) -> None:
    from personify.quality.anomalies import null_rate_anomalies

    ts = pa.timestamp("us", tz="UTC")
    rows: dict[str, list[object]] = {
        "source": [],
        "record_id": [],
        "observed_at": [],
        "received_at": [],
        "email": [],
        "phone": [],
    }
    for i in range(40):
        recent = i < 20  # 20 in the last day (half without email), 20 the days before
        at = NOW - timedelta(hours=2 + i) if recent else NOW - timedelta(days=2, hours=i)
        rows["source"].append("crm")
        rows["record_id"].append(f"r{i}")
        rows["observed_at"].append(at)
        rows["received_at"].append(at)
        rows["email"].append(None if recent and i % 2 else f"p{i}@example.org")
        rows["phone"].append(None)  # always null: no jump
    schema = {"observed_at": ts, "received_at": ts}
    table = pa.table({k: pa.array(v, schema.get(k, pa.string())) for k, v in rows.items()})
    from personify.warehouse.schema import CUSTOMER_RECORDS

    warehouse.load(CUSTOMER_RECORDS, table)
    [a] = null_rate_anomalies(warehouse, NOW)
    assert (a.table, a.source, a.name, a.kind) == ("customer_records", "crm", "email", "null_rate")
    assert (a.last_day, a.median) == (50, 0.0)
