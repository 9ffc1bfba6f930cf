"""Webhook signature schemes: what a stale or early delivery is told."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from personify.config import Secret, WebhookSource
from personify.sources.webhooks import SignatureError, verify

SECRET = "whsec_" + base64.b64encode(b"secret").decode()
SOURCE = WebhookSource(
    name="app_hooks",
    scheme="standard",
    secrets=(Secret(SECRET),),
    table="customers",
    mapping={"customer_id": "id"},
)
NOW = 1_800_000_000


def signed(at: int, body: bytes = b"{}") -> dict[str, str]:
    mac = hmac.new(b"secret", f"w1.{at}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": "w1",
        "webhook-timestamp": str(at),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


@pytest.mark.parametrize(
    ("offset", "said"),
    [
        (-3600, "signed 3600 s ago (tolerance 300 s): stale or replayed"),
        (3600, "signed 3600 s ahead (tolerance 300 s): the sender's clock is ahead"),
    ],
)
def test_a_delivery_outside_the_tolerance_says_how_far_and_which_way(
    offset: int, said: str
) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(SOURCE, signed(NOW + offset), b"{}", now=NOW)
    assert said in str(caught.value)
    assert verify(SOURCE, signed(NOW - 299), b"{}", now=NOW).delivery_id == "w1"
