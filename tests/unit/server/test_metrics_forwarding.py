"""``/metrics`` shows each events destination's forwarding lag: how long its oldest event not yet
forwarded has been stored, the figure ``personify status`` shows (0 when none waits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.server.asgi_client import AppClient

from personify.config import load_project
from personify.server.app import create_app
from personify.session import Session
from personify.status import status_report
from personify.warehouse import table

DESTINATIONS = """
destinations:
  - name: analytics
    kind: events
    path: /v1/batch
    start: all
    events: [Order Completed]
    client: {base_url: "http://127.0.0.1:9"}
  - name: nothing_waits
    kind: events
    path: /v1/batch
    start: all
    events: [Never Sent]
    client: {base_url: "http://127.0.0.1:9"}
"""


def _store(session: Session, ids: list[str], received_at: datetime) -> None:
    n = len(ids)
    ts = pa.timestamp("us", tz="UTC")
    session.warehouse.load(
        table("events"),
        pa.table(
            {
                "message_id": ids,
                "type": ["track"] * n,
                "event": ["Order Completed"] * n,
                "user_id": [f"u_{i}" for i in ids],
                "timestamp": pa.array([received_at] * n, ts),
                "received_at": pa.array([received_at] * n, ts),
                # (stored then: the lag is how long the oldest waiting event has been stored)
                "stored_at": pa.array([received_at] * n, ts),
                "source": ["web"] * n,
                "properties": [json.dumps({"total": 10})] * n,
                "context": [json.dumps({})] * n,
            }
        ),
    )


def test_metrics_show_each_events_destinations_forwarding_lag(project_dir: Path) -> None:
    with (project_dir / "personify.yml").open("a") as f:
        f.write(DESTINATIONS)
    s = Session(load_project(project_dir))
    try:
        oldest = datetime.now(UTC) - timedelta(minutes=10)
        _store(s, ["m1", "m2"], oldest)
        _store(s, ["m3"], oldest + timedelta(minutes=5))
        text = AppClient(create_app(s, instance="inst-1")).get("/metrics").text
        shown = {d["name"]: d["lag_seconds"] for d in status_report(s)["destinations"]}
    finally:
        s.close()
    (family,) = [
        f
        for f in text_string_to_metric_families(text)
        if f.name == "personify_forwarding_lag_seconds"
    ]
    lags = {x.labels["destination"]: x.value for x in family.samples}
    assert set(lags) == {"analytics", "nothing_waits"}
    assert all(set(x.labels) == {"destination"} for x in family.samples)  # the name only
    assert 600 <= lags["analytics"] < 660  # the oldest waiting event's age, not the newest's
    assert abs(lags["analytics"] - shown["analytics"]) < 30  # personify status's figure
    assert lags["nothing_waits"] == 0 == shown["nothing_waits"]
