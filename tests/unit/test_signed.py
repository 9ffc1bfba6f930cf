"""Signed tokens: round trip, one canonical spelling, domains never interchangeable."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from personify.signed import MAX_TOKEN_CHARS, b64, seal, unb64, unseal

KEY = b"k" * 32
ALPHABET = string.ascii_letters + string.digits + "-_"


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=30) | st.integers(), max_size=4))
def test_round_trip(doc: dict[str, object]) -> None:
    assert unseal(KEY, "open", seal(KEY, "open", doc)) == doc


@given(st.integers(min_value=0, max_value=21), st.sampled_from(ALPHABET))
def test_any_other_signature_spelling_is_refused(at: int, char: str) -> None:
    token = seal(KEY, "unsubscribe", {"c": "c-1"})
    payload, _, signature = token.partition(".")
    changed = signature[:at] + char + signature[at + 1 :]
    if changed != signature:  # including spellings that decode to the same bytes
        assert unseal(KEY, "unsubscribe", f"{payload}.{changed}") is None


def test_domains_keys_and_garbage() -> None:
    token = seal(KEY, "open", {"k": "m1"})
    assert unseal(KEY, "click", token) is None
    assert unseal(b"another key", "open", token) is None
    payload = token.partition(".")[0]
    for bad in ("", ".", "a.b.c", payload, f"{payload}.", "!!!.???", "x" * (MAX_TOKEN_CHARS + 1)):
        assert unseal(KEY, "open", bad) is None
    not_an_object = b64(b"[1, 2]")
    forged = seal(KEY, "open", {}).replace(seal(KEY, "open", {}).partition(".")[0], not_an_object)
    assert unseal(KEY, "open", forged) is None
    assert unb64(b64(b"\x00\xff")) == b"\x00\xff"
