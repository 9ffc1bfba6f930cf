"""A bus message a worker can never store does not come back for ever: after
``MAX_STORE_DELIVERIES`` deliveries it goes to the quarantine (and the batch it came in is stored
message by message); one that cannot be read goes there at once. Real NATS JetStream (a stream
of the test's own); the worker's store is a recording stand-in that refuses one message."""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.e2e.test_scale_out import NATS, stream  # noqa: F401  (the fixture)
from tests.unit.realtime.test_bus_acks import consumer_state, until

from personify.realtime.bus import (
    MAX_STORE_DELIVERIES,
    Consumer,
    Publisher,
    parse_bus_url,
)


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
    # an events row as the ingest process publishes it (message_id first, source ninth)
    return (message_id, "track", "Viewed", "a1", None, 0, 0, None, "web", "{}", "{}", None)


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
        assert poison[1] == "web" and json.loads(poison[5])["message_id"] == "poison"
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
