"""Segments on every backend: dialect golden files, memberships over time, sendable, limits.

Golden files live in ``golden/segments/<case>/``: the same segment written in several dialects
(``<dialect>.sql``), the members expected on the data below (``expected.json``) and the SQL each
backend runs (``rendered/<dialect>.<backend>.sql``). ``PERSONIFY_UPDATE_GOLDEN=1`` rewrites the
rendered SQL after a deliberate change.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conformance.audience_data import load_consents, load_customers, load_orders

from personify import clock
from personify.audiences.memberships import (
    refresh_isolated,
    refresh_segment,
    refresh_segments,
    retire_segments,
    segment_status,
)
from personify.audiences.rules import parse_rules
from personify.audiences.segments import Segment, parse_segment
from personify.audiences.stage import preview, reads_rule_outputs, refresh_and_tag
from personify.errors import UnsafeQueryError, WarehouseError
from personify.warehouse import Warehouse
from personify.warehouse.query import run_user_query

GOLDEN = Path(__file__).parent / "golden" / "segments"
DIALECTS = ("mysql", "postgres", "bigquery", "snowflake")
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
UPDATE = os.environ.get("PERSONIFY_UPDATE_GOLDEN") == "1"


def _at(text: str) -> datetime:
    return clock.parse_instant(text)


def engaged_buyers_world(wh: Warehouse) -> None:
    """Boundary cases for golden/segments/engaged_buyers at NOW (2026-03-31T12:00Z)."""
    big = {"order_count": 3, "total_spent": 200.0}
    load_customers(
        wh,
        [
            {
                "customer_id": "c01",
                "email": "c01@shop.org",
                "engagement_score": 81.0,
                "last_purchase_at": _at("2026-03-01T00:00:00Z"),
            },  # exactly 30 days: in
            {
                "customer_id": "c02",
                "email": "c02@shop.org",
                "engagement_score": 95.0,
                "last_purchase_at": _at("2026-02-28T23:59:59Z"),
            },  # 31 days: out
            {
                "customer_id": "c03",
                "email": "c03@shop.org",
                "engagement_score": 80.0,
                "last_purchase_at": _at("2026-03-30T10:00:00Z"),
            },  # not > 80: out
            {
                "customer_id": "c04",
                "email": "c04@shop.org",
                "engagement_score": None,
                "last_purchase_at": _at("2026-03-30T10:00:00Z"),
            },  # NULL score: out
            {"customer_id": "c05", "email": "c05@shop.org", **big},  # big order 90 days ago: in
            {"customer_id": "c06", "email": "c06@shop.org", **big},  # 90 days + 1 s: out
            {"customer_id": "c07", "email": "c07@example.com", **big},  # excluded domain: out
            {
                "customer_id": "c08",
                "email": "c08@shop.org",
                "order_count": 2,
                "total_spent": 900.0,
            },  # too few orders: out
            {"customer_id": "c09", "email": "c09@shop.org", **big},  # order of exactly 50: out
            {
                "customer_id": "c10",
                "email": "c10@shop.org",
                "engagement_score": 99.0,
                "last_purchase_at": _at("2026-03-31T23:00:00Z"),
            },  # later today: in
            {
                "customer_id": "c11",
                "email": None,
                "order_count": 5,
                "total_spent": 500.0,
            },  # no email: unknown, out
            {
                "customer_id": "c12",
                "email": "c12@shop.org",
                "engagement_score": 80.5,
                "last_purchase_at": _at("2026-03-15T08:00:00Z"),
            },  # in
        ],
    )
    load_orders(
        wh,
        [
            {
                "order_id": "o5",
                "customer_id": "c05",
                "total": 60.0,
                "created_at": _at("2025-12-31T12:00:00Z"),
            },
            {
                "order_id": "o6",
                "customer_id": "c06",
                "total": 60.0,
                "created_at": _at("2025-12-31T11:59:59Z"),
            },
            {
                "order_id": "o7",
                "customer_id": "c07",
                "total": 60.0,
                "created_at": _at("2026-03-01T00:00:00Z"),
            },
            {
                "order_id": "o9",
                "customer_id": "c09",
                "total": 50.0,
                "created_at": _at("2026-03-01T00:00:00Z"),
            },
            {
                "order_id": "o11",
                "customer_id": "c11",
                "total": 100.0,
                "created_at": _at("2026-03-01T00:00:00Z"),
            },
        ],
    )


def _segment(path: Path) -> Segment:
    return parse_segment(path.read_text(encoding="utf-8"), file=path, default_dialect="duckdb")


def _members(wh: Warehouse, name: str) -> list[str]:
    rows = wh.fetch(
        "SELECT customer_id FROM segment_memberships WHERE segment = ? AND exited_at IS NULL "
        "ORDER BY customer_id",
        [name],
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_golden_segment_in_every_dialect(warehouse: Warehouse, dialect: str) -> None:
    case = GOLDEN / "engaged_buyers"
    expected = json.loads((case / "expected.json").read_text())
    engaged_buyers_world(warehouse)
    segment = _segment(case / f"{dialect}.sql")
    assert segment.dialect == dialect and segment.name == "engaged_buyers"
    result = refresh_segment(warehouse, segment, now=NOW, timeout_s=30, max_members=100)
    assert _members(warehouse, segment.name) == expected["members"]
    assert result.members == len(expected["members"])
    backend = warehouse.scheme
    rendered = case / "rendered" / f"{dialect}.{backend}.sql"
    if UPDATE:
        rendered.parent.mkdir(exist_ok=True)
        rendered.write_text(result.sql + "\n")
    assert result.sql == rendered.read_text().strip(), "regenerate with PERSONIFY_UPDATE_GOLDEN=1"


def test_seed_segment_from_the_scaffold(warehouse: Warehouse) -> None:
    scaffold = Path(__file__).parents[2] / "src/personify/scaffold/segments/high_value_recent.sql"
    engaged_buyers_world(warehouse)
    result = refresh_segment(warehouse, _segment(scaffold), now=NOW, timeout_s=30, max_members=100)
    assert _members(warehouse, "high_value_recent") == ["c01", "c10", "c12"]
    assert result.entered == 3


SEGMENT = """-- name: hot
-- dialect: mysql
SELECT customer_id FROM customer_data
WHERE last_purchase_at >= DATE_SUB(NOW(), INTERVAL 7 DAY)
"""


def test_entries_and_exits_across_refreshes(warehouse: Warehouse) -> None:
    t1 = NOW
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "last_purchase_at": t1 - timedelta(days=1)},
            {"customer_id": "b", "last_purchase_at": t1 - timedelta(days=6)},
            {"customer_id": "c", "last_purchase_at": t1 - timedelta(days=30)},
        ],
    )
    segment = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")

    def run(at: datetime) -> tuple[int, int]:
        r = refresh_segment(warehouse, segment, now=at, timeout_s=30, max_members=100)
        return r.entered, r.exited

    assert run(t1) == (2, 0)
    assert run(t1) == (0, 0)  # the same instant again changes nothing
    t2 = t1 + timedelta(days=3)  # b (6 + 3 days) leaves
    assert run(t2) == (0, 1)
    warehouse.execute("UPDATE customers SET last_purchase_at = ? WHERE customer_id = 'b'", [t2])
    t3 = t2 + timedelta(days=1)  # b buys again: enters anew; a (5 days) stays
    assert run(t3) == (1, 0)
    rows = warehouse.fetch(
        "SELECT customer_id, entered_at, exited_at FROM segment_memberships ORDER BY 1, 2"
    )
    assert rows == [("a", t1, None), ("b", t1, t2), ("b", t3, None)]
    changes = warehouse.fetch(
        "SELECT customer_id, change, changed_at FROM audience_changes "
        "WHERE kind = 'segment' AND name = 'hot' ORDER BY changed_at, customer_id, change"
    )
    assert changes == [
        ("a", "entered", t1),
        ("b", "entered", t1),
        ("b", "exited", t2),
        ("b", "entered", t3),
    ]
    assert retire_segments(warehouse, set(), now=t3 + timedelta(hours=1)) == 2
    assert _members(warehouse, "hot") == []


def test_sendable_is_members_with_consent_not_suppressed(warehouse: Warehouse) -> None:
    recent = NOW - timedelta(days=1)
    load_customers(
        warehouse,
        [
            {"customer_id": cid, "email": email, "last_purchase_at": recent}
            for cid, email in [
                ("ok", "ok@x.org"),
                ("revoked", "r@x.org"),
                ("none", "n@x.org"),
                ("suppressed", "s@x.org"),
                ("noemail", None),
            ]
        ],
    )
    load_consents(
        warehouse,
        [
            ("ok", "email_marketing", "granted"),
            ("revoked", "email_marketing", "revoked"),
            ("suppressed", "email_marketing", "granted"),
            ("noemail", "email_marketing", "granted"),
            ("none", "transactional", "granted"),
        ],
    )
    warehouse.execute(
        "INSERT INTO suppressions (subject_hash, kind, customer_id, reason, created_at) "
        "VALUES ('h1', 'email', 'suppressed', 'unsubscribed', ?)",
        [NOW],
    )
    segment = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    refresh_segment(warehouse, segment, now=NOW, timeout_s=30, max_members=100)
    rows = warehouse.fetch(
        "SELECT customer_id, email FROM sendable WHERE segment = 'hot' "
        "AND purpose = 'email_marketing'"
    )
    assert rows == [("ok", "ok@x.org")]
    status = segment_status(warehouse, ["hot"], purpose="email_marketing")["hot"]
    assert (status.members, status.sendable) == (5, 1)


def test_member_cap_leaves_memberships_alone(warehouse: Warehouse) -> None:
    load_customers(warehouse, [{"customer_id": str(i), "last_purchase_at": NOW} for i in range(5)])
    segment = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    with pytest.raises(UnsafeQueryError, match="more than the cap"):
        refresh_segment(warehouse, segment, now=NOW, timeout_s=30, max_members=4)
    assert _members(warehouse, "hot") == []
    assert warehouse.scalar("SELECT count(*) FROM audience_changes") == 0


def test_segments_refreshed_together_apply_all_or_none(warehouse: Warehouse) -> None:
    load_customers(warehouse, [{"customer_id": str(i), "last_purchase_at": NOW} for i in range(5)])
    hot = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    few = parse_segment(
        "SELECT customer_id FROM customers WHERE customer_id < '2'",
        file=Path("few.sql"),
        default_dialect="duckdb",
    )
    refresh = {"now": NOW, "timeout_s": 30}
    with pytest.raises(UnsafeQueryError, match="'hot' returned 5 customers"):
        refresh_segments(warehouse, [few, hot], max_members=4, **refresh)  # type: ignore[arg-type]
    assert warehouse.scalar("SELECT count(*) FROM segment_memberships") == 0
    assert warehouse.scalar("SELECT count(*) FROM audience_changes") == 0
    assert warehouse.scalar("SELECT count(*) FROM segment_state") == 0
    results = refresh_segments(warehouse, [few, hot], max_members=5, **refresh)  # type: ignore[arg-type]
    assert [(r.segment, r.entered) for r in results] == [("few", 2), ("hot", 5)]
    assert _members(warehouse, "few") == ["0", "1"]
    assert warehouse.scalar("SELECT count(*) FROM audience_changes") == 7


def test_a_query_the_warehouse_refuses_names_its_segment_file(warehouse: Warehouse) -> None:
    # a column that does not exist is found only when the warehouse binds the query: the
    # error says which file, and nothing changes
    load_customers(warehouse, [{"customer_id": "a", "last_purchase_at": NOW}])
    hot = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    typo = parse_segment(
        "SELECT customer_id FROM customers\nWHERE ordr_count > 1",
        file=Path("/p/segments/typo.sql"),
        default_dialect="duckdb",
        shown="segments/typo.sql",
    )
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    expected = r"^segments/typo.sql: segment 'typo' failed on the warehouse: .*ordr_count"
    with pytest.raises(WarehouseError, match=expected) as caught:
        refresh_segments(warehouse, [hot, typo], **refresh)  # type: ignore[arg-type]
    assert "segments/typo.sql" in (caught.value.hint or "")
    assert warehouse.scalar("SELECT count(*) FROM segment_memberships") == 0
    with clock.frozen(NOW), pytest.raises(WarehouseError, match=expected):
        preview(warehouse, typo, sample=2, timeout_s=30)
    assert refresh_segment(warehouse, hot, **refresh).entered == 1  # type: ignore[arg-type]


def test_a_segment_the_warehouse_refuses_keeps_its_members_and_the_others_go_on(
    warehouse: Warehouse,
) -> None:
    """One broken segment (an error found when it runs) does not stop the stage: the segments
    before and after it are refreshed, in one transaction; it keeps the memberships of its
    last good refresh (never emptied) and its failure names the file and the engine's words."""
    load_customers(
        warehouse,
        [{"customer_id": c, "last_purchase_at": NOW, "order_count": 2} for c in ("a", "b")],
    )
    hot = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    good = "SELECT customer_id FROM customers WHERE order_count > 1"

    def buyers(sql: str) -> Segment:
        return parse_segment(
            f"-- name: buyers\n{sql}",
            file=Path("/p/segments/buyers.sql"),
            default_dialect="duckdb",
            shown="segments/buyers.sql",
        )

    few = parse_segment(
        "SELECT customer_id FROM customers WHERE customer_id < 'b'",
        file=Path("few.sql"),
        default_dialect="duckdb",
    )
    refresh = {"timeout_s": 30, "max_members": 100}
    results, failed = refresh_isolated(warehouse, [hot, buyers(good), few], now=NOW, **refresh)  # type: ignore[arg-type]
    assert (len(results), failed) == (3, [])
    load_customers(warehouse, [{"customer_id": "c", "last_purchase_at": NOW, "order_count": 5}])
    later = NOW + timedelta(hours=1)
    broken = buyers(good.replace("order_count", "ordr_count"))
    results, failed = refresh_isolated(warehouse, [hot, broken, few], now=later, **refresh)  # type: ignore[arg-type]
    assert [(r.segment, r.entered) for r in results] == [("hot", 1), ("few", 0)]
    assert [(f.segment, f.file) for f in failed] == [("buyers", "segments/buyers.sql")]
    said = failed[0].error.message
    assert said.startswith("segments/buyers.sql: segment 'buyers' failed on the warehouse: ")
    assert "ordr_count" in said and "segments/buyers.sql" in (failed[0].error.hint or "")
    assert _members(warehouse, "buyers") == ["a", "b"]  # as before: not emptied, not updated
    assert _members(warehouse, "hot") == ["a", "b", "c"]
    state = dict(warehouse.fetch("SELECT segment, refreshed_at FROM segment_state"))
    assert state["buyers"] == NOW and state["hot"] == later
    changes = warehouse.fetch("SELECT name, count(*) FROM audience_changes GROUP BY 1 ORDER BY 1")
    assert [tuple(r) for r in changes] == [("buyers", 2), ("few", 1), ("hot", 3)]


def test_integer_division_as_the_segment_dialect_means_it(warehouse: Warehouse) -> None:
    # PostgreSQL's 3 / 2 is 1 (the operands are BIGINTs), MySQL's is 1.5: whichever warehouse
    # runs the segment, tables and views alike
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "order_count": 3, "open_tickets": 2},
            {"customer_id": "b", "order_count": 2, "open_tickets": 1},
        ],
    )
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    for dialect, expected in (("postgres", ["a", "b"]), ("mysql", ["b"])):
        name = f"halves_{dialect}"
        segment = parse_segment(
            f"-- dialect: {dialect}\nSELECT customer_id FROM customer_data "
            "WHERE order_count / 2 = 1 AND order_count / open_tickets >= 1",
            file=Path(f"{name}.sql"),
            default_dialect="duckdb",
        )
        refresh_segment(warehouse, segment, **refresh)  # type: ignore[arg-type]
        assert _members(warehouse, name) == expected, dialect
    (row,) = run_user_query(warehouse, "SELECT 7 / 2 AS x", dialect="postgres").rows
    assert row == (3,)


ONE_ANSWER = (
    # a zero divisor is NULL (PostgreSQL failed the segment, DuckDB's 3 / 0 was inf >= 2)
    ("ratio", "duckdb", "WHERE order_count / open_tickets >= 2", ["b", "c", "d"]),
    ("remainder", "duckdb", "WHERE order_count % open_tickets = 1", ["d"]),
    ("ratio_pg", "postgres", "WHERE order_count / open_tickets = 2", ["b", "c", "d"]),
    # half away from zero (PostgreSQL rounded a DOUBLE 2.5 to 2, -2.5 to -2)
    ("halves", "duckdb", "WHERE ABS(ROUND(engagement_score)) = 3", ["a", "b", "c"]),
    # a DOUBLE 2.675 times 100 is 267.5: 2.68 (DuckDB's own ROUND said 2.67)
    ("cents", "duckdb", "WHERE ROUND(engagement_score, 2) IN (2.68, 0.13)", ["c", "d"]),
    # AVG is a DOUBLE: 4.5 casts to 4 (half to even) as PostgreSQL's NUMERIC avg cast to 5
    (
        "average",
        "postgres",
        "WHERE open_tickets = 2 AND "
        "(SELECT CAST(AVG(order_count) AS INT) FROM customers WHERE open_tickets = 2) = 4",
        ["c", "d"],
    ),
    # PostgreSQL's SUM of BIGINTs is a NUMERIC: 9 / 2 is 4.5 there, so on DuckDB too
    (
        "mean",
        "postgres",
        "WHERE (SELECT SUM(order_count) / COUNT(*) FROM customers WHERE open_tickets = 2) = 4.5",
        ["a", "b", "c", "d"],
    ),
)


def test_arithmetic_gives_one_answer_on_every_engine(warehouse: Warehouse) -> None:
    """The same segment over the same rows has the same members on every warehouse: division
    by zero, ROUND's halves, AVG's type, PostgreSQL's SUM (README: Segments, "Arithmetic")."""
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "order_count": 3, "open_tickets": 0, "engagement_score": 2.5},
            {"customer_id": "b", "order_count": 2, "open_tickets": 1, "engagement_score": -2.5},
            {"customer_id": "c", "order_count": 4, "open_tickets": 2, "engagement_score": 2.675},
            {"customer_id": "d", "order_count": 5, "open_tickets": 2, "engagement_score": 0.125},
        ],
    )
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    for name, dialect, where, expected in ONE_ANSWER:
        segment = parse_segment(
            f"-- dialect: {dialect}\nSELECT customer_id FROM customers {where}",
            file=Path(f"{name}.sql"),
            default_dialect="duckdb",
        )
        refresh_segment(warehouse, segment, **refresh)  # type: ignore[arg-type]
        assert _members(warehouse, name) == expected, name
    (row,) = run_user_query(warehouse, "SELECT 1 / 0, 7 % 0, ROUND(-0.5), AVG(2) AS x").rows
    assert row == (None, None, -1, 2.0)
    nested = (  # (rewritten inside out, and around AVG's FILTER and window)
        "SELECT ROUND(ROUND(engagement_score, 2), 1), "
        "AVG(order_count) FILTER (WHERE open_tickets > 0) OVER () FROM customers"
    )
    rows = run_user_query(warehouse, nested + " WHERE customer_id IN ('b', 'c', 'd')").rows
    assert sorted(r[0] for r in rows) == [-2.5, 0.1, 2.7]
    assert [r[1] for r in rows] == [pytest.approx(11 / 3)] * 3


def test_averages_of_intervals_and_rounded_subqueries(warehouse: Warehouse) -> None:
    # an AVG of intervals is not cast to DOUBLE (both engines refused the cast: the average
    # time between two dates failed), and ROUND of a subquery rounds inside it (written once)
    load_customers(
        warehouse,
        [
            {"customer_id": c, "created_at": NOW - timedelta(days=d), "last_seen": NOW, **score}
            for c, d, score in (
                ("a", 3, {"engagement_score": 2.5}),
                ("b", 1, {"engagement_score": -2.5}),
            )
        ],
    )
    sql = (
        "SELECT AVG(last_seen - created_at) = INTERVAL '2 days' AS mean, "
        "ROUND((SELECT engagement_score FROM customers WHERE customer_id = 'a')) AS up, "
        "ROUND((SELECT MIN(engagement_score) AS s FROM customers), 0) AS down "
        "FROM customers"
    )
    assert run_user_query(warehouse, sql, dialect="duckdb").rows == [(True, 3, -3)]


def test_a_postgres_sum_of_bigints_divides_as_a_numeric_in_a_window_too(
    warehouse: Warehouse,
) -> None:
    # PostgreSQL's SUM of BIGINTs is a NUMERIC as a window, with FILTER or in COALESCE too:
    # 9 / 2 is 4.5 there (DuckDB divided those as integers: 4)
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "order_count": 7, "open_tickets": 2},
            {"customer_id": "b", "order_count": 2, "open_tickets": 0},
        ],
    )
    sql = (
        "SELECT customer_id, SUM(order_count) OVER () / COUNT(*) OVER () AS w, "
        "SUM(order_count) FILTER (WHERE open_tickets >= 0) OVER () / 2 AS f, "
        "order_count / 2 AS i FROM customers ORDER BY 1"
    )
    rows = run_user_query(warehouse, sql, dialect="postgres").rows
    assert [(c, float(w), float(f), i) for c, w, f, i in rows] == [
        ("a", 4.5, 4.5, 3),
        ("b", 4.5, 4.5, 1),
    ]
    mean = "SELECT COALESCE(SUM(order_count), 0) / COUNT(*) FROM customers"
    assert float(run_user_query(warehouse, mean, dialect="postgres").rows[0][0]) == 4.5


def test_integer_division_of_columns_the_schema_does_not_type(warehouse: Warehouse) -> None:
    # a table of the team's own (relations:): sqlglot cannot know its columns are integers, so
    # DuckDB decides when it runs; a zero divisor is NULL there too
    warehouse.execute("CREATE TABLE team_numbers (x BIGINT, y BIGINT, z DOUBLE PRECISION)")
    warehouse.execute("INSERT INTO team_numbers VALUES (7, 2, 7.0), (-7, 2, 1), (7, 0, 0)")
    result = run_user_query(
        warehouse, "SELECT x / y, z / y FROM team_numbers ORDER BY z DESC", dialect="postgres"
    )
    assert result.rows == [(3, 3.5), (-3, 0.5), (None, None)]


def test_rounding_a_double_to_decimals_runs_everywhere(warehouse: Warehouse) -> None:
    # PostgreSQL has no round(double precision, integer): the segment failed there
    load_customers(
        warehouse,
        [
            {"customer_id": "a", "engagement_score": 80.46},
            {"customer_id": "b", "engagement_score": 80.44},
            {"customer_id": "c", "engagement_score": None},
        ],
    )
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    for dialect in ("duckdb", "mysql"):
        segment = parse_segment(
            f"-- dialect: {dialect}\nSELECT customer_id, ROUND(engagement_score, 1) AS score "
            "FROM customers WHERE ROUND(engagement_score, 1) >= 80.5",
            file=Path(f"round_{dialect}.sql"),
            default_dialect="duckdb",
        )
        refresh_segment(warehouse, segment, **refresh)  # type: ignore[arg-type]
        assert _members(warehouse, f"round_{dialect}") == ["a"], dialect
        with clock.frozen(NOW):
            assert preview(warehouse, segment, sample=5, timeout_s=30).rows == [("a", 80.5)]


def test_mysql_timestampdiff_counts_complete_units(warehouse: Warehouse) -> None:
    # MySQL: 12.5 hours are 0 days (DuckDB's DATE_DIFF crossed a midnight: 1), and PostgreSQL
    # has no TIMESTAMPDIFF at all
    hours = {"a": 12.5, "b": 24, "c": 36, "d": -30}
    load_customers(
        warehouse,
        [
            {"customer_id": c, "last_purchase_at": NOW - timedelta(hours=h)}
            for c, h in hours.items()
        ],
    )
    segment = parse_segment(
        "-- dialect: mysql\nSELECT customer_id FROM customers "
        "WHERE TIMESTAMPDIFF(DAY, last_purchase_at, NOW()) = 1 "
        "OR TIMESTAMPDIFF(HOUR, NOW(), last_purchase_at) = 30",
        file=Path("days.sql"),
        default_dialect="duckdb",
    )
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    refresh_segment(warehouse, segment, **refresh)  # type: ignore[arg-type]
    assert _members(warehouse, "days") == ["b", "c", "d"]


def test_statement_timeout_stops_a_slow_segment(warehouse: Warehouse) -> None:
    load_customers(warehouse, [{"customer_id": str(i)} for i in range(3000)])
    slow = parse_segment(
        "SELECT a.customer_id FROM customers a, customers b, customers c "
        "WHERE a.customer_id || b.customer_id || c.customer_id = 'x'",
        file=Path("slow.sql"),
        default_dialect="duckdb",
    )
    with pytest.raises(UnsafeQueryError, match="longer than"):
        refresh_segment(warehouse, slow, now=NOW, timeout_s=0.3, max_members=100)
    assert warehouse.scalar("SELECT count(*) FROM segment_memberships") == 0
    assert warehouse.scalar("SELECT 1") == 1  # the connection still works


def test_preview_reports_size_sample_and_sql(warehouse: Warehouse) -> None:
    engaged_buyers_world(warehouse)
    segment = _segment(GOLDEN / "engaged_buyers" / "mysql.sql")
    with clock.frozen(NOW):
        result = preview(warehouse, segment, sample=2, timeout_s=30)
    assert result.size == 4
    assert result.columns == ["customer_id", "email"]
    assert len(result.rows) == 2
    assert "2026-03-31" in result.sql
    assert warehouse.scalar("SELECT count(*) FROM segment_memberships") == 0  # read-only


def test_leaving_and_returning_at_one_instant_leaves_no_gap(warehouse: Warehouse) -> None:
    load_customers(warehouse, [{"customer_id": "a", "last_purchase_at": NOW}])
    segment = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    refresh = {"now": NOW, "timeout_s": 30, "max_members": 100}
    assert refresh_segment(warehouse, segment, **refresh).entered == 1  # type: ignore[arg-type]
    warehouse.execute("UPDATE customers SET last_purchase_at = NULL")
    assert refresh_segment(warehouse, segment, **refresh).exited == 1  # type: ignore[arg-type]
    warehouse.execute("UPDATE customers SET last_purchase_at = ?", [NOW])
    assert refresh_segment(warehouse, segment, **refresh).entered == 1  # type: ignore[arg-type]
    rows = warehouse.fetch("SELECT customer_id, entered_at, exited_at FROM segment_memberships")
    assert rows == [("a", NOW, None)]


def test_segments_for_one_customer_now(warehouse: Warehouse) -> None:
    from personify.audiences.stage import segments_for

    engaged_buyers_world(warehouse)
    segments = [
        _segment(GOLDEN / "engaged_buyers" / "mysql.sql"),
        parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb"),
    ]
    with clock.frozen(NOW):
        assert segments_for(warehouse, segments, "c10") == ["engaged_buyers", "hot"]
        assert segments_for(warehouse, segments, "c05") == ["engaged_buyers"]
        assert segments_for(warehouse, segments, "c02") == []
        assert segments_for(warehouse, segments, "nobody' OR '1'='1") == []


VIP_RULES = """
rules:
  - id: vip
    tag: vip
    when: total_spent >= 1000
"""


def _tags(wh: Warehouse) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in wh.fetch("SELECT customer_id, tag FROM customer_tags ORDER BY 1")]


def test_rules_run_beside_independent_segments(warehouse: Warehouse) -> None:
    """Segments that don't read what the rules write are refreshed while the rules run on a
    second connection: the same memberships, tags and changes as one after the other."""
    load_customers(
        warehouse,
        [
            {"customer_id": str(i), "last_purchase_at": NOW, "total_spent": 500.0 * i}
            for i in range(5)
        ],
    )
    hot = parse_segment(SEGMENT, file=Path("hot.sql"), default_dialect="duckdb")
    rules = parse_rules(VIP_RULES, file="rules.yml", dialect="duckdb")
    assert not reads_rule_outputs([hot])
    results, tags, failed = refresh_and_tag(
        warehouse, [hot], rules, now=NOW, timeout_s=30, max_members=100
    )
    assert [(r.segment, r.entered) for r in results] == [("hot", 5)] and failed == []
    assert (tags.tagged, tags.added) == (3, 3)
    assert _members(warehouse, "hot") == ["0", "1", "2", "3", "4"]
    assert _tags(warehouse) == [("2", "vip"), ("3", "vip"), ("4", "vip")]
    changes = warehouse.fetch(
        "SELECT kind, count(*) FROM audience_changes WHERE change = 'entered' GROUP BY kind "
        "ORDER BY kind"
    )
    assert [tuple(r) for r in changes] == [("segment", 5), ("tag", 3)]
    # A segment over its cap is reported and keeps its memberships; the rules still run.
    warehouse.execute("DELETE FROM customer_tags")
    warehouse.execute("DELETE FROM customers WHERE customer_id = '0'")
    later = NOW + timedelta(hours=1)
    results, _, failed = refresh_and_tag(
        warehouse, [hot], rules, now=later, timeout_s=30, max_members=3
    )
    assert results == [] and [f.segment for f in failed] == ["hot"]
    assert isinstance(failed[0].error, UnsafeQueryError)
    assert "'hot' returned 4 customers" in failed[0].error.message
    assert _members(warehouse, "hot") == ["0", "1", "2", "3", "4"]
    assert _tags(warehouse) == [("2", "vip"), ("3", "vip"), ("4", "vip")]


def test_segments_reading_tags_are_refreshed_before_the_rules(warehouse: Warehouse) -> None:
    """A segment over ``customer_tags`` sees the tags of the previous evaluation: it is refreshed
    first, then the rules run (as before they ran side by side)."""
    load_customers(warehouse, [{"customer_id": "a", "total_spent": 2000.0}])
    tagged = parse_segment(
        "SELECT customer_id FROM customer_tags WHERE tag = 'vip'",
        file=Path("tagged.sql"),
        default_dialect="duckdb",
    )
    rules = parse_rules(VIP_RULES, file="rules.yml", dialect="duckdb")
    assert reads_rule_outputs([tagged])
    first, _, _ = refresh_and_tag(warehouse, [tagged], rules, now=NOW, timeout_s=30, max_members=9)
    assert (first[0].members, _tags(warehouse)) == (0, [("a", "vip")])
    later = NOW + timedelta(hours=1)
    second, _, _ = refresh_and_tag(
        warehouse, [tagged], rules, now=later, timeout_s=30, max_members=9
    )
    assert (second[0].entered, _members(warehouse, "tagged")) == (1, ["a"])
