"""A bus message a worker can never store does not come back for ever: after
``MAX_STORE_DELIVERIES`` deliveries it goes to the quarantine (and the batch it came in is stored
message by message); one that cannot be read goes there at once. Real NATS JetStream (a stream
of the test's own); the worker's store is a recording stand-in that refuses one message."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.cli import project_on
from tests.e2e.test_scale_out import NATS, stream  # noqa: F401  (the fixture)
from tests.unit.realtime.test_bus_acks import consumer_state, until

from personify.config import load_project
from personify.ingest.tracking.normalize import EPOCH, EVENT_COLUMNS, Inputs, normalize
from personify.ingest.tracking.replay import entries, replay
from personify.ingest.tracking.store import store
from personify.realtime.bus import (
    ALIASES_HEADER,
    MAX_STORE_DELIVERIES,
    Consumer,
    Publisher,
    decode,
    parse_bus_url,
)
from personify.session import Session


class Store:
    """Keeps what it is given; refuses every batch holding the event ``poison``."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.quarantine: list[tuple[Any, ...]] = []
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(
        self, rows: list[tuple[Any, ...]], held: list[tuple[Any, ...]], again: list[bool]
    ) -> None:
        with self.lock:
            if any(r[0] == "poison" for r in rows):
                self.refused += 1
                raise RuntimeError("this row cannot be stored")
            self.events += [str(r[0]) for r in rows]
            self.quarantine += held


def _settled(settings: Any, durable: str = "workers") -> bool:
    """Nothing waiting on the consumer, nothing delivered and unacked."""
    state = consumer_state(settings, durable)
    return state["pending"] == 0 and state["ack_pending"] == 0


def event(message_id: str) -> tuple[Any, ...]:
    """An events row as the ingest process publishes it (message_id first, source ninth)."""
    raw = {"type": "track", "event": "Viewed", "anonymousId": "a1", "messageId": message_id}
    row = normalize(json.dumps(raw).encode(), 0, Inputs(source="web", received_at=EPOCH))
    assert isinstance(row, tuple)
    return row


def test_a_message_that_cannot_be_stored_is_quarantined_and_its_batch_goes_on(
    stream: str,  # noqa: F811
) -> None:
    settings = parse_bus_url(f"{NATS}?stream={stream}&ack_wait=1", "t")
    publisher = Publisher(settings)
    publisher.publish([event("e1"), event("poison"), event("e2")]).result(10)
    publisher._loop.run(publisher._js.publish(settings.subject, b"\xc1"))  # not msgpack
    store = Store()
    consumer = Consumer(settings, store)
    try:
        # the unreadable one at once; the batch fails MAX_STORE_DELIVERIES times, then its
        # messages go one by one: e1 and e2 stored, poison quarantined, everything acked
        assert until(lambda: len(store.quarantine) == 2 and sorted(store.events) == ["e1", "e2"])
        assert until(lambda: _settled(settings))
        assert store.refused >= MAX_STORE_DELIVERIES
        reasons = {q[3]: q for q in store.quarantine}
        assert set(reasons) == {"undecodable", "unstorable"}
        poison = reasons["unstorable"]
        assert poison[1] == "web" and json.loads(poison[5])["messageId"] == "poison"
        assert f"{MAX_STORE_DELIVERIES} time(s)" in poison[4]
        assert reasons["undecodable"][5] == "c1" and consumer.quarantined == 2
    finally:
        consumer.close()
        publisher.close()


def test_a_webhook_delivery_that_cannot_be_stored_is_quarantined(stream: str) -> None:  # noqa: F811
    """A delivery naming a source the worker's project lacks (or any that keeps failing)."""
    settings = parse_bus_url(f"{NATS}?stream={stream}&ack_wait=1", "t")
    publisher = Publisher(settings)
    publisher.publish_webhook("shop", "d-1", None, b'{"id": 7}').result(10)
    store = Store()
    tries: list[int] = []

    def hook(message: tuple[Any, ...]) -> None:
        tries.append(1)
        raise RuntimeError("no such webhook source")

    consumer = Consumer(settings, store, handle_webhook=hook)
    try:
        assert until(lambda: len(store.quarantine) == 1)
        (row,) = store.quarantine
        assert (row[1], row[3], row[5]) == ("shop", "unstorable", '{"id": 7}')
        assert len(tries) == MAX_STORE_DELIVERIES
        assert until(lambda: _settled(settings, "workers_webhooks"))
    finally:
        consumer.close()
        publisher.close()


def test_an_unstorable_event_is_replayed_once_the_cause_is_fixed(
    tmp_path: Path,
    stream: str,  # noqa: F811
) -> None:
    """The quarantined row keeps the event as a tracking payload: ``quarantine replay`` stores
    it exactly as the worker would have (its times skew-corrected the same way, its parts
    intact), once however often it is replayed. Real NATS, a real DuckDB warehouse; the
    worker's store refuses the event until the "fix"."""
    settings = parse_bus_url(f"{NATS}?stream={stream}&ack_wait=1", "t")
    session = Session(load_project(project_on(tmp_path / "p")))
    wh = session.warehouse
    received = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    inputs = Inputs(source="web", received_at=received, context={"library": {"name": "js"}})
    raw = {
        "type": "track",
        "event": "Wished",
        "messageId": "poison",
        "userId": "u-1",
        "timestamp": "2030-01-01T00:00:00Z",  # a clock years ahead, corrected by sentAt
        "sentAt": "2030-01-01T00:00:05Z",
        "properties": {"sku": "s-1", "price": 12.5, "tags": ["a", "b"]},
        "context": {"page": {"path": "/p"}},
    }
    poison = normalize(json.dumps(raw).encode(), 0, inputs)
    assert isinstance(poison, tuple)
    broken = threading.Event()
    broken.set()

    def handle(rows: list[tuple[Any, ...]], held: list[tuple[Any, ...]], again: list[bool]) -> None:
        if broken.is_set() and any(r[0] == "poison" for r in rows):
            raise RuntimeError("this row cannot be stored")
        store(wh, rows, held)

    publisher = Publisher(settings)
    publisher.publish([poison]).result(10)
    consumer = Consumer(settings, handle)
    try:
        assert until(lambda: consumer.quarantined == 1)
    finally:
        consumer.close()
        publisher.close()
    try:
        (entry,) = entries(wh)
        assert (entry.source, entry.reason, entry.received_at) == ("web", "unstorable", received)
        assert json.loads(entry.payload or "")["messageId"] == "poison"
        broken.clear()  # the fix
        first = replay(wh, session.project)
        assert (first.stored, first.still_quarantined, first.skipped) == (1, [], [])
        second = replay(wh, session.project)
        assert (second.looked_at, second.stored) == (0, 0)
        columns = ", ".join(EVENT_COLUMNS[:15])
        (stored,) = wh.fetch(f"SELECT {columns} FROM events")
        expected = dict(zip(EVENT_COLUMNS, poison, strict=False))
        got = dict(zip(EVENT_COLUMNS, stored, strict=False))
        for name in ("timestamp", "received_at", "sent_at"):
            assert got[name] == EPOCH + timedelta(microseconds=expected[name]), name
        for name in ("properties", "context", "traits"):
            assert _json(got[name]) == _json(expected[name]), name
        for name in ("message_id", "type", "event", "anonymous_id", "user_id", "source"):
            assert got[name] == expected[name], name
        assert wh.fetch("SELECT count(*) FROM quarantine") == [(0,)]
    finally:
        session.close()


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_a_webhook_delivery_keeps_four_fields_and_its_aliases_ride_in_a_header(
    stream: str,  # noqa: F811
) -> None:
    """A worker of an earlier version unpacks exactly ``(source, delivery_id, signed_at,
    body)``: a fifth field (a Shopify delivery's webhook id) failed every Shopify delivery there
    until it was quarantined, during a rolling upgrade. The aliases go in a header; this
    version's worker hands them to its handler as a fifth field."""
    settings = parse_bus_url(f"{NATS}?stream={stream}&ack_wait=1", "t")
    publisher = Publisher(settings)
    publisher.publish_webhook("shop", "orders/create:ev-1", None, b"{}", ("w-1",)).result(10)
    publisher.publish_webhook("shop", "d-2", None, b"{}").result(10)
    raw = [publisher._loop.run(publisher._js.get_msg(stream, seq=n)) for n in (1, 2)]
    name, delivery_id, signed_at, body = decode(raw[0].data)  # (as an earlier worker reads it)
    assert (name, delivery_id, body) == ("shop", "orders/create:ev-1", b"{}")
    assert json.loads(raw[0].headers[ALIASES_HEADER]) == ["w-1"]
    assert len(decode(raw[1].data)) == 4 and ALIASES_HEADER not in (raw[1].headers or {})
    seen: list[tuple[Any, ...]] = []
    consumer = Consumer(settings, Store(), handle_webhook=seen.append)
    try:
        assert until(lambda: len(seen) == 2)
        by_id = {m[1]: tuple(m[2:]) for m in seen}
        assert by_id == {"orders/create:ev-1": (None, b"{}", ["w-1"]), "d-2": (None, b"{}")}
    finally:
        consumer.close()
        publisher.close()
