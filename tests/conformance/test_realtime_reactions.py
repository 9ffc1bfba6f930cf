"""Continuous mode past the profile, on every backend: a stored event, order or record moves its
customer's real-time segments, tags and journey entries in the same pass; the journeys' tick
sends the abandoned cart's email once its wait expired; and the batch path agrees — the
recompute finds no difference, a batch run enters nobody twice — until a difference is planted,
which the recompute reports and corrects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.audience_data import arrow_rows, load_consents
from tests.conformance.journey_support import products

from personify import clock
from personify.audiences import audiences_stage
from personify.journeys import project_journeys, run_journeys
from personify.realtime.continuous import Applier
from personify.realtime.drift import recompute
from personify.realtime.reactions import react, tick
from personify.scaffold import init_project
from personify.session import Session, open_session
from personify.warehouse import Warehouse, table

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    """The scaffolded project (its segment, rule and both journeys) on the backend under test,
    plus a real-time segment of buyers and an hourly one the real-time path must leave alone."""
    root = tmp_path / "shop"
    init_project(root)
    yml = root / "personify.yml"
    yml.write_text(  # (no frequency cap: both journeys' emails go out)
        yml.read_text()
        .replace("frequency_cap: {max: 1, per: 24h}", "frequency_cap: {max: 5, per: 24h}")
        .replace("warehouse: duckdb:///warehouse.duckdb", f"warehouse: {warehouse_url}")
    )
    (root / "segments" / "buyers.sql").write_text(
        "-- refresh: real-time\nSELECT customer_id FROM customers WHERE order_count >= 1\n"
    )
    (root / "segments" / "hourly_buyers.sql").write_text(
        "-- refresh: every 1h\nSELECT customer_id FROM customers WHERE order_count >= 1\n"
    )
    session = open_session(root)
    try:
        yield session
    finally:
        session.close()


def track(wh: Warehouse, mid: str, event: str, at: datetime, props: dict[str, Any]) -> str:
    row = {
        "message_id": mid,
        "type": "track" if event != "identify" else "identify",
        "event": None if event == "identify" else event,
        "anonymous_id": "anon-1",
        "user_id": "u-1",
        "timestamp": at,
        "received_at": at,
        "source": "web",
        "properties": json.dumps(props),
        "traits": json.dumps({"email": "ann@example.com", "first_name": "Ann"})
        if event == "identify"
        else None,
    }
    wh.load(table("events"), arrow_rows("events", [row]))
    return mid


def state(wh: Warehouse) -> dict[str, Any]:
    """Memberships (open), tags and journey instances: what the real-time path wrote."""
    return {
        "segments": sorted(
            wh.fetch("SELECT segment, customer_id FROM segment_memberships WHERE exited_at IS NULL")
        ),
        "tags": sorted(wh.fetch("SELECT customer_id, tag, rule FROM customer_tags")),
        "journeys": sorted(
            wh.fetch("SELECT journey, customer_id, trigger_key, status FROM journey_instances")
        ),
    }


def load_order(wh: Warehouse, created_at: datetime) -> None:
    """Ann's paid order ``o-1`` from the shop, placed at ``created_at``."""
    row = {
        "order_id": "o-1",
        "email": "ann@example.com",
        "total": 30.0,
        "status": "paid",
        "created_at": created_at,
        "source": "shop",
    }
    wh.load(table("orders"), arrow_rows("orders", [row]))


def test_events_and_orders_move_segments_tags_and_journeys_like_the_batch(shop: Session) -> None:
    wh = shop.warehouse
    products(wh, 6, category="Shoes")
    with clock.frozen(NOW):
        applier = Applier(shop, tick_every=None)  # the tick is driven by hand below
        try:
            applier.submit(
                [
                    track(wh, "m-id", "identify", NOW - timedelta(minutes=2), {}),
                    track(
                        wh,
                        "m-add",
                        "Product Added",
                        NOW - timedelta(minutes=1),
                        {"cart_id": "cart-9", "product_id": "p1", "price": 11.0, "quantity": 1},
                    ),
                ]
            )
            assert applier.wait_idle(60)
            (ann,) = (str(r[0]) for r in wh.fetch("SELECT customer_id FROM customers"))
            # the Product Added entered the abandoned-cart journey in the same pass
            assert state(wh)["journeys"] == [("abandoned_cart", ann, "cart-9", "active")]
            assert state(wh)["segments"] == []  # no order yet
            load_consents(wh, [(ann, "email_marketing", "granted")])

            # an order 90 days old: a buyer (real-time segment), lapsed (the rule's tag), and
            # the tag triggers the re-engagement journey — all in the order's pass
            load_order(wh, NOW - timedelta(days=90))
            applier.submit_orders(["o-1"])
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
        after = state(wh)
        assert after["segments"] == [("buyers", ann)]  # hourly_buyers: the batch's business
        assert after["tags"] == [(ann, "re_engagement", "re_engagement")]
        assert ("re_engagement", ann) in [(j, c) for j, c, _, _ in after["journeys"]]
        changes = wh.fetch(
            "SELECT kind, name, change FROM audience_changes WHERE customer_id = ? ORDER BY 1, 2",
            [ann],
        )
        assert changes == [("segment", "buyers", "entered"), ("tag", "re_engagement", "entered")]

        assert react(shop, [ann]).entered == 0  # applying twice changes nothing
        assert state(wh) == after

        # the batch path agrees: no drift, and a batch run re-enters nobody
        drift = recompute(shop)
        assert not drift.drifted, drift
        assert (drift.segments, drift.tags) == ({}, {})
        audiences_stage(shop)
        run_journeys(wh, shop.project, project_journeys(shop.project))
        batch = state(wh)
        assert batch["tags"] == after["tags"]
        assert {(j, c, k) for j, c, k, _ in batch["journeys"]} == {
            (j, c, k) for j, c, k, _ in after["journeys"]
        }
        assert ("hourly_buyers", ann) in batch["segments"]  # refreshed by the batch run

    # the cart's wait (1 h from the Product Added) expires: the tick sends its email
    root = shop.project.root
    with clock.frozen(NOW + timedelta(minutes=58)):
        tick(shop)
    assert wh.scalar("SELECT count(*) FROM messages WHERE journey = 'abandoned_cart'") == 0
    with clock.frozen(NOW + timedelta(minutes=59, seconds=1)):
        done = tick(shop)
    assert done.sent >= 1 and not done.busy
    sent = wh.fetch("SELECT journey, status FROM messages WHERE customer_id = ? ORDER BY 1", [ann])
    assert sent == [("abandoned_cart", "sent"), ("re_engagement", "sent")]
    assert len(list((root / "outbox").glob("*.eml"))) == 2


def test_recompute_reports_and_corrects_a_missed_membership(shop: Session) -> None:
    wh = shop.warehouse
    with clock.frozen(NOW):
        applier = Applier(shop, tick_every=None)
        try:
            applier.submit([track(wh, "m-id", "identify", NOW - timedelta(minutes=2), {})])
            load_order(wh, NOW - timedelta(days=3))
            applier.submit_orders(["o-1"])
            assert applier.wait_idle(60)
        finally:
            applier.close()
        assert [s for s, _ in state(wh)["segments"]] == ["buyers"]
        wh.execute("DELETE FROM segment_memberships")  # what a missed pass would leave
        drift = recompute(shop)
        assert drift.drifted and drift.segments == {"buyers": 1}, drift
        assert [s for s, _ in state(wh)["segments"]] == ["buyers"]  # corrected
        assert not recompute(shop).drifted


def test_webhook_records_and_synced_records_reach_their_customers(shop: Session) -> None:
    """What a webhook delivery stored (one record, by id) and what a scheduled sync stored
    (every record received since the sync started) go through the same pass."""
    wh = shop.warehouse

    def record(rid: str, mail: str, received: datetime) -> None:
        row = {
            "source": "crm",
            "record_id": rid,
            "observed_at": received,
            "email": mail,
            "first_name": rid.upper(),
            "received_at": received,
        }
        wh.load(table("customer_records"), arrow_rows("customer_records", [row]))

    with clock.frozen(NOW):
        applier = Applier(shop, tick_every=None)
        try:
            record("r1", "one@example.com", NOW - timedelta(hours=2))
            applier.submit_records("crm", ["r1"])
            assert applier.wait_idle(60)
            assert wh.scalar("SELECT count(*) FROM customers") == 1
            record("r2", "two@example.com", NOW - timedelta(minutes=1))
            record("r3", "three@example.com", NOW - timedelta(seconds=30))
            applier.submit_synced("crm", NOW - timedelta(minutes=5))
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
    names = [r[0] for r in wh.fetch("SELECT first_name FROM customers ORDER BY 1")]
    assert names == ["R1", "R2", "R3"]
    assert not recompute(shop).drifted


def _erased_after_consenting(shop: Session) -> None:
    """Ann, identified through the real-time path three hours before ``NOW``, consents to
    marketing and is then erased."""
    from personify.privacy.consent import consented
    from personify.privacy.erase import erase_subject

    wh = shop.warehouse
    products(wh, 6, category="Shoes")
    with clock.frozen(NOW - timedelta(hours=3)):
        applier = Applier(shop, tick_every=None)
        try:
            applier.submit([track(wh, "m-id", "identify", NOW - timedelta(hours=3), {})])
            assert applier.wait_idle(60)
        finally:
            applier.close()
        (ann,) = (str(r[0]) for r in wh.fetch("SELECT customer_id FROM customers"))
        load_consents(wh, [(ann, "email_marketing", "granted")])
        assert consented(wh, [ann], purpose="email_marketing") == {ann}
        assert erase_subject(wh, shop.project, "ann@example.com").status == "erased"


def test_a_person_erased_then_recreated_in_real_time_stays_suppressed(shop: Session) -> None:
    """The audit's repro: after an erasure, the person comes back through the real-time path
    only (an identify, then a cart), with the consent a source still holds (granted before the
    erasure). The pass points the erasure's tombstone at the new customer, so the abandoned
    cart's email is ``skipped_suppressed`` — as ``personify run`` decides it — and nothing is
    written to the outbox."""
    from personify.privacy.consent import consented

    wh, root = shop.warehouse, shop.project.root
    _erased_after_consenting(shop)
    assert wh.scalar("SELECT count(*) FROM customers") == 0
    tombs = wh.fetch(
        "SELECT kind, customer_id FROM suppressions WHERE reason = 'erased' ORDER BY kind"
    )
    assert tombs == [("customer_id", None), ("email", None)]

    with clock.frozen(NOW):
        applier = Applier(shop, tick_every=None)
        try:
            applier.submit([track(wh, "m-id-2", "identify", NOW - timedelta(minutes=95), {})])
            assert applier.wait_idle(60)
            (again,) = (str(r[0]) for r in wh.fetch("SELECT customer_id FROM customers"))
            # the consent row the source still holds, granted before the erasure
            load_consents(wh, [(again, "email_marketing", "granted")])
            cart = {"cart_id": "cart-9", "product_id": "p1", "price": 11.0, "quantity": 1}
            applier.submit(
                [track(wh, "m-add-2", "Product Added", NOW - timedelta(minutes=90), cart)]
            )
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
        relinked = "SELECT customer_id FROM suppressions WHERE reason = 'erased' AND kind = 'email'"
        assert wh.fetch(relinked) == [(again,)]
        assert consented(wh, [again], purpose="email_marketing") == set()
        assert state(wh)["journeys"] == [("abandoned_cart", again, "cart-9", "active")]
        tick(shop)  # the cart's hour is over: decided now
    sent = wh.fetch("SELECT journey, status FROM messages WHERE customer_id = ?", [again])
    assert sent == [("abandoned_cart", "skipped_suppressed")]
    assert list((root / "outbox").glob("*.eml")) == []


@pytest.mark.parametrize("regrant", [True, False], ids=["opted-in-again", "old-consent-only"])
def test_a_person_erased_then_back_is_sent_once_they_opt_in_again(
    shop: Session, regrant: bool
) -> None:
    """README: an erasure's tombstone gives way to consent granted after it. The person is
    erased, comes back under the same address and opts in again (after the erasure): the
    abandoned cart's email is decided and sent. Without that new grant (only the consent a
    source held from before the erasure) it is ``skipped_suppressed`` and nothing is written."""
    from personify.privacy.consent import consented, set_consent

    wh, root = shop.warehouse, shop.project.root
    _erased_after_consenting(shop)

    with clock.frozen(NOW):
        applier = Applier(shop, tick_every=None)
        try:
            applier.submit([track(wh, "m-id-2", "identify", NOW - timedelta(minutes=95), {})])
            assert applier.wait_idle(60)
            (again,) = (str(r[0]) for r in wh.fetch("SELECT customer_id FROM customers"))
            load_consents(wh, [(again, "email_marketing", "granted")])  # from before: not enough
            if regrant:  # they opt in again, after the erasure
                set_consent(wh, again, purpose="email_marketing", status="granted", source="web")
            cart = {"cart_id": "cart-9", "product_id": "p1", "price": 11.0, "quantity": 1}
            applier.submit(
                [track(wh, "m-add-2", "Product Added", NOW - timedelta(minutes=90), cart)]
            )
            assert applier.wait_idle(60)
            assert applier.failures == 0
        finally:
            applier.close()
        relinked = "SELECT customer_id FROM suppressions WHERE reason = 'erased' AND kind = 'email'"
        assert wh.fetch(relinked) == [(again,)]
        assert consented(wh, [again], purpose="email_marketing") == ({again} if regrant else set())
        tick(shop)  # the cart's hour is over: decided and sent now
    sent = wh.fetch("SELECT journey, status FROM messages WHERE customer_id = ?", [again])
    emails = list((root / "outbox").glob("*.eml"))
    if regrant:
        assert sent == [("abandoned_cart", "sent")]
        assert len(emails) == 1 and "ann@example.com" in emails[0].read_text().lower()
    else:
        assert sent == [("abandoned_cart", "skipped_suppressed")]
        assert emails == []
