"""MIME: both parts, headers, CRLF, and no header injection through customer data."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest

from personify.delivery import AddressError, Unsubscribe, address, build_message
from personify.messages import RenderedEmail

EMAIL = RenderedEmail("cart", "v1", "Zoë, your cart", "<p>Grüße €</p>", "Grüße €\n")
WHEN = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def parse(raw: bytes):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(raw)


def test_parts_headers_and_crlf() -> None:
    msg = build_message(
        EMAIL,
        sender=address("shop@example.com", "Shop"),
        recipient=address("zoe@x.org", "Zoë Ünal"),
        date=WHEN,
        key="cart:c1:k",
        unsubscribe=Unsubscribe("https://s/unsubscribe/TOK", "unsub@example.com"),
    )
    raw = msg.as_bytes()
    assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    back = parse(raw)
    assert back.get_content_type() == "multipart/alternative"
    assert back["Subject"] == "Zoë, your cart"
    assert back["To"].addresses[0].display_name == "Zoë Ünal"
    assert back["To"].addresses[0].addr_spec == "zoe@x.org"
    assert back["From"].addresses[0].addr_spec == "shop@example.com"
    assert back["Date"].datetime == WHEN
    assert back["Message-ID"].endswith("@example.com>")
    assert " ".join(back["List-Unsubscribe"].split()) == (
        "<https://s/unsubscribe/TOK>, <mailto:unsub@example.com?subject=unsubscribe>"
    )
    assert back["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = back.get_body(("plain",)), back.get_body(("html",))
    assert text is not None and html is not None
    assert (
        text.get_content().replace("\r\n", "\n") == "Grüße €\n"
        and html.get_content().strip() == "<p>Grüße €</p>"
    )
    assert html.get_content_charset() == "utf-8"


def test_same_key_same_message_id() -> None:
    one = build_message(
        EMAIL, sender=address("a@b.c"), recipient=address("d@e.f"), date=WHEN, key="k"
    )
    two = build_message(
        EMAIL, sender=address("a@b.c"), recipient=address("d@e.f"), date=WHEN, key="k"
    )
    assert one["Message-ID"] == two["Message-ID"]


@pytest.mark.parametrize("name", ["Ann\r\nBcc: evil@x.org", "Ann\nX-Evil: 1", "Ann\rBcc: e@x"])
def test_no_header_injection_through_names_or_subject(name: str) -> None:
    email = RenderedEmail("t", "v", f"Hi {name}", "<p>x</p>", "x\n")
    msg = build_message(
        email,
        sender=address("shop@example.com", name),
        recipient=address("a@x.org", name),
        date=WHEN,
    )
    back = parse(msg.as_bytes())
    assert back["Bcc"] is None and back["X-Evil"] is None
    assert [a.addr_spec for a in back["To"].addresses] == ["a@x.org"]
    assert "\n" not in back["Subject"] and "\r" not in back["Subject"]


@pytest.mark.parametrize("bad", ["", "ann", "a@x.org\r\nBcc: e@x", "a b@x.org", "<a@x.org>"])
def test_bad_addresses_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        address(bad)
