"""The message bus between ingest and worker processes: NATS JetStream (``bus: nats://…``).

Ingest processes (``personify serve --role ingest``) validate tracking requests as always, then
publish each accepted event to the stream instead of storing it: one message per event, its
``Nats-Msg-Id`` the event's ``messageId``, so JetStream drops a resend inside its duplicate
window (:data:`DUPLICATE_WINDOW`, longer than any client's retry horizon). The sender is answered
once JetStream acknowledged every event — the events are then durable on the bus.

Worker processes (``--role worker``) share one durable pull consumer: each fetches a batch,
stores it with the tracking store (:func:`personify.ingest.tracking.store.store`, which keeps one
row per ``messageId`` whatever the number of deliveries), hands it to continuous mode and acks the
batch only once the pass that applied it committed (while it waits, it tells JetStream the
messages are in progress every half ``ack_wait``, so a long pass is not taken for a dead
worker). A worker killed mid-batch — before the store's commit, or after it but before the pass
— acks nothing; after ``ack_wait`` JetStream redelivers those messages to another worker, the
store's key makes the second write a no-op, and a redelivered event is applied again whether or
not it was stored before (applying twice changes nothing): every event stored exactly once and
applied. A pass that failed leaves its messages unacked (delivered and tried again) until they
have been delivered :data:`MAX_APPLY_DELIVERIES` times; then they are acked and left to the
batch path. A message that cannot be stored goes to the quarantine after
:data:`MAX_STORE_DELIVERIES` deliveries (its batch then stored one message at a time), one that
cannot be read at once. Messages waiting for their pass count against the consumer's
``max_ack_pending`` (:data:`MAX_ACK_PENDING`): a worker never stores far ahead of what
continuous mode applies.

Webhook deliveries take the same way: an ingest process verifies a delivery's signature and
publishes it (``<stream>.webhooks``, its ``Nats-Msg-Id`` the source and the delivery id: a
sender's retry to any ingest process is dropped by JetStream); a worker stores it with the
webhook receiver (:meth:`personify.sources.webhooks.WebhookReceiver.receive`, whose receipt keeps
one per source and delivery id however often it is delivered) and acks it after the commit.

A scheduled sync on an ingest process (which runs no continuous mode) publishes a notice
(``<stream>.synced``: the source and when the sync started); one worker takes it and applies
what the sync stored, as ``serve --role all`` does in process. Deliveries and notices too are
acked once applied.

Rows travel as msgpack (timestamps stay timestamps). URL: ``nats://host:4222?stream=NAME``
(``stream`` default ``personify_<project>``; ``ack_wait`` seconds, default 30).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec

from personify.errors import ConfigError, ServiceUnavailable

log = logging.getLogger("personify.realtime.bus")

DUPLICATE_WINDOW: Final = 48 * 3600.0
"""Seconds JetStream remembers a ``messageId`` (clients retry for at most a day)."""
FETCH: Final = 500
"""Messages a worker takes per batch."""
WEBHOOK_FETCH: Final = 20
"""Webhook deliveries a worker takes at once (each is stored in a transaction of its own: a
small batch is done well within ``ack_wait``)."""
ALIASES_HEADER: Final = "Personify-Webhook-Aliases"
"""The header of a webhook message giving its delivery's other ids (a JSON list), outside the
message so that workers of an earlier version, which unpack exactly four fields, read it too."""

MAX_ACK_PENDING: Final = 100_000
"""Messages of a consumer (all its workers) delivered and not yet acked: stored and waiting for
their pass, or being stored. At the limit JetStream delivers no more until acks come. Two full
passes' worth (:data:`~personify.realtime.continuous.MAX_PASS`), so that storing goes on while
a pass runs: at 20,000 one worker stored 40,000 events 40 % slower than when it acked on
storing (``benchmarks/bus_workers.py``). A message waiting keeps only its reply subject
(~100 bytes), not its data."""
MAX_APPLY_DELIVERIES: Final = 5
"""Deliveries of a message whose continuous-mode pass keeps failing before it is acked anyway
(it is stored; ``personify run`` or ``recompute:`` applies it)."""
MAX_STORE_DELIVERIES: Final = 5
"""Deliveries of a message that cannot be stored before it goes to the quarantine (reason
``unstorable``, replayable) and is acked: one bad message does not come back for ever, nor hold
back the batch it came in (after a batch failed that often, its messages are stored one by
one). A message that cannot even be read (``undecodable``) goes there at once."""

CONNECT_DEADLINE: Final = 10.0
"""Seconds a process tries to reach the bus at start-up (an attempt every 2 s) before it stops
with an error naming the bus: a bus that is down, or a wrong address, does not hang ``serve``."""

T = TypeVar("T")


@dataclass(frozen=True)
class BusSettings:
    """``bus:`` of ``personify.yml``, parsed."""

    url: str
    stream: str
    ack_wait: float = 30.0

    @property
    def subject(self) -> str:
        return f"{self.stream}.events"

    @property
    def quarantine_subject(self) -> str:
        return f"{self.stream}.quarantine"

    @property
    def webhook_subject(self) -> str:
        return f"{self.stream}.webhooks"

    @property
    def synced_subject(self) -> str:
        return f"{self.stream}.synced"


def parse_bus_url(text: str, project_name: str = "personify") -> BusSettings:
    """``nats://host:4222?stream=NAME&ack_wait=30``."""
    parts = urlsplit(text)
    if parts.scheme not in {"nats", "tls"}:
        raise ConfigError(
            f"unsupported bus URL scheme {parts.scheme!r}", key="bus", hint="use nats://host:4222"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    stream = query.get("stream") or f"personify_{project_name}"
    clean = "".join(c if c.isalnum() or c in "_-" else "_" for c in stream)
    try:
        ack_wait = float(query.get("ack_wait", 30))
    except ValueError:
        raise ConfigError("bus ack_wait must be a number of seconds", key="bus") from None
    return BusSettings(urlunsplit((parts.scheme, parts.netloc, "", "", "")), clean, ack_wait)


class _Loop:
    """An asyncio loop in a thread of its own, for the NATS client (sync callers, and the
    server's loop, hand it coroutines)."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30) -> T:
        return self.submit(coro).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        with contextlib.suppress(RuntimeError):
            self.loop.close()


async def _connect(settings: BusSettings, deadline: float = CONNECT_DEADLINE) -> Any:
    """A NATS connection to the bus, tried for at most ``deadline`` seconds (an attempt every
    2 s, each of at most 3 s) — then :class:`ServiceUnavailable` naming the bus (host and port
    only) and the last error. Once connected, a lost connection is retried for ever (the
    readiness check shows it); each error is logged as one line, without a traceback."""
    from nats.aio.client import Client

    where = _address(settings.url)
    failed: list[Exception] = []
    """The errors of the attempts at start-up (told once, in the error raised)."""
    started = False
    nc = Client()

    async def on_error(e: Exception) -> None:  # (nats-py's default logs each with a traceback)
        if not started:
            failed.append(e)
        else:
            log.warning("the bus at %s: %s: %s", where, type(e).__name__, _said(e, settings.url))

    try:
        await asyncio.wait_for(
            nc.connect(
                settings.url,
                connect_timeout=3,
                max_reconnect_attempts=-1,  # while connected: a restart of NATS is waited out
                allow_reconnect=True,
                error_cb=on_error,
            ),
            deadline,
        )
        started = True
    except Exception as e:  # refused, timed out, refused our credentials …
        with contextlib.suppress(Exception):
            await nc.close()
        last = failed[-1] if failed else e
        raise ServiceUnavailable(
            f"cannot reach the bus at {where} within {deadline:g} s "
            f"({type(last).__name__}: {_said(last, settings.url)})",
            hint="start NATS with JetStream there (nats-server -js), or correct bus: in "
            "personify.yml (remove it to run without a bus)",
        ) from None
    return nc


async def _ensure_stream(js: Any, settings: BusSettings) -> None:
    from nats.js.api import StreamConfig

    config = StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.stream}.>"],
        duplicate_window=DUPLICATE_WINDOW,
    )
    try:
        await js.add_stream(config)
    except Exception:  # exists already (with the same config, or an operator's)
        try:
            await js.stream_info(settings.stream)
        except Exception as e:  # no JetStream on that server, a stream we may not read …
            raise ServiceUnavailable(
                f"the bus at {_address(settings.url)} has no usable stream {settings.stream} "
                f"({type(e).__name__}: {_said(e, settings.url)})",
                hint="run NATS with JetStream enabled (nats-server -js); an operator's stream "
                "must take the subjects <stream>.>",
            ) from None


async def _flush_and_close(nc: Any) -> None:
    try:
        await nc.flush(timeout=5)
    finally:
        await nc.close()


def encode(row: Sequence[Any]) -> bytes:
    return msgspec.msgpack.encode(tuple(row))


def decode(data: bytes) -> tuple[Any, ...]:
    return tuple(msgspec.msgpack.decode(data))


class Publisher:
    """Publishes events to the stream (an ingest process holds one)."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self._loop = _Loop("personify-bus-publisher")
        try:
            self._nc = self._loop.run(_connect(settings))
            self._js = self._nc.jetstream()
            self._loop.run(_ensure_stream(self._js, settings))
        except BaseException:
            self._loop.stop()
            raise

    async def _publish(self, rows: Sequence[Sequence[Any]], held: Sequence[Any]) -> list[bool]:
        acks = await asyncio.gather(
            *(
                self._js.publish(
                    self.settings.subject, encode(r), headers={"Nats-Msg-Id": str(r[0])}
                )
                for r in rows
            ),
            *(self._js.publish(self.settings.quarantine_subject, encode(q)) for q in held),
        )
        return [bool(a.duplicate) for a in acks[: len(rows)]]

    def publish(
        self, rows: Sequence[Sequence[Any]], held: Sequence[Any] = ()
    ) -> Future[list[bool]]:
        """Publish the rows (and quarantine rows); the future gives, per row, whether JetStream
        had it already (a resend inside the duplicate window)."""
        return self._loop.submit(self._publish(rows, held))

    async def _publish_webhook(self, message: Sequence[Any], aliases: Sequence[str]) -> bool:
        headers = {"Nats-Msg-Id": webhook_message_id(str(message[0]), str(message[1]))}
        if aliases:
            headers[ALIASES_HEADER] = msgspec.json.encode(list(aliases)).decode()
        ack = await self._js.publish(
            self.settings.webhook_subject, encode(message), headers=headers
        )
        return bool(ack.duplicate)

    def publish_webhook(
        self,
        source: str,
        delivery_id: str,
        signed_at: Any,
        body: bytes,
        aliases: Sequence[str] = (),
    ) -> Future[bool]:
        """Publish a verified webhook delivery ``(source, delivery_id, signed_at, body)``, its
        ``aliases`` (other ids it may have been stored under: a Shopify delivery's webhook id,
        :class:`~personify.sources.webhooks.Verified`) in a header, :data:`ALIASES_HEADER`
        — a worker of an earlier version reads four fields and fails on a fifth, so a
        Shopify delivery published by an upgraded ingest process would have been quarantined
        there after its retries; the future gives whether JetStream had it already (the
        sender's retry, to this or another ingest process)."""
        message = (source, delivery_id, signed_at, body)
        return self._loop.submit(self._publish_webhook(message, tuple(aliases)))

    def publish_synced(self, source: str, since: Any) -> Future[Any]:
        """Tell the workers that a sync of ``source`` stored rows since ``since`` (a scheduled
        sync on an ingest process, which runs no continuous mode): one worker applies them."""
        return self._loop.submit(
            self._js.publish(self.settings.synced_subject, encode((source, since)))
        )

    def check(self, timeout: float = 2.0) -> str:
        """Whether the bus can take events now, for ``/readyz``: the connection is up (not
        reconnecting) and JetStream answers for the stream within ``timeout`` seconds. Returns
        what was found; raises ServiceUnavailable saying what is wrong (the address without
        any credentials of the URL)."""
        where = _address(self.settings.url)
        if not self._nc.is_connected:
            state = "reconnecting" if self._nc.is_reconnecting else "closed"
            raise ServiceUnavailable(f"not connected to the bus at {where} ({state})")
        try:
            info = self._loop.run(self._js.stream_info(self.settings.stream), timeout=timeout)
        except Exception as e:  # NotFoundError, a timeout, the connection lost meanwhile
            import nats.js.errors

            if isinstance(e, nats.js.errors.NotFoundError):
                raise ServiceUnavailable(
                    f"stream {self.settings.stream} not found on the bus at {where}: "
                    "restart `personify serve`, which creates it"
                ) from None
            why = "no answer in time" if isinstance(e, TimeoutError) else type(e).__name__
            raise ServiceUnavailable(
                f"the bus at {where} does not answer for stream {self.settings.stream} ({why})"
            ) from None
        return f"stream {self.settings.stream} at {where} answers ({info.state.messages} messages)"

    def depth(self, durable: str = "workers", timeout: float = 2.0) -> int:
        """Events the workers have not acked yet (queue depth; 0 before any worker joined)."""
        return self._loop.run(consumer_pending(self._js, self.settings, durable), timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._loop.run(self._nc.drain(), timeout=10)
        self._loop.stop()


def _said(e: BaseException, url: str) -> str:
    """What an error says, shortened, without the bus URL's user name or password."""
    text = str(e)[:200] or "no detail"
    parts = urlsplit(url)
    for secret in (parts.password, parts.username):
        if secret:
            text = text.replace(secret, "***")
    return text


def _address(url: str) -> str:
    """``host:port`` of a bus URL, without its user name or password."""
    parts = urlsplit(url)
    port = parts.port or 4222
    return f"{parts.hostname}:{port}"


async def consumer_pending(js: Any, settings: BusSettings, durable: str = "workers") -> int:
    """``num_pending + num_ack_pending`` of the stream's consumer ``durable`` (0 if none yet)."""
    import nats.js.errors

    try:
        info = await js.consumer_info(settings.stream, durable)
    except nats.js.errors.NotFoundError:
        return 0
    return int(info.num_pending) + int(info.num_ack_pending)


def with_aliases(message: tuple[Any, ...], headers: Any) -> tuple[Any, ...]:
    """A webhook message ``(source, delivery_id, signed_at, body)`` with the aliases its
    :data:`ALIASES_HEADER` carries as a fifth field (as it is when it has none, or one that is
    not a JSON list of ids: the delivery is still stored, checked under its own id)."""
    raw = (headers or {}).get(ALIASES_HEADER)
    if not raw or len(message) != 4:
        return message
    try:
        aliases = msgspec.json.decode(raw, type=list[str])
    except msgspec.DecodeError:
        log.warning("a webhook message's %s header is not a JSON list of ids", ALIASES_HEADER)
        return message
    return (*message, aliases)


def webhook_message_id(source: str, delivery_id: str) -> str:
    """A delivery's ``Nats-Msg-Id``: its source and the sender's delivery id (idempotency key)."""
    return f"webhook:{source}:{delivery_id}"


def bus_depth(settings: BusSettings, timeout: float = 3.0) -> int:
    """The bus's queue depth, from a connection of its own (``personify status``)."""

    async def read() -> int:
        nc = await _connect(settings, deadline=timeout)
        try:
            return await consumer_pending(nc.jetstream(), settings)
        finally:
            await nc.close()

    return asyncio.run(asyncio.wait_for(read(), timeout + 1))  # (connecting says why first)


def bus_error_text(error: BaseException) -> str:
    """What ``personify status`` (and ``/v1/stats``) say of an unreachable bus: our own message
    (the address without its credentials, the last error: :func:`_connect`) for our errors, the
    error's type alone for any other (a driver's text may hold the URL as written)."""
    from personify.errors import PersonifyError

    if isinstance(error, PersonifyError):
        return str(error)
    if isinstance(error, TimeoutError):
        return "no answer in time"
    return type(error).__name__


# A handler returns None (done: ack now), or a future resolved once continuous mode applied
# what it stored (ack then; when it fails, see the module doc).
Handler = Callable[[list[tuple[Any, ...]], list[tuple[Any, ...]], list[bool]], Future[None] | None]
"""Stores a batch of event rows and quarantine rows (in a thread); the third list says which
event was delivered before. Raises to leave the batch unacked."""
SyncedHandler = Callable[[str, Any], Future[None] | None]
"""Applies what a sync of a source stored since an instant (continuous mode)."""
WebhookHandler = Callable[[tuple[Any, ...]], Future[None] | None]
"""Stores one webhook delivery ``(source, delivery_id, signed_at, body)`` (in a thread); raises
to leave it unacked."""


def dead_letter(
    message: Any, row: Sequence[Any] | None, reason: str, error: Exception, delivered: int
) -> tuple[Any, ...]:
    """The quarantine row of a bus message given up on: an event row (its payload the event as
    a tracking payload, received when the ingest process received it: ``personify quarantine
    replay`` stores it once the cause is fixed), a webhook delivery ``(source, delivery_id,
    signed_at, body[, aliases])`` (its body) or what could not be decoded (the bytes in hex);
    located by subject and stream sequence."""
    from personify.ingest.tracking.rows import quarantine_row  # (ingest's, on demand)

    subject = str(getattr(message, "subject", "") or "")
    raw = bytes(getattr(message, "data", b"") or b"")
    source, identity = "bus", hashlib.sha256(raw).hexdigest()
    received_us = time.time_ns() // 1000
    kept = "kept here as it was sent (replayable)"
    if row is not None and subject.endswith(".webhooks") and len(row) in (4, 5):
        source, identity = str(row[0]), f"{row[0]}:{row[1]}"
        body = row[3]
        payload = bytes(body).decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    elif row is not None:
        source = str(row[8]) if len(row) > 8 and row[8] else source
        identity = str(row[0])
        payload, received = _event_payload(row)
        if received is None:
            kept = "kept here by column (not an event row of this version)"
        else:
            received_us = received
    else:
        payload = raw.hex()
    try:
        where = f"bus:{subject}:{message.metadata.sequence.stream}"
    except Exception:  # not a JetStream message
        where = f"bus:{subject}"
    detail = (
        f"the bus delivered it {delivered} time(s) and storing it failed each time "
        f"({type(error).__name__}, see the worker's log); {kept}"
        if reason == "unstorable"
        else f"the message could not be read ({type(error).__name__}); kept here in hex"
    )
    return quarantine_row(
        source=source,
        identity=identity,
        received_us=received_us,
        reason=reason,
        detail=detail,
        payload=payload,
        location=where,
    )


def _event_payload(row: Sequence[Any]) -> tuple[str, int | None]:
    """An event row's tracking payload and when it was received (µs) — or, for a row this
    version cannot read as one, its values by column and ``None``."""
    from personify.ingest.tracking.normalize import EVENT_COLUMNS
    from personify.ingest.tracking.store import row_payload

    try:
        received = row[EVENT_COLUMNS.index("received_at")]
        if isinstance(received, int):
            return row_payload(tuple(row)), received
    except (IndexError, KeyError, TypeError, ValueError, OverflowError, msgspec.DecodeError):
        pass
    named = dict(zip(EVENT_COLUMNS, row, strict=False))
    return msgspec.json.encode(named, enc_hook=str).decode(), None


def deliveries(message: Any) -> int:
    """How many times JetStream has delivered ``message`` (1: the first time)."""
    try:
        return int(message.metadata.num_delivered)
    except Exception:  # not a JetStream message (no metadata in its reply subject)
        return 1


class Consumer:
    """A worker's share of the durable pull consumer ``workers`` of the stream."""

    def __init__(
        self,
        settings: BusSettings,
        handle: Handler,
        *,
        durable: str = "workers",
        handle_webhook: WebhookHandler | None = None,
        handle_synced: SyncedHandler | None = None,
    ) -> None:
        self.settings = settings
        self.handle = handle
        self.handle_webhook = handle_webhook
        self.handle_synced = handle_synced
        self.durable = durable
        self.stored = 0
        self.webhooks = 0
        """Webhook deliveries stored (or found stored) so far."""
        self.redelivered = 0
        """Messages left unacked because the pass over them failed (delivered again)."""
        self.quarantined = 0
        """Messages given up on: quarantined (``unstorable``, ``undecodable``) and acked."""
        self._stop = threading.Event()
        self._acking: set[asyncio.Task[None]] = set()
        """Acks waiting for their pass (tasks on the consumer's loop)."""
        self._loop = _Loop("personify-bus-consumer")
        try:
            self._nc = self._loop.run(_connect(settings))
            self._js = self._nc.jetstream()
            self._loop.run(_ensure_stream(self._js, settings))
            self._subs = self._loop.run(self._subscribe())
        except BaseException:
            self._loop.stop()
            raise
        self._task = self._loop.submit(self._run())

    async def _subscribe(self) -> tuple[Any, Any, Any, Any]:
        from nats.js.api import AckPolicy, ConsumerConfig

        def config(name: str) -> Any:
            return ConsumerConfig(
                durable_name=name,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait,
                max_ack_pending=MAX_ACK_PENDING,
            )

        async def subscribe(subject: str, durable: str) -> Any:
            sub = await self._js.pull_subscribe(subject, durable=durable, config=config(durable))
            await self._raise_limit(durable)
            return sub

        settings, durable = self.settings, self.durable
        events = await subscribe(settings.subject, durable)
        held = await subscribe(settings.quarantine_subject, f"{durable}_quarantine")
        hooks = None
        if self.handle_webhook is not None:
            hooks = await subscribe(settings.webhook_subject, f"{durable}_webhooks")
        synced = None
        if self.handle_synced is not None:
            synced = await subscribe(settings.synced_subject, f"{durable}_synced")
        return events, held, hooks, synced

    async def _raise_limit(self, durable: str) -> None:
        """A consumer created by an earlier version (an existing durable keeps its config) gets
        :data:`MAX_ACK_PENDING` (an editable field: JetStream updates it in place)."""
        info = await self._js.consumer_info(self.settings.stream, durable)
        if (info.config.max_ack_pending or 0) < MAX_ACK_PENDING:
            info.config.max_ack_pending = MAX_ACK_PENDING
            await self._js.add_consumer(self.settings.stream, info.config)
            log.info("bus consumer %s: max_ack_pending raised to %d", durable, MAX_ACK_PENDING)

    async def _fetch(self, sub: Any, timeout: float, batch: int = FETCH) -> list[Any]:
        import nats.errors

        try:
            return list(await sub.fetch(batch, timeout=timeout))
        except (nats.errors.TimeoutError, TimeoutError):  # nothing waiting (either spelling:
            return []  # under load the client's own wait_for may fire first)

    async def _webhooks(self, hooks: Any) -> int:
        """Each delivery fetched stored and acked on its own (one failing leaves only itself
        unacked: redelivered after ``ack_wait``, quarantined after
        :data:`MAX_STORE_DELIVERIES`)."""
        assert self.handle_webhook is not None
        done = 0
        for m in await self._fetch(hooks, 0.05, WEBHOOK_FETCH):
            try:
                message = decode(m.data)
            except Exception as e:
                await self._give_up(m, None, "undecodable", e)
                continue
            message = with_aliases(message, m.headers)
            try:
                applied = await asyncio.to_thread(self.handle_webhook, message)
            except Exception as e:  # unacked: redelivered after ack_wait
                if deliveries(m) >= MAX_STORE_DELIVERIES:
                    await self._give_up(m, message, "unstorable", e)
                    continue
                log.warning(
                    "a webhook delivery was not stored (%s); it will be redelivered", type(e)
                )
                continue
            await self._ack_when([m], applied)
            self.webhooks += 1
            done += 1
        return done

    async def _synced(self, synced: Any) -> None:
        assert self.handle_synced is not None
        for m in await self._fetch(synced, 0.05, WEBHOOK_FETCH):
            source, since = decode(m.data)
            await self._ack_when([m], self.handle_synced(str(source), since))

    async def _ack_when(self, msgs: Sequence[Any], applied: Future[None] | None) -> None:
        """Ack ``msgs`` now (``applied`` is ``None``), or once ``applied`` resolved."""
        if applied is None:
            await asyncio.gather(*(m.ack() for m in msgs))
            return
        task = asyncio.ensure_future(self._ack_applied(msgs, applied))
        self._acking.add(task)
        task.add_done_callback(self._acking.discard)

    async def _ack_applied(self, msgs: Sequence[Any], applied: Future[None]) -> None:
        waiting = asyncio.wrap_future(applied)
        beat = self.settings.ack_wait / 2
        while True:
            try:
                await asyncio.wait_for(asyncio.shield(waiting), beat)
                break
            except TimeoutError:  # still queued or in its pass: not a dead worker's
                await asyncio.gather(*(m.in_progress() for m in msgs), return_exceptions=True)
            except Exception as e:  # the pass failed: delivered again, tried again
                again = [m for m in msgs if deliveries(m) < MAX_APPLY_DELIVERIES]
                if again:
                    self.redelivered += len(again)
                    log.warning(
                        "%d message(s) stored but not applied (%s); they will be redelivered",
                        len(again),
                        e,
                    )
                msgs = [m for m in msgs if deliveries(m) >= MAX_APPLY_DELIVERIES]
                break
        await asyncio.gather(*(m.ack() for m in msgs), return_exceptions=True)

    async def _run(self) -> None:
        events, held, hooks, synced = self._subs
        while not self._stop.is_set():
            try:
                if synced is not None:
                    await self._synced(synced)
                hooked = await self._webhooks(hooks) if hooks is not None else 0
                # with webhooks: a short wait on events, so a delivery waits at most ~0.3 s
                wait = 1.0 if hooks is None else 0.05 if hooked else 0.25
                msgs = await self._fetch(events, wait)
                quarantined = await self._fetch(held, 0.05)
                if not msgs and not quarantined:
                    continue
                msgs, rows = await self._readable(msgs)
                quarantined, qrows = await self._readable(quarantined)
                # (only the reply subject is needed to ack a message; its data is kept apart
                # for the quarantine, should the batch never store)
                data = [m.data for m in msgs]
                for m in msgs:
                    m.data, m.headers = b"", None
                again = [deliveries(m) > 1 for m in msgs]
                try:
                    applied = await asyncio.to_thread(self.handle, rows, qrows, again)
                except Exception as e:
                    if not any(deliveries(m) >= MAX_STORE_DELIVERIES for m in msgs):
                        raise
                    await self._one_by_one(msgs, rows, data, e)  # (and the quarantine rows)
                    if qrows:
                        await asyncio.to_thread(self.handle, [], qrows, [])
                        await asyncio.gather(*(m.ack() for m in quarantined))
                    continue
                await asyncio.gather(*(m.ack() for m in quarantined))
                await self._ack_when(msgs, applied)
                self.stored += len(rows)
            except Exception as e:  # unacked: redelivered after ack_wait
                log.warning("a bus batch was not stored (%s); it will be redelivered", type(e))
                await asyncio.sleep(0.5)

    async def _readable(self, msgs: list[Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
        """The messages that decode, and their rows; the others go to the quarantine."""
        kept, rows = [], []
        for m in msgs:
            try:
                rows.append(decode(m.data))
            except Exception as e:
                await self._give_up(m, None, "undecodable", e)
                continue
            kept.append(m)
        return kept, rows

    async def _one_by_one(
        self, msgs: list[Any], rows: list[tuple[Any, ...]], data: list[bytes], error: Exception
    ) -> None:
        """A batch that failed :data:`MAX_STORE_DELIVERIES` times, message by message: those
        that store are acked as usual, those that fail and have been delivered that often go to
        the quarantine; the rest wait for their next delivery."""
        log.warning(
            "a bus batch keeps failing (%s); storing its %d message(s) one by one",
            type(error).__name__,
            len(msgs),
        )
        for m, row, raw in zip(msgs, rows, data, strict=True):
            try:
                applied = await asyncio.to_thread(self.handle, [row], [], [deliveries(m) > 1])
            except Exception as e:
                if deliveries(m) >= MAX_STORE_DELIVERIES:
                    m.data = raw
                    await self._give_up(m, row, "unstorable", e)
                continue
            await self._ack_when([m], applied)
            self.stored += 1

    async def _give_up(self, m: Any, row: Any, reason: str, error: Exception) -> None:
        """Quarantine ``m`` (``row``: what it decoded to, ``None`` if nothing) and ack it; if
        even that cannot be stored, it stays unacked (delivered again)."""
        qrow = dead_letter(m, row, reason, error, deliveries(m))
        try:
            await asyncio.to_thread(self.handle, [], [qrow], [])
        except Exception as e:
            log.warning("a bus message could not be quarantined (%s)", type(e).__name__)
            return
        await m.ack()
        self.quarantined += 1
        log.warning(
            "a bus message was quarantined (%s after %d deliveries: %s)",
            reason,
            deliveries(m),
            type(error).__name__,
        )

    async def pending(self) -> int:
        """Messages not yet acked by any worker (queue depth)."""
        events, _, _, _ = self._subs
        info = await events.consumer_info()
        return int(info.num_pending) + int(info.num_ack_pending)

    def depth(self) -> int:
        return self._loop.run(self.pending(), timeout=10)

    async def _settle(self, timeout: float) -> None:
        if self._acking:
            await asyncio.wait(set(self._acking), timeout=timeout)

    def close(self, settle: float = 10.0) -> None:
        """Stop fetching; wait up to ``settle`` seconds for the acks still waiting on their
        pass (the applier runs until after this; what is left is delivered again)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self._task.result(5)
        with contextlib.suppress(Exception):
            self._loop.run(self._settle(settle), timeout=settle + 5)
        # the acks flushed, then closed (nats-py's drain waits out its 10 s timeout on pull
        # subscriptions: every stopping worker took 10 s)
        with contextlib.suppress(Exception):
            self._loop.run(_flush_and_close(self._nc), timeout=10)
        self._loop.stop()
