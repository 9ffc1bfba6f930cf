"""Identity and profiles on a 1,000-customer demo world, imported and run by the real pipeline:
anonymous sessions that later log in are stitched to the right customer; the same person from the
CRM and the shop is one customer; blocked values do not merge strangers; the real-time path, fed
the whole world piece by piece, ends with the profiles the batch path builds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from personify import clock, pipeline
from personify.demo import make_demo_project
from personify.demo.project import configure_project
from personify.identity import Scope, identity_stage
from personify.profiles import apply, profiles_stage, read_profile
from personify.session import Session, open_session
from personify.sources import sync_sources
from personify.sources.files import import_file
from personify.warehouse.base import Warehouse

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SEED = 5
PIECES = 24

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo project after one full ``personify run``."""
    root = tmp_path_factory.mktemp("identity-demo") / "demo"
    make_demo_project(root, customers=1000, seed=SEED, now=NOW)
    # the web sessions as a file source (`personify demo` posts them to the tracking API)
    configure_project(root, seed=SEED, customers=1000, now=NOW, web_via_api=False)
    with clock.frozen(NOW), open_session(root) as session:
        pipeline.run(session)
    return root


@pytest.fixture
def batch(batch_root: Path) -> Iterator[Session]:
    with clock.frozen(NOW), open_session(batch_root) as session:
        yield session


def rows(wh: Warehouse, sql: str) -> list[tuple[Any, ...]]:
    return wh.fetch(sql)


def test_one_customer_per_shop_account_with_traits(batch: Session) -> None:
    wh = batch.warehouse
    accounts = wh.scalar(
        "SELECT count(DISTINCT trim(record_id)) FROM customer_records "
        "WHERE source = 'shop_customers'"
    )
    assert wh.scalar("SELECT count(*) FROM customers") == accounts >= 990
    # no customer holds two shop accounts (web user ids)
    assert not rows(
        wh,
        "SELECT customer_id FROM identities WHERE kind = 'user_id' "
        "GROUP BY customer_id HAVING count(*) > 1",
    )
    filled = wh.fetch(
        "SELECT count(email), count(*) FILTER (WHERE order_count > 0), count(last_purchase_at), "
        "count(*) FILTER (WHERE engagement_score > 0), "
        "count(*) FILTER (WHERE preferred_categories <> '[]') FROM customers"
    )[0]
    assert filled[0] == accounts
    assert filled[1] == filled[2] > 100
    assert filled[3] > 500 and filled[4] > 500
    # every order and ticket belongs to a customer
    assert wh.scalar("SELECT count(*) FROM orders WHERE customer_id IS NULL") == 0
    assert wh.scalar("SELECT count(*) FROM tickets WHERE customer_id IS NULL") == 0


def test_crm_contact_and_shop_customer_are_one_customer(batch: Session) -> None:
    wh = batch.warehouse
    # the same person, written differently (case, spaces) by each system
    pairs = rows(
        wh,
        "SELECT DISTINCT c.record_id, s.record_id FROM customer_records c "
        "JOIN customer_records s ON lower(trim(c.email)) = lower(trim(s.email)) "
        "WHERE c.source = 'crm' AND s.source = 'shop_customers'",
    )
    assert len(pairs) > 800
    assert sum(1 for c, s in pairs if c != s) == len(pairs)  # two different ids
    split = rows(
        wh,
        "SELECT DISTINCT c.record_id FROM customer_records c "
        "JOIN customer_records s ON lower(trim(c.email)) = lower(trim(s.email)) "
        "JOIN identities ic ON ic.kind = 'crm_id' AND ic.value = c.record_id "
        "JOIN identities iu ON iu.kind = 'user_id' AND iu.value = trim(s.record_id) "
        "WHERE c.source = 'crm' AND s.source = 'shop_customers' "
        "AND ic.customer_id <> iu.customer_id",
    )
    assert split == []
    linked = wh.scalar(
        "SELECT count(DISTINCT ic.customer_id) FROM identities ic WHERE ic.kind = 'crm_id'"
    )
    assert linked >= len(pairs)
    # and people with different emails stay apart
    assert wh.scalar("SELECT count(DISTINCT lower(trim(email))) FROM customers") == wh.scalar(
        "SELECT count(*) FROM customers"
    )


def test_anonymous_sessions_that_log_in_are_stitched(batch: Session) -> None:
    wh = batch.warehouse
    # devices that logged in as exactly one account: every event on them, before the login
    # too, belongs to that account's customer
    wrong = wh.fetch(
        "WITH logins AS (SELECT anonymous_id, min(user_id) AS user_id, "
        "min(timestamp) AS logged_in FROM events "
        "WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL GROUP BY anonymous_id "
        "HAVING count(DISTINCT user_id) = 1) "
        "SELECT count(*) FILTER (WHERE e.customer_id IS DISTINCT FROM i.customer_id), "
        "count(*) FILTER (WHERE e.user_id IS NULL AND e.timestamp < l.logged_in), count(*) "
        "FROM events e JOIN logins l ON l.anonymous_id = e.anonymous_id "
        "JOIN identities i ON i.kind = 'user_id' AND i.value = l.user_id"
    )[0]
    assert wrong[0] == 0
    assert wrong[1] > 100  # the world has anonymous browsing before a login
    # visitors who never identified belong to no customer
    assert (
        wh.scalar(
            "SELECT count(*) FROM events e WHERE e.customer_id IS NOT NULL "
            "AND e.user_id IS NULL AND e.anonymous_id NOT IN (SELECT value FROM identities "
            "WHERE kind = 'anonymous_id')"
        )
        == 0
    )


def test_blocked_values_do_not_merge_strangers(batch_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(batch_root, root)
    with clock.frozen(NOW), open_session(root) as session:
        wh = session.warehouse
        before = wh.scalar("SELECT count(*) FROM customers")
        (a, ca), (b, cb) = wh.fetch(
            "SELECT r.record_id, i.customer_id FROM customer_records r JOIN identities i "
            "ON i.kind = 'crm_id' AND i.value = r.record_id WHERE r.source = 'crm' "
            "ORDER BY r.record_id LIMIT 2"
        )
        assert ca != cb
        (ua, uca), (ub, ucb) = wh.fetch(
            "SELECT value, customer_id FROM identities WHERE kind = 'user_id' "
            "ORDER BY value LIMIT 2"
        )
        later = "2026-03-30T00:00:00Z"
        crm = root / "blocked_crm.csv"
        crm.write_text(
            "customer_id,email,updated_at\n"
            f"{a},test@example.com,{later}\n{b}, TEST@example.com ,{later}\n",
            encoding="utf-8",
        )
        web = root / "blocked_web.jsonl"
        identifies = [
            {
                "messageId": f"blk-{n}",
                "type": "identify",
                "userId": user,
                "anonymousId": device,
                "timestamp": later,
                "traits": {"email": "test@example.com"},
            }
            for n, (user, device) in enumerate([(ua, "guest"), (ub, "Guest")])
        ]
        web.write_text("".join(json.dumps(x) + "\n" for x in identifies), encoding="utf-8")
        import_file(session, crm, table="customers", source_name="crm")
        import_file(session, web, table="events", source_name="web")
        identity_stage(session)
        profiles_stage(session)
        assert wh.scalar("SELECT count(*) FROM customers") == before
        got = dict(
            wh.fetch(
                "SELECT value, customer_id FROM identities WHERE (kind = 'crm_id' AND value IN "
                "(?, ?)) OR (kind = 'user_id' AND value IN (?, ?))",
                [a, b, ua, ub],
            )
        )
        assert got == {a: ca, b: cb, ua: uca, ub: ucb}
        blocked = wh.fetch(
            "SELECT kind, value, customer_id FROM identity_nodes WHERE blocked ORDER BY 1, 2"
        )
        assert ("anonymous_id", "guest", None) in blocked
        assert ("email", "test@example.com", None) in blocked
        assert (
            wh.scalar(
                "SELECT count(*) FROM identities WHERE value IN ('guest', 'test@example.com')"
            )
            == 0
        )
        # nor is the blocked address anyone's email: it is a placeholder, never observed
        assert wh.scalar("SELECT count(*) FROM customers WHERE email = 'test@example.com'") == 0
        assert (
            wh.scalar(
                "SELECT count(*) FROM customers WHERE customer_id IN (?, ?) AND email IS NOT NULL",
                [ca, cb],
            )
            == 2
        )


def snapshot(wh: Warehouse) -> dict[str, Any]:
    """Customers by email (unique here), without their ids; the partition of identifiers; the
    owner (by email) of every event. Customer ids may differ between the paths: a cluster keeps
    the id it got first, and the order inputs arrive in decides which one that is."""
    people = wh.fetch_arrow(
        "SELECT * EXCLUDE (updated_at, customer_id) FROM customers ORDER BY email"
    ).to_pylist()
    groups = wh.fetch(
        "SELECT string_agg(kind || ':' || value, ' ' ORDER BY kind, value) FROM identities "
        "GROUP BY customer_id ORDER BY 1"
    )
    owners = wh.fetch(
        "SELECT e.message_id, c.email FROM events e LEFT JOIN customers c "
        "ON c.customer_id = e.customer_id ORDER BY e.message_id"
    )
    return {"customers": people, "identities": groups, "events": owners}


def test_real_time_path_equals_batch_path(batch: Session, tmp_path: Path) -> None:
    root = tmp_path / "realtime"
    make_demo_project(root, customers=1000, seed=SEED, now=NOW)
    # the web sessions as a file source (`personify demo` posts them to the tracking API)
    configure_project(root, seed=SEED, customers=1000, now=NOW, web_via_api=False)
    with clock.frozen(NOW), open_session(root) as session:
        sync_sources(session)
        piece = "hash({}) % {} = ?".format
        for i in range(PIECES):
            apply(
                session,
                Scope(
                    records=(piece("record_id", PIECES), (i,)),
                    events=(piece("message_id", PIECES), (i,)),
                    orders=(piece("order_id", PIECES), (i,)),
                    tickets=(piece("ticket_id", PIECES), (i,)),
                ),
            )
        realtime = snapshot(session.warehouse)
    expected = snapshot(batch.warehouse)
    assert len(realtime["customers"]) == len(expected["customers"]) >= 990
    assert realtime["identities"] == expected["identities"]
    assert realtime["events"] == expected["events"]
    assert realtime["customers"] == expected["customers"]


def test_profile_shows_consent_recorded_under_the_shop_id(batch: Session) -> None:
    wh = batch.warehouse
    shop_id, status = wh.fetch(
        "SELECT customer_id, status FROM consents ORDER BY customer_id LIMIT 1"
    )[0]
    doc = read_profile(wh, shop_id, batch.project)
    assert doc["customer_id"].startswith("cus_")
    assert [(c["purpose"], c["status"]) for c in doc["consent"]] == [("email_marketing", status)]
