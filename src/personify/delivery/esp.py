"""The ESP transport: each message posted to an HTTP API as SendGrid v3 ``/v3/mail/send`` JSON
(or, with ``api: postmark``, as Postmark's ``/email`` JSON: :func:`postmark_payload`).

The body: ``personalizations`` (the recipient, and ``custom_args`` carrying the idempotency key
and customer id — SendGrid echoes custom args in its event webhooks, which is how a bounce finds
its customer), ``from``, ``reply_to``, ``subject``, ``content`` (``text/plain`` then
``text/html``), ``headers`` (``List-Unsubscribe``, ``List-Unsubscribe-Post``, ``Message-ID``
…) and ``categories`` (the template). The request also carries an ``Idempotency-Key`` header.

* **Outcomes.** 2xx → :class:`~personify.delivery.transport.Delivered` with the ESP's message
  id (``X-Message-Id``); other 4xx (a bad address, a body the API refuses) →
  :class:`DeliveryRejected` naming the status and the API's error fields; 401/403 and 429, 5xx
  and network errors after the retries → :class:`DeliveryUnavailable`.
* **Retries.** Up to ``retries`` more attempts on 429, 5xx, timeouts and connection errors,
  waiting ``Retry-After`` when the API sends it (seconds or an HTTP date) and otherwise a
  full-jitter exponential backoff, each wait at most ``max_backoff_seconds``. Not when the
  request went out whole and its answer never came (a read timeout or error): the ESP may have
  accepted it and would send it again on each retry, so the message stays queued
  (:class:`DeliveryUnavailable`) for the next run.
* **Once per key, rate limit, batches.** A :class:`~personify.delivery.ledger.SentLedger`; a
  token bucket before each message; :meth:`EspTransport.send_many` keeps ``concurrency``
  requests in flight on one pooled HTTP client.

Addresses never reach logs or error messages (the API's texts are masked).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import msgspec

from personify.config import EspDelivery, Project
from personify.delivery.ledger import SentLedger
from personify.delivery.ratelimit import TokenBucket, bucket_for
from personify.delivery.transport import (
    Delivered,
    DeliveryError,
    DeliveryRejected,
    DeliveryUnavailable,
    Envelope,
)

log = logging.getLogger("personify.delivery.esp")

PASSED_HEADERS = (
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Message-ID",
    "X-Personify-Template",
    "X-Personify-Test",
)
"""Headers of the MIME message repeated in the API call (the ESP builds its own MIME)."""
_EMAILISH = re.compile(r"[^\s<>@\"']+@[^\s<>@\"']+")
_RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _masked(text: str) -> str:
    return _EMAILISH.sub("<address>", text)[:300]


def _mailbox(msg: EmailMessage, header: str) -> dict[str, str] | None:
    found = getattr(msg[header], "addresses", ())
    if not found:
        return None
    box = {"email": found[0].addr_spec}
    if found[0].display_name:
        box["name"] = found[0].display_name
    return box


def _addresses(envelope: Envelope) -> tuple[dict[str, str], dict[str, str]]:
    """The recipient and the sender of ``envelope`` (``email``, ``name``)."""
    msg = envelope.message
    to = _mailbox(msg, "To")
    sender = _mailbox(msg, "From")
    if to is None or sender is None:
        raise DeliveryRejected("the message has no To or no From address", key=envelope.key)
    if envelope.recipient:
        to["email"] = envelope.recipient
    return to, sender


def _bodies(envelope: Envelope) -> dict[str, str]:
    """The message's text and HTML bodies by subtype (``plain``, ``html``), LF line ends."""
    out = {}
    for subtype in ("plain", "html"):
        part = envelope.message.get_body((subtype,))
        if part is not None:
            text = part.get_content()
            assert isinstance(text, str)
            out[subtype] = text.replace("\r\n", "\n")
    return out


def _tags(envelope: Envelope) -> dict[str, str]:
    """What the ESP echoes in its webhooks (``custom_args``, ``Metadata``): which message. A
    test send's (``X-Personify-Test``, sent to staff) names no customer, so that a bounce or
    complaint of the test address never suppresses the customer whose email it showed."""
    if envelope.message["X-Personify-Test"] is not None:
        return {"personify_key": envelope.key, "personify_test": "1"}
    return {"personify_key": envelope.key, "customer_id": envelope.customer_id}


def payload(envelope: Envelope) -> dict[str, Any]:
    """The SendGrid v3 mail/send body of ``envelope``."""
    msg = envelope.message
    to, sender = _addresses(envelope)
    custom_args = _tags(envelope)
    content = [{"type": f"text/{k}", "value": v} for k, v in _bodies(envelope).items()]
    body: dict[str, Any] = {
        "personalizations": [{"to": [to], "custom_args": custom_args}],
        "from": sender,
        "subject": str(msg["Subject"] or envelope.subject),
        "content": content,
        "headers": {h: str(msg[h]) for h in PASSED_HEADERS if msg[h] is not None},
        "custom_args": custom_args,
        "categories": [envelope.template[:255]],
    }
    reply_to = _mailbox(msg, "Reply-To")
    if reply_to is not None:
        body["reply_to"] = reply_to
    return body


def _address(box: dict[str, str]) -> str:
    return email.utils.formataddr((box.get("name", ""), box["email"]))


def postmark_payload(envelope: Envelope) -> dict[str, Any]:
    """The Postmark ``/email`` body of ``envelope``: ``Metadata`` carries the idempotency key
    and customer id (Postmark echoes it in its delivery, bounce, open and click webhooks, which
    is how :mod:`personify.engagement.esp` ties them to the message); ``Tag`` is the template."""
    msg = envelope.message
    to, sender = _addresses(envelope)
    bodies = _bodies(envelope)
    body: dict[str, Any] = {
        "From": _address(sender),
        "To": _address(to),
        "Subject": str(msg["Subject"] or envelope.subject),
        "Headers": [
            {"Name": h, "Value": str(msg[h])} for h in PASSED_HEADERS if msg[h] is not None
        ],
        "Tag": envelope.template[:1000],
        "Metadata": _tags(envelope),
    }
    if "plain" in bodies:
        body["TextBody"] = bodies["plain"]
    if "html" in bodies:
        body["HtmlBody"] = bodies["html"]
    reply_to = _mailbox(msg, "Reply-To")
    if reply_to is not None:
        body["ReplyTo"] = _address(reply_to)
    return body


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class EspTransport:
    """Posts each message to an ESP's HTTP API; see the module docstring."""

    name = "esp"

    def __init__(
        self,
        settings: EspDelivery,
        *,
        ledger: SentLedger | None = None,
        bucket: TokenBucket | None = None,
        sleep: Callable[[float], object] = time.sleep,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``sleep`` and ``rng``: injectable for tests (waits recorded, jitter fixed);
        ``transport``: an httpx transport (e.g. ``httpx.MockTransport``)."""
        self.settings = settings
        self.ledger = ledger or SentLedger(None)
        self.bucket = bucket
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._rng_lock = threading.Lock()
        timeout = httpx.Timeout(settings.timeout_seconds)
        limits = httpx.Limits(max_connections=settings.concurrency)
        self._client = httpx.Client(
            timeout=timeout,
            limits=limits,
            transport=transport,
            trust_env=False,
            headers={
                **(
                    {
                        "x-postmark-server-token": settings.api_key.reveal(),
                        "accept": "application/json",
                    }
                    if settings.api == "postmark"
                    else {"authorization": f"Bearer {settings.api_key.reveal()}"}
                ),
                "user-agent": "personify",
            },
        )
        self.requests = 0
        """HTTP requests made (retries included)."""
        self._outage: DeliveryUnavailable | None = None

    @classmethod
    def from_project(cls, project: Project, settings: EspDelivery) -> EspTransport:
        """The transport ``delivery: {kind: esp, …}`` configures (ledger in ``.personify/``)."""
        return cls(
            settings,
            ledger=SentLedger(project.state_dir / "delivery" / "esp.sent"),
            bucket=bucket_for(settings),
        )

    def send(self, envelope: Envelope) -> Delivered:
        """Post one message (nothing when its key was sent before). Raises
        :class:`DeliveryRejected` or :class:`DeliveryUnavailable`."""
        self._outage = None
        return self._send(envelope)

    def _send(self, envelope: Envelope) -> Delivered:
        before = self.ledger.get(envelope.key)
        if before is not None:
            return Delivered(envelope.key, False, before)
        build = postmark_payload if self.settings.api == "postmark" else payload
        body = msgspec.json.encode(build(envelope))
        if self.bucket is not None:
            self.bucket.acquire(self._sleep)
        location = self._post(envelope.key, body)
        self.ledger.record(envelope.key, location)
        return Delivered(envelope.key, True, location)

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Delivered | DeliveryError]:
        """Post a batch, ``concurrency`` requests in flight; one outcome per envelope. The same
        key twice in a batch is posted once. Once the ESP proves unavailable (retries exhausted,
        the key refused), the rest of the batch fails at once with the same
        :class:`DeliveryUnavailable`."""
        self._outage = None
        seen: dict[str, int] = {}
        firsts: list[Envelope] = []
        for e in envelopes:
            if e.key not in seen:
                seen[e.key] = len(firsts)
                firsts.append(e)

        def one(e: Envelope) -> Delivered | DeliveryError:
            outage = self._outage
            if outage is not None:
                return DeliveryUnavailable(outage.message, key=e.key, hint=outage.hint)
            try:
                return self._send(e)
            except DeliveryUnavailable as err:
                self._outage = err
                return err
            except DeliveryError as err:
                return err

        workers = min(self.settings.concurrency, max(1, len(firsts)))
        with ThreadPoolExecutor(workers, thread_name_prefix="personify-esp") as pool:
            results = list(pool.map(one, firsts))
        out: list[Delivered | DeliveryError] = []
        used: set[str] = set()
        for e in envelopes:
            result = results[seen[e.key]]
            if e.key in used and isinstance(result, Delivered):
                result = Delivered(result.key, False, result.location)
            used.add(e.key)
            out.append(result)
        return out

    def close(self) -> None:
        """Close the pooled HTTP connections."""
        self._client.close()

    def __enter__(self) -> EspTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request, with retries
    def _post(self, key: str, body: bytes) -> str:
        s = self.settings
        headers = {"content-type": "application/json", "idempotency-key": key}
        for attempt in range(s.retries + 1):
            wait: float | None = None
            try:
                self.requests += 1
                response = self._client.post(s.url, content=body, headers=headers)
            except (httpx.ReadTimeout, httpx.ReadError) as e:
                # the whole request went out and no answer came: the ESP may have accepted it
                # (and SendGrid and Postmark do not deduplicate by Idempotency-Key); posting it
                # again now would send it again on every attempt
                log.warning("ESP attempt %d: no answer (%s)", attempt + 1, type(e).__name__)
                raise DeliveryUnavailable(
                    f"no answer from the ESP ({type(e).__name__} after posting to {s.url}); "
                    "not posted again in this run: it may have been accepted",
                    key=key,
                    hint="the ESP is slow or down (raise delivery.timeout_seconds if it is slow); "
                    "the message stays queued",
                ) from None
            except httpx.TransportError as e:
                problem = f"{type(e).__name__} reaching {s.url}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._location(response)
                if status in (401, 403):
                    raise DeliveryUnavailable(
                        f"the ESP refused the API key ({status})",
                        key=key,
                        hint="check delivery.api_key and its permissions (mail send)",
                    )
                if status not in _RETRY_STATUS:
                    raise DeliveryRejected(
                        f"the ESP refused the message: {status} {_errors(response)}", key=key
                    )
                problem = f"{status} from the ESP"
                wait = retry_after(response.headers.get("retry-after"))
            log.warning("ESP attempt %d failed: %s", attempt + 1, problem)
            if attempt == s.retries:
                raise DeliveryUnavailable(
                    f"the ESP did not accept the message after {attempt + 1} attempts "
                    f"(last: {problem})",
                    key=key,
                    hint="the ESP may be down or rate limiting; the message stays queued",
                )
            self._sleep(self._backoff(attempt, wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        s = self.settings
        if retry_after_s is not None:
            return min(retry_after_s, s.max_backoff_seconds)
        ceiling = min(s.max_backoff_seconds, s.backoff_seconds * 2**attempt)
        with self._rng_lock:
            return self._rng.uniform(0, ceiling)

    def _location(self, response: httpx.Response) -> str:
        message_id = response.headers.get("x-message-id")
        if message_id:
            return f"esp:{message_id}"
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for field in ("id", "message_id", "MessageID"):
                if isinstance(doc.get(field), str | int):
                    return f"esp:{doc[field]}"
        return f"esp:accepted {response.status_code}"


def _errors(response: httpx.Response) -> str:
    """The API's own explanation, addresses masked (``errors[].message`` and ``field``)."""
    try:
        doc = response.json()
    except ValueError:
        return _masked(response.text)
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str):  # Postmark's
        return _masked(f"{doc['Message']} (ErrorCode {doc.get('ErrorCode')})")
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        parts = []
        for err in doc["errors"][:5]:
            if isinstance(err, dict):
                field = f"{err['field']}: " if err.get("field") else ""
                parts.append(f"{field}{err.get('message', '')}")
        return _masked("; ".join(parts))
    return _masked(str(doc))
