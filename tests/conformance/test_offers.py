"""Offers on every backend: cart contents, recommendations, new arrivals, discount codes.

Small hand-made worlds (products, events, orders, customers) loaded through ``Warehouse.load``,
then the batch functions asked about many carts or customers at once — plus properties that hold
on any world Hypothesis draws, and the races of two writers issuing or redeeming the same code.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from personify.config import Project, parse_config
from personify.errors import ConfigError
from personify.journeys.content import Expiry, Pending, resolve
from personify.journeys.definitions import Step, Trigger, Variable
from personify.offers import (
    PREVIEW_CODE,
    cart_contents,
    derive_code,
    issue_codes,
    new_arrivals,
    preview_codes,
    recommend_for_carts,
    redeem,
    redeem_from_orders,
    snapshot,
)
from personify.warehouse import Warehouse, table

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SECRET = "offers-test-secret"
WORLD_TABLES = ("events", "products", "orders", "order_items", "customers", "discount_codes")


@dataclass
class World:
    """Rows to load; helpers add them with sensible defaults."""

    products: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    customers: list[dict[str, Any]] = field(default_factory=list)

    def product(
        self,
        pid: str,
        category: str | None = "shoes",
        *,
        stock: int | None = 10,
        price: float = 10.0,
        listed: datetime | None = None,
    ) -> None:
        self.products.append(
            {
                "product_id": pid,
                "name": f"Product {pid}",
                "category": category,
                "price": price,
                "stock": stock,
                "url": f"https://shop.example/p/{pid}",
                "image_url": f"https://cdn.example/{pid}.jpg",
                "created_at": listed or NOW - timedelta(days=365),
                "source": "shop",
            }
        )

    def track(
        self,
        event: str,
        props: dict[str, Any],
        *,
        customer: str | None = None,
        anon: str | None = None,
        at: datetime | None = None,
    ) -> None:
        at = at or NOW - timedelta(days=1)
        self.events.append(
            {
                "message_id": f"m{len(self.events)}",
                "type": "track",
                "event": event,
                "customer_id": customer,
                "anonymous_id": anon,
                "timestamp": at,
                "received_at": at,
                "source": "web",
                "properties": json.dumps(props),
            }
        )

    def add(self, cart: str, pid: str, qty: int | None = None, **kw: Any) -> None:
        props: dict[str, Any] = {"cart_id": cart, "product_id": pid}
        if qty is not None:
            props["quantity"] = qty
        self.track("Product Added", props, **kw)

    def remove(self, cart: str, pid: str, qty: int | None = None, **kw: Any) -> None:
        props: dict[str, Any] = {"cart_id": cart, "product_id": pid}
        if qty is not None:
            props["quantity"] = qty
        self.track("Product Removed", props, **kw)

    def view(self, who: str, *pids: str, at: datetime | None = None) -> None:
        for pid in pids:
            self.track("Product Viewed", {"product_id": pid}, customer=who, at=at)

    def order(
        self,
        oid: str,
        customer: str | None,
        *pids: str,
        at: datetime | None = None,
        code: str | None = None,
        qty: int = 1,
    ) -> None:
        self.orders.append(
            {
                "order_id": oid,
                "customer_id": customer,
                "discount_code": code,
                "created_at": at or NOW - timedelta(days=2),
                "source": "shop",
            }
        )
        for n, pid in enumerate(pids):
            self.items.append(
                {
                    "order_id": oid,
                    "line_no": n,
                    "product_id": pid,
                    "quantity": qty,
                    "price": 10.0,
                    "source": "shop",
                }
            )

    def customer(
        self,
        cid: str,
        *,
        engagement: float | None = None,
        categories: list[str] | None = None,
        timezone: str | None = None,
    ) -> None:
        self.customers.append(
            {
                "customer_id": cid,
                "engagement_score": engagement,
                "preferred_categories": None if categories is None else json.dumps(categories),
                "timezone": timezone,
                "updated_at": NOW,
            }
        )

    def load(self, wh: Warehouse) -> None:
        for name, rows in (
            ("products", self.products),
            ("events", self.events),
            ("orders", self.orders),
            ("order_items", self.items),
            ("customers", self.customers),
        ):
            if rows:
                wh.load(table(name), pa.Table.from_pylist(rows))


def ids(products: list[dict[str, Any]]) -> list[str]:
    return [p["product_id"] for p in products]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    text = f"signing_key: {SECRET}\n"
    (tmp_path / "personify.yml").write_text(text)
    return Project(parse_config(text), tmp_path, tmp_path / "personify.yml")


# ------------------------------------------------------------------------------ cart contents
def test_cart_contents_nets_adds_and_removals(warehouse: Warehouse) -> None:
    w = World()
    w.product("p1", price=12.5)
    w.product("p2")
    w.product("p3")
    t = NOW - timedelta(hours=3)
    w.add("c1", "p1", 2, at=t)
    w.add("c1", "p2", at=t + timedelta(minutes=1))
    w.add("c1", "p1", at=t + timedelta(minutes=2))  # 3 of p1 now
    w.remove("c1", "p1", 1, at=t + timedelta(minutes=3))  # 2 left
    w.add("c1", "p3", at=t + timedelta(minutes=4))
    w.remove("c1", "p3", at=t + timedelta(minutes=5))  # no quantity: all of it
    w.add("c1", "ghost", at=t + timedelta(minutes=6))  # not in the catalogue
    w.events[-1]["properties"] = json.dumps(
        {"cart_id": "c1", "product_id": "ghost", "name": "Ghost", "price": "3.5"}
    )
    w.add("c1", "p3", at=NOW + timedelta(minutes=1))  # after now: not yet
    w.add("c2", "p2", 4)
    w.remove("c2", "p2", 4)  # emptied
    w.add("old", "p2", at=NOW - timedelta(days=100))  # beyond the 90-day lookback
    w.load(warehouse)

    carts = cart_contents(warehouse, ["c1", "c2", "nope", "old"], now=NOW)

    assert set(carts) == {"c1", "c2", "nope", "old"}
    assert carts["c2"] == [] and carts["nope"] == [] and carts["old"] == []
    assert ids(cart_contents(warehouse, ["old"], now=NOW, lookback_days=120)["old"]) == ["p2"]
    assert [(i["product_id"], i["quantity"]) for i in carts["c1"]] == [
        ("p1", 2),
        ("p2", 1),
        ("ghost", 1),
    ]
    p1 = carts["c1"][0]
    assert p1 == {
        "product_id": "p1",
        "name": "Product p1",
        "url": "https://shop.example/p/p1",
        "image_url": "https://cdn.example/p1.jpg",
        "price": 12.5,
        "quantity": 2,
        "category": "shoes",
    }
    ghost = carts["c1"][2]
    assert (ghost["name"], ghost["price"], ghost["url"]) == ("Ghost", 3.5, None)
    assert cart_contents(warehouse, [], now=NOW) == {}


# ---------------------------------------------------------------------------- recommendations
def test_recommendations_rank_co_bought_and_co_viewed_then_fall_back(
    warehouse: Warehouse,
) -> None:
    w = World()
    for pid in ("a1", "a2", "a3", "a4", "a5"):
        w.product(pid, "shoes")
    for pid in ("b1", "b2", "b3"):
        w.product(pid, "hats")
    w.product("a6", "shoes", stock=0)  # out of stock
    w.add("cart", "a1", customer="cus")
    # co-viewed with a1: b1 by two people, b2 by one; a6 by three (but out of stock)
    w.view("v1", "a1", "b1", "b2", "a6")
    w.view("v2", "a1", "b1", "a6")
    w.view("v3", "a1", "a6")
    # co-bought with a1 once: b3 (3 points, beats b1's 2)
    w.order("o1", "someone", "a1", "b3")
    # old co-views do not count (outside the 90-day window)
    w.view("old", "a1", "a5", at=NOW - timedelta(days=120))
    w.view("old2", "a1", "a5", at=NOW - timedelta(days=120))
    # best-sellers in shoes: a4 (3 units), then a3 (1); the customer already bought a3
    w.order("o2", "x", "a4", qty=3)
    w.order("o3", "cus", "a3")
    w.load(warehouse)

    recs = recommend_for_carts(warehouse, {"cart": "cus"}, now=NOW, k=4)
    assert ids(recs["cart"]) == ["b3", "b1", "b2", "a4"]
    first = recs["cart"][0]
    assert set(first) == {"product_id", "name", "url", "image_url", "price", "category"}
    assert first["category"] == "hats"

    more = recommend_for_carts(warehouse, {"cart": "cus"}, now=NOW, k=10)
    # then shoes by sales (a5 without sales after a4), then the rest of the catalogue
    assert ids(more["cart"]) == ["b3", "b1", "b2", "a4", "a2", "a5"]
    assert recommend_for_carts(warehouse, {"cart": "cus"}, now=NOW, k=2)["cart"] == recs["cart"][:2]


def test_every_cart_gets_k_when_the_catalogue_allows(warehouse: Warehouse) -> None:
    w = World()
    for n in range(6):
        w.product(f"p{n}", "shoes" if n < 3 else "hats")
    w.add("c1", "p0", customer="u1")
    w.add("c2", "p0", customer="u2")
    w.add("c2", "p1", customer="u2")
    w.order("o1", "u2", "p2", "p3")  # u2 bought two of the rest
    w.add("c3", "p5")  # anonymous cart
    w.load(warehouse)

    recs = recommend_for_carts(
        warehouse, {"c1": "u1", "c2": "u2", "c3": None, "empty": "u9"}, now=NOW
    )
    assert {c: len(r) for c, r in recs.items()} == {"c1": 4, "c2": 2, "c3": 4, "empty": 4}
    assert ids(recs["c2"]) == ["p4", "p5"]  # the only products left to offer u2
    assert recommend_for_carts(warehouse, {}, now=NOW) == {}


def test_recommendations_are_deterministic(warehouse: Warehouse) -> None:
    w = World()
    for n in range(8):
        w.product(f"p{n}", "shoes")
    w.add("c1", "p0")
    w.view("v", "p0", "p5", "p3", "p7")  # equal co-view strength: product id order
    w.load(warehouse)
    first = recommend_for_carts(warehouse, {"c1": "u"}, now=NOW)
    assert ids(first["c1"]) == ["p3", "p5", "p7", "p1"]
    assert recommend_for_carts(warehouse, {"c1": "u"}, now=NOW) == first


_pids = st.sampled_from([f"p{n}" for n in range(12)])


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stock=st.lists(st.sampled_from([0, 1, 5, None]), min_size=12, max_size=12),
    carts=st.lists(st.lists(_pids, min_size=1, max_size=4), min_size=1, max_size=4),
    bought=st.lists(st.lists(_pids, min_size=1, max_size=4), max_size=4),
    views=st.lists(st.lists(_pids, min_size=2, max_size=5), max_size=6),
    k=st.integers(1, 6),
)
def test_recommendation_invariants(
    warehouse: Warehouse,
    stock: list[int | None],
    carts: list[list[str]],
    bought: list[list[str]],
    views: list[list[str]],
    k: int,
) -> None:
    for name in WORLD_TABLES:
        warehouse.execute(f"DELETE FROM {name}")
    w = World()
    for n, s in enumerate(stock):
        w.product(f"p{n}", ("shoes", "hats", None)[n % 3], stock=s)
    owners = {f"c{i}": f"u{i % 3}" for i in range(len(carts))}
    for i, cart in enumerate(carts):
        for pid in cart:
            w.add(f"c{i}", pid, customer=owners[f"c{i}"])
    for i, basket in enumerate(bought):
        w.order(f"o{i}", f"u{i % 3}", *basket)
    for i, seen in enumerate(views):
        w.view(f"v{i}", *seen)
    w.load(warehouse)

    recs = recommend_for_carts(warehouse, owners, now=NOW, k=k)
    offerable = {f"p{n}" for n, s in enumerate(stock) if s is None or s > 0}
    assert set(recs) == set(owners)
    for cart_id, products in recs.items():
        got = ids(products)
        customer = owners[cart_id]
        excluded = set(carts[int(cart_id[1:])]) | {
            pid for i, basket in enumerate(bought) if f"u{i % 3}" == customer for pid in basket
        }
        assert len(got) == len(set(got)) == min(k, len(offerable - excluded))
        assert set(got) <= offerable - excluded
    assert recommend_for_carts(warehouse, owners, now=NOW, k=k) == recs
    contents = cart_contents(warehouse, list(owners), now=NOW)
    with snapshot(warehouse, now=NOW, neighbours=3):  # fewer partners than asked: inline
        assert recommend_for_carts(warehouse, owners, now=NOW, k=k) == recs
    with snapshot(warehouse, now=NOW):  # the same answers from precomputed tables
        assert recommend_for_carts(warehouse, owners, now=NOW, k=k) == recs
        assert cart_contents(warehouse, list(owners), now=NOW) == contents


# ------------------------------------------------------------------------------- new arrivals
def test_new_arrivals_interleave_preferred_categories(warehouse: Warehouse) -> None:
    w = World()
    for n, days in enumerate((1, 3, 5)):
        w.product(f"s{n}", "shoes", listed=NOW - timedelta(days=days))
    for n, days in enumerate((2, 4)):
        w.product(f"h{n}", "hats", listed=NOW - timedelta(days=days))
    w.product("old", "shoes", listed=NOW - timedelta(days=200))
    w.product("soon", "shoes", listed=NOW + timedelta(days=2))  # not listed yet
    w.product("gone", "shoes", stock=0, listed=NOW)
    w.product("bag", "bags", listed=NOW - timedelta(days=1))
    w.product("hit", "bags")
    w.order("o1", "x", "hit", qty=5)  # the best-seller
    w.customer("ann", categories=["shoes", "hats"])
    w.customer("bob", categories=["hats"])
    w.customer("cid")  # no preferences
    w.order("o2", "ann", "s0")  # ann already has the newest shoe
    w.load(warehouse)

    picks = new_arrivals(warehouse, ["ann", "bob", "cid", "nobody"], now=NOW, k=4)
    assert ids(picks["ann"]) == ["s1", "h0", "s2", "h1"]
    # bob: the two new hats, then hat best-sellers (none sold: none left), then best-sellers
    assert ids(picks["bob"]) == ["h0", "h1", "hit", "s0"]
    assert ids(picks["cid"]) == ids(picks["nobody"]) == ["hit", "s0", "bag", "h0"]
    assert new_arrivals(warehouse, [], now=NOW) == {}


# ------------------------------------------------------------------------------ discount codes
def test_issue_codes_is_idempotent_per_key(warehouse: Warehouse, project: Project) -> None:
    w = World()
    w.customer("hot", engagement=85)
    w.customer("warm", engagement=30)
    w.customer("cold", engagement=2)
    w.load(warehouse)
    requests = [
        ("j:hot:c1", "hot", "cart_rescue"),
        ("j:warm:c2", "warm", "cart_rescue"),
        ("j:cold:c3", "cold", "cart_rescue"),
        ("j:new:c4", "unknown-customer", "cart_rescue"),
    ]
    first = issue_codes(warehouse, project, requests, now=NOW)
    assert [first[k]["label"] for k, _, _ in requests] == [
        "5% off",
        "10% off",
        "15% off",
        "15% off",
    ]
    hot = first["j:hot:c1"]
    assert hot["code"] == derive_code(SECRET.encode(), "j:hot:c1")
    assert hot["kind"] == "percent" and hot["value"] == 5.0
    assert hot["campaign"] == "cart_rescue"
    assert hot["expires_at"] == NOW + timedelta(days=7)
    assert len({c["code"] for c in first.values()}) == 4

    again = issue_codes(warehouse, project, requests[:2], now=NOW + timedelta(days=3))
    assert again == {k: first[k] for k in ("j:hot:c1", "j:warm:c2")}
    assert warehouse.scalar("SELECT count(*) FROM discount_codes") == 4
    assert issue_codes(warehouse, project, [], now=NOW) == {}


def test_preview_codes_issue_nothing(warehouse: Warehouse, project: Project) -> None:
    """What a preview shows: the code issued for the key, else a placeholder of the value the
    customer would get — and no row written (a preview must not reserve a code)."""
    w = World()
    w.customer("hot", engagement=85)
    w.customer("cold", engagement=2)
    w.load(warehouse)
    issued = issue_codes(warehouse, project, [("j:hot:c1", "hot", "cart_rescue")], now=NOW)
    requests = [("j:hot:c1", "hot", "cart_rescue"), ("j:cold:c2", "cold", "cart_rescue")]
    shown = preview_codes(warehouse, project, requests, now=NOW + timedelta(days=1))
    assert shown["j:hot:c1"] == issued["j:hot:c1"]
    cold = shown["j:cold:c2"]
    assert cold["code"] == PREVIEW_CODE and cold["preview"] is True
    assert (cold["label"], cold["customer_id"]) == ("15% off", "cold")
    assert cold["expires_at"] == NOW + timedelta(days=8)
    assert warehouse.scalar("SELECT count(*) FROM discount_codes") == 1
    assert issue_codes(warehouse, project, requests, now=NOW)["j:cold:c2"]["code"] != PREVIEW_CODE


def test_a_code_about_to_expire_is_renewed_when_asked_for_again(
    warehouse: Warehouse, project: Project
) -> None:
    """A code asked for again within ``renew_within`` (24h) of its expiry, or after it, gets
    ``expires_in`` (7d) more from then — the same code; a redeemed one is left alone; a preview
    shows the renewed expiry and writes nothing."""
    keys = [("near", "c1", "cart_rescue"), ("used", "c2", "cart_rescue")]
    first = issue_codes(warehouse, project, keys, now=NOW)
    assert redeem(warehouse, first["used"]["code"], order_id="o1", at=NOW).ok
    later = NOW + timedelta(days=6, hours=1)  # 23 hours left
    shown = preview_codes(warehouse, project, keys[:1], now=later)["near"]
    assert shown["expires_at"] == later + timedelta(days=7)
    assert warehouse.scalar("SELECT max(expires_at) FROM discount_codes") == NOW + timedelta(days=7)
    renewed = issue_codes(warehouse, project, keys, now=later)
    assert renewed["near"] == {**first["near"], "expires_at": later + timedelta(days=7)}
    assert renewed["used"] == first["used"]  # redeemed: nothing to renew
    long_after = NOW + timedelta(days=30)  # expired: revived
    revived = issue_codes(warehouse, project, keys[:1], now=long_after)["near"]
    assert (revived["code"], revived["expires_at"]) == (
        first["near"]["code"],
        long_after + timedelta(days=7),
    )
    assert issue_codes(warehouse, project, keys[:1], now=long_after + timedelta(days=1)) == {
        "near": revived
    }  # 6 days left: unchanged


def test_a_colliding_code_moves_to_the_next_candidate(
    warehouse: Warehouse, project: Project
) -> None:
    taken = derive_code(SECRET.encode(), "k")
    warehouse.execute(
        "INSERT INTO discount_codes (code, customer_id, campaign, value, kind, created_at, "
        "expires_at, idempotency_key) VALUES (?, 'other', 'cart_rescue', 1, 'percent', ?, ?, "
        "'another key')",
        [taken, NOW, NOW + timedelta(days=1)],
    )
    issued = issue_codes(warehouse, project, [("k", "c", "cart_rescue")], now=NOW)["k"]
    assert issued["code"] == derive_code(SECRET.encode(), "k", attempt=1) != taken
    assert issue_codes(warehouse, project, [("k", "c", "cart_rescue")], now=NOW)["k"] == issued


def test_a_key_whose_every_candidate_is_taken_fails_loudly(
    warehouse: Warehouse, project: Project
) -> None:
    from personify.errors import WarehouseError
    from personify.offers.discounts import MAX_ATTEMPTS

    for attempt in range(MAX_ATTEMPTS):
        warehouse.execute(
            "INSERT INTO discount_codes (code, customer_id, campaign, value, kind, created_at, "
            "expires_at, idempotency_key) VALUES (?, 'x', 'cart_rescue', 1, 'percent', ?, ?, ?)",
            [derive_code(SECRET.encode(), "k", attempt), NOW, NOW, f"other-{attempt}"],
        )
    with pytest.raises(WarehouseError, match="could not store discount codes for 1"):
        issue_codes(warehouse, project, [("k", "c", "cart_rescue")], now=NOW)


def test_concurrent_issuers_store_each_code_once(warehouse: Warehouse, project: Project) -> None:
    requests = [(f"key-{n}", f"cus-{n}", "cart_rescue") for n in range(300)]
    results: list[dict[str, dict[str, Any]]] = []
    errors: list[BaseException] = []

    def issue() -> None:
        try:
            results.append(issue_codes(warehouse, project, requests, now=NOW))
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=issue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 4 and all(r == results[0] for r in results)
    assert warehouse.scalar("SELECT count(*) FROM discount_codes") == 300
    assert warehouse.scalar("SELECT count(DISTINCT idempotency_key) FROM discount_codes") == 300


def test_campaigns_and_the_signing_key_are_required(
    warehouse: Warehouse, project: Project, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"discounts\.winback"):
        issue_codes(warehouse, project, [("k", "c", "winback")], now=NOW)
    keyless = Project(parse_config("name: x\n"), tmp_path, tmp_path / "personify.yml")
    with pytest.raises(ConfigError, match="signing_key"):
        issue_codes(warehouse, keyless, [("k", "c", "cart_rescue")], now=NOW)


def test_redeem_once_before_expiry(warehouse: Warehouse, project: Project) -> None:
    codes = issue_codes(
        warehouse,
        project,
        [("a", "c1", "cart_rescue"), ("b", "c2", "cart_rescue")],
        now=NOW,
    )
    code = codes["a"]["code"]
    typed = f"{code[:6].lower()}-{code[6:]}"
    first = redeem(warehouse, typed, order_id="o1", at=NOW + timedelta(hours=1))
    assert (first.ok, first.reason, first.code, first.order_id) == (True, None, code, "o1")
    assert (first.customer_id, first.value, first.kind) == ("c1", 15.0, "percent")
    replay = redeem(warehouse, code, order_id="o1", at=NOW + timedelta(hours=2))
    assert (replay.ok, replay.redeemed_at) == (True, NOW + timedelta(hours=1))
    second = redeem(warehouse, code, order_id="o2", at=NOW + timedelta(hours=2))
    assert (second.ok, second.reason, second.order_id) == (False, "already_redeemed", "o1")

    late = redeem(warehouse, codes["b"]["code"], order_id="o3", at=NOW + timedelta(days=7))
    assert (late.ok, late.reason) == (False, "expired")
    assert (redeem(warehouse, "NOSUCHCODE", order_id="o4", at=NOW).reason) == "unknown"


def test_concurrent_redemptions_one_wins(warehouse: Warehouse, project: Project) -> None:
    code = issue_codes(warehouse, project, [("a", "c1", "cart_rescue")], now=NOW)["a"]["code"]
    outcomes: list[Any] = []

    def attempt(n: int) -> None:
        outcomes.append(redeem(warehouse, code, order_id=f"o{n}", at=NOW + timedelta(hours=1)))

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.ok for o in outcomes) == [False, False, False, False, True]
    winner = next(o for o in outcomes if o.ok).order_id
    assert {o.order_id for o in outcomes} == {winner}


def test_redeem_from_orders_and_order_events(warehouse: Warehouse, project: Project) -> None:
    codes = issue_codes(
        warehouse,
        project,
        [(k, "c", "cart_rescue") for k in ("by-order", "by-event", "early", "late", "unused")],
        now=NOW,
    )
    w = World()
    code = {k: v["code"] for k, v in codes.items()}
    w.order("o-before", "c", at=NOW - timedelta(hours=1), code=code["early"])  # before issue
    w.order("o1", "c", at=NOW + timedelta(days=1), code=code["by-order"].lower())
    w.order("o2", "c", at=NOW + timedelta(days=2), code=code["by-order"])  # second use
    w.order("o-late", "c", at=NOW + timedelta(days=8), code=code["late"])  # after expiry
    w.track(
        "Order Completed",
        {"order_id": "o9", "coupon": code["by-event"]},
        at=NOW + timedelta(days=1),
    )
    w.load(warehouse)

    assert redeem_from_orders(warehouse, now=NOW + timedelta(days=9)) == 2
    assert redeem_from_orders(warehouse, now=NOW + timedelta(days=9)) == 0
    rows = dict(
        warehouse.fetch(
            "SELECT idempotency_key, order_id FROM discount_codes WHERE redeemed_at IS NOT NULL"
        )
    )
    assert rows == {"by-order": "o1", "by-event": "o9"}


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    stock=st.lists(st.sampled_from([0, 3, None]), min_size=12, max_size=12),
    listed_days=st.lists(st.integers(-5, 60), min_size=12, max_size=12),
    prefs=st.lists(
        st.one_of(st.none(), st.lists(st.sampled_from(["shoes", "hats", "bags"]), max_size=3)),
        min_size=1,
        max_size=4,
    ),
    bought=st.lists(st.lists(_pids, min_size=1, max_size=5), max_size=4),
    k=st.integers(1, 6),
)
def test_new_arrival_invariants(
    warehouse: Warehouse,
    stock: list[int | None],
    listed_days: list[int],
    prefs: list[list[str] | None],
    bought: list[list[str]],
    k: int,
) -> None:
    for name in WORLD_TABLES:
        warehouse.execute(f"DELETE FROM {name}")
    w = World()
    for n, (s, days) in enumerate(zip(stock, listed_days, strict=True)):
        w.product(
            f"p{n}", ("shoes", "hats", "bags")[n % 3], stock=s, listed=NOW - timedelta(days=days)
        )
    customers = [f"u{i}" for i in range(len(prefs))]
    for cid, categories in zip(customers, prefs, strict=True):
        w.customer(cid, categories=categories)
    for i, basket in enumerate(bought):
        w.order(f"o{i}", customers[i % len(customers)], *basket)
    w.load(warehouse)

    picks = new_arrivals(warehouse, customers, now=NOW, k=k)
    offerable = {  # in stock and listed by now
        f"p{n}" for n, s in enumerate(stock) if (s is None or s > 0) and listed_days[n] >= 0
    }
    for i, cid in enumerate(customers):
        owned = {
            pid for j, basket in enumerate(bought) if j % len(customers) == i for pid in basket
        }
        got = ids(picks[cid])
        assert len(got) == len(set(got)) == min(k, len(offerable - owned))
        assert set(got) <= offerable - owned
        fresh = [
            f"p{n}"
            for n, days in enumerate(listed_days)
            if 0 <= days < 30
            and f"p{n}" in offerable - owned
            and ("shoes", "hats", "bags")[n % 3] in (prefs[i] or [])
        ]
        # new arrivals of preferred categories come first, as many as fit
        assert set(got[: min(k, len(fresh))]) <= set(fresh)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    attempts=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["o1", "o2", "o3"]), st.integers(0, 9)),
        max_size=12,
    )
)
def test_a_code_is_redeemed_by_one_order_at_most(
    warehouse: Warehouse, project: Project, attempts: list[tuple[int, str, int]]
) -> None:
    warehouse.execute("DELETE FROM discount_codes")
    issued = issue_codes(
        warehouse, project, [(f"k{i}", "c", "cart_rescue") for i in range(3)], now=NOW
    )
    codes = [issued[f"k{i}"]["code"] for i in range(3)]
    holder: dict[int, str] = {}
    for index, order, day in attempts:
        at = NOW + timedelta(days=day, hours=1)
        result = redeem(warehouse, codes[index], order_id=order, at=at)
        if index not in holder and day < 7:
            holder[index] = order
        expected = holder.get(index)
        assert result.ok == (expected == order)
        if not result.ok:
            assert result.reason == ("expired" if expected is None else "already_redeemed")
    stored = dict(warehouse.fetch("SELECT code, order_id FROM discount_codes"))
    assert stored == {code: holder.get(i) for i, code in enumerate(codes)}


def test_the_offers_stage_redeems_codes_once(project_dir: Path) -> None:
    from personify import clock
    from personify.offers import offers_stage
    from personify.session import open_session

    with clock.frozen(NOW), open_session(project_dir) as session:
        wh = session.warehouse
        code = issue_codes(wh, session.project, [("k", "c", "cart_rescue")], now=NOW)["k"]
        w = World()
        w.order("o1", "c", at=NOW + timedelta(days=1), code=code["code"])
        w.load(wh)
    with clock.frozen(NOW + timedelta(days=2)), open_session(project_dir) as session:
        assert offers_stage(session) == {"codes_redeemed": 1}
        assert offers_stage(session) == {"codes_redeemed": 0}
        assert session.warehouse.scalar("SELECT order_id FROM discount_codes") == "o1"


def test_a_snapshot_serves_only_its_instant_and_is_dropped(warehouse: Warehouse) -> None:
    w = World()
    for n in range(6):
        w.product(f"p{n}")
    w.add("c1", "p0", at=NOW - timedelta(hours=2))
    w.add("c1", "p1", at=NOW + timedelta(hours=1))
    w.view("v", "p0", "p4")
    w.load(warehouse)
    before = warehouse.relations()
    later = NOW + timedelta(hours=2)
    with snapshot(warehouse, now=NOW) as snap:
        assert snap.moves not in before
        assert ids(cart_contents(warehouse, ["c1"], now=NOW)["c1"]) == ["p0"]
        # another instant computes inline: the add after NOW counts
        assert ids(cart_contents(warehouse, ["c1"], now=later)["c1"]) == ["p0", "p1"]
        assert ids(recommend_for_carts(warehouse, {"c1": None}, now=NOW)["c1"])[0] == "p4"
        # another thread has its own connection: inline there too
        seen: list[list[str]] = []
        t = threading.Thread(
            target=lambda: seen.append(ids(cart_contents(warehouse, ["c1"], now=NOW)["c1"]))
        )
        t.start()
        t.join()
        assert seen == [["p0"]]
    assert warehouse.relations() == before


def test_a_send_steps_discount_gives_templates_typed_values(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """``{from: discount}`` as templates get it: the expiry an instant that prints as the English
    day it always printed (a datetime ``| date:`` writes in any language), the day it expires in
    the customer's zone (else the project's), and what it takes off with its currency."""
    text = (
        f"signing_key: {SECRET}\ntimezone: America/New_York\ndiscounts:\n"
        "  cart_rescue: {expires_in: 7d, tiers: [{percent: 15}]}\n"
        "  five_off: {expires_in: 7d, currency: USD, tiers: [{amount: 5}]}\n"
    )
    (tmp_path / "personify.yml").write_text(text)
    project = Project(parse_config(text), tmp_path, tmp_path / "personify.yml")
    w = World()
    w.customer("paris", engagement=85, timezone="Europe/Paris")
    w.customer("nowhere", engagement=85, timezone="Not/AZone")  # unknown: the project's
    w.load(warehouse)
    late = NOW.replace(hour=23, minute=30)  # 23:30 UTC: already tomorrow in Paris
    trigger = Trigger(kind="event", name="Cart Abandoned", key="properties.cart_id")
    for campaign, preview in (("cart_rescue", False), ("five_off", False), ("cart_rescue", True)):
        batch = [Pending(f"{campaign}:1", "paris", "c1"), Pending(f"{campaign}:2", "nowhere", "c2")]
        step = Step(
            id="send",
            kind="send",
            line=1,
            template="t",
            variables=(Variable("discount", provider="discount", options={"campaign": campaign}),),
        )
        got = resolve(warehouse, project, step, batch, trigger=trigger, now=late, preview=preview)
        paris, nowhere = (got[m.key]["discount"] for m in batch)
        expires = late + timedelta(days=7)
        assert isinstance(paris["expires_at"], Expiry) and paris["expires_at"] == expires
        # printed as it is, the customer's day (their expires_on), not the UTC day
        assert str(paris["expires_at"]) == "08 April 2026"
        assert str(nowhere["expires_at"]) == "07 April 2026"
        assert paris["expires_on"] == date(2026, 4, 8)  # 01:30 in Paris
        assert nowhere["expires_on"] == date(2026, 4, 7)  # 19:30 in New York
        if campaign == "five_off":
            assert (paris["kind"], paris["value"], paris["currency"]) == ("amount", 5.0, "USD")
            assert paris["label"] == "5.00 USD off"  # unchanged for existing templates
        else:
            assert (paris["kind"], paris["currency"], paris["label"]) == (
                "percent",
                "EUR",
                "15% off",
            )
    assert warehouse.scalar("SELECT count(*) FROM discount_codes") == 4
