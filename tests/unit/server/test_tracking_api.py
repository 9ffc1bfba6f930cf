"""The tracking API in-process (httpx's ASGI transport): auth, limits, errors, dedup, replay."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from personify.config import TrackingSource, load_project
from personify.ingest.tracking.replay import replay
from personify.server.app import create_app
from personify.server.tracking_state import KEY
from personify.session import Session


class Api:
    """Requests straight into one app, with the project's write key."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.app = create_app(session)
        source = session.project.config.sources[0]
        assert isinstance(source, TrackingSource)
        self.key = source.write_key.reveal()
        self.transport = httpx.ASGITransport(app=self.app, client=("10.0.0.7", 4000))

    @property
    def auth(self) -> dict[str, str]:
        token = base64.b64encode(f"{self.key}:".encode()).decode()
        return {"authorization": f"Basic {token}"}

    def post(self, path: str, auth: bool = True, **kw: Any) -> httpx.Response:
        headers = {**(self.auth if auth else {}), **kw.pop("headers", {})}

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.request(kw.pop("method", "POST"), path, headers=headers, **kw)

        return asyncio.run(go())

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.session.warehouse.fetch(sql)

    def close(self) -> None:
        state = self.app.state.personify.extras.get(KEY)
        if state is not None:
            state.close()


def make(project: Path, extra: str = "") -> Iterator[Api]:
    if extra:
        text = (project / "personify.yml").read_text()
        anchor = "    tracking_plan: tracking-plan\n"
        (project / "personify.yml").write_text(text.replace(anchor, anchor + extra))
    session = Session(load_project(project))
    api = Api(session)
    try:
        yield api
    finally:
        api.close()
        session.close()


@pytest.fixture
def api(project_dir: Path) -> Iterator[Api]:
    yield from make(project_dir)


def ev(i: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "track",
        "event": "Signed Up",
        "messageId": f"m{i}",
        "anonymousId": "anon-1",
        "properties": {"n": i},
    }
    doc.update(fields)
    return doc


def count(api: Api, table: str = "events") -> int:
    return int(api.rows(f"SELECT count(*) FROM {table}")[0][0])


def test_batch_stores_and_answers_success(api: Api) -> None:
    r = api.post("/v1/batch", json={"batch": [ev(1), ev(2)], "sentAt": "2026-01-01T00:00:00Z"})
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert r.headers["access-control-allow-origin"] == "*"
    assert count(api) == 2
    ctx = json.loads(api.rows("SELECT context FROM events LIMIT 1")[0][0])
    assert ctx["ip"] == "10.0.0.7"


@pytest.mark.parametrize("kind", ["track", "identify", "page", "screen", "group", "alias"])
def test_single_event_endpoints(api: Api, kind: str) -> None:
    doc = {"messageId": f"s-{kind}", "userId": "u1", "event": "Signed Up"}
    doc.update({"groupId": "g1"} if kind == "group" else {})
    doc.update({"previousId": "anon-9"} if kind == "alias" else {})
    r = api.post(f"/v1/{kind}", json=doc)
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert api.rows("SELECT type FROM events") == [(kind,)]


def test_analytics_js_short_paths(api: Api) -> None:
    assert api.post("/v1/t", json=ev(1)).json() == {"success": True}
    assert api.post("/v1/p", json={"messageId": "p1", "anonymousId": "a"}).status_code == 200
    assert api.post("/v1/b", json={"batch": [ev(2)]}).json() == {"success": True}
    assert api.rows("SELECT type FROM events ORDER BY message_id") == [
        ("track",),
        ("track",),
        ("page",),
    ]
    doc = api.post("/openapi.json", method="GET", auth=False).json()
    assert "/v1/t" not in doc["paths"] and "/v1/b" not in doc["paths"]


def test_partial_batch_lists_each_bad_event(api: Api) -> None:
    body = {"batch": [ev(1), {"type": "track", "messageId": "x"}, 7, ev(3, event="")]}
    r = api.post("/v1/batch", json=body)
    assert r.status_code == 200
    result = r.json()
    assert (result["received"], result["accepted"], result["quarantined"]) == (4, 1, 3)
    assert [(e["index"], e["pointer"], e["reason"]) for e in result["errors"]] == [
        (1, "/batch/1/event", "missing_required"),
        (2, "/batch/2", "invalid_type"),
        (3, "/batch/3/event", "missing_required"),
    ]
    assert count(api) == 1 and count(api, "quarantine") == 3


def test_single_event_that_is_quarantined_answers_400(api: Api) -> None:
    r = api.post("/v1/track", json={"messageId": "q1", "event": "Signed Up"})
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["code"] == "missing_identity"
    assert (body["quarantined"], body["errors"][0]["pointer"]) == (1, "/userId")
    assert count(api, "quarantine") == 1


def test_a_nul_is_quarantined_with_its_pointer_and_message_id(api: Api) -> None:
    r = api.post("/v1/track", json={**ev(1), "properties": {"a": "x\u0000"}})
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert (error["pointer"], error["messageId"]) == ("/properties/a", "m1")
    r = api.post("/v1/batch", json={"batch": [ev(2), {**ev(3), "context": {"p": "\u0000"}}]})
    assert r.json()["errors"][0]["pointer"] == "/batch/1/context/p"
    assert sorted(api.rows("SELECT detail, location FROM quarantine")) == [
        ("/batch/1/context/p: text may not contain NUL characters (\\u0000)", "/batch/1/context/p"),
        ("/properties/a: text may not contain NUL characters (\\u0000)", "/properties/a"),
    ]


def test_resend_is_2xx_and_stores_nothing_new(api: Api) -> None:
    body = {"batch": [ev(1), ev(2)]}
    assert api.post("/v1/batch", json=body).json() == {"success": True}
    assert api.post("/v1/batch", json={**body, "sentAt": "2026-01-01T00:00:00Z"}).json() == {
        "success": True
    }
    api.app.state.personify.extras[KEY].recent.clear()  # now the warehouse decides
    assert api.post("/v1/batch", json=body).json() == {"success": True}
    assert count(api) == 2 and count(api, "quarantine") == 0


def test_same_id_other_payload_is_kept_once_and_recorded(api: Api) -> None:
    api.post("/v1/batch", json={"batch": [ev(1)]})
    for _ in range(2):  # from the recent-id cache, then from the warehouse
        r = api.post("/v1/batch", json={"batch": [ev(1, properties={"n": 99})]})
        assert r.status_code == 200
        assert r.json()["errors"][0]["reason"] == "conflicting_duplicate"
        api.app.state.personify.extras[KEY].recent.clear()
    assert api.rows("SELECT properties FROM events") == [('{"n":1}',)]
    assert api.rows("SELECT reason FROM quarantine") == [("conflicting_duplicate",)]
    # within one request: the first wins
    r = api.post("/v1/batch", json={"batch": [ev(5), ev(5, properties={"n": 6}), ev(5)]})
    assert (r.json()["accepted"], r.json()["duplicates"], r.json()["quarantined"]) == (2, 1, 1)


def test_a_resend_as_other_bytes_is_a_duplicate_not_a_conflict(api: Api) -> None:
    """The audit's case: the same event with its keys reordered, with whitespace added, and sent
    to ``/v1/track`` after ``/v1/batch`` is a resend (accepted, nothing stored, nothing held)."""
    doc = {"type": "track", "messageId": "k1", "userId": "u1", "event": "E"}
    first = {**doc, "properties": {"a": 1, "b": 2}}
    assert api.post("/v1/batch", json={"batch": [first]}).json() == {"success": True}
    reordered = {**doc, "properties": {"b": 2, "a": 1}}
    assert api.post("/v1/batch", json={"batch": [reordered]}).json() == {"success": True}
    spaced = json.dumps({"batch": [first]}, indent=4).encode()
    assert api.post("/v1/batch", content=spaced).json() == {"success": True}
    r = api.post("/v1/track", content=json.dumps(first).encode())
    assert (r.status_code, r.json()) == (200, {"success": True})
    assert count(api) == 1 and count(api, "quarantine") == 0
    r = api.post("/v1/batch", json={"batch": [{**doc, "properties": {"a": 1, "b": 3}}]})
    assert r.json()["errors"][0]["reason"] == "conflicting_duplicate"


def test_a_resend_sent_at_once_and_re_stamped_is_a_duplicate(api: Api) -> None:
    """A server-side sender stamps timestamp = sentAt (it sends at once); its retry re-stamps
    sentAt and reorders keys: the first copy's own time cannot be told from the receive time,
    so the time does not tell the copies apart (the review's case)."""
    at = "2026-04-01T08:00:00Z"
    doc = {"type": "track", "messageId": "s1", "userId": "u1", "event": "E", "timestamp": at}
    first = {"batch": [{**doc, "properties": {"a": 1}}], "sentAt": at}
    assert api.post("/v1/batch", json=first).json() == {"success": True}
    retry = {"sentAt": "2026-04-01T08:00:30Z", "batch": [{"properties": {"a": 1}, **doc}]}
    assert api.post("/v1/batch", content=json.dumps(retry).encode()).json() == {"success": True}
    assert count(api) == 1 and count(api, "quarantine") == 0


def test_a_conflicting_duplicate_on_a_single_event_endpoint_answers_400(api: Api) -> None:
    """As every quarantined event there: the SDKs drop a 4xx (a retry could not succeed)."""
    assert api.post("/v1/track", json=ev(1)).status_code == 200
    r = api.post("/v1/track", json=ev(1, properties={"n": 2}))
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["code"] == "conflicting_duplicate"
    assert (body["accepted"], body["quarantined"], body["errors"][0]["pointer"]) == (
        0,
        1,
        "/messageId",
    )
    assert api.rows("SELECT reason FROM quarantine") == [("conflicting_duplicate",)]
    assert api.post("/v1/track", json=ev(1)).status_code == 200  # the resend still is a 200


def test_auth(api: Api) -> None:
    assert api.post("/v1/batch", auth=False, json={"batch": []}).status_code == 401
    wrong = base64.b64encode(b"nope:").decode()
    for header in (f"Basic {wrong}", "Basic !!!", "Bearer x"):
        r = api.post("/v1/batch", auth=False, headers={"authorization": header}, json={})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "unauthorized")
    r = api.post("/v1/batch", auth=False, json={"batch": [ev(1)], "writeKey": api.key})
    assert r.status_code == 200  # sendBeacon cannot set headers
    r = api.post("/v1/track", auth=False, json={**ev(2), "writeKey": api.key})
    assert r.status_code == 200


def test_malformed_bodies_are_400(api: Api) -> None:
    cases = [
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"batch": [', "invalid_json"),
        (b'{"batch": {"a": 1}}', "invalid_request"),
        (b'{"batch": [], "sentAt": "noon"}', "invalid_request"),
        (b"[]", "invalid_request"),
    ]
    for body, code in cases:
        r = api.post("/v1/batch", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body
    r = api.post("/v1/track", content=b'"just a string"')
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")
    assert count(api) == 0


def test_a_write_key_that_is_not_a_string_is_named(api: Api) -> None:
    for path, body in (("/v1/track", ev(1)), ("/v1/batch", {"batch": [ev(1)]})):
        r = api.post(path, json={**body, "writeKey": 5})
        assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_request")
        assert r.json()["error"]["message"].startswith("writeKey must be a string"), r.text
    r = api.post("/v1/track", content=b"[1]")
    assert r.json()["error"]["message"] == "the body must be a JSON object"
    assert count(api) == 0


def test_size_limits_are_413_before_reading_everything(api: Api) -> None:
    r = api.post("/v1/batch", content=b"x" * 600_000)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    async def chunks() -> Any:
        for _ in range(1000):  # 1 MB, no Content-Length: refused mid-stream
            yield b" " * 1024

    r = api.post("/v1/batch", content=chunks())
    assert r.status_code == 413
    r = api.post("/v1/track", json=ev(1, properties={"pad": "x" * 40_000}))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "event_too_large")
    big = ev(2, properties={"pad": "x" * 40_000})
    r = api.post("/v1/batch", json={"batch": [ev(1), big]})
    assert r.status_code == 200
    assert (r.json()["rejected"], r.json()["errors"][0]["outcome"]) == (1, "rejected")
    assert count(api) == 1 and count(api, "quarantine") == 0


def test_gzip_and_the_decompression_bomb_guard(api: Api) -> None:
    gz = {"content-encoding": "gzip"}
    body = json.dumps({"batch": [ev(i) for i in range(50)]}).encode()
    assert api.post("/v1/batch", content=gzip.compress(body), headers=gz).status_code == 200
    assert count(api) == 50
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    r = api.post("/v1/batch", content=bomb, headers=gz)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")
    r = api.post("/v1/batch", content=b"not gzip", headers=gz)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_gzip")
    r = api.post("/v1/batch", content=gzip.compress(body)[:-20], headers=gz)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_gzip")
    r = api.post("/v1/batch", content=body, headers={"content-encoding": "br"})
    assert r.status_code == 415


def test_rate_limit_answers_429_with_retry_after(project_dir: Path) -> None:
    for api in make(project_dir, "    rate_limit: 10\n    rate_burst: 20\n"):
        assert api.post("/v1/batch", json={"batch": [ev(i) for i in range(15)]}).status_code == 200
        r = api.post("/v1/batch", json={"batch": [ev(i) for i in range(15, 30)]})
        assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert count(api) == 15


def test_store_unavailable_is_503_never_2xx(api: Api) -> None:
    assert api.post("/v1/batch", json={"batch": [ev(1)]}).status_code == 200
    api.session.warehouse.close()
    r = api.post("/v1/batch", json={"batch": [ev(2)]})
    assert (r.status_code, r.json()["error"]["code"]) == (503, "store_unavailable")
    assert r.headers["retry-after"] == "1"


def test_plan_enforce_quarantines_then_replay_after_the_fix(api: Api) -> None:
    added = {"type": "track", "event": "Product Added", "anonymousId": "a"}
    body = {"batch": [{**added, "messageId": "p1", "properties": {"product_id": "sku-1"}}]}
    r = api.post("/v1/batch", json=body)
    assert r.json()["errors"][0]["reason"] == "tracking_plan_violation"
    assert r.json()["errors"][0]["pointer"] == "/batch/0/properties/cart_id"
    project = api.session.project
    plan = project.root / "tracking-plan" / "Product Added.json"
    schema = json.loads(plan.read_text())
    schema["required"] = ["product_id"]  # the fix: cart_id is optional after all
    plan.write_text(json.dumps(schema))
    first = replay(api.session.warehouse, project)
    assert (first.stored, first.still_quarantined) == (1, [])
    second = replay(api.session.warehouse, project)
    assert (second.looked_at, second.stored) == (0, 0)
    assert count(api) == 1 and count(api, "quarantine") == 0


def test_warn_mode_stores_and_flags(project_dir: Path) -> None:
    for api in make(project_dir, "    tracking_plan_mode: warn\n"):
        body = {"batch": [ev(1, event="Product Added", properties={"price": -3})]}
        assert api.post("/v1/batch", json=body).json() == {"success": True}
        flags = json.loads(api.rows("SELECT plan_violations FROM events")[0][0])
        assert {f["pointer"] for f in flags} == {
            "/properties/cart_id",
            "/properties/product_id",
            "/properties/price",
        }


def test_cors_preflight_collector_and_openapi(api: Api) -> None:
    r = api.post("/v1/batch", method="OPTIONS", auth=False)
    assert r.status_code == 204
    assert "Authorization" in r.headers["access-control-allow-headers"]
    r = api.post("/collect.js", method="GET", auth=False)
    assert r.status_code == 200 and "dataLayer" in r.text
    etag = r.headers["etag"]
    again = api.post("/collect.js", method="GET", auth=False, headers={"if-none-match": etag})
    assert again.status_code == 304
    doc = api.post("/openapi.json", method="GET", auth=False).json()
    assert {f"/v1/{k}" for k in ("batch", "track", "alias")} <= set(doc["paths"])
    assert doc["paths"]["/v1/batch"]["post"]["security"] == [{"writeKey": []}]
    assert doc["components"]["securitySchemes"]["writeKey"]["scheme"] == "basic"


def test_every_plan_violation_is_in_the_answer_and_the_quarantine(api: Api) -> None:
    added = {"type": "track", "event": "Product Added", "anonymousId": "a", "messageId": "p1"}
    r = api.post("/v1/track", json={**added, "properties": {"product_id": "s", "price": "abc"}})
    assert r.status_code == 400
    error = r.json()["errors"][0]
    message = (
        "tracking plan: /properties/cart_id is required; "
        '/properties/price must match the schema\'s type ("number")'
    )
    assert (error["reason"], error["message"]) == ("tracking_plan_violation", message)
    assert error["pointer"] == "/properties/cart_id"
    assert error["violations"] == [
        {"pointer": "/properties/cart_id", "message": "is required"},
        {"pointer": "/properties/price", "message": 'must match the schema\'s type ("number")'},
    ]
    assert api.rows("SELECT detail FROM quarantine") == [(message,)]
    batch = {"batch": [ev(1), {**added, "properties": {"product_id": "s", "price": -1}}]}
    error = api.post("/v1/batch", json=batch).json()["errors"][0]
    assert error["pointer"] == "/batch/1/properties/cart_id"
    assert [v["pointer"] for v in error["violations"]] == [
        "/batch/1/properties/cart_id",
        "/batch/1/properties/price",
    ]
    details = [d for (d,) in api.rows("SELECT detail FROM quarantine") if d.startswith("/batch")]
    assert details == [
        "/batch/1: tracking plan: /properties/cart_id is required; "
        "/properties/price breaks the schema's minimum rule (0)"
    ]
    assert "violations" not in api.post("/v1/batch", json={"batch": [{}]}).json()["errors"][0]


def test_a_broken_plan_file_quarantines_its_events_and_the_rest_flows(project_dir: Path) -> None:
    plan = project_dir / "tracking-plan" / "Signed Up.json"
    plan.write_text("{not json")
    for api in make(project_dir):
        viewed = ev(2, event="Video Played")  # no schema
        added = ev(3, event="Product Added", properties={"cart_id": "c", "product_id": "p"})
        r = api.post("/v1/batch", json={"batch": [ev(1), viewed, added]})
        assert r.status_code == 200
        body = r.json()
        assert (body["accepted"], body["quarantined"]) == (2, 1)
        error = body["errors"][0]
        assert (error["index"], error["reason"]) == (0, "tracking_plan_unreadable")
        assert "tracking-plan/Signed Up.json: not JSON at line 1, column 2" in error["message"]
        bad = ev(4, event="Product Added", properties={"product_id": "p"})  # checked as usual
        error = api.post("/v1/track", json=bad).json()["errors"][0]
        assert error["reason"] == "tracking_plan_violation"
        assert api.post("/v1/track", json=ev(5, event="Video Played")).status_code == 200
        assert api.post("/v1/track", json=ev(6)).status_code == 400  # never stored unchecked
        health = api.post("/healthz", method="GET", auth=False)
        assert health.status_code == 200  # the API serves …
        assert health.json()["status"] == "degraded"  # … but says what needs fixing
        [problem] = health.json()["problems"]
        assert problem.startswith(
            "source web: tracking plan: tracking-plan/Signed Up.json: not JSON at line 1, "
            "column 2: Expecting property name enclosed in double quotes; its events are "
            "quarantined"
        )
        reasons = api.rows("SELECT reason, count(*) FROM quarantine GROUP BY reason ORDER BY 1")
        assert reasons == [("tracking_plan_unreadable", 2), ("tracking_plan_violation", 1)]
        plan.write_text('{"type": "object"}')  # the fix, then a replay: nothing was lost
        report = replay(
            api.session.warehouse, api.session.project, reason="tracking_plan_unreadable"
        )
        assert (report.stored, report.still_quarantined) == (2, [])
        assert {m for (m,) in api.rows("SELECT message_id FROM events")} == {
            "m1",
            "m2",
            "m3",
            "m5",
            "m6",
        }


def test_a_far_future_timestamp_is_quarantined_and_replayed_once_tolerated(
    project_dir: Path,
) -> None:
    far = ev(1, timestamp="2099-01-01T00:00:00Z")
    for api in make(project_dir):
        r = api.post("/v1/batch", json={"batch": [far, ev(2)]})
        body = r.json()
        assert (body["accepted"], body["quarantined"]) == (1, 1)
        error = body["errors"][0]
        assert (error["reason"], error["pointer"]) == ("future_timestamp", "/batch/0/timestamp")
        assert api.rows("SELECT reason FROM quarantine") == [("future_timestamp",)]
        still = replay(api.session.warehouse, api.session.project)
        assert [r for _, r, _ in still.still_quarantined] == ["future_timestamp"]
    for api in make(project_dir, "    future_tolerance: 36500d\n"):  # the user decides so
        report = replay(api.session.warehouse, api.session.project)
        assert (report.stored, report.still_quarantined) == (1, [])
        assert count(api) == 2 and count(api, "quarantine") == 0
