"""Audiences at scale: 20 segments and 15 rules over 1M customers on DuckDB.

Personify (segment files in four dialects parsed, checked, transpiled and pinned; memberships
and tags maintained by difference, changes recorded) against the same work written by hand in
DuckDB SQL and run directly on the connection, in the same run, on the same customers: a first
pass (everyone enters) and a second pass a day later after 2 % of the customers changed.
Results are checked equal. Goals: Personify ≤ 10 s per pass and ≤ 1.2× the hand-written SQL.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from personify.audiences.batch import write_tags
from personify.audiences.memberships import refresh_segments
from personify.audiences.rules import load_rules
from personify.audiences.segments import load_segments
from personify.audiences.stage import refresh_and_tag
from personify.warehouse import connect, table

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
CATEGORIES = ["shoes", "bags", "hats", "coats", "jewelry", "sport", "home", "kids"]

# name: (dialect, segment SQL as a user writes it, the same by hand in DuckDB with {now}/{today})
SEGMENTS: dict[str, tuple[str, str, str]] = {
    "high_value_recent": (
        "mysql",
        "SELECT customer_id, email FROM customer_data WHERE purchase_date >= "
        "DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80",
        "SELECT customer_id FROM customers WHERE CAST(last_purchase_at AS DATE) >= "
        "DATE '{today}' - INTERVAL 30 DAY AND engagement_score > 80",
    ),
    "lapsed_60": (
        "postgres",
        "SELECT customer_id FROM customers WHERE last_purchase_at < now() - INTERVAL '60 days'",
        "SELECT customer_id FROM customers WHERE last_purchase_at < {now} - INTERVAL 60 DAY",
    ),
    "vip_spenders": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE total_spent >= 1000",
        "SELECT customer_id FROM customers WHERE total_spent >= 1000",
    ),
    "frequent": (
        "snowflake",
        "SELECT customer_id FROM customers WHERE NVL(order_count, 0) >= 5",
        "SELECT customer_id FROM customers WHERE COALESCE(order_count, 0) >= 5",
    ),
    "new_customers": (
        "bigquery",
        "SELECT customer_id FROM customers WHERE created_at >= "
        "TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)",
        "SELECT customer_id FROM customers WHERE created_at >= {now} - INTERVAL 30 DAY",
    ),
    "france_engaged": (
        "mysql",
        "SELECT customer_id FROM customers WHERE country = 'FR' AND engagement_score > 50",
        "SELECT customer_id FROM customers WHERE country = 'FR' AND engagement_score > 50",
    ),
    "at_risk": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE lifecycle_stage = 'at_risk'",
        "SELECT customer_id FROM customers WHERE lifecycle_stage = 'at_risk'",
    ),
    "never_bought": (
        "postgres",
        "SELECT customer_id FROM customers WHERE COALESCE(order_count, 0) = 0",
        "SELECT customer_id FROM customers WHERE COALESCE(order_count, 0) = 0",
    ),
    "ready_to_buy": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE engagement_score > 70 "
        "AND days_since_last_purchase BETWEEN 7 AND 30",
        "SELECT customer_id FROM customers WHERE engagement_score > 70 "
        "AND days_since_last_purchase BETWEEN 7 AND 30",
    ),
    "likes_shoes": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE CAST(preferred_categories AS VARCHAR) "
        "LIKE '%\"shoes\"%'",
        "SELECT customer_id FROM customers WHERE CAST(preferred_categories AS VARCHAR) "
        "LIKE '%\"shoes\"%'",
    ),
    "big_recent_order": (
        "mysql",
        "SELECT c.customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
        "WHERE o.customer_id = c.customer_id AND o.total > 200 "
        "AND o.created_at >= DATE_SUB(NOW(), INTERVAL 90 DAY))",
        "SELECT c.customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders o "
        "WHERE o.customer_id = c.customer_id AND o.total > 200 "
        "AND o.created_at >= {now} - INTERVAL 90 DAY)",
    ),
    "repeat_90d": (
        "postgres",
        "SELECT customer_id FROM orders WHERE created_at >= now() - INTERVAL '90 days' "
        "GROUP BY customer_id HAVING count(*) >= 2",
        "SELECT customer_id FROM orders WHERE created_at >= {now} - INTERVAL 90 DAY "
        "GROUP BY customer_id HAVING count(*) >= 2",
    ),
    "high_aov": (
        "snowflake",
        "SELECT customer_id FROM customers WHERE average_order_value > 150",
        "SELECT customer_id FROM customers WHERE average_order_value > 150",
    ),
    "support_attention": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE open_tickets > 0",
        "SELECT customer_id FROM customers WHERE open_tickets > 0",
    ),
    "germany_lapsed": (
        "bigquery",
        "SELECT customer_id FROM customers WHERE country = 'DE' AND lifecycle_stage = 'lapsed'",
        "SELECT customer_id FROM customers WHERE country = 'DE' AND lifecycle_stage = 'lapsed'",
    ),
    "low_engagement": (
        "mysql",
        "SELECT customer_id FROM customers WHERE IFNULL(engagement_score, 0) < 20",
        "SELECT customer_id FROM customers WHERE COALESCE(engagement_score, 0) < 20",
    ),
    "winback": (
        "duckdb",
        "SELECT customer_id FROM customers WHERE lifecycle_stage = 'lapsed' AND total_spent > 300",
        "SELECT customer_id FROM customers WHERE lifecycle_stage = 'lapsed' AND total_spent > 300",
    ),
    "gmail": (
        "postgres",
        "SELECT customer_id FROM customers WHERE email LIKE '%@gmail.com'",
        "SELECT customer_id FROM customers WHERE email LIKE '%@gmail.com'",
    ),
    "mid_value": (
        "snowflake",
        "SELECT customer_id FROM customers WHERE total_spent BETWEEN 100 AND 500",
        "SELECT customer_id FROM customers WHERE total_spent BETWEEN 100 AND 500",
    ),
    "signup_month": (
        "duckdb",
        "SELECT customer_id FROM customers "
        "WHERE EXTRACT(month FROM created_at) = EXTRACT(month FROM CURRENT_DATE)",
        "SELECT customer_id FROM customers "
        "WHERE EXTRACT(month FROM created_at) = EXTRACT(month FROM DATE '{today}')",
    ),
}

# id: (when, tag, group, variables) — the hand-written SQL uses the same conditions with {now}
RULES: list[tuple[str, str, str, str | None, dict[str, str]]] = [
    ("re_engagement", "last_purchase_at < NOW() - INTERVAL 60 DAY", "re_engagement", "life",
     {"categories": "preferred_categories"}),
    ("vip", "total_spent >= 1000 OR order_count >= 8", "vip", "life", {"spent": "total_spent"}),
    ("at_risk", "lifecycle_stage = 'at_risk'", "at_risk", "life", {}),
    ("welcome", "COALESCE(order_count, 0) = 0", "welcome", "life", {}),
    ("browse_abandon", "engagement_score > 60 AND days_since_last_purchase > 14", "nudge", None,
     {"score": "engagement_score"}),
    ("cart_push", "engagement_score > 80 AND order_count BETWEEN 1 AND 3", "nudge", None, {}),
    ("shoes", "JSON_ARRAY_LENGTH(preferred_categories) >= 3", "multi_category", None,
     {"categories": "preferred_categories"}),
    ("france", "country = 'FR'", "locale_fr", "locale", {}),
    ("germany", "country = 'DE'", "locale_de", "locale", {}),
    ("big_basket", "average_order_value > 150", "premium", None, {}),
    ("support", "open_tickets > 0", "support_first", None, {"tickets": "open_tickets"}),
    ("loyal", "order_count >= 5 AND created_at < NOW() - INTERVAL 1 YEAR", "loyal", None, {}),
    ("new", "created_at >= NOW() - INTERVAL 30 DAY", "new", None, {}),
    ("gmail", "email LIKE '%@gmail.com'", "gmail", None, {}),
    ("cold", "COALESCE(engagement_score, 0) < 10", "cold", None, {}),
]  # fmt: skip


# ------------------------------------------------------------------------------- the data
def customers(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.char.add("c", np.char.zfill(np.arange(n).astype(str), 7))
    domains = np.array(["gmail.com", "example.org", "shop.fr", "mail.de"])
    emails = np.char.add(np.char.add(ids, "@"), domains[rng.integers(0, 4, n)])
    days_ago = rng.exponential(70, n)
    bought = rng.random(n) < 0.8
    last = np.where(bought, days_ago, np.nan)
    now_us = int(NOW.timestamp() * 1_000_000)
    last_us = now_us - (np.nan_to_num(last) * 86_400_000_000).astype(np.int64)
    created_us = now_us - (rng.uniform(0, 1500, n) * 86_400_000_000).astype(np.int64)
    orders = np.where(bought, rng.poisson(3, n) + 1, 0)
    spent = np.round(orders * rng.gamma(2, 60, n), 2)
    pools = [json.dumps(list(rng.choice(CATEGORIES, k, replace=False))) for k in (1, 2, 3, 4)]
    pools = [*pools, "[]", json.dumps(CATEGORIES[:3])]
    return pa.table(
        {
            "customer_id": ids,
            "email": emails,
            "country": np.array(["FR", "DE", "US", "GB", "ES"])[rng.integers(0, 5, n)],
            "lifecycle_stage": np.array(["new", "active", "at_risk", "lapsed"])[
                rng.integers(0, 4, n)
            ],
            "created_at": pa.array(created_us, TS),
            "last_purchase_at": pa.array(last_us, TS, mask=~bought),
            "days_since_last_purchase": pa.array(
                np.nan_to_num(last).astype(np.int64), mask=~bought
            ),
            "order_count": pa.array(orders, pa.int64()),
            "total_spent": pa.array(spent, pa.float64()),
            "average_order_value": pa.array(np.where(orders > 0, spent / np.maximum(orders, 1), 0)),
            "engagement_score": pa.array(np.round(rng.beta(2, 3, n) * 100, 1)),
            "open_tickets": pa.array(rng.poisson(0.2, n), pa.int64()),
            "preferred_categories": np.array(pools)[rng.integers(0, len(pools), n)],
            "updated_at": pa.array(np.full(n, now_us), TS),
        }
    )


def orders(n_customers: int, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed + 1)
    owner = rng.integers(0, n_customers, n)
    now_us = int(NOW.timestamp() * 1_000_000)
    return pa.table(
        {
            "order_id": np.char.add("o", np.arange(n).astype(str)),
            "customer_id": np.char.add("c", np.char.zfill(owner.astype(str), 7)),
            "total": pa.array(np.round(rng.gamma(2, 70, n), 2)),
            "created_at": pa.array(
                now_us - (rng.uniform(0, 400, n) * 86_400e6).astype(np.int64), TS
            ),
            "source": np.full(n, "bench"),
        }
    )


def write_project(root: Path) -> tuple[Path, Path]:
    segments, rules = root / "segments", root / "rules"
    segments.mkdir(parents=True)
    rules.mkdir()
    for name, (dialect, sql, _) in SEGMENTS.items():
        (segments / f"{name}.sql").write_text(f"-- name: {name}\n-- dialect: {dialect}\n{sql}\n")
    specs = [
        {"id": i, "when": w, "tag": t, **({"group": g} if g else {}), "variables": v}
        for i, w, t, g, v in RULES
    ]
    (rules / "bench.yml").write_text(json.dumps({"rules": specs}, indent=1))
    return segments, rules


# ------------------------------------------------------------------------- hand-written SQL
HAND_DDL = [
    "CREATE TABLE hand_memberships (segment VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, "
    "entered_at TIMESTAMPTZ NOT NULL, exited_at TIMESTAMPTZ)",
    "CREATE TABLE hand_tags (customer_id VARCHAR NOT NULL, tag VARCHAR NOT NULL, "
    "rule VARCHAR NOT NULL, assigned_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ, "
    "variables JSON)",
    "CREATE TABLE hand_changes (kind VARCHAR NOT NULL, name VARCHAR NOT NULL, "
    "customer_id VARCHAR NOT NULL, change VARCHAR NOT NULL, changed_at TIMESTAMPTZ NOT NULL, "
    "rule VARCHAR, recorded_at TIMESTAMPTZ NOT NULL)",
]
HAND_SEGMENT = [
    "CREATE TEMP TABLE m AS SELECT DISTINCT customer_id FROM ({query}) s "
    "WHERE customer_id IS NOT NULL",
    "CREATE TEMP TABLE x AS SELECT coalesce(m.customer_id, h.customer_id) AS customer_id, "
    "CASE WHEN m.customer_id IS NULL THEN 'exited' ELSE 'entered' END AS change FROM m "
    "FULL OUTER JOIN (SELECT customer_id FROM hand_memberships WHERE segment = '{name}' "
    "AND exited_at IS NULL) h ON h.customer_id = m.customer_id "
    "WHERE m.customer_id IS NULL OR h.customer_id IS NULL",
    "INSERT INTO hand_changes SELECT 'segment', '{name}', customer_id, change, {now}, NULL, "
    "now() FROM x",
    "UPDATE hand_memberships SET exited_at = {now} WHERE segment = '{name}' "
    "AND exited_at IS NULL AND customer_id IN (SELECT customer_id FROM x "
    "WHERE change = 'exited')",
    "INSERT INTO hand_memberships SELECT '{name}', customer_id, {now}, NULL FROM x "
    "WHERE change = 'entered'",
    "DROP TABLE m",
    "DROP TABLE x",
]
HAND_TAGS = [
    "CREATE TEMP TABLE flags AS {flags}",
    "CREATE TEMP TABLE d AS {tags}",
    "CREATE TEMP TABLE x AS SELECT * FROM (SELECT coalesce(d.customer_id, c.customer_id) AS "
    "customer_id, coalesce(d.tag, c.tag) AS tag, coalesce(d.rule, c.rule) AS rule, "
    "d.variables, CASE WHEN c.customer_id IS NULL THEN 'entered' WHEN d.customer_id IS NULL "
    "THEN 'exited' WHEN c.rule <> d.rule OR c.variables IS DISTINCT FROM d.variables THEN "
    "'changed' END AS op FROM d FULL OUTER JOIN hand_tags c ON c.customer_id = d.customer_id "
    "AND c.tag = d.tag) WHERE op IS NOT NULL",
    "INSERT INTO hand_changes SELECT 'tag', tag, customer_id, op, {now}, rule, now() FROM x "
    "WHERE op IN ('entered', 'exited')",
    "DELETE FROM hand_tags WHERE EXISTS (SELECT 1 FROM x WHERE x.op = 'exited' AND "
    "x.customer_id = hand_tags.customer_id AND x.tag = hand_tags.tag)",
    "UPDATE hand_tags SET rule = x.rule, variables = x.variables FROM x WHERE x.op = "
    "'changed' AND x.customer_id = hand_tags.customer_id AND x.tag = hand_tags.tag",
    "INSERT INTO hand_tags SELECT customer_id, tag, rule, {now}, NULL, variables FROM x "
    "WHERE op = 'entered'",
    "DROP TABLE flags",
    "DROP TABLE d",
    "DROP TABLE x",
]


def hand_rules(now: str) -> tuple[str, str]:
    """The rules by hand: one scan for every rule's flag, first match per group and per tag."""
    flags = ", ".join(
        f"({when.replace('NOW()', now)}) IS TRUE AS m{i}" for i, (_, when, *_) in enumerate(RULES)
    )
    groups: dict[str, list[int]] = {}
    tags: dict[str, list[int]] = {}
    for i, (_, _, tag, group, _) in enumerate(RULES):
        if group:
            groups.setdefault(group, []).append(i)
        tags.setdefault(tag, []).append(i)
    winners = ", ".join(
        "CASE " + " ".join(f"WHEN m{i} THEN {i}" for i in members) + f" END AS g_{g}"
        for g, members in groups.items()
    )
    survives = ", ".join(
        f"m{i} AND g_{g} = {i} AS s{i}" if g else f"m{i} AS s{i}"
        for i, (_, _, _, g, _) in enumerate(RULES)
    )
    won = ", ".join(
        "CASE " + " ".join(f"WHEN s{i} THEN {i}" for i in members) + f" END AS w_{t}"
        for t, members in tags.items()
    )
    flags_sql = (
        f"SELECT *, {won} FROM (SELECT *, {survives} FROM (SELECT *, {winners} FROM (SELECT "
        "customer_id, preferred_categories, total_spent, engagement_score, open_tickets, "
        f"{flags} FROM customers)))"
    )
    selects = []
    for t, members in tags.items():
        rule = " ".join(f"WHEN {i} THEN '{RULES[i][0]}'" for i in members)
        variables = " ".join(
            f"WHEN {i} THEN json_object("
            + ", ".join(f"'{k}', {v}" for k, v in RULES[i][4].items())
            + ")"
            for i in members
        )
        selects.append(
            f"SELECT customer_id, '{t}' AS tag, CASE w_{t} {rule} END AS rule, "
            f"CASE w_{t} {variables} END AS variables FROM flags WHERE w_{t} IS NOT NULL"
        )
    return flags_sql, " UNION ALL ".join(selects)


def hand_pass(wh: Any, now: datetime) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of the process) of the hand-written SQL."""
    literal = f"TIMESTAMPTZ '{now.isoformat()}'"
    started, cpu = time.perf_counter(), time.process_time()
    for name, (_, _, hand) in SEGMENTS.items():
        query = hand.format(now=literal, today=now.date().isoformat())
        with wh.transaction():
            for sql in HAND_SEGMENT:
                wh.execute(sql.format(query=query, name=name, now=literal))
    flags, tags = hand_rules(literal)
    with wh.transaction():
        for sql in HAND_TAGS:
            wh.execute(sql.format(flags=flags, tags=tags, now=literal))
    return time.perf_counter() - started, time.process_time() - cpu


# ------------------------------------------------------------------------------ Personify
def personify_pass(
    wh: Any, folders: tuple[Path, Path], now: datetime, *, sequential: bool = False
) -> dict[str, float]:
    t0, cpu = time.perf_counter(), time.process_time()
    segments = load_segments(folders[0], default_dialect="duckdb")
    rules = load_rules(folders[1], default_dialect="duckdb")
    t1 = time.perf_counter()
    if sequential:
        refresh_segments(wh, segments, now=now, timeout_s=600, max_members=10**8)
        t2 = time.perf_counter()
        write_tags(wh, rules, now=now)
    else:  # what the pipeline's audiences stage runs: rules beside the segments
        refresh_and_tag(wh, segments, rules, now=now, timeout_s=600, max_members=10**8)
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    cpu = time.process_time() - cpu
    return {"load": t1 - t0, "segments": t2 - t1, "rules": t3 - t2, "total": t3 - t0, "cpu": cpu}


def check_equal(wh: Any) -> tuple[int, int]:
    ours = wh.fetch(
        "SELECT segment, customer_id, entered_at, exited_at FROM segment_memberships "
        "EXCEPT SELECT * FROM hand_memberships"
    )
    theirs = wh.fetch(
        "SELECT * FROM hand_memberships EXCEPT SELECT segment, customer_id, entered_at, "
        "exited_at FROM segment_memberships"
    )
    tags = wh.fetch(
        "(SELECT customer_id, tag, rule, CAST(variables AS VARCHAR) FROM customer_tags EXCEPT "
        "SELECT customer_id, tag, rule, CAST(variables AS VARCHAR) FROM hand_tags) UNION ALL "
        "(SELECT customer_id, tag, rule, CAST(variables AS VARCHAR) FROM hand_tags EXCEPT "
        "SELECT customer_id, tag, rule, CAST(variables AS VARCHAR) FROM customer_tags)"
    )
    assert not ours and not theirs and not tags, (ours[:3], theirs[:3], tags[:3])
    members = wh.scalar("SELECT count(*) FROM segment_memberships WHERE exited_at IS NULL")
    return int(members), int(wh.scalar("SELECT count(*) FROM customer_tags"))


def change_some_customers(wh: Any, now: datetime) -> None:
    wh.execute(
        "UPDATE customers SET last_purchase_at = ?, days_since_last_purchase = 0, "
        "order_count = order_count + 1, engagement_score = 95, lifecycle_stage = 'active' "
        "WHERE hash(customer_id) % 50 = 0",
        [now - timedelta(hours=1)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="segments, then rules (as before session 5) instead of the stage's side by side",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = write_project(root / "project")
        wh = connect(f"duckdb:///{root / 'warehouse.duckdb'}")
        t = time.perf_counter()
        wh.load(table("customers"), customers(args.customers, args.seed))
        wh.load(table("orders"), orders(args.customers, args.orders, args.seed))
        for sql in HAND_DDL:
            wh.execute(sql)
        print(
            f"setup: {args.customers:,} customers, {args.orders:,} orders loaded in "
            f"{time.perf_counter() - t:.1f} s; {len(SEGMENTS)} segments, {len(RULES)} rules"
        )
        rows = []
        for label, now in (("first pass (all enter)", NOW), ("next day, 2 % changed", None)):
            if now is None:
                now = NOW + timedelta(days=1)
                change_some_customers(wh, now)
            hand = hand_pass(wh, now)
            ours = personify_pass(wh, folders, now, sequential=args.sequential)
            members, tags = check_equal(wh)
            rows.append((label, ours, hand, members, tags))
        wh.close()
    print()
    split = "segments / rules" if args.sequential else "segments and rules side by side"
    print(
        f"| pass | Personify wall (parse / {split}) | hand-written wall | ratio | "
        "Personify CPU | hand CPU | CPU ratio | goal | members | tags |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, ours, (hand, hand_cpu), members, tags in rows:
        detail = f"{ours['total']:.2f} s ({ours['load']:.2f} / {ours['segments']:.2f}" + (
            f" / {ours['rules']:.2f})" if args.sequential else ")"
        )
        print(
            f"| {label} | {detail} | {hand:.2f} s | {ours['total'] / hand:.2f}× | "
            f"{ours['cpu']:.2f} s | {hand_cpu:.2f} s | {ours['cpu'] / hand_cpu:.2f}× | "
            f"≤ 10 s, ≤ 1.2× | {members:,} | {tags:,} |"
        )


if __name__ == "__main__":
    main()
