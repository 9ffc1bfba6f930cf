"""Signed tracking tokens: a changed byte, another URL, the other kind or another key is refused."""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from personify import signed
from personify.delivery import tokens as unsubscribe_tokens
from personify.engagement.tokens import (
    TrackingClaim,
    safe_target,
    sign_click,
    sign_open,
    verify,
)

KEY = b"k" * 32


def test_open_and_click_tokens_round_trip() -> None:
    opened = verify(KEY, "open", sign_open(KEY, "m-1", "c-1"))
    assert opened is not None and (opened.key, opened.customer_id) == ("m-1", "c-1")
    clicked = verify(KEY, "click", sign_click(KEY, "m-1", "c-1", 2, "https://shop.example/p?a=1"))
    assert clicked is not None
    assert (clicked.link, clicked.url) == (2, "https://shop.example/p?a=1")


def test_a_click_token_cannot_be_pointed_elsewhere() -> None:
    token = sign_click(KEY, "m-1", "c-1", 0, "https://shop.example/p")
    payload, _, signature = token.partition(".")
    doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    doc["u"] = "https://evil.example/"
    forged = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    assert verify(KEY, "click", f"{forged}.{signature}") is None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert verify(KEY, "click", flipped) is None
    assert verify(b"another key", "click", token) is None
    assert verify(KEY, "click", token + "x") is None
    for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_":
        if ch != token[-1]:  # the last character's spare bits too (no second encoding)
            assert verify(KEY, "click", token[:-1] + ch) is None


def test_kinds_do_not_mix() -> None:
    assert verify(KEY, "click", sign_open(KEY, "m-1", "c-1")) is None
    assert verify(KEY, "open", sign_click(KEY, "m-1", "c-1", 0, "https://a.example/")) is None
    unsubscribe = unsubscribe_tokens.sign(KEY, "c-1")
    assert verify(KEY, "open", unsubscribe) is None


def test_garbage_is_refused() -> None:
    for token in ("", ".", "abc", "a.b", "%%%.%%%", "x" * 9000):
        assert verify(KEY, "open", token) is None
        assert verify(KEY, "click", token) is None


def test_only_absolute_http_targets_are_signed_and_followed() -> None:
    assert safe_target("https://a.example/x") and safe_target("http://a.example")
    for bad in ("javascript:alert(1)", "//evil.example", "/relative", "mailto:a@b", "https://a\n"):
        assert not safe_target(bad)
    token = sign_click(KEY, "m", "c", 0, "javascript:alert(1)")
    assert verify(KEY, "click", token) is None


def test_click_tokens_of_the_first_format_stay_valid() -> None:
    """Emails sent before per-message click signing carry sealed JSON tokens; they still work."""
    from personify.signed import seal

    old = seal(KEY, "click", {"k": "m-1", "c": "c-1", "i": 3, "u": "https://shop.example/x"})
    claim = verify(KEY, "click", old)
    assert claim is not None and (claim.key, claim.link, claim.url) == (
        "m-1",
        3,
        "https://shop.example/x",
    )
    assert verify(KEY, "click", old[:-1] + ("A" if old[-1] != "A" else "B")) is None


def test_a_signed_document_of_the_wrong_shape_claims_nothing() -> None:
    """A signature only says the server wrote the document: fields missing or of the wrong
    type (never written by this code) still make no claim, and extra fields are ignored."""
    from personify.signed import seal

    for doc in ({"k": 1, "c": "c-1"}, {"k": "m-1"}, {"k": "m-1", "c": None}, [1, 2]):
        assert verify(KEY, "open", seal(KEY, "open", doc)) is None
    opened = verify(KEY, "open", seal(KEY, "open", {"k": "m-1", "c": "c-1", "x": [1]}))
    assert opened == TrackingClaim("open", "m-1", "c-1")
    for doc in (
        {"k": "m-1", "c": "c-1", "i": "3", "u": "https://shop.example/x"},
        {"k": "m-1", "c": "c-1", "i": 3},
        {"k": "m-1", "c": "c-1", "u": "https://shop.example/x"},
        {"k": "m-1", "c": "c-1", "i": 3, "u": "javascript:alert(1)"},
    ):
        assert verify(KEY, "click", seal(KEY, "click", doc)) is None


def test_every_part_of_a_per_message_click_token_is_signed() -> None:
    from personify.engagement.tokens import ClickSigner

    signer = ClickSigner(KEY, "m-1", "c-1")
    token = signer(4, "https://shop.example/p/1")
    assert token.count(".") == 3 and token == sign_click(
        KEY, "m-1", "c-1", 4, "https://shop.example/p/1"
    )
    claim = verify(KEY, "click", token)
    assert claim is not None
    assert (claim.key, claim.customer_id, claim.link, claim.url) == (
        "m-1",
        "c-1",
        4,
        "https://shop.example/p/1",
    )
    message, link, url, signature = token.split(".")
    other = ClickSigner(KEY, "m-2", "c-2")(4, "https://evil.example/")
    o_message, _, o_url, o_signature = other.split(".")
    forged = [
        f"{message}.5.{url}.{signature}",  # another link number
        f"{message}.04.{url}.{signature}",  # another spelling of it
        f"{message}.{link}.{o_url}.{signature}",  # another target
        f"{o_message}.{link}.{url}.{signature}",  # another message
        f"{message}.{link}.{o_url}.{o_signature}",  # a part of another message's token
        f"{message}.{link}.{url}.{signature[:-1]}",
        f"{message}.-1.{url}.{signature}",
    ]
    for bad in forged:
        assert verify(KEY, "click", bad) is None, bad
    assert verify(b"another key", "click", token) is None
    assert verify(KEY, "open", token) is None
    unsafe = ClickSigner(KEY, "m", "c")(0, "javascript:alert(1)")
    assert verify(KEY, "click", unsafe) is None


def test_the_message_part_is_what_seal_writes() -> None:
    """The per-message signer's open token is sign_open's (non-ASCII and quotes included)."""
    from personify.engagement.tokens import ClickSigner

    for key, customer in (("m-1", "c-1"), ('j:s:"ö"\\:ü', "c\u2028é")):
        assert ClickSigner(KEY, key, customer).open == sign_open(KEY, key, customer)
        opened = verify(KEY, "open", ClickSigner(KEY, key, customer).open)
        assert opened is not None and (opened.key, opened.customer_id) == (key, customer)


@settings(max_examples=200, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=200),
    message_key=st.text(max_size=40),
    customer_id=st.text(max_size=40),
    link=st.integers(min_value=0, max_value=10**6),
    path=st.text(max_size=60),
    cut=st.integers(min_value=0, max_value=400),
    swap=st.characters(),
)
def test_the_verifier_reads_what_hmac_signs_and_nothing_else(
    key: bytes, message_key: str, customer_id: str, link: int, path: str, cut: int, swap: str
) -> None:
    """The verifier's HMAC from pre-keyed SHA-256 states (no lock released) accepts exactly the
    tokens signed with ``hmac.digest`` — keys longer than a block, of any bytes — and a token
    with one character changed is refused."""
    url = "https://shop.example/" + path
    opened = sign_open(key, message_key, customer_id)
    assert signed.unseal(key, "open", opened) == {"k": message_key, "c": customer_id}
    assert verify(key, "open", opened) == TrackingClaim("open", message_key, customer_id)
    clicked = sign_click(key, message_key, customer_id, link, url)
    claim = TrackingClaim("click", message_key, customer_id, link, url)
    if safe_target(url):
        assert verify(key, "click", clicked) == claim
        first = signed.seal(key, "click", {"k": message_key, "c": customer_id, "i": link, "u": url})
        assert verify(key, "click", first) == claim
    for kind, token in (("open", opened), ("click", clicked)):
        at = cut % len(token)
        if swap != token[at]:
            changed = token[:at] + swap + token[at + 1 :]
            assert verify(key, kind, changed) is None  # type: ignore[arg-type]
    assert verify(key + b"x", "open", opened) is None
