"""DKIM: messages signed over the list-unsubscribe headers, verified by dkimpy against the test's
own public key (a DNS lookup function that returns it), also after an SMTP round trip."""

from __future__ import annotations

from pathlib import Path

import dkim
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tests.unit.delivery.servers import envelope, smtp_server

from personify.config import Project, Secret, SmtpDelivery, parse_config
from personify.delivery.dkim import DkimSigner, dns_record
from personify.delivery.smtp import SmtpTransport
from personify.errors import ConfigError


def rsa_pem(bits: int = 2048, pkcs8: bool = False) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    fmt = (
        serialization.PrivateFormat.PKCS8
        if pkcs8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


PEM = rsa_pem(pkcs8=True)


def dns_for(pem: bytes, name: bytes = b"mail._domainkey.example.com."):
    record = dns_record(pem).encode()

    def lookup(query: bytes, timeout: int = 5) -> bytes | None:
        return record if query == name else None

    return lookup


def signed_headers(data: bytes) -> list[str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    sig = header.split("DKIM-Signature:", 1)[1]
    tags = dict(t.strip().split("=", 1) for t in "".join(sig.split("\r\n")).split(";") if "=" in t)
    return [h.strip().lower() for h in tags["h"].split(":")]


def test_signature_covers_the_headers_and_verifies() -> None:
    signer = DkimSigner("mail", "example.com", PEM)
    data = signer.sign(envelope().raw)
    assert data.startswith(b"DKIM-Signature: ")
    assert dkim.verify(data, dnsfunc=dns_for(PEM))
    covered = signed_headers(data)
    for h in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ):
        assert h in covered


def test_a_changed_header_or_body_fails_verification() -> None:
    data = DkimSigner("mail", "example.com", PEM).sign(envelope().raw)
    forged = data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert forged != data and not dkim.verify(forged, dnsfunc=dns_for(PEM))
    tampered = data.replace(b"Trail Boot", b"Trail Boat")
    assert tampered != data and not dkim.verify(tampered, dnsfunc=dns_for(PEM))
    other = rsa_pem(1024)
    assert not dkim.verify(data, dnsfunc=dns_for(other))


def test_signed_through_smtp_and_verified_on_arrival() -> None:
    settings = msgspec.convert(
        {"kind": "smtp", "host": "127.0.0.1", "port": 1, "tls": "none"}, SmtpDelivery
    )
    with smtp_server() as server:
        settings = msgspec.structs.replace(settings, port=server.port)
        signer = DkimSigner("mail", "example.com", PEM)
        with SmtpTransport(settings, signer=signer) as smtp:
            smtp.send(envelope())
        [got] = server.handler.received
    assert dkim.verify(got.data, dnsfunc=dns_for(PEM))
    assert got.message["Subject"] == "Zoë, your cart is waiting ☕"


def test_from_the_project_file(tmp_path: Path) -> None:
    (tmp_path / "dkim.pem").write_bytes(PEM)
    text = (
        "delivery:\n  kind: smtp\n  host: mail.local\n"
        "  dkim: {selector: mail, domain: example.com, private_key_path: dkim.pem}\n"
    )
    config = parse_config(text)
    project = Project(config, tmp_path, tmp_path / "personify.yml")
    assert isinstance(config.delivery, SmtpDelivery) and config.delivery.dkim is not None
    signer = DkimSigner.from_settings(config.delivery.dkim, project)
    assert dkim.verify(signer.sign(envelope().raw), dnsfunc=dns_for(PEM))
    # the key inline from the environment (newlines may come escaped as \n)
    inline = msgspec.structs.replace(
        config.delivery.dkim,
        private_key=Secret(PEM.decode().replace("\n", "\\n")),
        private_key_path=None,
    )
    assert DkimSigner.from_settings(inline, project).sign(b"From: a@example.com\r\n\r\nx\r\n")


def test_bad_keys_fail_at_start(tmp_path: Path) -> None:
    project = Project(parse_config(""), tmp_path, tmp_path / "personify.yml")
    base = parse_config(
        "delivery: {kind: smtp, host: h, "
        "dkim: {selector: s, domain: d.org, private_key_path: k.pem}}"
    ).delivery
    assert isinstance(base, SmtpDelivery) and base.dkim is not None
    with pytest.raises(ConfigError, match="cannot read the DKIM private key"):
        DkimSigner.from_settings(base.dkim, project)
    (tmp_path / "k.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="unusable DKIM private key"):
        DkimSigner.from_settings(base.dkim, project)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "k.pem").write_bytes(ec_key)
    with pytest.raises(ConfigError, match="RSA key"):
        DkimSigner.from_settings(base.dkim, project)
    with pytest.raises(ValueError, match="From"):
        DkimSigner("s", "d.org", PEM, headers=("Subject",))
