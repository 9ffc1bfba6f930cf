"""Tracking storage on every backend: insert once, tell resends from conflicts, quarantine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from personify.ingest.tracking.normalize import Inputs, Problem, Row, normalize
from personify.ingest.tracking.store import CONFLICT, DUPLICATE, NEW, events_table, store
from personify.warehouse import Warehouse


def inputs(second: int = 0) -> Inputs:
    return Inputs(
        source="web", received_at=datetime(2026, 4, 1, 8, 0, second, tzinfo=UTC), ip="10.1.1.1"
    )


def row(i: int, at: int = 0, **props: object) -> Row:
    doc = {
        "type": "track",
        "event": "Signed Up",
        "messageId": f"c-{i}",
        "userId": f"u-{i}",
        "timestamp": "2026-04-01T07:59:00Z",
        "properties": {"n": i, **props},
        "context": {"locale": "fr-FR", "nested": {"a": [1, 2, None]}},
    }
    result = normalize(json.dumps(doc).encode(), 0, inputs(at))
    assert not isinstance(result, Problem)
    return result


def test_insert_once_duplicates_and_conflicts(warehouse: Warehouse) -> None:
    assert store(warehouse, [row(1), row(2), row(2)]) == [NEW, NEW, DUPLICATE]
    later = [row(1, at=5), row(2, at=5, extra=True), row(3, at=5)]  # another request
    status = store(warehouse, later, locations=["a", "b", "c"])
    assert status == [DUPLICATE, CONFLICT, NEW]
    assert warehouse.scalar("SELECT count(*) FROM events") == 3
    stored = warehouse.fetch(
        "SELECT message_id, properties, context, timestamp, payload_hash FROM events "
        "ORDER BY message_id"
    )
    assert [r[0] for r in stored] == ["c-1", "c-2", "c-3"]
    props = stored[1][1]
    assert (json.loads(props) if isinstance(props, str) else props) == {"n": 2}
    ctx = stored[0][2]
    assert (json.loads(ctx) if isinstance(ctx, str) else ctx)["ip"] == "10.1.1.1"
    assert stored[0][3] == datetime(2026, 4, 1, 7, 59, tzinfo=UTC)
    assert isinstance(stored[0][4], int)
    held = warehouse.fetch("SELECT reason, location FROM quarantine")
    assert held == [("conflicting_duplicate", "b")]
    # the same conflict again is recorded once
    assert store(warehouse, [row(2, at=9, extra=True)], locations=["b"]) == [CONFLICT]
    assert warehouse.scalar("SELECT count(*) FROM quarantine") == 1


def test_a_table_built_by_the_caller_stores_the_same(warehouse: Warehouse) -> None:
    """The group writer builds each request's Arrow table on the event loop and hands the
    concatenation to ``store``: the same statuses and rows as ``store`` building it, also when a
    ``messageId`` repeats inside the group (only the first copy's row is loaded)."""
    first = [row(1), row(2), row(2), row(3, extra=True), row(3)]
    assert store(warehouse, first, table=events_table(first), locations=list("abcde")) == [
        NEW,
        NEW,
        DUPLICATE,
        NEW,
        CONFLICT,
    ]
    assert store(warehouse, [row(4)], table=events_table([row(4)])) == [NEW]
    stored = warehouse.fetch("SELECT message_id, properties FROM events ORDER BY message_id")
    assert [m for m, _ in stored] == ["c-1", "c-2", "c-3", "c-4"]
    props = {m: json.loads(p) if isinstance(p, str) else p for m, p in stored}
    assert props["c-3"] == {"n": 3, "extra": True}  # the first copy, not the conflicting one
    assert warehouse.fetch("SELECT location FROM quarantine") == [("e",)]


def test_a_resend_at_the_same_instant_is_a_duplicate(warehouse: Warehouse) -> None:
    """A pinned clock (``--now``, an ESP's retry recorded at the same instant) gives a resend
    the receive time of the stored copy: it is still told apart from what was just inserted."""
    assert store(warehouse, [row(1), row(2)]) == [NEW, NEW]
    assert store(warehouse, [row(1), row(2)]) == [DUPLICATE, DUPLICATE]
    # a partial resend at the same instant: the counts are right (which look-alike is called
    # new cannot be told from the stored rows; with a running clock it always can)
    mixed = store(warehouse, [row(1), row(3), row(2)])
    assert sorted(mixed) == sorted([DUPLICATE, NEW, DUPLICATE])
    assert warehouse.scalar("SELECT count(*) FROM events") == 3
    assert store(warehouse, [row(1, at=7), row(4, at=7)]) == [DUPLICATE, NEW]  # clock moved


def _raw_row(raw: bytes, ins: Inputs) -> Row:
    result = normalize(raw, 0, ins)
    assert not isinstance(result, Problem), result
    return result


def test_the_same_event_as_other_bytes_is_a_duplicate(warehouse: Warehouse) -> None:
    """The payload hash is of the bytes as sent: a resend with its keys in another order, other
    whitespace, to ``/v1/track`` after ``/v1/batch``, from another network or with another batch
    ``sentAt`` hashes differently — the stored event, compared by content, tells it is the same
    (from the warehouse, and within one call)."""
    doc = {
        "type": "track",
        "messageId": "k1",
        "userId": "u1",
        "event": "E",
        "timestamp": "2026-04-01T07:59:00Z",
        "properties": {"a": 1, "b": 2},
    }
    sent = datetime(2026, 4, 1, 8, 0, 0, tzinfo=UTC)
    first = Inputs(source="web", received_at=sent, ip="10.1.1.1", sent_at=sent)
    assert store(warehouse, [_raw_row(json.dumps(doc).encode(), first)]) == [NEW]
    later = datetime(2026, 4, 1, 9, 0, 0, tzinfo=UTC)
    again = Inputs(source="web", received_at=later, ip="10.2.2.2")
    reordered = {**doc, "properties": {"b": 2, "a": 1}}
    spaced = json.dumps(doc, indent=2).encode()
    single = {k: v for k, v in doc.items() if k != "type"}
    track = Inputs(source="web", received_at=later, ip="10.1.1.1", kind="track")
    resent = Inputs(source="web", received_at=later, sent_at=later + timedelta(seconds=3))
    resends = [
        _raw_row(json.dumps(reordered).encode(), again),
        _raw_row(spaced, again),
        _raw_row(json.dumps(single, separators=(",", ":")).encode(), track),
        _raw_row(json.dumps(reordered).encode(), resent),
    ]
    for resend in resends:
        assert store(warehouse, [resend], locations=["x"]) == [DUPLICATE], resend
    other = {**doc, "properties": {"a": 1, "b": 3}}
    moved = {**doc, "timestamp": "2026-04-01T07:58:00Z"}
    one = {**doc, "properties": {"a": True, "b": 2}}  # true is not 1
    for changed in (other, moved, one):
        assert store(warehouse, [_raw_row(json.dumps(changed).encode(), again)]) == [CONFLICT]
    assert warehouse.scalar("SELECT count(*) FROM events") == 1
    assert warehouse.scalar("SELECT count(*) FROM quarantine") == 3
    # within one call: the first copy, then the same event as other bytes, then another event
    doc2 = {**doc, "messageId": "k2"}
    batch = [
        _raw_row(json.dumps(doc2).encode(), again),
        _raw_row(json.dumps({**doc2, "properties": {"b": 2, "a": 1}}).encode(), again),
        _raw_row(json.dumps({**doc2, "event": "F"}).encode(), again),
    ]
    assert store(warehouse, batch, locations=["a", "b", "c"]) == [NEW, DUPLICATE, CONFLICT]


def test_recent_ids_preload_the_latest_stored_events(warehouse: Warehouse) -> None:
    """A restarted server answers resends of the latest events from memory: the newest ids of
    the tracking sources, oldest forgotten first, and ids added meanwhile rank newer."""
    from personify.ingest.tracking.limits import RecentIds

    for second in range(4):
        store(warehouse, [row(10 + second, at=second)])
    recent = RecentIds(capacity=3)
    recent.add([("live", 7)])
    assert recent.preload_from(warehouse, ["web"]) == 3
    assert not recent.lookup("c-10")[0]  # the oldest did not fit
    known, digest = recent.lookup("c-13")
    stored = warehouse.scalar("SELECT payload_hash FROM events WHERE message_id = 'c-13'")
    assert known and digest == stored
    assert recent.duplicates(["c-13", "c-13", "c-10"], [stored, stored + 1, 0]) == [
        True,
        False,  # the same id, another payload: for the store to decide (a conflict)
        False,
    ]
    assert recent.lookup("live") == (True, 7)  # kept: newer than anything preloaded
    assert len(recent) >= 3 and recent.lookup("c-12")[0]
    assert RecentIds().preload_from(warehouse, ["other"]) == 0
