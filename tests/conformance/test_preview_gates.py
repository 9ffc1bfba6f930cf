"""A preview says whether the email it shows would go out if sent now, on every backend: the
send loop's own gates asked of the previewed message — consent, suppression, quiet hours (until
when), the frequency cap — so a marketer is not shown an email the customer would never get
without being told so. The send that follows agrees with what the preview said."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import HELLO, NOW, Shop, events, people, shop

from personify.journeys import preview, project_journeys
from personify.journeys.gates import Gate
from personify.journeys.preview import send_now
from personify.warehouse import table

__all__ = ["shop"]  # the fixture, shared with test_journeys

HOUR = timedelta(hours=1)


def _gate(shop: Shop, template: str, customer: str, at: datetime) -> Gate:
    project = shop.session.project
    journeys = project_journeys(project)
    found = preview(shop.wh, project, journeys, template, customer, now=at)
    return send_now(shop.wh, project, journeys, customer, found, now=at)


def _world(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write("templates/other.liquid", HELLO)
    for name, template in (("welcome", "hello"), ("nudge", "other")):
        shop.write(
            f"journeys/{name}.yml",
            "trigger: {event: Signed Up}\nsteps:\n"
            f"  - send: {template}\n    with: {{note: hi}}\n",
        )
    shop.configure('journeys:\n  quiet_hours: {start: "21:00", end: "08:00"}\n')
    people(
        shop.wh,
        {"customer_id": "ok", "timezone": "Europe/London"},
        {"customer_id": "nocon", "timezone": "Europe/London"},
        {"customer_id": "gone", "timezone": "Europe/London"},
        {"customer_id": "night", "timezone": "Asia/Tokyo"},  # 21:00 there at NOW
        consent=["ok", "gone", "night"],
    )
    unsubscribed = {
        "customer_id": "gone",
        "reason": "unsubscribed",
        "subject_hash": "h-gone",
        "kind": "customer_id",
        "created_at": NOW - 2 * HOUR,
    }
    shop.wh.load(table("suppressions"), arrow_rows("suppressions", [unsubscribed]))


def test_a_preview_says_why_a_send_now_would_not_go_out(shop: Shop) -> None:
    _world(shop)
    assert _gate(shop, "hello", "ok", NOW) == Gate("send")
    assert _gate(shop, "hello", "nocon", NOW) == Gate(
        "skipped_consent", "no consent for email_marketing by email at send time"
    )
    assert _gate(shop, "hello", "gone", NOW) == Gate(
        "skipped_suppressed", "suppressed (unsubscribed)"
    )
    night = _gate(shop, "hello", "night", NOW)
    assert night.outcome == "held" and "quiet hours" in str(night.reason)
    assert night.until == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo

    # the send agrees; then "ok" has had the one capped email of the day
    events(shop.wh, ("ok", "Signed Up", NOW - HOUR, {}))
    shop.run(NOW)
    got = dict(shop.wh.fetch("SELECT journey, status FROM messages"))
    assert sorted(got.values()) == ["sent", "skipped_frequency"]
    templates = {"welcome": "hello", "nudge": "other"}
    (sent,) = (templates[j] for j, status in got.items() if status == "sent")
    (capped,) = (templates[j] for j, status in got.items() if status != "sent")
    later = NOW + HOUR
    assert _gate(shop, capped, "ok", later) == Gate("skipped_frequency", "frequency cap: 1 per 24h")
    # the email already sent is not over the cap because of itself
    assert _gate(shop, sent, "ok", later) == Gate("send")
    assert _gate(shop, capped, "ok", NOW + 25 * HOUR) == Gate("send")  # the window has passed
