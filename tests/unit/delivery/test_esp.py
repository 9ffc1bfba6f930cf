"""The ESP transport against a real HTTP server on loopback (``http.server`` in a thread): the
SendGrid v3 body, retries with backoff honouring Retry-After, clear errors, once per key."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.loopback import QuietHandler, serve
from tests.unit.delivery.servers import envelope, free_port

from personify.config import EspDelivery, Secret
from personify.delivery import (
    Delivered,
    DeliveryRejected,
    DeliveryUnavailable,
    EspTransport,
    send_many,
)
from personify.delivery.esp import retry_after
from personify.delivery.ledger import SentLedger
from personify.engagement.esp import parse_touches

API_KEY = "SG.test-key"


@dataclass
class Api:
    """A scripted mail/send endpoint: each request takes the next reply (default 202)."""

    replies: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    delay: float = 0.0
    """Seconds each reply waits (after the request was read and recorded)."""

    def reply(self) -> tuple[int, dict[str, str], bytes]:
        with self.lock:
            n = len(self.requests)
            if self.replies:
                return self.replies.pop(0)
        return 202, {"X-Message-Id": f"msg-{n}"}, b""


@contextmanager
def api_server() -> Iterator[Api]:
    api = Api()

    class Handler(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.body()
            with api.lock:
                api.requests.append(
                    ({k.lower(): v for k, v in self.headers.items()}, json.loads(body))
                )
            status, headers, out = api.reply()
            time.sleep(api.delay)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    with serve(Handler) as url:
        api.url = url + "/v3/mail/send"
        yield api


def settings(url: str, **kw: Any) -> EspDelivery:
    doc = {"kind": "esp", "api_key": API_KEY, "url": url, "backoff_seconds": 1.0, **kw}
    return msgspec.convert(doc, EspDelivery, dec_hook=lambda t, o: Secret(o))


def transport(api: Api, waits: list[float], **kw: Any) -> EspTransport:
    return EspTransport(settings(api.url, **kw), sleep=waits.append, rng=random.Random(7))


def test_posts_a_sendgrid_v3_body() -> None:
    waits: list[float] = []
    with api_server() as api, transport(api, waits) as esp:
        done = esp.send(envelope("cart:c1:9"))
    assert done == Delivered("cart:c1:9", True, "esp:msg-1")
    [(headers, body)] = api.requests
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["idempotency-key"] == "cart:c1:9"
    assert body["personalizations"] == [
        {
            "to": [{"email": "zoe@xn--exmple-cua.org", "name": "Zoë Ünal"}],
            "custom_args": {"personify_key": "cart:c1:9", "customer_id": "c1"},
        }
    ]
    assert body["from"] == {"email": "shop@example.com", "name": "My Shop"}
    assert body["subject"] == "Zoë, your cart is waiting ☕"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == "Your cart: Trail Boot — 89,00 €\n"
    assert "<b>Trail Boot</b> — 89,00 €" in body["content"][1]["value"]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert body["headers"]["List-Unsubscribe"].startswith("<https://shop.example/unsubscribe/")
    assert body["headers"]["Message-ID"].endswith("@example.com>")
    assert body["custom_args"]["personify_key"] == "cart:c1:9"
    assert body["categories"] == ["abandoned_cart"]
    assert waits == []


def test_retries_429_and_5xx_honouring_retry_after() -> None:
    waits: list[float] = []
    with api_server() as api, transport(api, waits, retries=3) as esp:
        api.replies = [
            (429, {"Retry-After": "7"}, b'{"errors":[{"message":"too many"}]}'),
            (503, {}, b""),
            (500, {}, b"oops"),
        ]
        done = esp.send(envelope("k"))
    assert done.new and done.location == "esp:msg-4"
    assert len(api.requests) == 4 and esp.requests == 4
    assert waits[0] == 7.0  # Retry-After wins
    assert 0 <= waits[1] <= 2.0 and 0 <= waits[2] <= 4.0  # full jitter, doubling ceiling
    assert len({json.dumps(b) for _, b in api.requests}) == 1  # the same body each time


def test_gives_up_as_unavailable_after_the_retries() -> None:
    waits: list[float] = []
    with api_server() as api, transport(api, waits, retries=2, max_backoff_seconds=5) as esp:
        api.replies = [(503, {"Retry-After": "3600"}, b"")] * 3
        with pytest.raises(DeliveryUnavailable, match="after 3 attempts") as err:
            esp.send(envelope("k"))
    assert err.value.key == "k"
    assert waits == [5, 5]  # capped by max_backoff_seconds
    assert esp.ledger.get("k") is None


def test_client_errors_are_rejections_with_the_reason_and_no_address() -> None:
    waits: list[float] = []
    error = {
        "errors": [
            {
                "message": "The to email zoe@xn--exmple-cua.org does not contain a valid address.",
                "field": "personalizations.0.to",
            }
        ]
    }
    with api_server() as api, transport(api, waits) as esp:
        api.replies = [(400, {}, json.dumps(error).encode())]
        with pytest.raises(DeliveryRejected) as err:
            esp.send(envelope("bad"))
        assert len(api.requests) == 1 and waits == []
        text = str(err.value)
        assert "400" in text and "personalizations.0.to" in text and "valid address" in text
        assert "zoe@" not in text
        api.replies = [(401, {}, b'{"errors":[{"message":"bad key"}]}')]
        with pytest.raises(DeliveryUnavailable, match="API key"):
            esp.send(envelope("auth"))


def test_network_errors_are_retried() -> None:
    waits: list[float] = []
    port = free_port()  # nothing listens
    s = settings(f"http://127.0.0.1:{port}/v3/mail/send", retries=2, timeout_seconds=2)
    with EspTransport(s, sleep=waits.append) as esp, pytest.raises(DeliveryUnavailable):
        esp.send(envelope("k"))
    assert len(waits) == 2 and esp.requests == 3


def test_a_post_without_an_answer_is_not_posted_again_at_once() -> None:
    """The ESP read the whole request but answered after the timeout: it may have accepted the
    message, and SendGrid does not deduplicate by Idempotency-Key, so each retry could be one
    more copy in the customer's inbox. The message stays queued instead (unavailable)."""
    waits: list[float] = []
    with api_server() as api, transport(api, waits, retries=3, timeout_seconds=0.2) as esp:
        api.delay = 0.6
        with pytest.raises(DeliveryUnavailable, match="no answer from the ESP") as err:
            esp.send(envelope("slow"))
        assert len(api.requests) == 1 and waits == []
        assert err.value.key == "slow" and esp.ledger.get("slow") is None


def test_once_per_key_and_batches(tmp_path: Path) -> None:
    waits: list[float] = []
    ledger = tmp_path / "esp.sent"
    with api_server() as api:
        s = settings(api.url, concurrency=4)
        with EspTransport(s, ledger=SentLedger(ledger), sleep=waits.append) as esp:
            batch = [envelope(f"k{i}", to=f"p{i}@x.org") for i in range(12)]
            outcomes = send_many(esp, [*batch, batch[3]])
            assert all(isinstance(o, Delivered) for o in outcomes)
            assert [o.new for o in outcomes if isinstance(o, Delivered)] == [True] * 12 + [False]
        with EspTransport(s, ledger=SentLedger(ledger), sleep=waits.append) as esp:
            assert not esp.send(envelope("k5")).new
        assert len(api.requests) == 12
        assert {b["personalizations"][0]["to"][0]["email"] for _, b in api.requests} == {
            f"p{i}@x.org" for i in range(12)
        }


def test_rate_limit_waits_between_messages() -> None:
    from personify.delivery.ratelimit import TokenBucket

    now = [0.0]
    waits: list[float] = []
    with api_server() as api:
        esp = EspTransport(
            settings(api.url),
            bucket=TokenBucket(2.0, 1, clock=lambda: now[0]),
            sleep=waits.append,
        )
        with esp:
            for i in range(3):
                esp.send(envelope(f"r{i}"))
    assert waits == [0.5, 1.0]  # a clock that never moves: each message half a second later


def test_retry_after_forms() -> None:
    now = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    assert retry_after("12") == 12.0
    assert retry_after("Sun, 01 Feb 2026 12:00:30 GMT", now) == 30.0
    assert retry_after("Sun, 01 Feb 2026 11:00:00 GMT", now) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_batch_fails_fast_once_the_esp_is_down() -> None:
    waits: list[float] = []
    with api_server() as api:
        api.replies = [(503, {}, b"")] * 100
        with transport(api, waits, retries=1, concurrency=2) as esp:
            outcomes = send_many(esp, [envelope(f"k{i}") for i in range(10)])
    assert all(isinstance(o, DeliveryUnavailable) for o in outcomes)
    assert len(api.requests) <= 2 * 2  # concurrency x attempts, not 10 x 2


def test_posts_a_postmark_body_whose_webhooks_name_the_message() -> None:
    """``api: postmark``: Postmark's /email JSON with the key in ``Metadata``, which Postmark
    echoes in its webhooks — an open reported that way is tied back to the message."""
    waits: list[float] = []
    with (
        api_server() as api,
        EspTransport(settings(api.url, api="postmark"), sleep=waits.append) as esp,
    ):
        api.replies.append((200, {}, b'{"ErrorCode":0,"Message":"OK","MessageID":"pm-7"}'))
        done = esp.send(envelope("cart:c1:9"))
        api.replies.append((422, {}, b'{"ErrorCode":300,"Message":"Invalid To for zoe@x.org"}'))
        with pytest.raises(DeliveryRejected) as refused:
            esp.send(envelope("cart:c2:9"))
    assert done == Delivered("cart:c1:9", True, "esp:pm-7")
    assert "Invalid To for <address> (ErrorCode 300)" in refused.value.message
    [(headers, body), _] = api.requests
    assert headers["x-postmark-server-token"] == API_KEY and "authorization" not in headers
    assert body["Metadata"] == {"personify_key": "cart:c1:9", "customer_id": "c1"}
    assert body["To"] == "=?utf-8?b?Wm/DqyDDnG5hbA==?= <zoe@xn--exmple-cua.org>"
    assert body["From"] == "My Shop <shop@example.com>"
    assert body["Subject"] == "Zoë, your cart is waiting ☕"
    assert body["TextBody"] == "Your cart: Trail Boot — 89,00 €\n"
    assert "<b>Trail Boot</b> — 89,00 €" in body["HtmlBody"]
    assert {"Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click"} in body[
        "Headers"
    ]
    assert body["Tag"] == "abandoned_cart"
    webhook = {
        "RecordType": "Open",
        "MessageID": "pm-7",
        "Metadata": body["Metadata"],  # what Postmark sends back
        "ReceivedAt": "2026-11-29T04:00:00Z",
        "UserAgent": "Mozilla/5.0 (Macintosh)",
    }
    [touch] = parse_touches("postmark", json.dumps(webhook).encode())
    assert (touch.what, touch.key, touch.customer_id) == ("open", "cart:c1:9", "c1")
