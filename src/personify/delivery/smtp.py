"""The SMTP transport: messages handed to an SMTP server over a small pool of connections.

It speaks SMTP with aiosmtplib on a private event loop (one daemon thread per transport), so that
:meth:`SmtpTransport.send` stays synchronous like every transport while
:meth:`SmtpTransport.send_many` keeps up to ``pool_size`` messages in flight at once.

* **Pool.** Up to ``pool_size`` connections, opened on first need and reused across sends; a
  connection that failed is dropped and the attempt retried on a fresh one (``retries``).
* **TLS.** ``starttls`` (required: a server that cannot upgrade is refused), ``implicit``
  (SMTPS) or ``none``; certificates checked against the system's authorities or ``ca_file``.
* **Auth.** ``username`` / ``password`` (AUTH after TLS).
* **Outcomes.** 250 → :class:`~personify.delivery.transport.Delivered` with the server's queue
  id (or its reply); a permanent refusal (5xx) → :class:`DeliveryRejected`; a temporary one of
  this message (4xx but 421: greylisting, a full mailbox) after the retries →
  :class:`DeliveryDeferred` (the others go on); 421, a timeout or a dropped connection after
  the retries → :class:`DeliveryUnavailable`, and so is a refused sender (``MAIL FROM``: AUTH
  required, a sender not allowed), at once — it refuses every message, none is to fail for it.
  A timeout or a dropped connection once the message's ``DATA`` began is not retried (the server
  may have taken it: each retry could be one more copy): :class:`DeliveryUnavailable` at once.
* **Once per key.** Accepted keys are recorded in a :class:`~personify.delivery.ledger.SentLedger`;
  a key found there is not sent again.
* **Rate limit and DKIM.** A token bucket before each message; a DKIM signature when configured.

Replies and errors are logged without addresses (the SMTP server's texts may quote them: only
codes are logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

import aiosmtplib

from personify.config import Project, SmtpDelivery
from personify.delivery.dkim import DkimSigner
from personify.delivery.ledger import SentLedger
from personify.delivery.ratelimit import TokenBucket, bucket_for
from personify.delivery.transport import (
    Delivered,
    DeliveryDeferred,
    DeliveryError,
    DeliveryRejected,
    DeliveryUnavailable,
    Envelope,
)
from personify.errors import ConfigError

log = logging.getLogger("personify.delivery.smtp")
T = TypeVar("T")

DEFAULT_PORTS = {"implicit": 465, "starttls": 587, "none": 25}
_QUEUED = re.compile(r"queued as ([A-Za-z0-9._\-]+)", re.I)
_EMAILISH = re.compile(r"[^\s<>@]+@[^\s<>@]+")
_CONNECTION_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPHeloError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def _masked(text: str) -> str:
    return _EMAILISH.sub("<address>", text)[:300]


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, noting when a message's ``DATA`` began: a timeout or a dropped
    connection after that leaves unknown whether the server took the message."""

    data_started = False

    async def data(self, message: str | bytes, /, **options: Any) -> Any:
        self.data_started = True
        return await super().data(message, **options)


class SmtpTransport:
    """Sends through an SMTP server; see the module docstring."""

    name = "smtp"

    def __init__(
        self,
        settings: SmtpDelivery,
        *,
        ledger: SentLedger | None = None,
        signer: DkimSigner | None = None,
        bucket: TokenBucket | None = None,
        tls_context: ssl.SSLContext | None = None,
        retry_pause: float = 0.2,
    ) -> None:
        """``tls_context``: overrides the one built from ``verify_certificates``/``ca_file``;
        ``retry_pause``: seconds before the first retry (doubling, at most 5 s)."""
        self.settings = settings
        self.host = settings.host
        self.port = settings.port or DEFAULT_PORTS[settings.tls]
        self.ledger = ledger or SentLedger(None)
        self.signer = signer
        self.bucket = bucket
        self.retry_pause = retry_pause
        self._tls_context = tls_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Future[Delivered]] = {}
        self._outage: DeliveryUnavailable | None = None
        self._down: asyncio.Event | None = None
        self._connect_failures = 0
        self.connections_opened = 0
        """Connections opened so far (a pool reuses them: fewer than messages sent)."""

    @classmethod
    def from_project(cls, project: Project, settings: SmtpDelivery) -> SmtpTransport:
        """The transport ``delivery: {kind: smtp, …}`` configures (ledger in ``.personify/``)."""
        context = None
        if settings.tls != "none":
            cafile = str(project.path(settings.ca_file)) if settings.ca_file else None
            try:
                context = tls_context(settings.verify_certificates, cafile)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(
                    f"cannot read the certificate authorities in {cafile} ({e})",
                    file=str(project.file),
                    key="delivery.ca_file",
                    hint="give a PEM file of CA certificates",
                ) from None
        return cls(
            settings,
            ledger=SentLedger(project.state_dir / "delivery" / "smtp.sent"),
            signer=DkimSigner.from_settings(settings.dkim, project) if settings.dkim else None,
            bucket=bucket_for(settings),
            tls_context=context,
        )

    # -- the synchronous surface
    def send(self, envelope: Envelope) -> Delivered:
        """Hand one message over (nothing when its key was sent before). Raises
        :class:`DeliveryRejected` or :class:`DeliveryUnavailable`."""
        return self._run(self._fresh(self._send(envelope)))

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Delivered | DeliveryError]:
        """Hand a batch over, ``pool_size`` messages in flight; one outcome per envelope. Once
        the server proves unreachable (every attempt to connect failed), the rest of the batch
        fails at once with the same :class:`DeliveryUnavailable` instead of each message
        waiting out its own timeouts (or its turn under the rate limit)."""

        async def all_of() -> list[Delivered | DeliveryError]:
            results = await asyncio.gather(
                *(self._send(e) for e in envelopes), return_exceptions=True
            )
            out: list[Delivered | DeliveryError] = []
            for result in results:
                if isinstance(result, Delivered | DeliveryError):
                    out.append(result)
                else:
                    raise result
            return out

        return self._run(self._fresh(all_of()))

    def close(self) -> None:
        """Say QUIT on every pooled connection and stop the private loop."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(
                timeout=self.settings.timeout_seconds
            )
        except Exception as e:  # closing is best effort
            log.debug("closing SMTP connections: %s", type(e).__name__)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        self._slots = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the private loop
    async def _fresh(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as a new call: outages seen by earlier calls are forgotten."""
        self._outage, self._connect_failures = None, 0
        self._down = asyncio.Event()
        return await coro

    def _declare_outage(self, error: DeliveryUnavailable) -> None:
        self._outage = error
        if self._down is not None:
            self._down.set()  # wakes the messages waiting for their turn under the rate limit

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="personify-smtp", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def _close_all(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            await _quit(client)
        # let the transports finish closing (a TLS shutdown takes a round trip) before the loop
        # stops: a transport left half-closed would leak its socket
        await asyncio.sleep(0.05 if self.settings.tls != "none" else 0)
        for _ in range(3):
            await asyncio.sleep(0)

    # -- the pool
    async def _acquire(self) -> aiosmtplib.SMTP:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.pool_size)
        await self._slots.acquire()
        if self._outage is not None:  # found down while this one waited for a slot
            self._slots.release()
            raise self._outage
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client
            client.close()
        try:
            return await self._connect()
        except BaseException:
            self._slots.release()
            raise

    async def _release(self, client: aiosmtplib.SMTP, healthy: bool) -> None:
        assert self._slots is not None
        if healthy and client.is_connected:
            self._idle.append(client)
        else:
            await _quit(client)
        self._slots.release()

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = _Client(
            hostname=self.host,
            port=self.port,
            use_tls=s.tls == "implicit",
            start_tls=s.tls == "starttls",
            validate_certs=s.verify_certificates,
            tls_context=self._tls_context,
            timeout=s.timeout_seconds,
            local_hostname=s.local_hostname,
            username=s.username,
            password=s.password.reveal() if s.password else None,
        )
        try:
            await client.connect()
        except BaseException:
            client.close()  # a refused login or STARTTLS leaves the socket open
            raise
        self.connections_opened += 1
        self._connect_failures = 0
        return client

    # -- one message
    async def _send(self, envelope: Envelope) -> Delivered:
        before = self.ledger.get(envelope.key)
        if before is not None:
            return Delivered(envelope.key, False, before)
        running = self._inflight.get(envelope.key)
        if running is not None:  # the same key twice in one batch: sent once
            done = await asyncio.shield(running)
            return Delivered(done.key, False, done.location)
        task = asyncio.ensure_future(self._send_new(envelope))
        self._inflight[envelope.key] = task
        try:
            return await asyncio.shield(task)
        finally:
            if task.done():
                self._inflight.pop(envelope.key, None)

    async def _send_new(self, envelope: Envelope) -> Delivered:
        sender, recipients = self._addresses(envelope)
        data = envelope.raw
        if self.signer is not None:
            data = self.signer.sign(data)
        if self.bucket is not None and self._outage is None:
            wait = self.bucket.reserve()
            if wait > 0 and self._down is not None:
                with contextlib.suppress(TimeoutError):  # the turn came, or the server is down
                    await asyncio.wait_for(self._down.wait(), wait)
        reply = await self._attempts(envelope.key, lambda c: c.sendmail(sender, recipients, data))
        found = _QUEUED.search(reply)
        location = f"smtp://{self.host}:{self.port}/{found.group(1) if found else reply.strip()}"
        self.ledger.record(envelope.key, location)
        return Delivered(envelope.key, True, location)

    def _addresses(self, envelope: Envelope) -> tuple[str, list[str]]:
        recipient, sender = envelope.recipient, envelope.sender
        if not recipient or not sender:  # an envelope made without them: read the headers
            msg = envelope.message
            recipient = recipient or next(
                (a.addr_spec for a in getattr(msg["To"], "addresses", ())), ""
            )
            sender = sender or next(
                (a.addr_spec for a in getattr(msg["From"], "addresses", ())), ""
            )
        if not recipient:
            raise DeliveryRejected("the message has no To address", key=envelope.key)
        return self.settings.envelope_from or sender, [recipient]

    async def _attempts(
        self, key: str, act: Callable[[aiosmtplib.SMTP], Awaitable[tuple[Any, str]]]
    ) -> str:
        last: DeliveryError | None = None
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(self.retry_pause * 2 ** (attempt - 1), 5.0))
            try:
                if self._outage is not None:
                    raise self._outage
                client = await self._acquire()
            except DeliveryUnavailable as outage:
                raise DeliveryUnavailable(outage.message, key=key, hint=outage.hint) from None
            except aiosmtplib.SMTPAuthenticationError as e:
                refused = DeliveryUnavailable(
                    f"the SMTP server refused the credentials ({e.code})",
                    key=key,
                    hint="check delivery.username and delivery.password",
                )
                self._declare_outage(refused)
                raise refused from None
            except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as e:
                down = self._temporary(key, "connecting", e)
                self._connect_failures += 1
                if self._connect_failures >= attempts:  # as many in a row as one message tries
                    self._declare_outage(down)
                last = down
                continue
            if isinstance(client, _Client):
                client.data_started = False
            try:
                _, reply = await act(client)
            except aiosmtplib.SMTPSenderRefused as e:  # MAIL FROM: every message, not this one
                log.warning("SMTP sender refused: %d", e.code)
                await self._release(client, await _reset(client))
                refused = DeliveryUnavailable(
                    f"the SMTP server refused the sender ({e.code})",
                    key=key,
                    hint="check delivery.username and delivery.password (the server may require "
                    "AUTH) and the sender (delivery.envelope_from, email.from_address)",
                )
                self._declare_outage(refused)
                raise refused from None
            except aiosmtplib.SMTPRecipientsRefused as e:
                code = min((r.code for r in e.recipients), default=550)
                await self._release(client, await _reset(client))
                if any(_RELAY.search(str(r.message)) for r in e.recipients):
                    # the server relays for nobody unauthenticated: every message, not this one
                    log.warning("SMTP relay refused: %d", code)
                    refused = DeliveryUnavailable(
                        f"the SMTP server refuses to relay ({code}): it sends for no one until "
                        "this sender authenticates or is allowed",
                        key=key,
                        hint="set delivery.username and delivery.password (or allow this host "
                        "on the server); the messages stay queued",
                    )
                    self._declare_outage(refused)
                    raise refused from None
                last = self._refused(key, code, "recipient refused")
            except aiosmtplib.SMTPServerDisconnected as e:
                last = self._temporary(key, "sending", e)
                await self._release(client, False)
                if getattr(client, "data_started", False):
                    raise self._unanswered(key, e) from None
            except aiosmtplib.SMTPResponseException as e:
                last = self._refused(key, e.code, "message refused")
                await self._release(client, await _reset(client))
            except (*_CONNECTION_ERRORS, aiosmtplib.SMTPException) as e:
                last = self._temporary(key, "sending", e)
                await self._release(client, False)
                if getattr(client, "data_started", False):
                    raise self._unanswered(key, e) from None
            except BaseException:
                await self._release(client, False)
                raise
            else:
                await self._release(client, True)
                return reply
            if isinstance(last, DeliveryRejected):
                raise last
        assert last is not None
        raise last

    def _refused(self, key: str, code: int, what: str) -> DeliveryError:
        log.warning("SMTP %s: %d", what, code)
        if 500 <= code < 600:
            return DeliveryRejected(f"the SMTP server {what}: {code} (permanent)", key=key)
        if code == 421:  # the service is closing: the server, not this message
            return DeliveryUnavailable(f"the SMTP server {what}: {code} (temporary)", key=key)
        return DeliveryDeferred(f"the SMTP server {what}: {code} (temporary)", key=key)

    def _unanswered(self, key: str, e: BaseException) -> DeliveryUnavailable:
        """The message went out and its answer was lost: the server may have it. Sent again now,
        it could arrive once per attempt: it waits for the next run instead."""
        return DeliveryUnavailable(
            f"SMTP server {self.host}:{self.port} did not answer the message "
            f"({type(e).__name__}); not sent again in this run: it may have been accepted",
            key=key,
            hint="the server is slow or down (raise delivery.timeout_seconds if it is slow); "
            "the message stays queued",
        )

    def _temporary(self, key: str, when: str, e: BaseException) -> DeliveryUnavailable:
        log.warning("SMTP %s %s:%d failed: %s", when, self.host, self.port, type(e).__name__)
        return DeliveryUnavailable(
            f"SMTP server {self.host}:{self.port} unavailable while {when} "
            f"({type(e).__name__}: {_masked(str(e))})",
            key=key,
            hint="check delivery.host, port and tls, and that the server is up",
        )


_RELAY = re.compile(r"\brelay(?:ing)?\b", re.IGNORECASE)
"""A recipient refusal that is the server's policy for every unauthenticated message ("5.7.1
Relay access denied", "Relaying denied", "relay not permitted"), not this address's."""


async def _reset(client: aiosmtplib.SMTP) -> bool:
    """RSET after a failed transaction so the connection can be reused; False if it cannot."""
    if not client.is_connected:
        return False
    try:
        await client.rset()
        return True
    except Exception:
        return False


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        if client.is_connected:
            await client.quit()
    except Exception as e:  # saying goodbye is best effort
        log.debug("SMTP QUIT failed: %s", type(e).__name__)
    finally:
        client.close()


def tls_context(verify: bool, cafile: str | None) -> ssl.SSLContext:
    """The TLS settings of a connection: the system's authorities or ``cafile``; no checks at all
    when ``verify`` is false."""
    context = ssl.create_default_context(cafile=cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
