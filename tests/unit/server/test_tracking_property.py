"""Property: whatever the body, the tracking API never answers 5xx, and every event is accounted
for — ``accepted + quarantined + rejected == received`` — with the warehouse agreeing: new rows in
``events`` are exactly the accepted events that were not duplicates."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personify.config import TrackingSource, load_project
from personify.scaffold import init_project
from personify.server.app import create_app
from personify.server.tracking_state import KEY
from personify.session import Session

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
stamps = st.sampled_from(
    ["2026-01-01T00:00:00Z", "2026-01-01", "2026-13-01T00:00:00", "0001-01-01T00:00:00+14:00", ""]
)
events = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "x"])
        | json_values,
        "messageId": st.sampled_from(["m1", "m2", "m3", ""]) | st.integers(0, 3) | json_values,
        "userId": st.sampled_from(["u1", ""]) | json_values,
        "anonymousId": st.just("a1") | json_values,
        "event": st.sampled_from(["Signed Up", "Product Added", "Order Completed"]) | json_values,
        "groupId": st.just("g1"),
        "previousId": st.just("p1"),
        "properties": st.dictionaries(
            st.sampled_from(["cart_id", "product_id", "price", "x"]), json_values
        )
        | json_values,
        "traits": st.dictionaries(st.sampled_from(["email", "engagementScore"]), json_values),
        "context": json_values,
        "timestamp": stamps | json_values,
        "sentAt": stamps,
    },
)
batches = st.fixed_dictionaries(
    {"batch": st.lists(events | json_values, max_size=6)},
    optional={"sentAt": stamps, "context": st.dictionaries(st.text(max_size=5), json_values)},
)
bodies = (
    batches.map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
)
paths = st.sampled_from(["/v1/batch"] * 3 + ["/v1/track", "/v1/identify", "/v1/alias"])


class Harness:
    def __init__(self, root: Path) -> None:
        init_project(root)
        self.session = Session(load_project(root))
        self.app = create_app(self.session)
        source = self.session.project.config.sources[0]
        assert isinstance(source, TrackingSource)
        token = base64.b64encode(f"{source.write_key.reveal()}:".encode()).decode()
        self.headers = {"authorization": f"Basic {token}"}
        self.transport = httpx.ASGITransport(app=self.app, client=("127.0.0.1", 1))

    def post(self, path: str, body: bytes) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.post(path, content=body, headers=self.headers)

        return asyncio.run(go())

    def count(self, table: str) -> int:
        return int(self.session.warehouse.scalar(f"SELECT count(*) FROM {table}"))

    def close(self) -> None:
        state = self.app.state.personify.extras.get(KEY)
        if state is not None:
            state.close()
        self.session.close()


def check(h: Harness, path: str, body: bytes) -> None:
    before = h.count("events"), h.count("quarantine")
    r = h.post(path, body)
    after = h.count("events"), h.count("quarantine")
    new_events, new_quarantine = after[0] - before[0], after[1] - before[1]
    assert r.status_code < 500, r.text
    doc: Any = r.json()
    if r.status_code == 200 and doc == {"success": True}:
        assert new_quarantine == 0
        return
    if "received" not in doc:  # refused as a whole: nothing stored
        assert "error" in doc and set(doc["error"]) == {"code", "message"}
        assert (new_events, new_quarantine) == (0, 0)
        return
    assert doc["accepted"] + doc["quarantined"] + doc["rejected"] == doc["received"]
    assert len(doc["errors"]) == doc["quarantined"] + doc["rejected"]
    assert new_events == doc["accepted"] - doc["duplicates"]
    assert new_quarantine <= doc["quarantined"]
    for e in doc["errors"]:
        assert e["pointer"] == "" or e["pointer"].startswith("/")


def test_no_5xx_and_every_event_accounted_for(tmp_path: Path) -> None:
    h = Harness(tmp_path / "p")

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(path=paths, body=bodies)
    def prop(path: str, body: bytes) -> None:
        check(h, path, body)

    try:
        prop()
    finally:
        h.close()
