"""ESP opens, clicks and deliveries through ``POST /webhooks/esp/{provider}`` (in-process app,
real signatures, a real DuckDB project): SendGrid Event Webhook and Postmark webhook payloads
become the same ``Email Opened`` / ``Email Link Clicked`` events as the pixel and the redirect,
tied to the message and its variant; the ESP's machine-open flag is kept; a redelivered webhook
counts once, and so does an open seen by both the pixel and the ESP."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from tests.unit.delivery.test_esp_webhooks import post, sendgrid_headers, session

from personify.engagement import Hit, TrackingClaim, record
from personify.session import Session
from personify.warehouse import table

__all__ = ["session"]  # the fixture (three ESP webhooks configured)

SENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0"
POSTMARK = {"authorization": "Basic " + base64.b64encode(b"hooks:pw-123").decode()}
LINK = "https://shop.example/p/1?utm_source=email"


def _messages(session: Session) -> None:
    ts = pa.timestamp("us", tz="UTC")
    keys = ["cart:remind:c0:k1", "cart:remind:c1:k2", "cart:remind:c3:k3"]
    session.warehouse.load(
        table("messages"),
        pa.table(
            {
                "idempotency_key": keys,
                "customer_id": ["c0", "c1", "c3"],
                "journey": ["cart"] * 3,
                "step": ["remind"] * 3,
                "variant": ["bold", "plain", "plain"],
                "template": ["abandoned_cart"] * 3,
                "status": ["sent"] * 3,
                "decided_at": pa.array([SENT] * 3, ts),
                "sent_at": pa.array([SENT] * 3, ts),
            }
        ),
    )


def _events(session: Session) -> list[dict[str, Any]]:
    rows = session.warehouse.fetch(
        "SELECT event, customer_id, source, properties, timestamp FROM events "
        "WHERE properties->>'message_key' IS NOT NULL ORDER BY timestamp, event"
    )
    return [
        {"event": e, "customer_id": c, "source": s, "at": t, **json.loads(p)}
        for e, c, s, p, t in rows
    ]


def _sendgrid(event: str, seconds: int, **more: Any) -> dict[str, Any]:
    """A SendGrid Event Webhook event as SendGrid posts it (custom_args echoed at top level)."""
    return {
        "email": "ann@x.org",
        "timestamp": int((SENT + timedelta(seconds=seconds)).timestamp()),
        "event": event,
        "sg_event_id": f"sg-{event}-{seconds}",
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "personify_key": "cart:remind:c0:k1",
        "customer_id": "c0",
        "category": ["abandoned_cart"],
        **more,
    }


def test_sendgrid_opens_clicks_and_deliveries_become_events_once(session: Session) -> None:
    _messages(session)
    payload = [
        _sendgrid("processed", 0),
        _sendgrid("delivered", 3, response="250 OK", ip="168.1.1.1"),
        _sendgrid("open", 60, useragent="Mozilla/5.0", ip="17.58.1.2", sg_machine_open=True),
        _sendgrid("open", 600, useragent=BROWSER, ip="203.0.113.9", sg_machine_open=False),
        _sendgrid("click", 620, useragent=BROWSER, ip="203.0.113.9", url=LINK, url_offset={}),
        _sendgrid("open", 700, useragent=BROWSER, personify_key="someone-else:k"),
    ]
    body = json.dumps(payload).encode()
    got = post(session, "sendgrid", body, sendgrid_headers(body))
    assert got.status_code == 200, got.text
    assert got.json() == {
        "received": 6,
        "suppressing": 0,
        "written": 0,
        "engagement": 5,
        "recorded": 4,  # the open of a message Personify never sent records nothing
        "attributed": 0,
    }
    events = _events(session)
    assert [(e["event"], e.get("machine"), e.get("machine_reason")) for e in events] == [
        ("Email Delivered", None, None),
        ("Email Opened", True, "esp_machine_open"),
        ("Email Opened", False, None),
        ("Email Link Clicked", False, None),
    ]
    for e in events:
        assert e["customer_id"] == "c0" and e["source"] == "email_esp" and e["esp"] == "sendgrid"
        assert (e["journey"], e["step"], e["variant"]) == ("cart", "remind", "bold")
    assert events[3]["link_url"] == LINK
    assert events[2]["at"].astimezone(UTC) == SENT + timedelta(seconds=600)

    again = post(session, "sendgrid", body, sendgrid_headers(body))  # SendGrid retries
    assert again.status_code == 200 and again.json()["recorded"] == 0
    assert len(_events(session)) == 4


def test_postmark_payloads_and_the_pixel_count_one_open(session: Session) -> None:
    _messages(session)
    project = session.project
    wh = session.warehouse
    meta = {"personify_key": "cart:remind:c1:k2", "customer_id": "c1"}
    opened_at = SENT + timedelta(minutes=30)
    # the pixel sees the open first ...
    claim = TrackingClaim("open", "cart:remind:c1:k2", "c1")
    assert record(wh, project, Hit(claim, opened_at, BROWSER, "203.0.113.7")).new
    # ... then Postmark reports it, 20 s later: the same open
    postmark_open = {
        "RecordType": "Open",
        "MessageStream": "outbound",
        "FirstOpen": True,
        "Client": {"Name": "Safari", "Company": "Apple Inc.", "Family": "Safari"},
        "OS": {"Name": "OS X", "Company": "Apple Computer, Inc.", "Family": "OS X"},
        "Platform": "Desktop",
        "UserAgent": BROWSER,
        "ReadSeconds": 5,
        "Geo": {"CountryISOCode": "FR", "Country": "France", "IP": "203.0.113.7"},
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": meta,
        "ReceivedAt": (opened_at + timedelta(seconds=20)).isoformat().replace("+00:00", "Z"),
        "Tag": "abandoned_cart",
        "Recipient": "bob@x.org",
    }
    got = post(session, "postmark", json.dumps(postmark_open).encode(), POSTMARK)
    assert got.status_code == 200, got.text
    assert got.json()["engagement"] == 1 and got.json()["recorded"] == 0
    # Postmark's click first, the redirect 10 s later: one click
    clicked_at = opened_at + timedelta(minutes=5)
    postmark_click = {
        "RecordType": "Click",
        "MessageStream": "outbound",
        "ClickLocation": "HTML",
        "Client": {"Name": "Safari"},
        "Platform": "Desktop",
        "UserAgent": BROWSER,
        "OriginalLink": LINK,
        "Geo": {"IP": "203.0.113.7"},
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": meta,
        "ReceivedAt": clicked_at.isoformat(),
        "Tag": "abandoned_cart",
        "Recipient": "bob@x.org",
    }
    got = post(session, "postmark", json.dumps(postmark_click).encode(), POSTMARK)
    assert got.json()["recorded"] == 1
    click = TrackingClaim("click", "cart:remind:c1:k2", "c1", 0, LINK)
    redirect = record(wh, project, Hit(click, clicked_at + timedelta(seconds=10), BROWSER, "::1"))
    assert not redirect.new and redirect.message_id is not None
    # a later open (an hour on) is another open; an Apple proxy open and a flagged one: machine
    later = {**postmark_open, "ReceivedAt": (opened_at + timedelta(hours=1)).isoformat()}
    apple = {
        **postmark_open,
        "UserAgent": "Mozilla/5.0",
        "Geo": {"IP": "17.58.63.1"},
        "ReceivedAt": (opened_at + timedelta(hours=2)).isoformat(),
    }
    flagged = {
        **postmark_open,
        "MachineOpen": True,
        "ReceivedAt": (opened_at + timedelta(hours=3)).isoformat(),
    }
    delivery = {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Recipient": "bob@x.org",
        "Tag": "abandoned_cart",
        "DeliveredAt": (SENT + timedelta(seconds=4)).isoformat(),
        "Details": "Test delivery webhook details",
        "Metadata": meta,
    }
    for payload in (later, apple, flagged, delivery, delivery):  # the delivery twice: retried
        got = post(session, "postmark", json.dumps(payload).encode(), POSTMARK)
        assert got.status_code == 200, got.text
    events = _events(session)
    summary = [(e["event"], e["source"], e.get("machine_reason")) for e in events]
    assert summary == [
        ("Email Delivered", "email_esp", None),
        ("Email Opened", "email_tracking", None),
        ("Email Link Clicked", "email_esp", None),
        ("Email Opened", "email_esp", None),
        ("Email Opened", "email_esp", "apple_privacy_proxy"),
        ("Email Opened", "email_esp", "esp_machine_open"),
    ]
    assert all(e["customer_id"] == "c1" and e["variant"] == "plain" for e in events)


def test_complaints_and_unsubscribes_naming_a_message_are_attributed_once(
    session: Session,
) -> None:
    """A SendGrid ``spamreport`` and ``unsubscribe`` carrying ``personify_key`` suppress the
    address and record ``Email Marked as Spam`` / ``Email Unsubscribed`` for the message; a
    redelivery and a second report of the same verdict record nothing new."""
    _messages(session)
    payload = [
        _sendgrid("spamreport", 900),
        _sendgrid("unsubscribe", 960),
        _sendgrid("spamreport", 990, sg_event_id="sg-other"),  # the same complaint, again
        _sendgrid("spamreport", 1000, personify_key="never-sent:k"),
    ]
    body = json.dumps(payload).encode()
    got = post(session, "sendgrid", body, sendgrid_headers(body))
    assert got.status_code == 200, got.text
    assert got.json() == {
        "received": 4,
        "suppressing": 4,
        "written": 2,
        "engagement": 0,
        "recorded": 0,
        "attributed": 2,
    }
    events = _events(session)
    assert [(e["event"], e["source"], e["esp"], e["variant"]) for e in events] == [
        ("Email Marked as Spam", "email_esp", "sendgrid", "bold"),
        ("Email Unsubscribed", "email_esp", "sendgrid", "bold"),
    ]
    assert all("machine" not in e and e["customer_id"] == "c0" for e in events)
    again = post(session, "sendgrid", body, sendgrid_headers(body))
    assert again.json()["attributed"] == 0 and len(_events(session)) == 2


def test_postmark_spam_complaint_is_attributed(session: Session) -> None:
    _messages(session)
    complaint = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "abandoned_cart",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Metadata": {"personify_key": "cart:remind:c1:k2", "customer_id": "c1"},
        "Description": "The subscriber explicitly marked this message as spam.",
        "Email": "bob@x.org",
        "From": "shop@example.com",
        "BouncedAt": (SENT + timedelta(hours=1)).isoformat(),
        "Subject": "Your cart",
    }
    got = post(session, "postmark", json.dumps(complaint).encode(), POSTMARK)
    assert got.status_code == 200, got.text
    assert got.json()["suppressing"] == 1 and got.json()["attributed"] == 1
    events = _events(session)
    assert [(e["event"], e["message_key"], e["variant"]) for e in events] == [
        ("Email Marked as Spam", "cart:remind:c1:k2", "plain")
    ]
    assert events[0]["at"].astimezone(UTC) == SENT + timedelta(hours=1)
