"""ESP-reported opens and clicks on every backend: stored once per provider event (a retried
webhook adds nothing), tied to the message and customer, and an open the pixel already recorded
(within two minutes, either order) counts once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.conformance.test_engagement import BROWSER, SENT, _world

from personify.config import load_project
from personify.engagement import Hit, TrackingClaim, record
from personify.engagement.esp import parse_touches, record_touches
from personify.warehouse import Warehouse


def _sendgrid(event: str, minutes: float, **more: object) -> dict[str, object]:
    return {
        "email": "ann@x.org",
        "timestamp": int((SENT + timedelta(minutes=minutes)).timestamp()),
        "event": event,
        "sg_event_id": f"sg-{event}-{minutes}",
        "personify_key": "m-1",
        "customer_id": "c-1",
        "useragent": BROWSER,
        "ip": "203.0.113.9",
        **more,
    }


def test_esp_touches_are_stored_once_and_meet_the_pixel(
    warehouse: Warehouse, project_dir: Path
) -> None:
    yml = project_dir / "personify.yml"
    hooks = "  webhooks:\n    - {provider: sendgrid, secret: 'not used here'}\n"
    yml.write_text(yml.read_text().replace("  path: outbox\n", "  path: outbox\n" + hooks, 1))
    project = load_project(project_dir)  # with ESP webhooks: the pixel checks the ESP's events
    assert project.config.delivery.webhooks
    _world(warehouse)
    pixel = TrackingClaim("open", "m-1", "c-1")
    assert record(warehouse, project, Hit(pixel, SENT + timedelta(minutes=30), BROWSER, "::1")).new
    body = json.dumps(
        [
            _sendgrid("delivered", 0.1),
            _sendgrid("open", 30.5),  # the pixel's open, seen by the ESP 30 s later
            _sendgrid("open", 90),  # another open
            _sendgrid("click", 91, url="https://shop.example/p/1"),
        ]
    ).encode()
    touches = parse_touches("sendgrid", body)
    first = record_touches(warehouse, project, "sendgrid", touches)
    assert (first.touches, first.recorded, first.repeated, first.unknown) == (4, 3, 1, 0)
    again = record_touches(warehouse, project, "sendgrid", touches)
    assert (again.recorded, again.repeated) == (0, 4)
    # the redirect follows the ESP's click 20 s later: the same click
    click = TrackingClaim("click", "m-1", "c-1", 0, "https://shop.example/p/1")
    late = record(warehouse, project, Hit(click, SENT + timedelta(minutes=91, seconds=20), BROWSER))
    assert not late.new
    rows = warehouse.fetch(
        "SELECT event, source, customer_id, properties->>'variant' FROM events "
        "WHERE properties->>'message_key' = 'm-1' ORDER BY timestamp"
    )
    assert [tuple(map(str, r)) for r in rows] == [
        ("Email Delivered", "email_esp", "c-1", "A"),
        ("Email Opened", "email_tracking", "c-1", "A"),
        ("Email Opened", "email_esp", "c-1", "A"),
        ("Email Link Clicked", "email_esp", "c-1", "A"),
    ]
