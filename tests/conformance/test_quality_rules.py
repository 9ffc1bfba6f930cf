"""Validation rules on every backend: each check counts exactly the rows that break it and
samples their keys (never other values); quarantine moves the rows aside, flag and warn leave
them; freshness flags a source not synced within its limit; the pipeline's quality stage runs
them; a rule naming an unknown column is a configuration error."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from personify.config import (
    FileSource,
    Project,
    ProjectConfig,
    QualityConfig,
    QualityRule,
)
from personify.errors import ConfigError
from personify.quality.rules import check_rules, latest_violations, quality_stage
from personify.session import Session
from personify.warehouse.schema import ORDERS, PRODUCTS

T0 = datetime(2026, 3, 1, tzinfo=UTC)

RULES = {
    "orders": (
        QualityRule(column="email", check="not_null", action="flag"),
        QualityRule(column="email", check="format", format="email"),
        QualityRule(column="currency", check="format", format="currency"),
        QualityRule(column="total", check="range", min=0, max=10_000, action="quarantine"),
        QualityRule(column="status", check="accepted_values", values=("paid", "refunded")),
        QualityRule(column="cart_id", check="unique"),
        QualityRule(
            column="source_customer_id", check="references", to="customer_records.record_id"
        ),
    ),
    "products": (QualityRule(column="name", check="not_null", name="products need a name"),),
}


def session_for(warehouse_url: str, tmp_path: Path, quality: QualityConfig) -> Session:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    sources = (FileSource(name="shop", path="orders.csv", table="orders"),)
    config = ProjectConfig(warehouse=warehouse_url, sources=sources, quality=quality)
    return Session(Project(config, root, root / "p.yml"))


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    with session_for(warehouse_url, tmp_path, QualityConfig(rules=RULES, sample_size=2)) as s:
        wh = s.warehouse
        orders = [
            # order_id, email, currency, total, status, cart_id, source_customer_id
            ("o1", "a@example.org", "EUR", 10.0, "paid", "c1", "p1"),
            ("o2", None, "EUR", 10.0, "paid", "c2", "p1"),
            ("o3", "not-an-email", "euro", 10.0, "pending", "c2", "p9"),
            ("o4", "b@example.org", "EUR", -5.0, "paid", "c4", None),
            ("o5", "c@example.org", "USD", 20_000.0, "refunded", "c5", "p2"),
        ]
        cols = ["order_id", "email", "currency", "total", "status", "cart_id"]
        data = {c: [o[i] for o in orders] for i, c in enumerate(cols)}
        data["source_customer_id"] = [o[6] for o in orders]
        data["created_at"] = [T0] * len(orders)
        data["source"] = ["shop"] * len(orders)
        wh.load(ORDERS, pa.table(data).cast(_schema(data)))
        for rid in ("p1", "p2"):
            wh.execute(
                "INSERT INTO customer_records (source, record_id, observed_at, received_at) "
                "VALUES ('crm', ?, ?, ?)",
                [rid, T0, T0],
            )
        wh.load(
            PRODUCTS,
            pa.table({"product_id": ["x"], "name": ["A thing"], "source": ["shop"]}),
        )
        yield s


def _schema(data: dict[str, list[object]]) -> pa.Schema:
    types = {"total": pa.float64(), "created_at": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(n, types.get(n, pa.string())) for n in data])


def test_each_check_counts_exactly_the_rows_that_break_it(session: Session) -> None:
    found = {v.rule: v for v in check_rules(session)}
    counts = {name: v.violations for name, v in found.items()}
    assert counts == {
        "orders.email.not_null": 1,
        "orders.email.format.email": 1,
        "orders.currency.format.currency": 1,
        "orders.total.range": 2,
        "orders.status.accepted_values": 1,
        "orders.cart_id.unique": 2,
        "orders.source_customer_id.references": 1,
        "products need a name": 0,
    }
    assert found["orders.total.range"].sample == ["o4", "o5"]
    assert found["orders.cart_id.unique"].sample == ["o2", "o3"]  # keys, not the values
    assert found["orders.email.format.email"].sample == ["o3"]
    # quarantine moved the out-of-range orders aside; flag and warn left theirs
    wh = session.warehouse
    assert [r[0] for r in wh.fetch("SELECT order_id FROM orders ORDER BY 1")] == [
        "o1",
        "o2",
        "o3",
    ]
    moved = wh.fetch(
        "SELECT location, reason, source FROM quarantine WHERE reason = 'rule_violation' ORDER BY 1"
    )
    assert moved == [
        ("orders:o4", "rule_violation", "shop"),
        ("orders:o5", "rule_violation", "shop"),
    ]
    recorded = {v["rule"]: v for v in latest_violations(wh)}
    assert set(recorded) == {name for name, n in counts.items() if n}
    assert recorded["orders.email.not_null"]["action"] == "flag"
    assert "not-an-email" not in str(recorded)

    again = {v.rule: v.violations for v in check_rules(session)}
    assert again["orders.total.range"] == 0  # quarantined rows are gone: nothing twice


def test_freshness_flags_a_source_never_synced(warehouse_url: str, tmp_path: Path) -> None:
    quality = QualityConfig(freshness={"shop": "1h"})
    with session_for(warehouse_url, tmp_path, quality) as s:
        counts = quality_stage(s)
        assert counts["rules_broken"] == 1 and counts["rules_flagged"] == 1
        [v] = latest_violations(s.warehouse)
        assert v["rule"] == "freshness.shop" and "never" in v["sample"][0]


def test_a_rule_on_an_unknown_column_names_it(warehouse_url: str, tmp_path: Path) -> None:
    rules = {"orders": (QualityRule(column="nope", check="not_null"),)}
    with (
        session_for(warehouse_url, tmp_path, QualityConfig(rules=rules)) as s,
        pytest.raises(
            ConfigError, match="quality.rules.orders\\[0\\]: orders has no column 'nope'"
        ),
    ):
        check_rules(s)
