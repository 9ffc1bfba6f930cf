"""A message refused for now (an SMTP 4xx: greylisting, a full mailbox) is retried for up to
three days; its discount code was issued at the first try. When it finally goes out, the code
must still be worth something: a code that has expired, or expires within the campaign's
``renew_within``, has its expiry moved to ``expires_in`` from that send — the same code (the
one the message's key derives), so the email never carries a dead one. On every backend, with a
real SMTP server on loopback."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy

from tests.conformance.journey_support import NOW, Shop, events, people, shop
from tests.unit.delivery.servers import Handler, smtp_server

__all__ = ["shop"]  # the fixture, shared with test_journeys

HOUR = timedelta(hours=1)
OFFER = """---
subject: "A code for you"
layout: none
---
<p>Use {{ discount.code }} before {{ discount.expires_at }}</p>
"""


def _body(raw: bytes) -> str:
    message = email.message_from_bytes(raw, policy=policy.default)
    part = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert part is not None
    return str(part.get_content())


def _code(shop: Shop, customer: str) -> tuple[str, datetime]:
    code, expires = shop.wh.fetch(
        "SELECT code, expires_at FROM discount_codes WHERE customer_id = ?", [customer]
    )[0]
    return str(code), expires.astimezone(UTC)


def _refused_then(shop: Shop, campaign: str, at: datetime) -> tuple[str, str, datetime, Handler]:
    """``ann``'s email (with a code of ``campaign``) is refused for now at NOW, accepted at
    ``at``: the code issued at the first try, the code sent, its stored expiry, the server."""
    shop.write("templates/offer.liquid", OFFER)
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: offer\n"
        "    with: {discount: {from: discount, campaign: quick}}\n",
    )
    handler = Handler(refuse={"ann@example.com": "450 4.2.1 mailbox busy, try later"})
    with smtp_server(handler=handler) as smtp:
        yml = shop.root / "personify.yml"
        yml.write_text(
            yml.read_text(encoding="utf-8").replace(
                "delivery:\n  kind: outbox\n  path: outbox\n",
                f"delivery:\n  kind: smtp\n  host: 127.0.0.1\n  port: {smtp.port}\n"
                "  tls: none\n  retries: 0\n",
            ),
            encoding="utf-8",
        )
        shop.configure(f"discounts:\n  quick: {campaign}\n")
        people(shop.wh, {"customer_id": "ann"}, consent=["ann"])
        events(shop.wh, ("ann", "Signed Up", NOW - HOUR, {}))
        assert shop.run(NOW)["deferred"] == 1  # the code is issued at the first try
        first, _ = _code(shop, "ann")
        handler.refuse.clear()
        assert shop.run(at)["sent"] == 1
        code, expiry = _code(shop, "ann")
        return first, code, expiry, handler


def test_a_code_near_its_expiry_is_extended_when_the_deferred_message_goes_out(
    shop: Shop,
) -> None:
    at = NOW + 40 * HOUR  # 8 hours left: less than renew_within
    first, code, expiry, handler = _refused_then(shop, "{expires_in: 48h, renew_within: 12h}", at)
    assert code == first and expiry == at + 48 * HOUR
    assert f"Use {code} before {expiry:%d %B %Y}" in _body(handler.received[-1].data)
    assert shop.run(at + HOUR)["sent"] == 0
    assert _code(shop, "ann") == (code, expiry)  # a code sent is left as it was sent


def test_an_expired_code_is_revived_when_the_deferred_message_goes_out(shop: Shop) -> None:
    at = NOW + 3 * HOUR  # expired an hour ago (renew_within: at most half of expires_in)
    first, code, expiry, handler = _refused_then(shop, "{expires_in: 2h}", at)
    assert code == first and expiry == at + 2 * HOUR
    assert code in _body(handler.received[-1].data)


def test_a_code_with_time_left_is_left_as_it_is(shop: Shop) -> None:
    at = NOW + 20 * HOUR  # 28 hours left of 48: more than the default renew_within (24h)
    first, code, expiry, _ = _refused_then(shop, "{expires_in: 48h}", at)
    assert (code, expiry) == (first, NOW + 48 * HOUR)
