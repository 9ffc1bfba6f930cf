"""A bus worker acks a message only once continuous mode applied it, and applies again what a
dead worker stored but never applied. Real NATS JetStream (a stream of the test's own) and real
PostgreSQL (a schema of the test's own), the worker's consumer and applier in process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests.e2e.cli import project_on
from tests.e2e.test_scale_out import NATS, stream  # noqa: F401  (the fixture)
from tests.e2e.test_webhooks_bus import HOOKS

from personify.config import WebhookSource, load_project
from personify.ingest.tracking.normalize import Inputs, normalize
from personify.ingest.tracking.store import store
from personify.realtime.bus import BusSettings, Publisher, decode, parse_bus_url
from personify.realtime.continuous import Applier
from personify.realtime.worker import start_worker
from personify.session import Session
from personify.sources.webhooks import Verified, WebhookReceiver

pytestmark = pytest.mark.postgres

ACK_WAIT = 1.0


@pytest.fixture
def worker_session(
    tmp_path: Path,
    postgres_url: str,
    stream: str,  # noqa: F811
) -> Iterator[tuple[Session, BusSettings]]:
    root = project_on(
        tmp_path / "p", warehouse=postgres_url, bus=f"{NATS}?stream={stream}&ack_wait={ACK_WAIT}"
    )
    session = Session(load_project(root))
    try:
        yield session, parse_bus_url(str(session.project.config.bus), "t")
    finally:
        session.close()


def rows(n: int, user: str) -> list[tuple[Any, ...]]:
    inputs = Inputs(source="web", received_at=datetime.now(UTC))
    out = []
    for i in range(n):
        raw = json.dumps(
            {
                "type": "identify" if i == 0 else "track",
                "event": None if i == 0 else "Product Viewed",
                "messageId": f"{user}-{i}",
                "userId": user,
                "traits": {"email": f"{user}@example.org"} if i == 0 else {},
                "properties": {} if i == 0 else {"product_id": f"p{i}"},
            }
        ).encode()
        row = normalize(raw, i, inputs)
        assert isinstance(row, tuple), row
        out.append(row)
    return out


def consumer_info(settings: BusSettings, durable: str = "workers", add: Any = None) -> Any:
    """JetStream's info on the consumer ``durable`` (created first from the config ``add``)."""

    async def read() -> Any:
        import nats

        nc = await nats.connect(NATS)
        try:
            js = nc.jetstream()
            if add is not None:
                await js.add_consumer(settings.stream, add)
            return await js.consumer_info(settings.stream, durable)
        finally:
            await nc.close()

    return asyncio.run(read())


def consumer_state(settings: BusSettings, durable: str = "workers") -> dict[str, int]:
    info = consumer_info(settings, durable)
    return {
        "pending": int(info.num_pending),
        "ack_pending": int(info.num_ack_pending),
        "redelivered": int(info.num_redelivered),
    }


def until(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def customer_of(url: str, email: str) -> Any:
    from personify.warehouse import connect

    wh = connect(url)
    try:
        found = wh.fetch("SELECT customer_id, order_count FROM customers WHERE email = ?", [email])
        return found[0] if found else None
    finally:
        wh.close()


def test_a_batch_is_acked_once_applied_and_a_long_pass_is_not_redelivered(
    worker_session: tuple[Session, BusSettings], postgres_url: str
) -> None:
    """While another transaction holds ``customers`` the pass cannot commit: the worker has
    stored the events but acks none of them, and tells JetStream they are in progress — three
    ``ack_wait``s later nothing was redelivered. Once the lock goes, the pass commits and every
    message is acked."""
    session, settings = worker_session
    applier = Applier(session, react=False, tick_every=None)
    consumer = start_worker(session.warehouse, settings, applier, session)
    publisher = Publisher(settings)
    schema = postgres_url.rsplit("schema=", 1)[1]
    base = postgres_url.split("?", 1)[0]
    with psycopg.connect(base) as lock:
        lock.execute(f'LOCK TABLE "{schema}".customers IN EXCLUSIVE MODE')
        try:
            publisher.publish(rows(5, "ada")).result(30)
            count = f'SELECT count(*) FROM "{schema}".events'
            with psycopg.connect(base, autocommit=True) as look:
                assert until(lambda: look.execute(count).fetchone() == (5,))
            time.sleep(3 * ACK_WAIT + 0.5)
            assert consumer_state(settings) == {"pending": 0, "ack_pending": 5, "redelivered": 0}
        finally:
            lock.rollback()
        assert until(lambda: customer_of(postgres_url, "ada@example.org") is not None)
        assert until(lambda: consumer_state(settings)["ack_pending"] == 0, 10)
        assert consumer_state(settings) == {"pending": 0, "ack_pending": 0, "redelivered": 0}
    consumer.close()
    applier.close()
    publisher.close()


def test_events_a_dead_worker_stored_but_never_applied_are_applied_on_redelivery(
    worker_session: tuple[Session, BusSettings], postgres_url: str
) -> None:
    """A worker fetched a batch, stored it and died before its pass: nothing acked, nothing
    applied. Redelivered to a live worker, the store finds every event stored already — and
    the events are applied all the same."""
    session, settings = worker_session
    publisher = Publisher(settings)
    publisher.publish(rows(4, "bob")).result(30)

    async def die_after_storing() -> None:  # the dead worker's part: fetch, store, no ack
        import nats

        nc = await nats.connect(NATS)
        try:
            js = nc.jetstream()
            from nats.js.api import AckPolicy, ConsumerConfig

            config = ConsumerConfig(
                durable_name="workers",
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=ACK_WAIT,
                max_ack_pending=20_000,
            )
            sub = await js.pull_subscribe(settings.subject, durable="workers", config=config)
            msgs = await sub.fetch(10, timeout=5)
            assert len(msgs) == 4
            store(session.warehouse, [decode(m.data) for m in msgs], [])
        finally:
            await nc.close()

    asyncio.run(die_after_storing())
    assert customer_of(postgres_url, "bob@example.org") is None  # stored, not applied
    applier = Applier(session, react=False, tick_every=None)
    consumer = start_worker(session.warehouse, settings, applier, session)
    try:
        assert until(lambda: customer_of(postgres_url, "bob@example.org") is not None)
        assert until(lambda: consumer_state(settings)["ack_pending"] == 0, 10)
        state = consumer_state(settings)
        assert state["pending"] == 0
    finally:
        consumer.close()
        applier.close()
        publisher.close()


def test_a_webhook_delivery_stored_before_is_applied_when_it_comes_again(
    tmp_path: Path,
    postgres_url: str,
    stream: str,  # noqa: F811
) -> None:
    """A delivery stored by a worker that died before its pass comes again: the receipt says
    duplicate, and the worker applies the stored order all the same (the buyer's profile
    counts it once)."""
    root = project_on(
        tmp_path / "p", warehouse=postgres_url, bus=f"{NATS}?stream={stream}&ack_wait={ACK_WAIT}"
    )
    yml = root / "personify.yml"
    anchor = "    tracking_plan: tracking-plan\n"  # (the web source's last line, as there)
    text = yml.read_text()
    assert anchor in text
    yml.write_text(text.replace(anchor, anchor + HOOKS.lstrip("\n"), 1))
    session = Session(load_project(root))
    settings = parse_bus_url(str(session.project.config.bus), "t")
    source = next(s for s in session.project.config.sources if isinstance(s, WebhookSource))
    body = json.dumps(
        {
            "id": 4242,
            "email": "cy@example.org",
            "financial_status": "paid",
            "currency": "EUR",
            "total_price": "30.00",
            "created_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    receiver = WebhookReceiver(session)
    first = receiver.receive(source, Verified("d-1", None), body, refresh=False)
    assert (first.outcome, first.key) == ("accepted", "4242")  # stored; its pass never ran
    assert customer_of(postgres_url, "cy@example.org") is None
    publisher = Publisher(settings)
    applier = Applier(session, react=False, tick_every=None)
    consumer = start_worker(session.warehouse, settings, applier, session)
    try:
        assert not publisher.publish_webhook(source.name, "d-1", None, body).result(30)
        assert until(lambda: consumer.webhooks == 1)
        assert until(lambda: customer_of(postgres_url, "cy@example.org") is not None)
        assert customer_of(postgres_url, "cy@example.org")[1] == 1
        assert until(lambda: consumer_state(settings, "workers_webhooks")["ack_pending"] == 0)
    finally:
        consumer.close()
        applier.close()
        publisher.close()
        receiver.close()
        session.close()


def test_a_consumer_of_an_earlier_version_gets_the_new_ack_limit(
    worker_session: tuple[Session, BusSettings],
) -> None:
    """An existing durable consumer keeps its config; with acks after the pass, its old limit
    of 20,000 waiting messages would stall a worker on a backlog: a worker raises it."""
    from nats.js.api import AckPolicy, ConsumerConfig

    from personify.realtime.bus import MAX_ACK_PENDING, Consumer

    _, settings = worker_session
    publisher = Publisher(settings)  # (creates the stream)
    publisher.close()

    old = ConsumerConfig(
        durable_name="workers",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT,
        max_ack_pending=20_000,
        filter_subject=settings.subject,
    )
    assert consumer_info(settings, add=old).config.max_ack_pending == 20_000
    consumer = Consumer(settings, lambda rows, held, again: None)
    try:
        assert consumer_state(settings)["pending"] == 0
        assert consumer_info(settings).config.max_ack_pending == MAX_ACK_PENDING
    finally:
        consumer.close()
