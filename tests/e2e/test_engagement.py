"""Open and click tracking through a real ``personify serve``: the pixel and the redirect answer,
each hit becomes an event tied to the message, scanners are flagged, and forged or altered tokens
answer 404, record nothing and never redirect anywhere."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyarrow as pa
import pytest

from personify.config import load_project
from personify.delivery.tokens import project_key
from personify.engagement import sign_click, sign_open
from personify.scaffold import init_project
from personify.session import open_session
from personify.warehouse import table
from tests.e2e.test_serve import Server, run_json, start_server

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
TARGET = "https://shop.example/p/1?utm_source=email"


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, bytes]]:
    root = tmp_path_factory.mktemp("engagement")
    project = root / "shop"
    init_project(project)
    sent = datetime.now(UTC) - timedelta(hours=1)
    with open_session(project) as session:
        ts = pa.timestamp("us", tz="UTC")
        data = pa.table(
            {
                "idempotency_key": ["m-1"],
                "customer_id": ["c-1"],
                "journey": ["cart"],
                "step": ["first"],
                "template": ["abandoned_cart"],
                "variant": ["A"],
                "status": ["sent"],
                "decided_at": pa.array([sent], ts),
                "sent_at": pa.array([sent], ts),
            }
        )
        session.warehouse.load(table("messages"), data)
    key = project_key(load_project(project))
    server = start_server(project, root / "serve.log")
    try:
        yield server, key
    finally:
        server.stop()


def _events(server: Server, expected: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The tracking events once ``expected`` are stored (recorded after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = run_json(
            "sql",
            "SELECT event, customer_id, properties FROM events "
            "WHERE source = 'email_tracking' ORDER BY received_at",
            "--project",
            str(server.project),
        )
        if len(rows["rows"] if isinstance(rows, dict) else rows) >= expected:
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    found = rows["rows"] if isinstance(rows, dict) else rows
    return [r if isinstance(r, dict) else dict(zip(rows["columns"], r, strict=True)) for r in found]


def _get(server: Server, path: str, agent: str = BROWSER, method: str = "GET") -> httpx.Response:
    return httpx.request(
        method,
        server.url + path,
        headers={"user-agent": agent},
        follow_redirects=False,
        timeout=10,
        trust_env=False,
    )


def test_pixel_and_click_record_events(tracked: tuple[Server, bytes]) -> None:
    server, key = tracked
    pixel = _get(server, f"/o/{sign_open(key, 'm-1', 'c-1')}.gif")
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert pixel.content.startswith(b"GIF89a") and "no-store" in pixel.headers["cache-control"]
    token = sign_click(key, "m-1", "c-1", 0, TARGET)
    clicked = _get(server, f"/c/{token}?url=https://evil.example/")
    assert clicked.status_code == 302 and clicked.headers["location"] == TARGET
    scanned = _get(server, f"/c/{token}", agent="Mimecast Link Scanner")
    assert scanned.status_code == 302
    events = _events(server, 3)
    assert len(events) == 3
    by_machine = {}
    for e in events:
        props = e["properties"]
        props = props if isinstance(props, dict) else json.loads(props)
        assert e["customer_id"] == "c-1" and props["journey"] == "cart" and props["variant"] == "A"
        by_machine[(e["event"], props["machine"])] = props
    assert set(by_machine) == {
        ("Email Opened", False),
        ("Email Link Clicked", False),
        ("Email Link Clicked", True),
    }
    assert by_machine[("Email Link Clicked", True)]["machine_reason"] == "scanner_agent"
    assert by_machine[("Email Link Clicked", False)]["link_url"] == TARGET


def test_forged_and_altered_tokens_record_nothing(tracked: tuple[Server, bytes]) -> None:
    server, key = tracked
    before = len(_events(server, 0, timeout=0))
    token = sign_click(key, "m-1", "c-1", 0, TARGET)
    payload, _, signature = token.partition(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc["u"] = "https://evil.example/"
    evil = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    for path in (
        f"/c/{evil}.{signature}",
        f"/c/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}",
        f"/c/{sign_click(b'not the key', 'm-1', 'c-1', 0, 'https://evil.example/')}",
        f"/c/{sign_open(key, 'm-1', 'c-1')}",
        f"/o/{sign_click(key, 'm-1', 'c-1', 0, TARGET)}.gif",
        "/o/nonsense.gif",
        "/c/nonsense",
    ):
        answer = _get(server, path)
        assert answer.status_code == 404, path
        assert "location" not in answer.headers
    unknown = _get(server, f"/o/{sign_open(key, 'no-such-message', 'c-1')}.gif")
    assert unknown.status_code == 200  # a valid token still gets its pixel, nothing is recorded
    time.sleep(1.0)
    assert len(_events(server, 0, timeout=0)) == before


def test_report_journeys_counts_people_only(tracked: tuple[Server, bytes]) -> None:
    server, key = tracked
    _get(server, f"/c/{sign_click(key, 'm-1', 'c-1', 0, TARGET)}", method="HEAD")  # a scanner
    _events(server, 4)
    doc = run_json("report", "journeys", "--project", str(server.project))
    assert (doc["rule"], doc["touch"], doc["window"]) == ("last_touch", "click", "3d")
    assert doc["steps"] == [
        {
            "journey": "cart",
            "step": "first",
            "variant": "A",
            "sends": 1,
            "delivered": 1,
            "unique_opens": 1,
            "unique_clicks": 1,
            "conversions": 0,
            "revenue": 0.0,
            "unsubscribed": 0,
            "complained": 0,
            "unsubscribe_rate": 0.0,
            "complaint_rate": 0.0,
            "experiment": None,  # m-1 was loaded by hand: no journey step runs an experiment
            "assigned": None,
            "converted": None,
            "uplift": None,
            "assigned_unsubscribed": None,
            "unsubscribe_guardrail": None,
        }
    ]
