"""Journeys on every backend: triggers, waits, goals, branches, tags, gates, sends, reruns.

Customers, consents, products and events are loaded straight through Arrow; the engine and the
send loop run in-process on a scaffolded project whose warehouse is the backend under test.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.audience_data import arrow_rows
from tests.conformance.journey_support import (
    HELLO,
    HOUR,
    NOW,
    Shop,
    added,
    events,
    parse,
    people,
    products,
    shop,
    signed_up,
    text_of,
)
from tests.loopback import QuietHandler, serve
from tests.unit.delivery.servers import Handler, smtp_server

from personify import clock
from personify.delivery import (
    Delivered,
    DeliveryError,
    DeliveryUnavailable,
    Envelope,
    transport_for,
)
from personify.journeys import deliver, project_journeys, run_journeys
from personify.messages.connected import DEFAULT_CACHE
from personify.warehouse import table

__all__ = ["shop"]  # (the fixture, imported)


def _scaffold_cart_journey(shop: Shop) -> None:
    """The abandoned-cart journey ``personify init`` ships, as it is."""
    scaffold = Path(__file__).parents[2] / "src/personify/scaffold/journeys/abandoned_cart.yml"
    shop.write("journeys/abandoned_cart.yml", scaffold.read_text(encoding="utf-8"))


def test_abandoned_cart_gates_goal_lookback_and_rerun(shop: Shop) -> None:
    _scaffold_cart_journey(shop)
    wh = shop.wh
    products(wh)
    ids = ["a", "b", "c", "d", "e", "f"]
    people(wh, *({"customer_id": c} for c in ids), consent=[c for c in ids if c != "d"])
    wh.execute(
        "INSERT INTO suppressions (subject_hash, kind, customer_id, reason, created_at) "
        "VALUES ('h-e', 'customer_id', 'e', 'unsubscribed', ?)",
        [NOW - 10 * HOUR],
    )
    events(
        wh,
        added("a", "ca", NOW - 3 * HOUR),
        added("a", "ca", NOW - 2 * HOUR, "p2"),
        added("b", "cb", NOW - 3 * HOUR),
        ("b", "Order Completed", NOW - 2.5 * HOUR, {"cart_id": "cb", "order_id": "o1"}),
        added("c", "cc", NOW - 0.5 * HOUR),
        added("d", "cd", NOW - 3 * HOUR),
        added("e", "ce", NOW - 3 * HOUR),
        added("f", "cf", NOW - 72 * HOUR),
    )

    first = shop.run(NOW)
    assert first["sent"] == 1
    assert shop.messages() == {
        "a:abandoned_cart": ("sent", "remind", None),
        "d:abandoned_cart": (
            "skipped_consent",
            "remind",
            "no consent for email_marketing by email",
        ),
        "e:abandoned_cart": (
            "skipped_suppressed",
            "remind",
            "suppressed (unsubscribed, bounced, complained or erased)",
        ),
    }
    states = dict(
        wh.fetch("SELECT customer_id, coalesce(exit_reason, status) FROM journey_instances")
    )
    assert states == {
        "a": "completed",
        "b": "goal",
        "c": "active",
        "d": "completed",
        "e": "completed",
    }

    [eml] = shop.outbox()
    message = parse(eml)
    body = text_of(message)
    code = wh.scalar("SELECT code FROM discount_codes WHERE customer_id = 'a'")
    assert code and code in body
    assert "Product 1" in body and "Product 2" in body
    assert "https://shop.example/cart/ca" in body
    assert message["To"].addresses[0].addr_spec == "a@example.com"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    again = shop.run(NOW)
    assert again["sent"] == 0 and len(shop.outbox()) == 1
    assert wh.scalar("SELECT count(*) FROM messages") == 3

    later = shop.run(NOW + HOUR)  # c's hour has passed
    assert later["sent"] == 1
    assert shop.messages()["c:abandoned_cart"][0] == "sent"
    assert len(shop.outbox()) == 2


def test_a_cart_bought_while_its_reminder_was_held_is_not_reminded(shop: Shop) -> None:
    """The reminder is decided at 21:15 and held by quiet hours until 08:00; the cart is bought
    at 22:00: the goal reached since the trigger stops the email at send time (skipped_goal)."""
    _scaffold_cart_journey(shop)
    shop.configure('journeys:\n  quiet_hours: {start: "21:00", end: "08:00"}\n')
    wh = shop.wh
    products(wh)
    evening = datetime(2026, 3, 2, 19, 30, tzinfo=UTC)
    people(
        wh,
        *({"customer_id": c, "timezone": "Europe/London"} for c in ("buyer", "browser")),
        consent=["buyer", "browser"],
    )
    events(wh, added("buyer", "cb", evening), added("browser", "cw", evening))
    night = evening + timedelta(hours=1, minutes=45)
    assert shop.run(night)["held"] == 2  # decided, held until 08:00
    events(wh, ("buyer", "Order Completed", night + 45 * timedelta(minutes=1), {"cart_id": "cb"}))

    morning = shop.run(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    assert morning["sent"] == 1 and morning["skipped_goal"] == 1
    got = shop.messages()
    assert got["browser:abandoned_cart"][0] == "sent"
    assert got["buyer:abandoned_cart"] == (
        "skipped_goal",
        "remind",
        "goal reached before sending (Order Completed)",
    )
    assert len(shop.outbox()) == 1


def test_an_emptied_cart_gets_no_reminder_and_no_code(shop: Shop) -> None:
    _scaffold_cart_journey(shop)
    wh = shop.wh
    products(wh)
    people(wh, {"customer_id": "kept"}, {"customer_id": "emptied"}, consent=["kept", "emptied"])
    removed = ("emptied", "Product Removed", NOW - 2 * HOUR, {"cart_id": "ce", "product_id": "p1"})
    events(wh, added("kept", "ck", NOW - 3 * HOUR), added("emptied", "ce", NOW - 3 * HOUR), removed)

    counts = shop.run(NOW)
    assert counts["sent"] == 1 and counts["skipped_empty_cart"] == 1
    got = shop.messages()
    assert got["kept:abandoned_cart"][0] == "sent"
    assert got["emptied:abandoned_cart"] == (
        "skipped_empty_cart",
        "remind",
        "the cart is empty at send time",
    )
    assert wh.fetch("SELECT customer_id FROM discount_codes") == [("kept",)]
    assert len(shop.outbox()) == 1


def test_frequency_cap_quiet_hours_and_uncapped_journeys(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    for name, capped in (("one", "true"), ("two", "true"), ("receipt", "false")):
        shop.write(
            f"journeys/{name}.yml",
            f"trigger: {{event: Signed Up}}\ncapped: {capped}\n"
            "steps:\n  - send: hello\n    with: {note: hi}\n",
        )
    shop.configure('journeys:\n  quiet_hours: {start: "21:00", end: "08:00"}\n')
    wh = shop.wh
    people(
        wh,
        {"customer_id": "x", "timezone": "Europe/London"},
        {"customer_id": "y", "timezone": "Asia/Tokyo"},  # 21:00 there at NOW
        consent=["x", "y"],
    )
    events(wh, ("x", "Signed Up", NOW - HOUR, {}), ("y", "Signed Up", NOW - HOUR, {}))

    first = shop.run(NOW)
    got = shop.messages()
    assert got["x:one"][0] == "sent"
    assert got["x:two"] == ("skipped_frequency", "step1", "frequency cap: 1 per 24h")
    assert got["x:receipt"][0] == "sent"  # uncapped: neither counts nor obeys
    assert {k: v[0] for k, v in got.items() if k.startswith("y:")} == {
        "y:one": "queued",
        "y:two": "queued",
        "y:receipt": "queued",
    }
    assert first["held"] == 3
    held = wh.scalar("SELECT min(send_after) FROM messages WHERE customer_id = 'y'")
    assert held.astimezone(UTC) == datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 08:00 in Tokyo

    assert shop.run(NOW + 5 * HOUR)["sent"] == 0  # still night in Tokyo
    morning = shop.run(NOW + 11 * HOUR)
    assert morning["sent"] == 2  # one capped, the receipt
    got = shop.messages()
    assert sorted(v[0] for k, v in got.items() if k.startswith("y:")) == [
        "sent",
        "sent",
        "skipped_frequency",
    ]


def test_a_capped_email_that_fails_does_not_use_up_the_cap(shop: Shop) -> None:
    """Two capped journeys' emails for one customer in one batch, the cap 1 a day: the first
    cannot render (failed, nothing sent), so the second is sent instead of skipped_frequency."""
    shop.write("templates/hello.liquid", HELLO)
    shop.write("journeys/one.yml", "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n")
    shop.write(
        "journeys/two.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: hi}\n",
    )
    wh = shop.wh
    people(wh, {"customer_id": "x"}, {"customer_id": "y"}, consent=["x", "y"])
    events(wh, ("x", "Signed Up", NOW - HOUR, {}), ("y", "Signed Up", NOW - HOUR, {}))

    first = shop.run(NOW)
    got = {k: v[0] for k, v in shop.messages().items()}
    assert got == {"x:one": "failed", "x:two": "sent", "y:one": "failed", "y:two": "sent"}
    assert first["sent"] == 2 and len(shop.outbox()) == 2
    assert shop.run(NOW)["sent"] == 0  # and nothing twice


def test_segment_trigger_branch_tag_and_local_time_wait(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.segment("vip")
    shop.write(
        "journeys/vip.yml",
        "trigger: {segment: vip}\nreentry: never\nsteps:\n"
        "  - branch: {if: engagement_score > 50, then: mark, else: exit}\n"
        "  - id: mark\n    tag: vip_welcomed\n",
    )
    shop.write(
        "journeys/welcome_vip.yml",
        'trigger: {tag: vip_welcomed}\nsteps:\n  - wait: {until: "09:00"}\n'
        "  - send: hello\n    with: {note: welcome}\n",
    )
    wh = shop.wh
    people(
        wh,
        {"customer_id": "hi", "engagement_score": 80.0, "timezone": "Europe/Paris"},
        {"customer_id": "lo", "engagement_score": 10.0},
        consent=["hi", "lo"],
    )
    changes = [
        {
            "kind": "segment",
            "name": "vip",
            "customer_id": c,
            "change": "entered",
            "changed_at": NOW - HOUR,
            "recorded_at": NOW - HOUR,
        }
        for c in ("hi", "lo")
    ]
    wh.load(table("audience_changes"), arrow_rows("audience_changes", changes))

    shop.run(NOW)
    states = {
        (j, c): (s, r)
        for j, c, s, r in wh.fetch(
            "SELECT journey, customer_id, status, exit_reason FROM journey_instances"
        )
    }
    assert states == {
        ("vip", "hi"): ("completed", "completed"),
        ("vip", "lo"): ("exited", "exit"),
        ("welcome_vip", "hi"): ("active", None),
    }
    assert wh.fetch("SELECT customer_id, tag, journey FROM journey_tags") == [
        ("hi", "vip_welcomed", "vip")
    ]
    wake = wh.scalar("SELECT wake_at FROM journey_instances WHERE journey = 'welcome_vip'")
    assert wake.astimezone(UTC) == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)  # 09:00 in Paris
    assert shop.run(NOW + 19 * HOUR)["sent"] == 0
    assert shop.run(NOW + 20 * HOUR)["sent"] == 1

    # the segment entered again: `reentry: never` keeps them out
    again = [{**changes[0], "changed_at": NOW + 30 * HOUR, "recorded_at": NOW + 30 * HOUR}]
    wh.load(table("audience_changes"), arrow_rows("audience_changes", again))
    shop.run(NOW + 31 * HOUR)
    assert wh.scalar("SELECT count(*) FROM journey_instances WHERE journey = 'vip'") == 2


def test_broadcast_schedule_sends_each_occurrence_once(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.segment("everyone")
    shop.write(
        "journeys/weekly.yml",
        "trigger: {schedule: 2026-03-02T11:00:00Z, every: 1d, segment: everyone}\n"
        "steps:\n  - send: hello\n    with: {note: news}\n",
    )
    shop.configure("journeys:\n  frequency_cap: null\n")
    wh = shop.wh
    ids = [f"c{i}" for i in range(30)]
    people(wh, *({"customer_id": c} for c in ids), consent=ids)
    members = [{"segment": "everyone", "customer_id": c, "entered_at": NOW - HOUR} for c in ids]
    wh.load(table("segment_memberships"), arrow_rows("segment_memberships", members))

    assert shop.run(NOW - 2 * HOUR)["sent"] == 0  # before the first occurrence
    assert shop.run(NOW)["sent"] == 30
    assert shop.run(NOW + HOUR)["sent"] == 0
    assert shop.run(NOW + 24 * HOUR)["sent"] == 30
    assert wh.scalar("SELECT count(DISTINCT trigger_key) FROM messages") == 2
    assert len(shop.outbox()) == 60


def test_a_message_that_cannot_render_fails_with_the_reason(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write("journeys/oops.yml", "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n")
    wh = shop.wh
    people(wh, {"customer_id": "x"}, consent=["x"])
    events(wh, ("x", "Signed Up", NOW - HOUR, {}))
    assert shop.run(NOW)["sent"] == 0
    status, _, error = shop.messages()["x:oops"]
    assert status == "failed"
    assert error is not None and "hello.liquid" in error and "note" in error
    assert shop.outbox() == []


class _Crashing:
    """A transport that hands ``survive`` messages to the outbox, then 'crashes'."""

    name = "outbox"

    def __init__(self, inner: Any, survive: int) -> None:
        self.inner, self.left = inner, survive

    def send(self, envelope: Envelope) -> Delivered:
        if self.left == 0:
            raise SystemExit("crash")
        self.left -= 1
        delivered: Delivered = self.inner.send(envelope)
        return delivered

    def close(self) -> None:
        self.inner.close()


def test_a_crash_mid_batch_then_a_rerun_sends_each_message_once(shop: Shop) -> None:
    wh = signed_up(shop, [f"c{i:02d}" for i in range(35)], batch_size=10)
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)
        with pytest.raises(SystemExit):
            deliver(wh, project, journeys, now=NOW, transport=_Crashing(transport_for(project), 25))
    statuses = dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1"))
    assert statuses == {"sent": 20, "queued": 15}  # the crashed batch's 5 were handed over
    assert len(shop.outbox()) == 25
    assert shop.run(NOW)["sent"] == 15
    assert dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1")) == {"sent": 35}
    assert len(shop.outbox()) == 35


class _DownForOne:
    """A batch transport whose server went down for the first message of a batch while the
    others, in flight at the same time, were accepted (as an SMTP pool or an ESP may answer)."""

    name = "outbox"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Delivered | DeliveryError]:
        down = DeliveryUnavailable("server unavailable", key=envelopes[0].key)
        return [down, *(self.inner.send(e) for e in envelopes[1:])]

    def close(self) -> None:
        self.inner.close()


def test_an_outage_mid_batch_records_what_was_accepted_and_stops(shop: Shop) -> None:
    wh = signed_up(shop, [f"c{i}" for i in range(6)], batch_size=4)
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)
        counts = deliver(
            wh, project, journeys, now=NOW, transport=_DownForOne(transport_for(project))
        )
    assert counts.stopped == "server unavailable" and counts.sent == 3
    # the three accepted are sent now (not re-sent later at another time, after a revocation)
    assert dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1")) == {
        "sent": 3,
        "queued": 3,
    }
    assert wh.scalar("SELECT status FROM messages WHERE customer_id = 'c0'") == "queued"
    assert len(shop.outbox()) == 3


def test_a_recipient_refused_for_now_is_retried_later_and_the_others_go_on(shop: Shop) -> None:
    """An SMTP 450 for one recipient (greylisting, a full mailbox) is not an outage: that
    message waits (queued, the reason recorded), every other one is sent and recorded; still
    refused three days after it was decided, it is failed."""
    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: hi}\n",
    )
    handler = Handler(refuse={"c0@example.com": "450 4.2.1 mailbox busy, try later"})
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
        shop.configure("journeys:\n  batch_size: 3\n")
        wh = shop.wh
        ids = [f"c{i}" for i in range(7)]
        people(wh, *({"customer_id": c} for c in ids), consent=ids)
        events(wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ids))

        first = shop.run(NOW)
        assert first["sent"] == 6
        assert sorted(r.rcpt_tos[0] for r in handler.received) == [
            f"c{i}@example.com" for i in range(1, 7)
        ]
        status, send_after, error = wh.fetch(
            "SELECT status, send_after, error FROM messages WHERE customer_id = 'c0'"
        )[0]
        assert status == "queued" and "450" in error and "c0@" not in error
        assert send_after.astimezone(UTC) == NOW + timedelta(minutes=15)

        assert shop.run(NOW + timedelta(minutes=10))["sent"] == 0  # not due yet
        handler.refuse.clear()  # the mailbox has room again
        assert shop.run(NOW + timedelta(minutes=15))["sent"] == 1
        assert shop.messages()["c0:news"] == ("sent", "step1", None)
        assert len(handler.received) == 7

        # refused for good long enough: failed, with the reason
        people(wh, {"customer_id": "full"}, consent=["full"])
        events(wh, ("full", "Signed Up", NOW + 2 * HOUR, {}))
        handler.refuse["full@example.com"] = "452 4.2.2 mailbox full"
        later = NOW + 2 * HOUR
        assert shop.run(later)["deferred"] == 1  # decided and refused: queued again
        assert shop.run(later + timedelta(days=3))["failed"] == 1
        error = wh.scalar("SELECT error FROM messages WHERE status = 'failed'")
        assert "452" in error and "still refused" in error
    assert wh.scalar("SELECT count(*) FROM messages WHERE status = 'queued'") == 0


def test_one_process_at_a_time_advances_and_sends(shop: Shop, warehouse_url: str) -> None:
    from personify.journeys.stage import exclusive
    from personify.warehouse import connect

    # another process of the same warehouse, its URL spelled differently (a host name, other
    # credentials or options): the same lock
    sep = "&" if "?" in warehouse_url else "?"
    respelled = f"{warehouse_url}{sep}application_name=other"
    other = connect(respelled) if warehouse_url.startswith("postgres") else shop.wh
    try:
        with exclusive(shop.wh, "delivery") as mine:
            assert mine
            with exclusive(other, "delivery") as theirs:
                # PostgreSQL: a second process is refused; DuckDB: one process anyway
                assert theirs is (other is shop.wh)
        with exclusive(other, "delivery") as later:
            assert later
    finally:
        if other is not shop.wh:
            other.close()


def test_consent_and_suppression_are_checked_again_just_before_sending(shop: Shop) -> None:
    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: hi}\n",
    )
    wh = shop.wh
    people(
        wh,
        *({"customer_id": c} for c in ("keep", "revoked", "unsub")),
        consent=["keep", "revoked", "unsub"],
    )
    events(wh, *((c, "Signed Up", NOW - HOUR, {}) for c in ("keep", "revoked", "unsub")))
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)  # decided: all three queued
        assert dict(wh.fetch("SELECT status, count(*) FROM messages GROUP BY 1")) == {"queued": 3}
        wh.execute(
            "UPDATE consents SET status = 'revoked', updated_at = ? WHERE customer_id = 'revoked'",
            [NOW],
        )
        wh.execute(
            "INSERT INTO suppressions (subject_hash, kind, customer_id, reason, created_at) "
            "VALUES ('h-u', 'customer_id', 'unsub', 'unsubscribed', ?)",
            [NOW],
        )
        counts = deliver(wh, project, journeys, now=NOW)
    assert counts.sent == 1
    got = {k: v[0] for k, v in shop.messages().items()}
    assert got == {
        "keep:news": "sent",
        "revoked:news": "skipped_consent",
        "unsub:news": "skipped_suppressed",
    }
    assert len(shop.outbox()) == 1


def test_a_paused_person_is_skipped_paused_not_without_consent(shop: Shop) -> None:
    """A pause (the preference page's ``consent_pauses``) keeps consent: the message says
    ``skipped_paused`` — at decide time, and in the send gate for a pause after the decision —
    while no consent stays ``skipped_consent``; a pause that is over stops nothing."""
    from personify.privacy.consent import pause

    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/news.yml",
        "trigger: {event: Signed Up}\nsteps:\n  - send: hello\n    with: {note: hi}\n",
    )
    wh = shop.wh
    who = ("early", "late", "over", "none")
    people(wh, *({"customer_id": c} for c in who), consent=["early", "late", "over"])
    events(wh, *((c, "Signed Up", NOW - HOUR, {}) for c in who))
    pause(wh, "early", ["email_marketing"], until=NOW + timedelta(days=30), source="test")
    pause(wh, "over", ["email_marketing"], until=NOW - HOUR, source="test")
    project = shop.session.project
    with clock.frozen(NOW):
        journeys = project_journeys(project)
        run_journeys(wh, project, journeys)
        decided = {k: v[0] for k, v in shop.messages().items()}
        assert decided == {
            "early:news": "skipped_paused",
            "late:news": "queued",
            "over:news": "queued",
            "none:news": "skipped_consent",
        }
        pause(wh, "late", ["email_marketing"], until=NOW + timedelta(days=30), source="test")
        counts = deliver(wh, project, journeys, now=NOW)
    assert counts.sent == 1
    got = shop.messages()
    assert {k: v[0] for k, v in got.items()} == {
        **decided,
        "late:news": "skipped_paused",
        "over:news": "sent",
    }
    reason = "paused for email_marketing by email at the person's request (preference page)"
    assert got["early:news"][2] == reason
    assert got["late:news"][2] == reason + " at send time"
    assert got["none:news"][2] == "no consent for email_marketing by email"
    with clock.frozen(NOW + HOUR):  # a rerun changes nothing
        run_journeys(wh, project, journeys)
        deliver(wh, project, journeys, now=NOW + HOUR)
    assert shop.messages() == got and len(shop.outbox()) == 1


def test_a_customer_merged_mid_journey_gets_the_email_once_as_the_survivor(shop: Shop) -> None:
    """B entered the abandoned-cart journey, then an identity pass merged B into A (older):
    the instance follows A, and the email goes to A once (not skipped_not_found)."""
    from personify.identity import resolve_batch

    _scaffold_cart_journey(shop)
    wh, identity = shop.wh, shop.session.project.config.identity

    def tracked(mid: str, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
        return {
            "message_id": mid,
            "type": kind,
            "timestamp": at,
            "received_at": at,
            "source": "web",
            **fields,
        }

    cart = {"cart_id": "cm", "product_id": "p1", "name": "Product 1", "price": 11.0}
    a_email, b_email = json.dumps({"email": "a@x.org"}), json.dumps({"email": "b@x.org"})
    first = [
        tracked("i-a", "identify", NOW - 48 * HOUR, user_id="u-a", traits=a_email),
        tracked("i-b", "identify", NOW - 4 * HOUR, anonymous_id="anon-b", traits=b_email),
        tracked(
            "t-b",
            "track",
            NOW - 3 * HOUR,
            anonymous_id="anon-b",
            event="Product Added",
            properties=json.dumps(cart),
        ),
    ]
    wh.load(table("events"), arrow_rows("events", first))
    with clock.frozen(NOW - 2.9 * HOUR):
        resolve_batch(wh, identity)

    def customer(kind: str, value: str) -> str:
        found = wh.scalar(
            "SELECT customer_id FROM identity_nodes WHERE kind = ? AND value = ?", [kind, value]
        )
        assert isinstance(found, str)
        return found

    a, b = customer("user_id", "u-a"), customer("anonymous_id", "anon-b")
    assert a != b
    products(wh)
    people(wh, {"customer_id": a}, {"customer_id": b}, consent=[a, b])
    assert shop.run(NOW - 2.5 * HOUR)["sent"] == 0  # b waits for the hour to pass
    assert wh.fetch("SELECT customer_id, status FROM journey_instances") == [(b, "active")]

    # b signs in as a: anon-b and u-a are one person now; a's id (older) survives
    link = tracked("i-ab", "identify", NOW - 2.4 * HOUR, anonymous_id="anon-b", user_id="u-a")
    wh.load(table("events"), arrow_rows("events", [link]))
    with clock.frozen(NOW - 2.4 * HOUR):
        report = resolve_batch(wh, identity)
    assert report.counts["customers_merged"] == 1
    assert report.counts["journey_instances_moved"] == 1
    assert wh.scalar("SELECT merged_into FROM customer_ids WHERE customer_id = ?", [b]) == a
    wh.execute("DELETE FROM customers WHERE customer_id = ?", [b])  # as the profile build does

    assert shop.run(NOW)["sent"] == 1
    assert shop.messages() == {f"{a}:abandoned_cart": ("sent", "remind", None)}
    [eml] = shop.outbox()
    assert parse(eml)["To"].addresses[0].addr_spec == f"{a}@example.com"
    assert "https://shop.example/cart/cm" in text_of(parse(eml))
    again = shop.run(NOW + HOUR)  # the cart's events now belong to a: not entered again
    assert again["sent"] == 0 and len(shop.outbox()) == 1
    assert wh.fetch("SELECT customer_id, journey, status FROM journey_instances") == [
        (a, "abandoned_cart", "completed")
    ]


def test_a_merge_never_leaves_two_instances_of_one_entry(shop: Shop) -> None:
    """b and c merge into a, all three in the same journey for the same cart: a's instance
    stays, the others exit as merged; b's other cart and its queued message move to a."""
    from personify.identity.merges import follow_merges

    wh = shop.wh
    for customer, key, entered in (("a", "k1", 2), ("b", "k1", 1), ("c", "k1", 3), ("b", "k2", 1)):
        wh.execute(
            "INSERT INTO journey_instances (journey, customer_id, trigger_key, step, status, "
            "wake_at, trigger_at, entered_at, updated_at) VALUES ('j', ?, ?, 0, 'active', ?, ?, "
            "?, ?)",
            [customer, key, NOW, NOW, NOW - entered * HOUR, NOW],
        )
    wh.execute(
        "INSERT INTO messages (idempotency_key, customer_id, journey, step, template, status, "
        "decided_at) VALUES ('j:s:b:k2', 'b', 'j', 's', 't', 'queued', ?)",
        [NOW],
    )
    wh.execute(
        "CREATE TEMP TABLE _test_merged AS SELECT customer_id, merged_into FROM (VALUES "
        "('b', 'a'), ('c', 'a'), ('d', CAST(NULL AS VARCHAR))) AS v(customer_id, merged_into)"
    )
    with clock.frozen(NOW):
        counts = follow_merges(wh, "_test_merged")
    assert counts == {"journey_instances_moved": 1, "journey_instances_merged": 2}
    rows = wh.fetch(
        "SELECT customer_id, trigger_key, status, exit_reason FROM journey_instances "
        "ORDER BY customer_id, trigger_key"
    )
    assert [tuple(r) for r in rows] == [
        ("a", "k1", "active", None),
        ("a", "k2", "active", None),
        ("b", "k1", "exited", "merged"),
        ("c", "k1", "exited", "merged"),
    ]
    assert wh.fetch("SELECT idempotency_key, customer_id FROM messages") == [("j:s:b:k2", "a")]


class _Weather(QuietHandler):
    """An API for connected content that answers 503 while ``down``."""

    down = True

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if _Weather.down:
            self.send_response(503)
            self.end_headers()
            return
        body = b'{"temp": 21}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_email_whose_connected_content_is_down_waits_for_it(shop: Shop) -> None:
    """A source without a fallback that times out or answers 5xx: the email is not failed for
    good but waits (queued, tried again later), as a message the mail server defers."""
    _Weather.down = True
    with serve(_Weather) as base:
        try:
            url = base + "/w"
            shop.write(
                "templates/weather.liquid",
                f'---\nsubject: Hi\nlayout: none\nconnected:\n  - name: weather\n    url: "{url}"\n'
                "---\n<p>{{ weather.temp }} degrees</p>\n",
            )
            shop.write(
                "journeys/news.yml", "trigger: {event: Signed Up}\nsteps:\n  - send: weather\n"
            )
            file = shop.root / "personify.yml"
            text = file.read_text(encoding="utf-8")
            file.write_text(
                text.replace("\nemail:\n", '\nemail:\n  connected_allow: ["127.0.0.1/32"]\n')
            )
            shop.configure("")
            people(shop.wh, {"customer_id": "c1"}, {"customer_id": "c2"}, consent=["c1", "c2"])
            events(
                shop.wh, ("c1", "Signed Up", NOW - HOUR, {}), ("c2", "Signed Up", NOW - HOUR, {})
            )
            first = shop.run(NOW)
            assert (first["sent"], first["deferred"]) == (0, 2)
            for status, _, error in shop.messages().values():
                assert status == "queued" and error is not None and "answered 503" in error
            DEFAULT_CACHE.close()  # (a failure is remembered for a minute of real time)
            _Weather.down = False
            assert shop.run(NOW + timedelta(minutes=5))["sent"] == 0  # not due again yet
            assert shop.run(NOW + timedelta(minutes=20))["sent"] == 2
            assert all("21 degrees" in p.read_text() for p in shop.outbox())
        finally:
            DEFAULT_CACHE.close()


def test_an_event_trigger_filter_lets_in_only_the_events_it_names(shop: Shop) -> None:
    """``where:`` on an event trigger: a JSON field compared with a number reads as a number
    (text that is no number: out), nested fields and the event's own columns too; the real-time
    entry (``only``) runs the same query: the same customers, once."""
    from personify.journeys.engine import enter

    shop.write("templates/hello.liquid", HELLO)
    shop.write(
        "journeys/big_orders.yml",
        "trigger:\n  event: Order Completed\n  key: properties.order.id\n"
        "  where: \"properties.total > 50 AND properties.shipping.country IN ('FR', 'BE') "
        "AND source = 'web'\"\n"
        "steps:\n  - send: hello\n    with: {note: thanks}\n",
    )
    wh = shop.wh
    people(wh, *({"customer_id": c} for c in "abcdef"), consent=list("abcdef"))
    fr = {"country": "FR"}
    events(
        wh,
        ("a", "Order Completed", NOW - HOUR, {"order": {"id": "o1"}, "total": 80, "shipping": fr}),
        ("b", "Order Completed", NOW - HOUR, {"order": {"id": "o2"}, "total": 20, "shipping": fr}),
        (
            "c",
            "Order Completed",
            NOW - HOUR,
            {"order": {"id": "o3"}, "total": "lots", "shipping": fr},
        ),
        (
            "d",
            "Order Completed",
            NOW - HOUR,
            {"order": {"id": "o4"}, "total": "75.5", "shipping": {"country": "DE"}},
        ),
        ("e", "Order Completed", NOW - HOUR, {"order": {"id": "o5"}, "total": 99}),
        (
            "f",
            "Order Completed",
            NOW - HOUR,
            {"order": {"id": "o6"}, "total": "60.0", "shipping": {"country": "BE"}},
        ),
    )
    # the real-time path first, for two of them: the same filter
    journey = next(j for j in project_journeys(shop.session.project) if j.name == "big_orders")
    wh.execute("CREATE TEMP TABLE _only_test AS SELECT 'a' AS customer_id UNION ALL SELECT 'b'")
    with clock.frozen(NOW):
        assert enter(wh, journey, now=NOW, only="_only_test") == 1
    shop.run(NOW)
    got = {k: v[0] for k, v in shop.messages().items()}
    assert got == {"a:big_orders": "sent", "f:big_orders": "sent"}
    keys = wh.fetch("SELECT customer_id, trigger_key FROM journey_instances ORDER BY 1")
    assert keys == [("a", "o1"), ("f", "o6")]


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("properties.total", "must be a condition"),
        ("cart.total > 1", "unknown event field 'cart.total'"),
        ("evnt = 'x'", "did you mean event?"),
        ("timestamp > NOW() - INTERVAL 1 DAY", "cannot read the clock"),
        ("properties.total > (SELECT 1)", "subquery"),
    ],
)
def test_a_bad_trigger_filter_is_refused_with_where_it_is(
    shop: Shop, where: str, said: str
) -> None:
    from personify.errors import DefinitionError

    shop.write(
        "journeys/bad.yml",
        f'trigger:\n  event: Order Completed\n  where: "{where}"\nsteps:\n  - send: hello\n',
    )
    with pytest.raises(DefinitionError) as caught:
        project_journeys(shop.session.project)
    text = str(caught.value) + str(caught.value.hint or "")
    assert said in text and "bad.yml" in text and "trigger.where" in text, text


def test_an_email_shows_the_event_that_triggered_it(shop: Shop) -> None:
    """``{from: event}``: the triggering event (keyed: the first of its key's events that passed
    the filter), whole or the field at ``path``; ``default`` where it has none."""
    shop.write(
        "templates/shipped.liquid",
        '---\nsubject: "Order {{ order.properties.order_id }} shipped"\nlayout: none\n---\n'
        "<p>Track it: {{ tracking }} ({{ carrier }}), {{ order.properties.items | size }} "
        "items, sent {{ order.timestamp | slice: 0, 10 }}</p>\n",
    )
    shop.write(
        "journeys/shipped.yml",
        "trigger:\n  event: Order Shipped\n  key: properties.order_id\n"
        '  where: "properties.tracking_url IS NOT NULL"\n'
        "steps:\n  - send: shipped\n    with:\n      order: {from: event}\n"
        "      tracking: {from: event, path: properties.tracking_url}\n"
        "      carrier: {from: event, path: properties.carrier, default: our courier}\n",
    )
    wh = shop.wh
    people(wh, {"customer_id": "a"}, {"customer_id": "b"}, consent=["a", "b"])
    items = [{"sku": "p1"}, {"sku": "p2"}]
    events(
        wh,
        ("a", "Order Shipped", NOW - 3 * HOUR, {"order_id": "o1", "items": items}),  # no url yet
        (
            "a",
            "Order Shipped",
            NOW - 2 * HOUR,
            {"order_id": "o1", "items": items, "tracking_url": "https://t.example/o1"},
        ),
        (
            "a",
            "Order Shipped",
            NOW - HOUR,
            {"order_id": "o1", "tracking_url": "https://t.example/late"},
        ),
        (
            "b",
            "Order Shipped",
            NOW - HOUR,
            {
                "order_id": "o2",
                "items": [],
                "carrier": "UPS",
                "tracking_url": "https://t.example/o2",
            },
        ),
    )
    assert shop.run(NOW)["sent"] == 2
    texts = {}
    for path in shop.outbox():
        message = parse(path)
        texts[str(message["Subject"])] = text_of(message)
    assert set(texts) == {"Order o1 shipped", "Order o2 shipped"}
    assert (
        "https://t.example/o1 (our courier), 2 items, sent 2026-03-02" in texts["Order o1 shipped"]
    )
    assert "https://t.example/o2 (UPS), 0 items" in texts["Order o2 shipped"]


def test_an_event_variable_needs_an_event_trigger(shop: Shop) -> None:
    from personify.errors import DefinitionError

    shop.segment("vip")
    shop.write(
        "journeys/bad.yml",
        "trigger: {segment: vip}\nsteps:\n  - send: hello\n    with: {order: {from: event}}\n",
    )
    with pytest.raises(DefinitionError, match="triggering event"):
        project_journeys(shop.session.project)
