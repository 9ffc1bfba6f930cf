"""The open pixel and the click redirect answered in-process by the app's fast path
(:class:`personify.server.engagement.FastTracking`): the answers, the request metrics it keeps
as every route has them, and each valid hit journalled and recorded with its owner."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.server.asgi_client import AppClient

from personify.config import load_project
from personify.delivery.tokens import project_key
from personify.engagement import sign_click, sign_open
from personify.server.app import create_app
from personify.server.engagement import PIXEL, stop_recorder
from personify.session import Session
from personify.warehouse import table

TARGET = "https://shop.example/p/1?utm_source=email"
PEER = ("198.51.100.7", 40000)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@pytest.fixture
def served(project_dir: Path) -> Iterator[tuple[AppClient, Session, bytes]]:
    session = Session(load_project(project_dir))
    sent = datetime.now(UTC) - timedelta(hours=1)
    ts = pa.timestamp("us", tz="UTC")
    session.warehouse.load(
        table("messages"),
        pa.table(
            {
                "idempotency_key": ["m-1"],
                "customer_id": ["c-1"],
                "journey": ["cart"],
                "step": ["first"],
                "template": ["abandoned_cart"],
                "status": ["sent"],
                "decided_at": pa.array([sent], ts),
                "sent_at": pa.array([sent], ts),
            }
        ),
    )
    app = create_app(session, instance="inst-1")
    try:
        yield AppClient(app, client=PEER), session, project_key(session.project)
    finally:
        stop_recorder(app.state.personify)
        session.close()


def _samples(client: AppClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_answers_metrics_and_recorded_hits(served: tuple[AppClient, Session, bytes]) -> None:
    client, session, key = served
    headers = {"user-agent": BROWSER}
    pixel = client.get(f"/o/{sign_open(key, 'm-1', 'c-1')}.gif", headers=headers)
    assert pixel.status_code == 200 and pixel.content == PIXEL
    assert pixel.headers["content-type"] == "image/gif"
    assert "no-store" in pixel.headers["cache-control"]
    assert pixel.headers["personify-instance"] == "inst-1"
    token = sign_click(key, "m-1", "c-1", 0, TARGET)
    clicked = client.get(f"/c/{token}?url=https://evil.example/", headers=headers)
    assert clicked.status_code == 302 and clicked.headers["location"] == TARGET
    assert clicked.headers["referrer-policy"] == "no-referrer"
    head = client.request("HEAD", f"/c/{token}", headers=headers)  # answered, flagged
    assert head.status_code == 302 and head.content == b""
    for path in (f"/c/{token[:-1]}x", f"/o/{token}.gif", "/c/nonsense"):
        missing = client.get(path)
        assert missing.status_code == 404 and "location" not in missing.headers
    opened = f"/o/{sign_open(key, 'm-1', 'c-1')}.gif"
    assert client.request("POST", opened).status_code == 405  # on to the router

    stop_recorder(client.app.state.personify)
    rows = session.warehouse.fetch(
        "SELECT event, customer_id, properties->>'machine', properties->>'machine_reason' "
        "FROM events WHERE source = 'email_tracking' ORDER BY event, 3"
    )
    assert [tuple(r) for r in rows] == [
        ("Email Link Clicked", "c-1", "false", None),
        ("Email Link Clicked", "c-1", "true", "head_request"),
        ("Email Opened", "c-1", "false", None),
    ]
    samples = _samples(client)

    def requests(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return samples[("personify_http_requests_total", labels)]

    assert requests("GET", "/o/{token}.gif", "200") == 1
    assert requests("GET", "/c/{token}", "302") == 1
    assert requests("HEAD", "/c/{token}", "302") == 1
    assert requests("GET", "/c/{token}", "404") == 2
    assert requests("GET", "/o/{token}.gif", "404") == 1
    latency = "personify_http_request_duration_seconds_count"
    assert samples[(latency, (("route", "/c/{token}"),))] == 4
    assert requests("POST", "/o/{token}.gif", "405") == 1  # counted by the router's middleware
    assert samples[(latency, (("route", "/o/{token}.gif"),))] == 3
    hits = "personify_engagement_hits_total"
    assert samples[(hits, (("kind", "click"), ("outcome", "invalid")))] == 2
    assert samples[(hits, (("kind", "open"), ("outcome", "invalid")))] == 1
    assert samples[(hits, (("kind", "open"), ("outcome", "person")))] == 1
    assert samples[(hits, (("kind", "click"), ("outcome", "person")))] == 1
    assert samples[(hits, (("kind", "click"), ("outcome", "machine")))] == 1
