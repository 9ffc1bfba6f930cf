"""Real local servers for delivery tests: an SMTP server (aiosmtpd) with optional STARTTLS, implicit
TLS and AUTH, a self-signed certificate made on the spot, and messages built like journeys build
them."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from personify.delivery import Envelope, Unsubscribe, address, build_message
from personify.messages import RenderedEmail

WHEN = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.UTC)
USER, PASSWORD = "mailer", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def envelope(
    key: str = "abandoned_cart:wait:c1:cart-9",
    *,
    to: str = "zoe@exämple.org",
    name: str = "Zoë Ünal",
    subject: str = "Zoë, your cart is waiting ☕",
    html: str = "<p>Your cart: <b>Trail Boot</b> — 89,00 €</p>",
    text: str = "Your cart: Trail Boot — 89,00 €\n",
) -> Envelope:
    email = RenderedEmail("abandoned_cart", "v1", subject, html, text)
    msg = build_message(
        email,
        sender=address("shop@example.com", "My Shop"),
        recipient=address(to, name),
        date=WHEN,
        key=key,
        unsubscribe=Unsubscribe("https://shop.example/unsubscribe/TOKEN", "unsub@example.com"),
    )
    return Envelope(key, "c1", "abandoned_cart", subject, msg)


def parse(data: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    return msg


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    authenticated: bool

    @property
    def message(self) -> EmailMessage:
        return parse(self.data)


@dataclass
class Handler:
    """Stores every message; ``refuse`` maps a recipient to an SMTP reply refusing it."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    sessions: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.sessions.add(id(session))
            n = len(self.received) + 1
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    server.transport.get_extra_info("ssl_object") is not None,
                    bool(session.authenticated),
                )
            )
        return f"250 2.0.0 Ok: queued as Q{n:04d}"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False)


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def self_signed(folder: Path) -> Certificate:
    """A certificate for ``localhost`` and 127.0.0.1, signed by itself."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    out = Certificate(folder / "cert.pem", folder / "key.pem")
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return out


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Handler
    controller: Controller

    def stop(self) -> None:
        self.controller.stop()


@contextmanager
def smtp_server(
    *,
    starttls: Certificate | None = None,
    implicit: Certificate | None = None,
    auth: bool = False,
    port: int | None = None,
    handler: Handler | None = None,
) -> Iterator[SmtpServer]:
    """An aiosmtpd server on 127.0.0.1 (a free port unless given), stopped afterwards."""
    handler = handler or Handler()
    kwargs: dict[str, Any] = {}
    if starttls is not None:
        kwargs.update(tls_context=starttls.server_context(), require_starttls=True)
    if implicit is not None:
        kwargs.update(ssl_context=implicit.server_context())
    if auth:
        kwargs.update(
            authenticator=_authenticator,
            auth_require_tls=starttls is not None or implicit is not None,
            auth_required=True,
        )
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    server = SmtpServer("127.0.0.1", port, handler, controller)
    try:
        yield server
    finally:
        controller.stop()
