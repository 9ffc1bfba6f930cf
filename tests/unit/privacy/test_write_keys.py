"""A tracking write key belongs to one source: its events are recorded as that source's, a body
``writeKey`` cannot switch the request to another source, each source's rate limit is its own,
a key's events cannot replace another source's, and two sources cannot share a key."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.unit.privacy.write_keys_support import load_two_sources

from personify.config import parse_config
from personify.errors import ConfigError
from personify.server.app import create_app
from personify.server.tracking_state import KEY
from personify.session import Session

WEB, APP = "web-key-0123456789", "app-key-9876543210"


def basic(key: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


class Client:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.app = create_app(session)
        self.transport = httpx.ASGITransport(app=self.app, client=("10.0.0.7", 4000))

    def post(self, path: str, headers: dict[str, str], body: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.post(path, headers=headers, json=body)

        return asyncio.run(go())

    def sources(self) -> dict[str, str]:
        rows = self.session.warehouse.fetch("SELECT message_id, source FROM events")
        return {str(m): str(s) for m, s in rows}


@pytest.fixture
def client(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    session = load_two_sources(project_dir, monkeypatch, WEB, APP)
    c = Client(session)
    try:
        yield c
    finally:
        state = c.app.state.personify.extras.get(KEY)
        if state is not None:
            state.close()
        session.close()


def ev(mid: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "messageId": mid, "userId": "u1", **extra}


def test_events_are_recorded_as_the_keys_source(client: Client) -> None:
    assert client.post("/v1/batch", basic(WEB), {"batch": [ev("w1")]}).status_code == 200
    assert client.post("/v1/track", basic(APP), ev("a1")).status_code == 200
    # a body key alone (sendBeacon) is the key's source too
    assert client.post("/v1/batch", {}, {"batch": [ev("a2")], "writeKey": APP}).status_code == 200
    # what the payload says about a source changes nothing
    claim = ev("w2", context={"source": "app", "library": {"name": "app"}}, source="app")
    assert client.post("/v1/track", basic(WEB), claim).status_code == 200
    assert client.sources() == {"w1": "web", "a1": "app", "a2": "app", "w2": "web"}


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
def test_a_body_key_cannot_switch_sources(client: Client, path: str) -> None:
    body: dict[str, Any] = {"batch": [ev("x1")]} if path == "/v1/batch" else ev("x1")
    body["writeKey"] = APP
    answer = client.post(path, basic(WEB), body)
    assert answer.status_code == 401, answer.text
    assert "own source" in answer.json()["error"]["message"]
    body["writeKey"] = "not-a-key-at-all"
    assert client.post(path, basic(WEB), body).status_code == 401
    assert client.sources() == {}
    body["writeKey"] = WEB  # the same key in both places (analytics.js sends both)
    assert client.post(path, basic(WEB), body).status_code == 200
    assert client.sources() == {"x1": "web"}


def test_a_key_cannot_replace_another_sources_event(client: Client) -> None:
    assert client.post("/v1/track", basic(APP), ev("m1", properties={"v": 1})).status_code == 200
    forged = client.post("/v1/track", basic(WEB), ev("m1", properties={"v": 2}))
    assert forged.status_code == 400  # kept aside as a conflicting duplicate, not stored
    assert client.sources() == {"m1": "app"}
    stored = client.session.warehouse.scalar("SELECT CAST(properties AS VARCHAR) FROM events")
    assert '"v":1' in str(stored).replace(" ", "")
    quarantined = client.session.warehouse.fetch("SELECT source, reason FROM quarantine")
    assert quarantined == [("web", "conflicting_duplicate")]


def test_rate_limits_are_per_source(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = load_two_sources(
        project_dir, monkeypatch, WEB, APP, web_limit="rate_limit: 1\n    rate_burst: 1\n"
    )
    c = Client(session)
    try:
        assert c.post("/v1/track", basic(WEB), ev("w1")).status_code == 200
        assert c.post("/v1/track", basic(WEB), ev("w2")).status_code == 429
        assert c.post("/v1/track", basic(APP), ev("a1")).status_code == 200  # its own bucket
    finally:
        state = c.app.state.personify.extras.get(KEY)
        if state is not None:
            state.close()
        session.close()


def test_two_sources_cannot_share_a_write_key() -> None:
    text = (
        "sources:\n"
        "  - {name: web, kind: tracking, write_key: same-key}\n"
        "  - {name: app, kind: tracking, write_key: same-key}\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_config(text)
    assert "share a write key" in str(e.value) and "write_key" in str(e.value)
    assert "same-key" not in str(e.value)


def test_sec_gpc_header_is_kept_as_context_gpc(client: Client) -> None:
    gpc = {**basic(WEB), "sec-gpc": "1"}
    assert client.post("/v1/page", gpc, ev("g1", type="page")).status_code == 200
    assert client.post("/v1/batch", gpc, {"batch": [ev("g2")]}).status_code == 200
    assert client.post("/v1/page", basic(WEB), ev("n1", type="page")).status_code == 200
    rows = client.session.warehouse.fetch("SELECT message_id, context FROM events")
    contexts = {str(m): json.loads(c) for m, c in rows}
    assert contexts["g1"]["gpc"] is True and contexts["g2"]["gpc"] is True
    assert "gpc" not in contexts["n1"]
    assert contexts["g1"]["ip"] == "10.0.0.7"  # the rest of the context as before
    # the privacy stage turns it into a data_sharing opt-out once the person is known
    from personify import clock
    from personify.identity import identity_stage
    from personify.privacy.consent import do_not_sell
    from personify.privacy.stage import privacy_stage
    from personify.profiles import profiles_stage

    s = client.session
    with clock.frozen(clock.now()):
        identity_stage(s)
        profiles_stage(s)
        privacy_stage(s)
    (customer,) = s.warehouse.fetch("SELECT DISTINCT customer_id FROM events")
    assert customer[0] and do_not_sell(s.warehouse, [customer[0]]) == {customer[0]}
