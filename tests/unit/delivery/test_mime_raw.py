"""The wire bytes written by build_raw, read back by the ``email`` package: any subject, name
and content round-trip; lines are CRLF, 7-bit and within limits; no header can be injected."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from personify.delivery.mime import AddressError, Unsubscribe, build_raw, mailbox
from personify.messages import RenderedEmail

WHEN = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
UNSUB = Unsubscribe("https://shop.example/unsubscribe/" + "T" * 120, "unsub@example.com")


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def check_wire(raw: bytes) -> None:
    assert raw.isascii(), "7-bit"
    assert raw.count(b"\n") == raw.count(b"\r\n") and b"\r" not in raw.replace(b"\r\n", b"")
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    long = [line for line in head if len(line) > 100]  # folded (an encoded word may pass 78)
    assert all(b" " not in line.strip().split(b": ", 1)[-1] for line in long)  # unbreakable
    body = raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n")
    assert all(len(line) <= 76 for line in body)  # quoted-printable lines


def make(subject: str, name: str, text: str, html: str, **kw: object) -> bytes:
    email = RenderedEmail("abandoned_cart", "0123abcd", subject, html, text)
    return build_raw(
        email,
        sender=mailbox("shop@example.com", "Shop & Co"),
        recipient=mailbox("zoe@x.org", name),
        date=WHEN,
        key="abandoned_cart:wait:c1:cart/9",
        unsubscribe=UNSUB,
        **kw,  # type: ignore[arg-type]
    )


def test_headers_parts_and_limits() -> None:
    subject = "Zoë, your cart is waiting — " + "très " * 40
    html = "<p>Grüße €</p>\n" + "<td>" + "x" * 500 + "</td>\n.\n--=_notaboundary\n"
    raw = make(subject.strip(), 'Zoë "Z" Ünal', "Grüße €\n\ttab \n", html)
    check_wire(raw)
    back = parse(raw)
    assert back.get_content_type() == "multipart/alternative"
    assert back["Subject"] == subject.strip()
    assert back["To"].addresses[0].display_name == 'Zoë "Z" Ünal'
    assert back["From"].addresses[0].display_name == "Shop & Co"
    assert back["Date"].datetime == WHEN
    assert back["Message-ID"].endswith("@example.com>")
    assert " ".join(back["List-Unsubscribe"].split()) == (
        f"<{UNSUB.url}>, <mailto:unsub@example.com?subject=unsubscribe>"
    )
    assert back["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert back["MIME-Version"] == "1.0"
    text, part = back.get_body(("plain",)), back.get_body(("html",))
    assert text is not None and part is not None
    assert text.get_content_charset() == "utf-8" and part.get_content_charset() == "utf-8"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().replace("\r\n", "\n") == "Grüße €\n\ttab \n"
    assert part.get_content().replace("\r\n", "\n") == html
    assert not back.defects and not text.defects and not part.defects


def test_reply_to_and_plain_names() -> None:
    raw = make("Hello", "Ann Lee", "x\n", "<p>x</p>", reply_to=mailbox("help@example.com"))
    assert b"\r\nTo: Ann Lee <zoe@x.org>\r\n" in raw and b"\r\nSubject: Hello\r\n" in raw
    assert parse(raw)["Reply-To"].addresses[0].addr_spec == "help@example.com"


def test_same_key_same_bytes() -> None:
    assert make("s", "n", "t\n", "<p>h</p>") == make("s", "n", "t\n", "<p>h</p>")


@pytest.mark.parametrize(
    "evil", ["Ann\r\nBcc: evil@x.org", "Ann\nX-Evil: 1", "=?utf-8?q?Bcc=3A_e=40x?= Ann", "A\x00B"]
)
def test_no_injection(evil: str) -> None:
    raw = make(f"Hi {evil}", evil, "x\n", "<p>x</p>")
    check_wire(raw)
    back = parse(raw)
    assert back["Bcc"] is None and back["X-Evil"] is None
    assert [a.addr_spec for a in back["To"].addresses] == ["zoe@x.org"]
    assert "\n" not in back["Subject"] and "\r" not in back["Subject"]


def test_addresses() -> None:
    assert mailbox("ann@bücher.example").addr_spec == "ann@xn--bcher-kva.example"
    for bad in ["", "ann", "a@x.org\r\nBcc: e@x", "a b@x.org", "<a@x.org>", "zoë@x.org"]:
        with pytest.raises(AddressError):
            mailbox(bad)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=120)


@settings(max_examples=150, deadline=None)
@given(subject=names, name=names, text=names, html=names)
def test_anything_round_trips(subject: str, name: str, text: str, html: str) -> None:
    subject = " ".join(subject.split()) or "s"
    raw = make(subject, name, text + "\n", html)
    check_wire(raw)
    back = parse(raw)
    assert back["Subject"] == re.sub(r"[\x00-\x1f\x7f]+", " ", subject)
    assert [a.addr_spec for a in back["To"].addresses] == ["zoe@x.org"]
    plain, part = back.get_body(("plain",)), back.get_body(("html",))
    assert plain is not None and part is not None
    norm = (text + "\n").replace("\r\n", "\n").replace("\r", "\n")
    assert plain.get_content().replace("\r\n", "\n") == norm
    assert part.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n").replace(
        "\r", "\n"
    )


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(names, min_size=1, max_size=7), long=st.integers(0, 3))
def test_html_in_pieces_round_trips(pieces: list[str], long: int) -> None:
    pieces = [p * (1 + long * 60) if i % 2 == 0 else p for i, p in enumerate(pieces)]
    html = "".join(pieces)
    email = RenderedEmail("t", "v", "s", html, "x\n", tuple(pieces))
    raw = build_raw(email, sender=mailbox("a@x.org"), recipient=mailbox("b@x.org"), date=WHEN)
    check_wire(raw)
    part = parse(raw).get_body(("html",))
    assert part is not None
    assert part.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n").replace(
        "\r", "\n"
    )


plain_bits = st.sampled_from(
    ["", " ", ".", "a", "=", "é", "\t", "\n", "x" * 74, "y" * 80, '<td style="a:b">', "€ 9", "\n."]
)  # fmt: skip
piece = st.one_of(names, st.lists(plain_bits, max_size=6).map("".join))


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(piece, min_size=1, max_size=12), marks=st.lists(st.booleans()))
@example(pieces=["0" * 75 + "."], marks=[])  # found by CI: the soft break left a lone dot
@example(pieces=["0" * 75 + "."], marks=[True])
def test_html_with_static_pieces_round_trips(pieces: list[str], marks: list[bool]) -> None:
    """Pieces encoded apart (the static ones once) and joined by column: valid quoted-printable
    within 76 characters a line, decoding to the HTML — also when the same static piece comes
    again in another email."""
    static = frozenset(p for p, m in zip(pieces, marks, strict=False) if m)
    html = "".join(pieces)
    email = RenderedEmail("t", "v", "s", html, "x\n", tuple(pieces), static)
    for _ in range(2):  # the second time from the remembered encodings
        raw = build_raw(email, sender=mailbox("a@x.org"), recipient=mailbox("b@x.org"), date=WHEN)
        check_wire(raw)
        body = raw.split(b"\r\n\r\n", 1)[1]
        assert b"\r\n.\r\n" not in body, "no line holds a lone dot"
        part = parse(raw).get_body(("html",))
        assert part is not None
        assert part.get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n").replace(
            "\r", "\n"
        )


def test_static_pieces_share_lines() -> None:
    """Short pieces are joined on one line; a soft break only where a line would pass 76."""
    pieces = ("<p>", "Hello ", "Zoë", "</p>\n", "x" * 70, "y" * 10)
    email = RenderedEmail("t", "v", "s", "".join(pieces), "x\n", pieces, frozenset(pieces[::2]))
    raw = build_raw(email, sender=mailbox("a@x.org"), recipient=mailbox("b@x.org"), date=WHEN)
    html = raw.split(b'Content-Type: text/html; charset="utf-8"\r\n', 1)[1].split(b"\r\n\r\n", 1)[1]
    assert (
        html.split(b"\r\n--")[0]
        == b"<p>Hello=20Zo=C3=AB</p>\r\n" + b"x" * 70 + b"=\r\n" + b"y" * 10
    )


@pytest.mark.parametrize("blank", [" ", "\t"])
@pytest.mark.parametrize("width", [72, 74, 75, 150])
def test_a_blank_ending_a_long_line_stays_within_76(blank: str, width: int) -> None:
    """binascii.b2a_qp writes the =20 (=09) of a blank before a line break past column 76."""
    html = "0" * width + blank + "\nnext"
    for email in (
        RenderedEmail("t", "v", "s", html, html),
        RenderedEmail("t", "v", "s", html, "x\n", (html,), frozenset({html})),
    ):
        raw = build_raw(email, sender=mailbox("a@x.org"), recipient=mailbox("b@x.org"), date=WHEN)
        check_wire(raw)
        part = parse(raw).get_body(("html",))
        assert part is not None and part.get_content().replace("\r\n", "\n") == html
