"""The SMTP transport against a real SMTP server (aiosmtpd on loopback): what arrives, parsed back
with the ``email`` package; TLS, AUTH, the pool, reconnects, refusals, once per key."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.unit.delivery.servers import (
    PASSWORD,
    USER,
    Handler,
    envelope,
    free_port,
    self_signed,
    smtp_server,
)

from personify.config import SmtpDelivery
from personify.delivery.ledger import SentLedger
from personify.delivery.ratelimit import TokenBucket
from personify.delivery.smtp import SmtpTransport, tls_context
from personify.delivery.transport import (
    Delivered,
    DeliveryDeferred,
    DeliveryRejected,
    DeliveryUnavailable,
    send_many,
)


def settings(port: int, **kw: object) -> SmtpDelivery:
    doc = {"kind": "smtp", "host": "127.0.0.1", "port": port, "tls": "none", **kw}
    return msgspec.convert(doc, SmtpDelivery, dec_hook=_secret)


def _secret(type_: type, obj: object) -> object:
    from personify.config import Secret

    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError


def test_message_arrives_whole_and_parses_back() -> None:
    with smtp_server() as server, SmtpTransport(settings(server.port)) as smtp:
        done = smtp.send(envelope())
        assert done.new and done.location.endswith("/Q0001")
        [got] = server.handler.received
    assert got.mail_from == "shop@example.com"
    assert got.rcpt_tos == ["zoe@xn--exmple-cua.org"]
    assert b"\r\n" in got.data and b"\n" not in got.data.replace(b"\r\n", b"")
    msg = got.message
    assert msg["From"] == "My Shop <shop@example.com>"
    assert msg["To"].addresses[0].display_name == "Zoë Ünal"
    assert msg["Subject"] == "Zoë, your cart is waiting ☕"
    assert msg["Date"].datetime.year == 2026
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@example.com>")
    assert msg["List-Unsubscribe"] == (
        "<https://shop.example/unsubscribe/TOKEN>, <mailto:unsub@example.com?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    assert text.get_content().replace("\r\n", "\n") == "Your cart: Trail Boot — 89,00 €\n"
    assert "<b>Trail Boot</b> — 89,00 €" in html.get_content()


def test_a_key_is_sent_once_across_transports(tmp_path: Path) -> None:
    ledger = tmp_path / "smtp.sent"
    with smtp_server() as server:
        with SmtpTransport(settings(server.port), ledger=SentLedger(ledger)) as smtp:
            first = smtp.send(envelope("k1"))
            again = smtp.send(envelope("k1", subject="changed"))
        assert first.new and not again.new and again.location == first.location
        # a new process (a rerun after a crash) reads what was sent
        with SmtpTransport(settings(server.port), ledger=SentLedger(ledger)) as smtp:
            assert not smtp.send(envelope("k1")).new
            assert smtp.send(envelope("k2")).new
        assert len(server.handler.received) == 2
    assert b"k1" not in ledger.read_bytes()  # keys are stored hashed


def test_pool_reuses_connections_for_a_batch() -> None:
    with smtp_server() as server, SmtpTransport(settings(server.port, pool_size=3)) as smtp:
        batch = [envelope(f"key-{i}", to=f"p{i}@x.org") for i in range(30)]
        outcomes = send_many(smtp, [*batch, batch[0]])
        assert all(isinstance(o, Delivered) for o in outcomes)
        assert sum(o.new for o in outcomes if isinstance(o, Delivered)) == 30
        assert len(server.handler.received) == 30
        assert {r.rcpt_tos[0] for r in server.handler.received} == {
            f"p{i}@x.org" for i in range(30)
        }
        assert smtp.connections_opened <= 3
        smtp.send(envelope("one-more"))
        assert smtp.connections_opened <= 3


def test_reconnects_after_the_server_restarts() -> None:
    port = free_port()
    handler = Handler()
    smtp = SmtpTransport(settings(port, retries=3), retry_pause=0.05)
    try:
        with smtp_server(port=port, handler=handler):
            assert smtp.send(envelope("a")).new
        with smtp_server(port=port, handler=handler):  # pooled connection is dead now
            assert smtp.send(envelope("b")).new
        assert len(handler.received) == 2 and smtp.connections_opened == 2
    finally:
        smtp.close()


def test_server_down_is_unavailable_and_nothing_is_recorded() -> None:
    smtp = SmtpTransport(settings(free_port(), retries=1, timeout_seconds=2), retry_pause=0.01)
    try:
        with pytest.raises(DeliveryUnavailable) as err:
            smtp.send(envelope("down"))
        assert err.value.key == "down" and "zoë" not in str(err.value)
        assert smtp.ledger.get("down") is None
    finally:
        smtp.close()


def test_refusals_permanent_and_temporary() -> None:
    handler = Handler(
        refuse={
            "gone@x.org": "550 5.1.1 <gone@x.org> no such user",
            "busy@x.org": "451 later",
            "closing@x.org": "421 4.3.2 shutting down",
        }
    )
    with (
        smtp_server(handler=handler) as server,
        SmtpTransport(settings(server.port, retries=1), retry_pause=0.01) as smtp,
    ):
        outcomes = send_many(
            smtp,
            [
                envelope("g", to="gone@x.org"),
                envelope("b", to="busy@x.org"),
                envelope("c", to="closing@x.org"),
                envelope("ok"),
            ],
        )
        gone, busy, closing, ok = outcomes
        assert isinstance(gone, DeliveryRejected) and "550" in str(gone)
        assert "gone@x.org" not in str(gone)
        # a 4xx for this message defers it alone; 421 is the server's, an outage
        assert isinstance(busy, DeliveryDeferred) and "451" in str(busy)
        assert isinstance(closing, DeliveryUnavailable) and "421" in str(closing)
        assert not isinstance(closing, DeliveryDeferred)
        assert isinstance(ok, Delivered) and ok.new
        # the connection survived the refusals (RSET) and is reused
        assert smtp.send(envelope("after")).new
        assert [r.rcpt_tos for r in server.handler.received] == [["zoe@xn--exmple-cua.org"]] * 2


class _SenderRefusing(Handler):
    async def handle_MAIL(  # noqa: N802
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        return "553 5.7.1 sender not allowed"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_refused_sender_is_an_outage_not_a_failure_of_each_message() -> None:
    """AUTH required but no credentials configured (530 at MAIL FROM), or a sender the server
    does not allow (553): the server would refuse every message. They stay queued (the send loop
    stops) instead of each being recorded failed for good."""
    for refusing, code in (
        (smtp_server(auth=True), "530"),
        (smtp_server(handler=_SenderRefusing()), "553"),
    ):
        with (
            refusing as server,
            SmtpTransport(settings(server.port, retries=2), retry_pause=0.01) as smtp,
        ):
            outcomes = send_many(smtp, [envelope("a"), envelope("b"), envelope("c")])
            assert all(isinstance(o, DeliveryUnavailable) for o in outcomes), outcomes
            assert not any(isinstance(o, DeliveryDeferred) for o in outcomes)
            assert code in str(outcomes[0]) and "sender" in str(outcomes[0])
            assert server.handler.received == []


class _NoRelay(Handler):
    async def handle_RCPT(  # noqa: N802
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        return "554 5.7.1 <" + address + ">: Relay access denied"


def test_a_server_that_relays_for_no_one_is_an_outage_not_a_failure_of_each_message() -> None:
    """Credentials missing on a server that relays only for authenticated senders: every
    recipient is refused (554 5.7.1 Relay access denied). That is the server's policy, not the
    addresses': the messages stay queued instead of each being recorded failed for good."""
    with (
        smtp_server(handler=_NoRelay()) as server,
        SmtpTransport(settings(server.port, retries=2), retry_pause=0.01) as smtp,
    ):
        outcomes = send_many(smtp, [envelope("a"), envelope("b"), envelope("c")])
        assert all(isinstance(o, DeliveryUnavailable) for o in outcomes), outcomes
        assert not any(isinstance(o, DeliveryDeferred) for o in outcomes)
        assert "refuses to relay (554)" in str(outcomes[0])
        assert "@" not in str(outcomes[0]) and server.handler.received == []


class _SlowToAnswer(Handler):
    delay = 1.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        reply = await super().handle_DATA(server, session, envelope)  # the message is taken
        await asyncio.sleep(self.delay)
        return reply


def test_a_message_whose_answer_is_lost_is_not_sent_again_at_once() -> None:
    """The server took the message but its 250 came after the timeout: retrying would deliver
    one more copy per attempt. It is unavailable (stays queued) after one attempt."""
    handler = _SlowToAnswer()
    with (
        smtp_server(handler=handler) as server,
        SmtpTransport(
            settings(server.port, retries=2, timeout_seconds=0.3), retry_pause=0.01
        ) as smtp,
    ):
        with pytest.raises(DeliveryUnavailable, match="did not answer the message") as err:
            smtp.send(envelope("slow"))
        assert not isinstance(err.value, DeliveryDeferred)
        assert len(handler.received) == 1
        assert smtp.ledger.get("slow") is None
        handler.delay = 0  # answering in time again: the next run sends the others
        assert smtp.send(envelope("next")).new
        assert len(handler.received) == 2


def test_starttls_with_auth(tmp_path: Path) -> None:
    cert = self_signed(tmp_path / "tls")
    with smtp_server(starttls=cert, auth=True) as server:
        s = settings(
            server.port, tls="starttls", username=USER, password=PASSWORD, ca_file=str(cert.cert)
        )
        with SmtpTransport(s, tls_context=tls_context(True, str(cert.cert))) as smtp:
            assert smtp.send(envelope()).new
        [got] = server.handler.received
        assert got.tls and got.authenticated
        assert got.message["Subject"] == "Zoë, your cart is waiting ☕"

        wrong = settings(server.port, tls="starttls", username=USER, password="nope", retries=0)
        with (
            SmtpTransport(wrong, tls_context=tls_context(True, str(cert.cert))) as smtp,
            pytest.raises(DeliveryUnavailable, match="credentials"),
        ):
            smtp.send(envelope("x"))
    assert len(server.handler.received) == 1


def test_starttls_required_when_configured() -> None:
    with smtp_server() as server:  # offers no STARTTLS
        with (
            SmtpTransport(settings(server.port, tls="starttls", retries=0)) as smtp,
            pytest.raises(DeliveryUnavailable),
        ):
            smtp.send(envelope())
        assert server.handler.received == []


def test_implicit_tls_and_the_certificate_is_checked(tmp_path: Path) -> None:
    cert = self_signed(tmp_path / "tls")
    with smtp_server(implicit=cert) as server:
        s = settings(server.port, tls="implicit", timeout_seconds=3, retries=0)
        # not trusted without the CA file (aiosmtpd leaks a socket when STARTTLS fails, so the
        # refusal is shown with implicit TLS)
        with (
            SmtpTransport(s, tls_context=tls_context(True, None)) as smtp,
            pytest.raises(DeliveryUnavailable),
        ):
            smtp.send(envelope("untrusted"))
        with SmtpTransport(s, tls_context=tls_context(True, str(cert.cert))) as smtp:
            assert smtp.send(envelope()).new
        [got] = server.handler.received
        assert got.tls


def test_tls_context_without_verification() -> None:
    ctx = tls_context(False, None)
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_a_batch_fails_fast_once_the_server_is_unreachable() -> None:
    """A server that accepts connections but never greets: the first messages wait out their
    timeouts, the rest of the batch fails at once instead of each waiting too."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    s = settings(port, pool_size=2, retries=1, timeout_seconds=0.5)
    bucket = TokenBucket(1.0, 1)  # one message a second: 20 s for the batch unless woken
    try:
        started = time.monotonic()
        with SmtpTransport(s, retry_pause=0.01, bucket=bucket) as smtp:
            outcomes = smtp.send_many([envelope(f"k{i}") for i in range(20)])
        assert time.monotonic() - started < 8
        assert all(isinstance(o, DeliveryUnavailable) for o in outcomes)
        assert [o.key for o in outcomes if isinstance(o, DeliveryUnavailable)] == [
            f"k{i}" for i in range(20)
        ]
        assert len(accepted) <= 2 * 2 + 2  # pool_size x attempts (+ stragglers), not 20 x 2
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
