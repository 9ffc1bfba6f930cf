"""Rules on every backend: the batch SQL and the per-profile evaluator give the same tags.

The property test generates rule files (random conditions and variables over the profile's
columns — arithmetic, NULLs, dates and intervals, text, JSON — with clashing tags and exclusive
groups) and random profiles with boundary values, runs the batch evaluation in the warehouse and
compares ``customer_tags`` with :func:`evaluate_profile` on every profile the warehouse holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.audience_data import batch_tags, load_customers, realtime_tags

from personify.audiences.batch import write_tags
from personify.audiences.rules import Rule, parse_rules
from personify.warehouse import Warehouse

NOWS = [
    datetime(2026, 3, 31, 12, 0, tzinfo=UTC),
    datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
    datetime(2026, 1, 31, 23, 59, 59, 500000, tzinfo=UTC),
]
INTS = ["order_count", "open_tickets", "days_since_last_purchase"]
FLOATS = ["total_spent", "engagement_score"]
TIMES = ["last_purchase_at", "created_at"]
TEXTS = ["country", "lifecycle_stage"]
TEXT_VALUES = ["FR", "DE", "", "fr", "é", "F_", "%", "active", "lapsed"]
UNITS = ["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR"]

# ------------------------------------------------------------------------- expressions
int_literal = st.one_of(st.integers(-3, 120), st.just(50_000)).map(str)  # 50000² > 2³¹
float_literal = st.sampled_from(["0.5", "1.5", "2.25", "60.0", "80.5", "0.1", "99.99"])
num_leaf = st.one_of(
    st.sampled_from(INTS + FLOATS),
    int_literal,
    float_literal,
    st.just("JSON_ARRAY_LENGTH(preferred_categories)"),
)
numbers = st.recursive(
    num_leaf,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from("+-*/"), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["ABS", "FLOOR", "CEIL", "-"]), inner).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["COALESCE", "GREATEST", "LEAST"]), inner, inner).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
    ),
    max_leaves=4,
)
time_leaf = st.sampled_from(
    [
        *TIMES,
        "NOW()",
        "CURRENT_TIMESTAMP",
        "CURRENT_DATE",
        "TIMESTAMP '2026-01-31 00:00:00'",
        "DATE '2026-02-28'",
    ]
)
times = st.one_of(
    time_leaf,
    st.tuples(time_leaf, st.sampled_from("+-"), st.integers(-70, 70), st.sampled_from(UNITS)).map(
        lambda t: f"({t[0]} {t[1]} INTERVAL {t[2]} {t[3]})"
    ),
)
texts = st.one_of(st.sampled_from(TEXTS), st.sampled_from(TEXT_VALUES).map(lambda v: f"'{v}'"))
comparison = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
patterns = st.sampled_from(["F%", "%R", "_", "%", "é%", "F\\_%".replace("\\", "")])
any_column = st.sampled_from(INTS + FLOATS + TIMES + TEXTS + ["preferred_categories"])
bool_leaf = st.one_of(
    st.tuples(numbers, comparison, numbers).map(" ".join),
    st.tuples(times, comparison, times).map(" ".join),
    st.tuples(texts, st.sampled_from(["=", "<>"]), texts).map(" ".join),
    st.tuples(texts, st.lists(st.sampled_from(TEXT_VALUES + ["NULL"]), min_size=1, max_size=3)).map(
        lambda t: f"{t[0]} IN ({', '.join(v if v == 'NULL' else repr(v) for v in t[1])})"
    ),
    st.tuples(numbers, numbers, numbers).map(lambda t: f"{t[0]} BETWEEN {t[1]} AND {t[2]}"),
    st.tuples(any_column, st.sampled_from(["IS NULL", "IS NOT NULL"])).map(" ".join),
    st.tuples(texts, st.sampled_from(["LIKE", "NOT LIKE"]), patterns).map(
        lambda t: f"{t[0]} {t[1]} '{t[2]}'"
    ),
)
conditions = st.recursive(
    bool_leaf,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(lambda t: f"({' '.join(t)})"),
        inner.map(lambda b: f"NOT ({b})"),
        st.tuples(inner, st.sampled_from(["IS TRUE", "IS FALSE"])).map(
            lambda t: f"({t[0]}) {t[1]}"
        ),
        st.tuples(inner, inner, inner).map(
            lambda t: f"CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END"
        ),
    ),
    max_leaves=4,
)
variables = st.dictionaries(
    st.sampled_from(["a", "b", "c"]),
    st.one_of(numbers, texts, st.just("preferred_categories"), bool_leaf),
    max_size=2,
)


@st.composite
def rule_files(draw: st.DrawFn) -> list[Rule]:
    specs = []
    for i in range(draw(st.integers(1, 5))):
        spec: dict[str, Any] = {"id": f"r{i}", "when": draw(conditions)}
        spec["tag"] = draw(st.sampled_from(["t1", "t2", "t3"]))
        group = draw(st.sampled_from([None, "g1", "g2"]))
        if group:
            spec["group"] = group
        spec["priority"] = draw(st.integers(0, 1))
        spec["variables"] = draw(variables)
        specs.append(spec)
    text = yaml.safe_dump({"rules": specs}, sort_keys=False)
    return sorted(parse_rules(text, file="gen.yml", dialect="duckdb"), key=lambda r: -r.priority)


# ---------------------------------------------------------------------------- profiles
def _instants(now: datetime) -> st.SearchStrategy[datetime | None]:
    boundaries = [now - timedelta(days=60), now - timedelta(days=30), now, now.replace(day=1)]
    seconds = st.integers(-400 * 86400, 40 * 86400).map(lambda s: now + timedelta(seconds=s))
    return st.one_of(st.none(), st.sampled_from(boundaries), seconds)


@st.composite
def profiles(draw: st.DrawFn, now: datetime) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 12))):
        row: dict[str, Any] = {"customer_id": f"c{i}"}
        for name in INTS:
            row[name] = draw(st.one_of(st.none(), st.integers(0, 60)))
        for name in FLOATS:
            row[name] = draw(
                st.one_of(
                    st.none(),
                    st.sampled_from([0.0, 60.0, 80.0, 80.5, 100.0]),
                    # Traits have a few decimals: PostgreSQL raises on float underflow
                    # (1e-200 * 1e-200), which DuckDB and Python round to 0.
                    st.floats(0, 10_000, allow_nan=False, allow_infinity=False).map(
                        lambda x: round(x, 4)
                    ),
                )
            )
        for name in TIMES:
            row[name] = draw(_instants(now))
        for name in TEXTS:
            row[name] = draw(st.one_of(st.none(), st.sampled_from(TEXT_VALUES)))
        row["preferred_categories"] = draw(st.sampled_from([None, "[]", '["a"]', '["a", "b"]']))
        out.append(row)
    return out


# ------------------------------------------------------------------------------- checks
def test_batch_rules_equal_per_profile_rules(warehouse: Warehouse) -> None:
    examples = 100 if warehouse.dialect == "duckdb" else 30

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        now = data.draw(st.sampled_from(NOWS))
        rules = data.draw(rule_files())
        rows = data.draw(profiles(now))
        for name in ("customers", "customer_tags", "audience_changes"):
            warehouse.execute(f"DELETE FROM {name}")
        load_customers(warehouse, rows)
        write_tags(warehouse, rules, now=now)
        assert batch_tags(warehouse) == realtime_tags(warehouse, rules, now)

    check()


LIFECYCLE = """
rules:
  - id: lapsed
    when: last_purchase_at < NOW() - INTERVAL 60 DAY
    tag: re_engagement
    ttl: 14d
    variables:
      categories: preferred_categories
  - id: vip
    when: total_spent >= 1000
    expires_at: 2026-06-01T00:00:00Z
"""


def test_tag_lifecycle_across_evaluations(warehouse: Warehouse) -> None:
    rules = parse_rules(LIFECYCLE, file="rules.yml", dialect="duckdb")
    t1 = NOWS[0]
    load_customers(
        warehouse,
        [
            {
                "customer_id": "a",
                "last_purchase_at": t1 - timedelta(days=61),
                "total_spent": 1500.0,
                "preferred_categories": '["shoes"]',
            },
            {"customer_id": "b", "last_purchase_at": t1 - timedelta(days=10)},
        ],
    )

    def stored() -> dict[tuple[str, str], tuple[Any, ...]]:
        rows = warehouse.fetch(
            "SELECT customer_id, tag, rule, assigned_at, expires_at, variables FROM customer_tags"
        )
        return {
            (r[0], r[1]): (r[2], r[3], r[4], json.loads(r[5]) if isinstance(r[5], str) else r[5])
            for r in rows
        }

    counts = write_tags(warehouse, rules, now=t1)
    assert (counts.rules, counts.tagged, counts.added, counts.removed) == (2, 2, 2, 0)
    assert stored() == {
        ("a", "re_engagement"): ("lapsed", t1, t1 + timedelta(days=14), {"categories": ["shoes"]}),
        ("a", "vip"): ("vip", t1, None, {}),
    }
    # A day later: nothing new; kept tags keep their assignment; variables follow the profile.
    warehouse.execute(
        "UPDATE customers SET preferred_categories = '[\"hats\"]' WHERE customer_id = 'a'"
    )
    t2 = t1 + timedelta(days=1)
    counts = write_tags(warehouse, rules, now=t2)
    assert (counts.added, counts.removed, counts.updated) == (0, 0, 1)
    assert stored()[("a", "re_engagement")] == (
        "lapsed",
        t1,
        t1 + timedelta(days=14),
        {"categories": ["hats"]},
    )
    # b lapses too; a buys again (loses re_engagement); the vip rule expires.
    warehouse.execute(
        "UPDATE customers SET last_purchase_at = ? WHERE customer_id = 'a'",
        [t2 + timedelta(days=70)],
    )
    t3 = datetime(2026, 6, 2, tzinfo=UTC)
    counts = write_tags(warehouse, rules, now=t3)
    assert (counts.rules, counts.added, counts.removed) == (1, 1, 2)
    assert set(stored()) == {("b", "re_engagement")}
    changes = warehouse.fetch(
        "SELECT customer_id, name, change, changed_at, rule FROM audience_changes "
        "WHERE kind = 'tag' ORDER BY changed_at, customer_id, name"
    )
    assert changes == [
        ("a", "re_engagement", "entered", t1, "lapsed"),
        ("a", "vip", "entered", t1, "vip"),
        ("a", "re_engagement", "exited", t3, "lapsed"),
        ("a", "vip", "exited", t3, "vip"),
        ("b", "re_engagement", "entered", t3, "lapsed"),
    ]
    assert write_tags(warehouse, [], now=t3).removed == 1  # rules gone: their tags go too


HELD = """
rules:
  - id: lapsed
    when: last_purchase_at < NOW() - INTERVAL 60 DAY
    tag: re_engagement
    ttl: 14d
  - id: big_basket
    when: total_spent >= 1000
"""


def test_a_ttl_tag_is_held_until_it_expires_then_lasts_while_earned(warehouse: Warehouse) -> None:
    """``ttl: 14d``: a tag lasts at least 14 days once assigned, even if no longer earned (then
    as long as it is); a tag without a ttl goes as soon as it is not earned; a held tag whose rule
    left the project goes too."""
    rules = parse_rules(HELD, file="rules.yml", dialect="duckdb")
    t1 = NOWS[0]
    lapsed = t1 - timedelta(days=61)
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "last_purchase_at": lapsed, "total_spent": 1500.0},
            {"customer_id": "b", "last_purchase_at": lapsed},
        ],
    )

    def tags() -> set[tuple[str, str]]:
        return {
            (str(c), str(t))
            for c, t in warehouse.fetch("SELECT customer_id, tag FROM customer_tags")
        }

    write_tags(warehouse, rules, now=t1)
    assert tags() == {("a", "re_engagement"), ("a", "big_basket"), ("b", "re_engagement")}
    # a day later both buy again, a's spend is corrected: re_engagement is held, big_basket goes
    warehouse.execute("UPDATE customers SET last_purchase_at = ?, total_spent = 10", [t1])
    counts = write_tags(warehouse, rules, now=t1 + timedelta(days=1))
    assert (counts.added, counts.removed) == (0, 1)
    assert tags() == {("a", "re_engagement"), ("b", "re_engagement")}
    # b lapses again before the ttl ends: its tag is earned again and simply stays
    warehouse.execute("UPDATE customers SET last_purchase_at = ? WHERE customer_id = 'b'", [lapsed])
    t15 = t1 + timedelta(days=15)  # a's ttl is over: it goes; b's is earned: it stays
    counts = write_tags(warehouse, rules, now=t15)
    assert (counts.added, counts.removed) == (0, 1)
    assert tags() == {("b", "re_engagement")}
    exits = warehouse.fetch(
        "SELECT customer_id, name, changed_at FROM audience_changes WHERE change = 'exited' "
        "ORDER BY changed_at"
    )
    assert exits == [("a", "big_basket", t1 + timedelta(days=1)), ("a", "re_engagement", t15)]
    # a rule that left the project takes its held tags with it (c's runs until t15 + 14 days)
    load_customers(warehouse, [{"customer_id": "c", "last_purchase_at": lapsed}])
    write_tags(warehouse, rules, now=t15)
    assert ("c", "re_engagement") in tags()
    without = parse_rules(
        "rules:\n  - id: big_basket\n    when: total_spent >= 1000\n",
        file="rules.yml",
        dialect="duckdb",
    )
    write_tags(warehouse, without, now=t15 + timedelta(days=1))
    assert tags() == set()
