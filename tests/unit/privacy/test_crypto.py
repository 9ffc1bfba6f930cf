"""Field encryption: AES-GCM round trip bound to the field, key ring parsing, rotation."""

from __future__ import annotations

import pytest

from personify.errors import ConfigError
from personify.privacy.crypto import DecryptionError, KeyRing, is_encrypted, new_key


def ring(*ids: str) -> KeyRing:
    return KeyRing.parse(",".join(f"{i}:{KEYS[i]}" for i in ids))


KEYS = {"k1": new_key(), "k2": new_key()}


def test_round_trip_bound_to_the_field() -> None:
    r = ring("k1")
    token = r.encrypt("192.0.2.1", field="consent_history.ip")
    assert is_encrypted(token) and "192.0.2.1" not in token and token.startswith("enc1:k1:")
    assert r.encrypt("192.0.2.1", field="consent_history.ip") != token  # a fresh nonce
    assert r.decrypt(token, field="consent_history.ip") == "192.0.2.1"
    assert r.decrypt("plain", field="consent_history.ip") == "plain"
    with pytest.raises(DecryptionError):
        r.decrypt(token, field="consent_history.form")  # moved to another column
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        r.decrypt(tampered, field="consent_history.ip")


def test_rotation_ring() -> None:
    old = ring("k1").encrypt("x", field="f")
    both = ring("k2", "k1")
    assert both.active == "k2" and both.stale(old)
    assert both.decrypt(old, field="f") == "x"
    assert not both.stale(both.encrypt("x", field="f"))
    with pytest.raises(DecryptionError, match="not in the ring"):
        ring("k2").decrypt(old, field="f")


@pytest.mark.parametrize(
    "text",
    ["", "k1", "k1:short", f":{new_key()}", "k1:!!!"],
    # fixed ids: the random key must not name the test (every collection must see the same ids)
    ids=["empty", "no-key", "short-key", "no-name", "not-base64"],
)
def test_bad_rings(text: str) -> None:
    with pytest.raises(ConfigError):
        KeyRing.parse(text)
    with pytest.raises(ConfigError, match="share an id"):
        KeyRing.parse(f"a:{KEYS['k1']},a:{KEYS['k2']}")
