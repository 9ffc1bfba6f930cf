"""Segment spec rules for one event: required fields, clock skew, payload hash, limits, plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from personify.ingest.tracking.normalize import (
    EVENT_COLUMNS,
    Inputs,
    Problem,
    micros,
    normalize,
    pointer_of,
)
from personify.ingest.tracking.plan import load_plan

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
INPUTS = Inputs(source="web", received_at=RECEIVED)


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "track",
        "event": "Signed Up",
        "messageId": "m-1",
        "anonymousId": "anon-1",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def run(doc: Any, inputs: Inputs = INPUTS) -> dict[str, Any] | Problem:
    result = normalize(json.dumps(doc).encode(), 0, inputs)
    return result if isinstance(result, Problem) else dict(zip(EVENT_COLUMNS, result, strict=True))


def row(doc: Any, inputs: Inputs = INPUTS) -> dict[str, Any]:
    result = run(doc, inputs)
    assert not isinstance(result, Problem), result
    return result


def problem(doc: Any, inputs: Inputs = INPUTS) -> Problem:
    result = run(doc, inputs)
    assert isinstance(result, Problem), result
    return result


def at(value: datetime) -> int:
    return micros(value)


def test_clock_skew_is_corrected_from_sent_at() -> None:
    # the device clock is 1 hour fast: it says it happened at 13:00:00 and was sent at 13:00:05
    r = row(event(timestamp="2026-03-01T13:00:00Z", sentAt="2026-03-01T13:00:05Z"))
    assert r["timestamp"] == at(RECEIVED - timedelta(seconds=5))
    assert r["received_at"] == at(RECEIVED)
    assert r["sent_at"] == at(datetime(2026, 3, 1, 13, 0, 5, tzinfo=UTC))


def test_original_timestamp_wins_and_batch_sent_at_applies() -> None:
    inputs = Inputs(source="web", received_at=RECEIVED, sent_at=RECEIVED + timedelta(minutes=2))
    r = row(event(originalTimestamp="2026-03-01T12:01:00+00:00", timestamp="1999-01-01"), inputs)
    assert r["timestamp"] == at(RECEIVED - timedelta(minutes=1))


def test_timestamp_without_sent_at_is_kept_and_none_means_received() -> None:
    assert row(event(timestamp="2020-05-05T05:05:05"))["timestamp"] == at(
        datetime(2020, 5, 5, 5, 5, 5, tzinfo=UTC)
    )
    assert row(event())["timestamp"] == at(RECEIVED)


def test_an_event_never_happens_after_it_was_received() -> None:
    # sent "before" it happened (the clock jumped): clamp to receivedAt
    r = row(event(timestamp="2026-03-01T12:00:10Z", sentAt="2026-03-01T12:00:00Z"))
    assert r["timestamp"] == at(RECEIVED)


@pytest.mark.parametrize(
    ("fields", "reason", "pointer"),
    [
        ({"messageId": None}, "missing_required", "/messageId"),
        ({"event": None}, "missing_required", "/event"),
        ({"event": ""}, "missing_required", "/event"),
        ({"anonymousId": None}, "missing_identity", "/userId"),
        ({"anonymousId": "", "userId": ""}, "missing_identity", "/userId"),
        ({"type": "group"}, "missing_required", "/groupId"),
        ({"type": "alias"}, "missing_required", "/userId"),
        ({"type": "alias", "userId": "u1"}, "missing_required", "/previousId"),
        ({"type": "purchase"}, "invalid_type", "/type"),
        ({"type": None}, "missing_required", "/type"),
        ({"userId": ["x"]}, "invalid_type", "/userId"),
        ({"properties": "red"}, "invalid_type", "/properties"),
        ({"timestamp": "yesterday"}, "invalid_timestamp", "/timestamp"),
        ({"timestamp": 1700000000}, "invalid_type", "/timestamp"),
        ({"sentAt": "soon", "timestamp": "2026-01-01T00:00:00Z"}, "invalid_timestamp", "/sentAt"),
        ({"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T00:00:00Z"}, None, None),
    ],
)
def test_required_fields_and_types(
    fields: dict[str, Any], reason: str | None, pointer: str
) -> None:
    if reason is None:  # out of range once corrected
        assert problem(event(**fields)).reason == "invalid_timestamp"
        return
    p = problem(event(**fields))
    assert (p.reason, p.pointer) == (reason, pointer)
    assert not p.rejected


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "identify", "messageId": "i", "userId": "u", "traits": {"email": "a@b.co"}},
        {"type": "page", "messageId": "p", "anonymousId": "a", "name": "Home"},
        {"type": "screen", "messageId": "s", "userId": 42},
        {"type": "group", "messageId": "g", "userId": "u", "groupId": 7},
        {"type": "alias", "messageId": "al", "userId": "u", "previousId": "anon"},
    ],
)
def test_every_type_stores(doc: dict[str, Any]) -> None:
    r = row(doc)
    assert r["type"] == doc["type"] and r["message_id"] == doc["messageId"]
    assert r["event"] is None


def test_numbers_as_ids_are_text_and_identify_traits_fall_back_to_context() -> None:
    r = row({"type": "identify", "messageId": 5, "userId": 42, "context": {"traits": {"a": 1}}})
    assert (r["message_id"], r["user_id"], json.loads(r["traits"])) == ("5", "42", {"a": 1})


def test_the_endpoint_type_is_imposed_and_context_merges() -> None:
    inputs = Inputs(
        source="web",
        received_at=RECEIVED,
        kind="page",
        context={"locale": "fr-FR", "ip": "1.1.1.1"},
        ip="9.9.9.9",
    )
    r = row(event(type="track", name="Home", context={"locale": "de-DE"}), inputs)
    assert r["type"] == "page" and r["name"] == "Home"
    assert json.loads(r["context"]) == {"locale": "de-DE", "ip": "1.1.1.1"}
    r = row(event(), Inputs(source="web", received_at=RECEIVED, ip="9.9.9.9"))
    assert json.loads(r["context"]) == {"ip": "9.9.9.9"}


def test_payload_hash_tells_a_resend_from_another_event() -> None:
    a = row(event(properties={"x": 1, "y": 2}, sentAt="2026-03-01T12:00:00Z"))
    resend = row(event(properties={"y": 2, "x": 1}, sentAt="2026-03-01T12:00:09Z"))
    other = row(event(properties={"x": 1, "y": 3}))
    assert a["payload_hash"] == resend["payload_hash"] != other["payload_hash"]


def test_limits_and_bad_bytes() -> None:
    big = json.dumps(event(properties={"pad": "x" * 33_000})).encode()
    p = normalize(big, 3, INPUTS)
    assert isinstance(p, Problem) and p.reason == "event_too_large" and p.rejected
    nul = normalize(json.dumps(event(event="a\u0000b")).encode(), 0, INPUTS)
    assert isinstance(nul, Problem) and nul.reason == "invalid_value"
    for raw in (b'{"type": "track", "event": "\\ud800"}', b"{", b"[" * 3000 + b"]" * 3000):
        p = normalize(raw, 0, INPUTS)
        assert isinstance(p, Problem) and p.reason in {"malformed_json", "invalid_type"}
    p = normalize(b"[1, 2]", 0, INPUTS)
    assert isinstance(p, Problem) and (p.reason, p.pointer) == ("invalid_type", "")


def test_a_nul_is_pointed_at_and_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    # a Windows path: a backslash, then the letters u0000 (JSON text "C:\\\\u0000dir")
    stored = row(event(properties={"path": "C:\\u0000dir"}))
    assert json.loads(stored["properties"]) == {"path": "C:\\u0000dir"}
    for doc, pointer in [
        (event(properties={"a": "x\u0000"}), "/properties/a"),
        (event(properties={"l": [1, {"a/b": "\u0000"}]}), "/properties/l/1/a~1b"),
        (event(properties={"k\u0000": 1}), "/properties"),  # a key: its object
        (event(event="a\u0000b"), "/event"),
    ]:
        p = problem(doc)
        assert (p.reason, p.pointer, p.message_id) == ("invalid_value", pointer, "m-1")
    assert problem(event(messageId="m\u0000")).message_id is None


def test_pointer_of_msgspec_errors() -> None:
    class S(msgspec.Struct):
        a: dict[str, list[int]]

    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.json.decode(b'{"a": {"k": [1, "x"]}}', type=S)
    assert pointer_of(e.value) == "/a"  # msgspec does not name dict keys

    class T(msgspec.Struct):
        b: list[list[int]]

    with pytest.raises(msgspec.ValidationError) as e:
        msgspec.json.decode(b'{"b": [[1], [2, "x"]]}', type=T)
    assert pointer_of(e.value) == "/b/1/1"


def test_tracking_plan_enforce_and_warn(tmp_path: Path) -> None:
    (tmp_path / "Signed Up.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"plan": {"enum": ["free", "pro"]}},
                "required": ["plan"],
            }
        )
    )
    plan = load_plan(tmp_path)
    enforce = Inputs(source="web", received_at=RECEIVED, plan=plan)
    warn = Inputs(source="web", received_at=RECEIVED, plan=plan, warn_only=True)
    p = problem(event(properties={"plan": "gold"}), enforce)
    assert (p.reason, p.pointer) == ("tracking_plan_violation", "/properties/plan")
    stored = row(event(properties={"plan": "gold"}), warn)
    assert json.loads(stored["plan_violations"])[0]["pointer"] == "/properties/plan"
    assert row(event(properties={"plan": "pro"}), enforce)["plan_violations"] is None
    assert row(event(event="Other"), enforce)["event"] == "Other"  # no schema: passes


def _product_added(folder: Path) -> None:
    (folder / "Product Added.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"cart_id": {"type": "string"}, "price": {"type": "number"}},
                "required": ["cart_id", "price"],
            }
        )
    )


def test_every_plan_violation_is_listed_with_its_pointer(tmp_path: Path) -> None:
    _product_added(tmp_path)
    enforce = Inputs(source="web", received_at=RECEIVED, plan=load_plan(tmp_path))
    p = problem(event(event="Product Added", properties={"price": "abc"}), enforce)
    assert p.message == (
        "tracking plan: /properties/cart_id is required; "
        '/properties/price must match the schema\'s type ("number")'
    )
    assert p.pointer == "/properties/cart_id"
    assert [(v.pointer, v.message) for v in p.violations] == [
        ("/properties/cart_id", "is required"),
        ("/properties/price", 'must match the schema\'s type ("number")'),
    ]


def test_an_unreadable_schema_quarantines_its_events_only(tmp_path: Path) -> None:
    _product_added(tmp_path)
    (tmp_path / "Signed Up.json").write_text("{not json")
    plan = load_plan(tmp_path)
    enforce = Inputs(source="web", received_at=RECEIVED, plan=plan)
    p = problem(event(properties={"plan": "pro"}), enforce)  # never accepted unchecked
    assert (p.reason, p.pointer) == ("tracking_plan_unreadable", "")
    assert p.message.startswith(
        f"tracking plan: {tmp_path.name}/Signed Up.json: not JSON at line 1, column 2: "
        "Expecting property name enclosed in double quotes; its events are quarantined"
    )
    assert "personify quarantine replay" in p.message
    assert row(event(event="Product Viewed"), enforce)["event"] == "Product Viewed"  # no schema
    added = event(event="Product Added", properties={"cart_id": "c", "price": 1})
    assert row(added, enforce)["plan_violations"] is None  # the readable files check as usual
    assert problem(event(event="Product Added"), enforce).reason == "tracking_plan_violation"
    warn = Inputs(source="web", received_at=RECEIVED, plan=plan, warn_only=True)
    noted = json.loads(row(event(), warn)["plan_violations"])  # warn: stored, said unchecked
    assert noted[0]["pointer"] == ""
    assert noted[0]["message"].startswith(f"not checked: {tmp_path.name}/Signed Up.json: not JSON")


def test_a_timestamp_far_ahead_without_sent_at_is_quarantined() -> None:
    """A device clock years ahead, no ``sentAt`` to correct it by: not stored (it would make
    the customer "seen" for years to come) but quarantined, saying how far ahead."""
    ahead = run(event(timestamp="2029-03-01T12:00:00Z"))
    assert isinstance(ahead, Problem) and not ahead.rejected
    assert (ahead.reason, ahead.pointer) == ("future_timestamp", "/timestamp")
    assert ahead.message_id == "m-1"
    assert ahead.message.startswith("timestamp is 1096 days after the event was received")
    assert "future_tolerance 1d" in ahead.message
    late = run(event(originalTimestamp="2026-03-03T12:00:00Z"))
    assert isinstance(late, Problem) and late.pointer == "/originalTimestamp"
    # within the tolerance it is kept as sent; a source may narrow (or widen) it
    assert row(event(timestamp="2026-03-01T13:00:00Z"))["timestamp"] == at(
        RECEIVED + timedelta(hours=1)
    )
    narrow = Inputs(source="web", received_at=RECEIVED, future_tolerance=600)
    hour = run(event(timestamp="2026-03-01T13:00:00Z"), narrow)
    assert isinstance(hour, Problem) and hour.reason == "future_timestamp"
    assert "1 hour after" in hour.message and "future_tolerance 10m" in hour.message
    # with a sentAt the skew is corrected instead (the difference is right)
    fixed = row(event(timestamp="2029-03-01T12:00:00Z", sentAt="2029-03-01T12:00:01Z"))
    assert fixed["timestamp"] == at(RECEIVED - timedelta(seconds=1))
