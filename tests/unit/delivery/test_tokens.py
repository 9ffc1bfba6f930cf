"""Unsubscribe tokens: round trip; any change, another key or garbage → invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.config import load_project
from personify.delivery import UnsubscribeClaim, project_key, sign, verify
from personify.errors import ConfigError

KEY = b"k" * 32


def test_round_trip() -> None:
    token = sign(KEY, "c-1", "marketing")
    assert verify(KEY, token) == UnsubscribeClaim("c-1", "marketing")
    assert "/" not in token and "+" not in token and "=" not in token


def test_tampering_invalidates() -> None:
    token = sign(KEY, "c-1")
    payload, _, mac = token.partition(".")
    other = sign(KEY, "c-2").partition(".")[0]
    for bad in (
        f"{other}.{mac}",
        f"{payload}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        payload,
        "",
        ".",
        "a.b.c",
        f"{payload}.",
        "!!!.???",
    ):
        assert verify(KEY, bad) is None, bad
    assert verify(b"other key", token) is None


def test_project_key_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "personify.yml").write_text("signing_key: ${PERSONIFY_SECRET_KEY}\n")
    monkeypatch.setenv("PERSONIFY_SECRET_KEY", "s3cret")
    assert project_key(load_project(tmp_path)) == b"s3cret"
    (tmp_path / "personify.yml").write_text("name: x\n")
    with pytest.raises(ConfigError, match="signing_key"):
        project_key(load_project(tmp_path))


def test_default_purpose_is_the_journeys_purpose() -> None:
    claim = verify(KEY, sign(KEY, "c-1"))
    assert claim == UnsubscribeClaim("c-1", "email_marketing")


def test_a_token_names_its_message() -> None:
    """New tokens carry the message's idempotency key (``m``), so an unsubscribe is counted
    against the journey, step and variant that sent it."""
    token = sign(KEY, "c-1", "marketing", "cart:remind:c-1:k1")
    assert verify(KEY, token) == UnsubscribeClaim("c-1", "marketing", "cart:remind:c-1:k1")
    assert verify(KEY, sign(KEY, "c-1", "marketing")) == UnsubscribeClaim("c-1", "marketing", None)


def test_tokens_sent_before_the_message_key_stay_valid() -> None:
    """A token sealed the old way ({c, p} only) still unsubscribes, attributed to nothing."""
    from personify.signed import seal

    old = seal(KEY, "unsubscribe", {"c": "c-1", "p": "marketing"})
    assert verify(KEY, old) == UnsubscribeClaim("c-1", "marketing", None)
    odd = seal(KEY, "unsubscribe", {"c": "c-1", "p": "marketing", "m": 7})  # not a key: ignored
    assert verify(KEY, odd) == UnsubscribeClaim("c-1", "marketing", None)


def test_a_test_token_is_no_customers_token() -> None:
    """A test send's token (personify send-test) names nobody: ``verify`` refuses it (so the
    unsubscribe route can never act on it) and ``is_test`` knows it."""
    from personify.delivery.tokens import is_test, sign_test

    token = sign_test(KEY, "marketing")
    assert verify(KEY, token) is None and is_test(KEY, token)
    assert not is_test(b"other key", token) and not is_test(KEY, sign(KEY, "c-1"))
