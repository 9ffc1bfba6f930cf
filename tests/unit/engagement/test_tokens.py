"""Signed tracking tokens: a changed byte, another URL, the other kind or another key is refused."""

from __future__ import annotations

import base64
import json

from personify.delivery import tokens as unsubscribe_tokens
from personify.engagement.tokens import safe_target, sign_click, sign_open, verify

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
