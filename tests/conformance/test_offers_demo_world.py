"""Offers on a demo world (built, imported, resolved and profiled by the real pipeline): every
abandoned cart gets four recommendations, none of them in the cart, out of stock or already
bought; customers get four new arrivals; codes issued for every cart are distinct and redeemable."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from personify import clock, pipeline
from personify.demo import make_demo_project
from personify.demo.project import configure_project
from personify.offers import cart_contents, issue_codes, new_arrivals, recommend_for_carts, redeem
from personify.session import Session, open_session

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("offers-demo") / "demo"
    make_demo_project(root, customers=300, seed=3, now=NOW)
    # the web sessions as a file source (`personify demo` posts them to the tracking API)
    configure_project(root, seed=3, customers=300, now=NOW, web_via_api=False)
    upstream = tuple(s for s in pipeline.STAGES if s[0] in {"sync", "identity", "profiles"})
    with clock.frozen(NOW), open_session(root) as session:
        pipeline.run(session, stages=upstream)
    return root


@pytest.fixture
def session(world_root: Path) -> Iterator[Session]:
    with clock.frozen(NOW), open_session(world_root) as s:
        yield s


def abandoned_carts(session: Session) -> dict[str, str | None]:
    """Carts of the last 30 days with an add and no completed order."""
    rows = session.warehouse.fetch(
        "SELECT properties->>'cart_id', min(customer_id) FROM events "
        "WHERE type = 'track' AND event = 'Product Added' AND properties->>'cart_id' IS NOT NULL "
        "AND timestamp > CAST(? AS TIMESTAMPTZ) - INTERVAL '30 days' "
        "AND properties->>'cart_id' NOT IN (SELECT properties->>'cart_id' FROM events "
        "WHERE event = 'Order Completed' AND properties->>'cart_id' IS NOT NULL) "
        "GROUP BY 1 ORDER BY 1",
        [NOW],
    )
    return {str(cart): customer for cart, customer in rows}


def test_every_abandoned_cart_gets_four_recommendations(session: Session) -> None:
    wh = session.warehouse
    carts = abandoned_carts(session)
    assert len(carts) >= 20
    contents = cart_contents(wh, list(carts), now=NOW)
    assert all(contents[c] for c in carts)  # each abandoned cart holds something
    recs = recommend_for_carts(wh, carts, now=NOW)
    out_of_stock = {r[0] for r in wh.fetch("SELECT product_id FROM products WHERE stock <= 0")}
    bought: dict[str, set[str]] = {}
    for customer, product in wh.fetch(
        "SELECT o.customer_id, i.product_id FROM orders o JOIN order_items i "
        "ON i.order_id = o.order_id WHERE o.customer_id IS NOT NULL"
    ):
        bought.setdefault(customer, set()).add(product)
    for cart, customer in carts.items():
        got = [p["product_id"] for p in recs[cart]]
        assert len(got) == len(set(got)) == 4
        assert not set(got) & {i["product_id"] for i in contents[cart]}
        assert not set(got) & out_of_stock
        assert not set(got) & bought.get(customer or "", set())
        assert all(p["name"] and p["url"] and p["price"] is not None for p in recs[cart])


def test_customers_get_four_new_arrivals(session: Session) -> None:
    wh = session.warehouse
    customers = [
        str(r[0])
        for r in wh.fetch(
            "SELECT customer_id FROM customers WHERE preferred_categories IS NOT NULL "
            "ORDER BY customer_id LIMIT 100"
        )
    ]
    assert len(customers) >= 50
    picks = new_arrivals(wh, customers, now=NOW)
    assert all(len(picks[c]) == 4 for c in customers)


def test_a_code_for_every_cart(session: Session) -> None:
    wh = session.warehouse
    carts = abandoned_carts(session)
    requests = [
        (f"abandoned_cart:{cart}", customer or "", "cart_rescue")
        for cart, customer in carts.items()
    ]
    codes = issue_codes(wh, session.project, requests, now=NOW)
    assert len({c["code"] for c in codes.values()}) == len(carts)
    assert {c["label"] for c in codes.values()} <= {"5% off", "10% off", "15% off"}
    some = next(iter(codes.values()))
    assert redeem(wh, some["code"], order_id="o-test", at=NOW + timedelta(hours=1)).ok
