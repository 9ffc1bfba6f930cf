"""The ``delivery:`` section: the tagged union of kinds, secrets hidden, mistakes located, and
``transport_for`` building what it says."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.config import EspDelivery, Project, SmtpDelivery, parse_config
from personify.delivery import EspTransport, OutboxTransport, SmtpTransport, transport_for
from personify.delivery.ratelimit import RateLimitedTransport
from personify.errors import ConfigError


def project(tmp_path: Path, text: str) -> Project:
    (tmp_path / "personify.yml").write_text(text)
    return Project(parse_config(text, root=tmp_path), tmp_path, tmp_path / "personify.yml")


def test_smtp_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "hunter2")
    p = project(
        tmp_path,
        "delivery:\n  kind: smtp\n  host: mail.local\n  tls: implicit\n"
        "  username: u\n  password: ${SMTP_PASSWORD}\n  rate_limit: 5\n",
    )
    d = p.config.delivery
    assert isinstance(d, SmtpDelivery) and d.kind == "smtp"
    assert d.password is not None and d.password.reveal() == "hunter2"
    assert "hunter2" not in repr(p.config)
    smtp = transport_for(p)
    try:
        assert isinstance(smtp, SmtpTransport) and smtp.port == 465 and smtp.bucket is not None
        assert smtp.ledger.path == tmp_path / ".personify" / "delivery" / "smtp.sent"
    finally:
        smtp.close()


def test_esp_kind(tmp_path: Path) -> None:
    p = project(tmp_path, "delivery: {kind: esp, api_key: SG.x, concurrency: 8}\n")
    assert isinstance(p.config.delivery, EspDelivery)
    esp = transport_for(p)
    try:
        assert isinstance(esp, EspTransport) and esp.settings.concurrency == 8
        assert esp.settings.url == "https://api.sendgrid.com/v3/mail/send"
    finally:
        esp.close()


def test_outbox_default_and_rate_limited(tmp_path: Path) -> None:
    assert isinstance(transport_for(project(tmp_path, "")), OutboxTransport)
    limited = transport_for(project(tmp_path, "delivery: {kind: outbox, rate_limit: 2}\n"))
    assert isinstance(limited, RateLimitedTransport) and limited.name == "outbox"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("delivery: {kind: smtp}", "delivery: missing required key 'host'"),
        ("delivery: {kind: smtp, host: h, tls: ssl}", "delivery.tls"),
        ("delivery: {kind: smtp, host: h, pool_size: 0}", "delivery.pool_size"),
        ("delivery: {kind: smtp, host: h, rate_limit: 0}", "delivery.rate_limit"),
        ("delivery: {kind: esp}", "missing required key 'api_key'"),
        ("delivery: {kind: esp, api_key: k, url: 'ftp://x'}", "delivery.url"),
        ("delivery: {kind: esp, api_key: k, hots: x}", "unknown key 'hots'"),
        ("delivery: {kind: pigeon}", "delivery.kind"),
        (
            "delivery: {kind: smtp, host: h, dkim: {selector: s, domain: d}}",
            "give exactly one of private_key or private_key_path",
        ),
        (
            "delivery: {kind: outbox, webhooks: [{provider: sendgrid, secret: a}, "
            "{provider: sendgrid, secret: b}]}",
            "delivery.webhooks[1].provider",
        ),
        ("delivery: {kind: outbox, webhooks: [{provider: mailgun, secret: a}]}", "provider"),
    ],
)
def test_mistakes_are_located(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert message in str(err.value)


def test_webhook_schemes_default_per_provider() -> None:
    config = parse_config(
        "delivery:\n  kind: outbox\n  webhooks:\n"
        "    - {provider: sendgrid, secret: k}\n"
        "    - {provider: postmark, secret: 'u:p'}\n"
        "    - {provider: standard, secret: whsec_x, verify: standard}\n"
    )
    assert [w.scheme for w in config.delivery.webhooks] == ["sendgrid", "basic", "standard"]
