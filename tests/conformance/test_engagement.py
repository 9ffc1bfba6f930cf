"""Recording tracking hits on every backend: an event tied to the message and the customer,
repeats within a minute stored once, machine hits kept but flagged, unknown messages ignored, and
the next profile build counts people's opens and clicks only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from personify.config import load_project
from personify.engagement import Hit, TrackingClaim, record, record_many
from personify.profiles.traits import engagement
from personify.warehouse import Warehouse, table

SENT = datetime(2026, 3, 1, 12, tzinfo=UTC)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"
TSA = pa.timestamp("us", tz="UTC")


def _load(wh: Warehouse, name: str, rows: list[dict[str, object]]) -> None:
    t = table(name)
    names = list(dict.fromkeys(c for r in rows for c in r))
    data = pa.table(
        {
            c: pa.array(
                [r.get(c) for r in rows], TSA if t.column(c).type == "TIMESTAMPTZ" else None
            )
            for c in names
        }
    )
    wh.load(t, data)


def _world(wh: Warehouse) -> None:
    _load(
        wh,
        "messages",
        [
            {
                "idempotency_key": "m-1",
                "customer_id": "c-1",
                "journey": "cart",
                "step": "first",
                "template": "abandoned_cart",
                "variant": "A",
                "status": "sent",
                "decided_at": SENT,
                "sent_at": SENT,
            }
        ],
    )
    _load(
        wh,
        "identities",
        [
            {
                "customer_id": "c-1",
                "kind": "user_id",
                "value": "u-1",
                "source": "shop",
                "first_seen": SENT,
                "last_seen": SENT,
            }
        ],
    )


def _events(wh: Warehouse) -> list[tuple[str, str, str, dict[str, object]]]:
    rows = wh.fetch(
        "SELECT event, user_id, customer_id, properties FROM events "
        "WHERE source = 'email_tracking' ORDER BY timestamp, event"
    )
    return [
        (str(e), str(u), str(c), p if isinstance(p, dict) else json.loads(str(p)))
        for e, u, c, p in rows
    ]


def test_hits_become_events(warehouse: Warehouse, project_dir: Path) -> None:
    wh, project = warehouse, load_project(project_dir)
    _world(wh)
    opened = TrackingClaim("open", "m-1", "c-1")
    at = SENT + timedelta(hours=2)
    first = record(wh, project, Hit(opened, at, BROWSER, "203.0.113.7"))
    assert first.new and first.machine is None and first.message_id
    again = record(wh, project, Hit(opened, at + timedelta(seconds=5), BROWSER, "203.0.113.7"))
    assert not again.new and again.message_id == first.message_id
    later = record(wh, project, Hit(opened, at + timedelta(hours=1), BROWSER, "203.0.113.7"))
    assert later.new  # every real open is kept
    proxy = record(wh, project, Hit(opened, SENT + timedelta(minutes=1), "Mozilla/5.0", "17.1.2.3"))
    assert proxy.new and proxy.machine == "apple_privacy_proxy"
    clicked = TrackingClaim("click", "m-1", "c-1", 0, "https://shop.example/p")
    scan = record(wh, project, Hit(clicked, SENT + timedelta(seconds=2), BROWSER, "198.51.100.1"))
    assert scan.machine == "too_soon"
    head = record(wh, project, Hit(clicked, at, BROWSER, "198.51.100.1", "HEAD"))
    assert head.machine == "head_request"
    person = record(wh, project, Hit(clicked, at, BROWSER, "198.51.100.1"))
    assert person.new and person.machine is None
    unknown = record(wh, project, Hit(TrackingClaim("open", "nope", "c-1"), at, BROWSER))
    other = record(wh, project, Hit(TrackingClaim("open", "m-1", "c-2"), at, BROWSER))
    assert unknown.message_id is None and other.message_id is None

    events = _events(wh)
    assert len(events) == 6
    assert {(e, u, c) for e, u, c, _ in events} == {
        ("Email Opened", "u-1", "c-1"),
        ("Email Link Clicked", "u-1", "c-1"),
    }
    machine = [p for _, _, _, p in events if p["machine"]]
    assert sorted(str(p["machine_reason"]) for p in machine) == [
        "apple_privacy_proxy",
        "head_request",
        "too_soon",
    ]
    person_click = [p for e, _, _, p in events if e == "Email Link Clicked" and not p["machine"]]
    assert person_click == [
        {
            "message_key": "m-1",
            "journey": "cart",
            "step": "first",
            "variant": "A",
            "template": "abandoned_cart",
            "machine": False,
            "link_index": 0,
            "link_url": "https://shop.example/p",
        }
    ]


def test_the_insert_owns_new_events_and_leaves_stored_ones_alone(
    warehouse: Warehouse, project_dir: Path
) -> None:
    """``customer_id`` comes with the insert of a new event; a repeat (the same hit again, in
    one batch or later) stores nothing and changes no owner — not even one identity resolution
    gave the stored event since."""
    wh, project = warehouse, load_project(project_dir)
    _world(wh)
    at = SENT + timedelta(hours=2)
    hit = Hit(TrackingClaim("open", "m-1", "c-1"), at, BROWSER, "203.0.113.7")
    first, twin = record_many(wh, project, [hit, hit])
    assert first.new and not twin.new and twin.message_id == first.message_id
    assert wh.fetch("SELECT customer_id FROM events WHERE source = 'email_tracking'") == [("c-1",)]
    wh.execute(
        "UPDATE events SET customer_id = 'c-merged' WHERE message_id = ?", [first.message_id]
    )
    again = record(wh, project, Hit(hit.claim, at + timedelta(seconds=5), BROWSER, "203.0.113.7"))
    assert not again.new
    assert wh.fetch("SELECT customer_id FROM events WHERE source = 'email_tracking'") == [
        ("c-merged",)
    ]


def test_machine_hits_do_not_feed_the_engagement_score(
    warehouse: Warehouse, project_dir: Path
) -> None:
    wh, project = warehouse, load_project(project_dir)
    _world(wh)
    weights = project.config.traits
    now = SENT + timedelta(days=1)

    def score() -> float:
        sql, params = engagement(weights, "{c} = 'c-1'", now)
        rows = wh.fetch(sql, params)
        return float(rows[0][1]) if rows else 0.0

    for i in range(5):  # Apple's proxy fetching the pixel, scanners following links
        at = SENT + timedelta(minutes=10 * i)
        record(wh, project, Hit(TrackingClaim("open", "m-1", "c-1"), at, "Mozilla/5.0", "17.0.0.1"))
        link = TrackingClaim("click", "m-1", "c-1", 0, "https://shop.example/")
        record(wh, project, Hit(link, at, "Proofpoint URL Defense"))
    assert score() == 0.0
    open_ = TrackingClaim("open", "m-1", "c-1")
    record(wh, project, Hit(open_, SENT + timedelta(hours=3), BROWSER, "203.0.113.7"))
    assert score() > 0.0


def test_the_next_profile_build_sees_people_s_opens(
    warehouse: Warehouse, project_dir: Path
) -> None:
    from personify import clock
    from personify.profiles import build_customers

    wh, project = warehouse, load_project(project_dir)
    _world(wh)
    ts = pa.timestamp("us", tz="UTC")
    node = {
        "node_id": [1],
        "kind": ["user_id"],
        "value": ["u-1"],
        "source": ["shop"],
        "first_seen": pa.array([SENT], ts),
        "last_seen": pa.array([SENT], ts),
        "blocked": [False],
        "cluster": [1],
        "part": [0],
        "customer_id": ["c-1"],
    }
    wh.load(table("identity_nodes"), pa.table(node))

    def built_score() -> float:
        with clock.frozen(SENT + timedelta(days=1)):
            build_customers(wh, project, ["c-1"])
        rows = wh.fetch("SELECT engagement_score FROM customers WHERE customer_id = 'c-1'")
        return float(rows[0][0] or 0) if rows else 0.0

    proxy = Hit(TrackingClaim("open", "m-1", "c-1"), SENT + timedelta(hours=1), "Mozilla/5.0")
    record(wh, project, proxy)
    assert built_score() == 0.0  # Apple's prefetch is no engagement
    person = Hit(TrackingClaim("open", "m-1", "c-1"), SENT + timedelta(hours=2), BROWSER, "1.2.3.4")
    record(wh, project, person)
    assert built_score() > 0.0


def test_deliveries_unsubscribes_and_complaints_are_no_activity(
    warehouse: Warehouse, project_dir: Path
) -> None:
    """An ESP's delivery report, an unsubscribe and a spam complaint are events about the
    email, not a day of the person's activity: they raise no ``engagement_score``."""
    from personify.engagement import record_feedback

    wh, project = warehouse, load_project(project_dir)
    _world(wh)
    now = SENT + timedelta(days=1)

    def score() -> float:
        sql, params = engagement(project.config.traits, "{c} = 'c-1'", now)
        rows = wh.fetch(sql, params)
        return float(rows[0][1]) if rows else 0.0

    delivered = Hit(TrackingClaim("open", "m-1", "c-1"), SENT, esp="sendgrid", delivered=True)
    assert record(wh, project, delivered).new
    assert record_feedback(wh, project, "m-1", "c-1", "complained", at=SENT, esp="sendgrid").new
    later = SENT + timedelta(hours=2)
    assert record_feedback(wh, project, "m-1", "c-1", "unsubscribed", at=later).new
    assert score() == 0.0
    record(wh, project, Hit(TrackingClaim("open", "m-1", "c-1"), later, BROWSER, "203.0.113.7"))
    assert score() > 0.0
