"""Test sends (``personify send-test``): who may receive one, and how its copy differs from the
customer's email. The whole path through the CLI and a real SMTP server is in
``tests/e2e/test_send_test_cli.py``."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser

import pytest
from tests.unit.delivery.servers import WHEN, envelope

from personify.config import parse_config
from personify.delivery import Envelope, Unsubscribe, address, build_raw
from personify.delivery.esp import payload, postmark_payload
from personify.errors import ConfigError
from personify.journeys.proof import allowed, proof_copy, recipient_hash
from personify.messages import RenderedEmail

PATTERNS = ("qa@shop.example", "*@Team.Example")


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("qa@shop.example", True),
        ("QA@Shop.Example ", True),
        ("ann@team.example", True),
        ("ann@eu.team.example", False),  # a domain pattern is not its subdomains
        ("qa@shop.example.evil.org", False),
        ("qa2@shop.example", False),
        ("zoe@x.org", False),
    ],
)
def test_only_listed_addresses_and_domains_are_allowed(address: str, ok: bool) -> None:
    assert allowed(PATTERNS, address) is ok
    assert not allowed((), address)


def test_a_bad_pattern_is_a_config_error_naming_the_key() -> None:
    text = "name: shop\nemail:\n  test_recipients: [qa@shop.example, 'shop.example']\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="personify.yml")
    assert "test_recipients" in str(info.value) and "'shop.example'" in str(info.value)
    good = parse_config("name: shop\nemail:\n  test_recipients: ['*@shop.example']\n")
    assert good.email.test_recipients == ("*@shop.example",)


def _long_token_envelope() -> Envelope:
    """An email whose unsubscribe URL is longer than a header line, as real tokens are."""
    email = RenderedEmail("abandoned_cart", "v1", "Zoë, your cart is waiting ☕", "<p>x</p>", "x")
    token = "eyJjIjoiYy0xIiwicCI6ImVtYWlsX21hcmtldGluZyJ9." + "Q" * 40
    raw = build_raw(
        email,
        sender=address("shop@example.com", "My Shop"),
        recipient=address("zoe@x.org", "Zoë Ünal"),
        date=WHEN,
        key="abandoned_cart:send:c1:cart-9",
        unsubscribe=Unsubscribe(f"https://shop.example/unsubscribe/{token}", "u@example.com"),
    )
    return Envelope("abandoned_cart:send:c1:cart-9", "c1", "abandoned_cart", email.subject, raw)


def test_the_copy_keeps_long_headers_as_they_were() -> None:
    """Re-serializing with the email package turned a long List-Unsubscribe into RFC 2047
    encoded words, which mail clients do not read there: the copy keeps the header's bytes."""
    original = _long_token_envelope()
    copy = proof_copy(original, "qa@shop.example", "test:abandoned_cart:r1:0")
    [unsubscribe] = [h for h in _fields(original.raw) if h.startswith(b"List-Unsubscribe:")]
    assert unsubscribe in _fields(copy.raw) and b"=?" not in unsubscribe


def test_the_copy_is_marked_and_addressed_to_the_tester_alone() -> None:
    original = envelope("abandoned_cart:send:c1:cart-9")
    copy = proof_copy(original, "qa@shop.example", "test:abandoned_cart:r1:0")
    msg = BytesParser(policy=policy.default).parsebytes(copy.raw)
    assert msg.get_all("To") == ["qa@shop.example"] and copy.recipient == "qa@shop.example"
    assert msg["Subject"] == "[TEST] Zoë, your cart is waiting ☕" == copy.subject
    assert msg["X-Personify-Test"] == "1"
    assert msg["Message-ID"] != original.message["Message-ID"]
    assert b"zoe@" not in copy.raw and b"xn--exmple" not in copy.raw  # the customer's address
    assert copy.raw.isascii() and b"\n" not in copy.raw.replace(b"\r\n", b"")
    html = msg.get_body(("html",))
    assert html is not None and "<b>Trail Boot</b>" in str(html.get_content())
    assert original.message["X-Personify-Test"] is None  # the original is untouched
    # every other header and the body byte for byte: List-Unsubscribe stays a plain <URL>
    # (re-serializing with the email package made it RFC 2047 words clients do not read)
    kept = [h for h in _fields(original.raw) if not h.startswith((b"To:", b"Subject:", b"Message"))]
    assert [h for h in _fields(copy.raw) if h in kept] == kept
    assert any(h.startswith(b"List-Unsubscribe: <https://") for h in kept)
    assert copy.raw.split(b"\r\n\r\n", 1)[1] == original.raw.split(b"\r\n\r\n", 1)[1]


def _fields(raw: bytes) -> list[bytes]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return re.split(rb"\r\n(?![ \t])", head)


def test_an_esp_is_not_told_whose_email_a_test_shows() -> None:
    """SendGrid and Postmark echo custom args in bounce and complaint webhooks, which suppress
    the customer they name: a test copy names none, so a bouncing staff address cannot
    suppress the customer."""
    copy = proof_copy(envelope(), "qa@shop.example", "test:t:r1:0")
    body = payload(copy)
    assert body["custom_args"] == {"personify_key": "test:t:r1:0", "personify_test": "1"}
    assert body["headers"]["X-Personify-Test"] == "1"
    assert body["personalizations"][0]["to"] == [{"email": "qa@shop.example"}]
    assert "customer_id" not in postmark_payload(copy)["Metadata"]
    assert payload(envelope())["custom_args"]["customer_id"] == "c1"


def test_recipients_are_audited_as_keyed_hashes() -> None:
    h = recipient_hash(b"k", "QA@shop.example ")
    assert h == recipient_hash(b"k", "qa@shop.example")
    assert h != recipient_hash(b"other", "qa@shop.example")
    assert len(h) == 32 and "shop" not in h
