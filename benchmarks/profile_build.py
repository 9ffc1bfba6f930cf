"""Full profile build on DuckDB: identity + survivorship + traits for N customers / M events.

The input is generated vectorized (numpy → Arrow): one CRM record per customer (id, email,
names, login id), half of them a shop record too (the shop's own id), two anonymous web ids per
customer, M page/track events over those ids (5 % carrying the login id), one order per customer
(the shop id when the customer has one, and the email). Every input links to its own customer
only, so the build must end with exactly N customers (checked). Goal: ≤ 15 s for 1M customers /
10M events. Baselines in the same run: the time to load the input (Arrow → DuckDB), and the
write floor — the build's output rows written again in one transaction with nothing to compute
(on a 2-core machine that floor alone is most of the goal: see RESULTS.md); ``--general`` runs
the general (incremental) identity pass instead of the first population. CPU is
``time.process_time()`` (user + system of every thread of the process): steadier than wall time
on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify import clock
from personify.config import Project, parse_config
from personify.identity import resolve_batch
from personify.profiles import profiles_stage
from personify.session import Session
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import create_table_sql

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def _ids(prefix: str, values: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(values).cast(pa.string()), "")


def _times(rng: np.random.Generator, n: int) -> pa.Array:
    base = np.datetime64("2026-01-01T00:00:00", "us")
    return pa.array(base + rng.integers(0, 365 * 86_400_000_000, n).astype("timedelta64[us]"), TS)


def world(customers: int, events: int, seed: int) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    c = np.arange(customers)
    emails = pc.binary_join_element_wise("p", pa.array(c).cast(pa.string()), "@example.org", "")
    crm = pa.table(
        {
            "source": pa.array(["crm"] * customers),
            "record_id": _ids("c", c),
            "email": emails,
            "first_name": _ids("F", c % 5000),
            "user_id": _ids("u", c),
            "observed_at": _times(rng, customers),
            "received_at": pa.array([T0] * customers, TS),
        }
    )
    half = c[: customers // 2]
    shop = pa.table(
        {
            "source": pa.array(["shop"] * len(half)),
            "record_id": _ids("s", half),
            "email": pc.take(emails, pa.array(half)),
            "first_name": _ids("G", half % 7000),
            "observed_at": _times(rng, len(half)),
            "received_at": pa.array([T0] * len(half), TS),
        }
    )
    owner = rng.integers(0, 2 * customers, events)  # anonymous id of the event
    login = rng.random(events) < 0.05
    user = owner // 2
    kinds = rng.choice(np.array(["page", "track"]), events)
    ev = pa.table(
        {
            "message_id": _ids("m", np.arange(events)),
            "type": pa.array(kinds),
            "event": pa.array(np.where(kinds == "track", "Product Viewed", None)),
            "anonymous_id": _ids("a", owner),
            "user_id": pc.if_else(pa.array(login), _ids("u", user), pa.nulls(events, pa.string())),
            "timestamp": _times(rng, events),
            "received_at": pa.array([T0] * events, TS),
            "source": pa.array(["web"] * events),
            "properties": pa.array(np.where(kinds == "track", '{"category": "shoes"}', None)),
        }
    )
    orders = pa.table(
        {
            "order_id": _ids("o", c),
            # the shop's id for the half that has one (no reuse: c % (N/2) merged strangers)
            "source_customer_id": pc.if_else(
                pa.array(c < customers // 2), _ids("s", c), pa.nulls(customers, pa.string())
            ),
            "email": emails,
            "total": pa.array(rng.random(customers) * 100),
            "status": pa.array(["paid"] * customers),
            "created_at": _times(rng, customers),
            "source": pa.array(["shop"] * customers),
        }
    )
    return {
        "customer_records": pa.concat_tables([crm, shop], promote_options="default"),
        "events": ev,
        "orders": orders,
    }


def _time_statements(wh: Warehouse, timings: list[tuple[float, float, str]]) -> None:
    """Record the CPU and wall time of every statement ``wh`` executes (``--statements``)."""
    execute = wh.execute

    def timed(sql: str, params: object = ()) -> int:
        t, c = time.perf_counter(), time.process_time()
        try:
            return execute(sql, params)  # type: ignore[arg-type]
        finally:
            timings.append((time.process_time() - c, time.perf_counter() - t, sql))

    wh.execute = timed  # type: ignore[method-assign]


_OUTPUT = {
    "identity_nodes": "*",
    "identity_edges": "*",
    "identity_refusals": "*",
    "identities": "*",
    "customer_ids": "*",
    "events": "message_id, customer_id",
    "orders": "order_id, customer_id",
    "customers": "* EXCLUDE (updated_at)",
    "profile_observations": "*",
}


_WRITTEN = (
    "identity_nodes",
    "identity_edges",
    "identities",
    "customer_ids",
    "profile_observations",
    "customers",
)
"""The tables the build fills from empty (besides ``customer_id`` on events and orders)."""


def _write_floor(wh: Warehouse) -> tuple[float, float]:
    """Wall and CPU seconds to write what the build wrote, with nothing to compute.

    In one transaction, as the build's: each table of :data:`_WRITTEN` copied into a new table
    of the same definition, and ``customer_id`` of every event and order written again (upper
    case: as many distinct values of the same length, so the commit stores as much); then
    the commit (which checkpoints the events' rewritten column, as the build's commit does). A
    floor for the build on this machine: what is left of the goal once the rows are stored."""
    t, c = time.perf_counter(), time.process_time()
    with wh.transaction():
        for name in _WRITTEN:
            copy = dataclasses.replace(table(name), name=f"_floor_{name}")
            for sql in create_table_sql(wh, copy):
                wh.execute(sql)
            wh.execute(f"INSERT INTO _floor_{name} SELECT * FROM {name}")
        for name in ("events", "orders"):  # (new values: DuckDB writes nothing for equal ones)
            wh.execute(f"UPDATE {name} SET customer_id = upper(customer_id)")
    return time.perf_counter() - t, time.process_time() - c


def _digests(wh: Warehouse) -> list[tuple[str, str]]:
    """``(table, "rows:md5")`` over every output table's rows as text, sorted (``--md5``)."""
    return [
        (
            name,
            str(
                wh.scalar(
                    "SELECT count(*) || ':' || coalesce(md5(string_agg(x, '|' ORDER BY x)), '') "
                    f"FROM (SELECT CAST(q AS VARCHAR) AS x FROM (SELECT {columns} FROM {name}) q) z"
                )
            ),
        )
        for name, columns in _OUTPUT.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--statements", type=int, default=0, help="print the N statements that took most CPU"
    )
    parser.add_argument(
        "--md5",
        action="store_true",
        help="print an md5 of every output table (rows sorted as text): compare two trees' output",
    )
    parser.add_argument(
        "--general",
        action="store_true",
        help="force the general (incremental) identity pass instead of the first population",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the write floor (the build's rows written again, with nothing to compute)",
    )
    args = parser.parse_args()
    data = world(args.customers, args.events, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(
            parse_config("warehouse: duckdb:///w.duckdb\n"), Path(tmp), Path(tmp) / "personify.yml"
        )
        wh: Warehouse = connect(f"duckdb:///{tmp}/w.duckdb")
        t, c = time.perf_counter(), time.process_time()
        for name, rows in data.items():
            wh.load(table(name), rows)
        load_s, load_c = time.perf_counter() - t, time.process_time() - c
        session = Session(project)
        session._warehouse = wh
        timings: list[tuple[float, float, str]] = []
        if args.statements:
            _time_statements(wh, timings)
        with clock.frozen(datetime(2027, 1, 1, tzinfo=UTC)):
            t, c = time.perf_counter(), time.process_time()
            report = resolve_batch(wh, project.config.identity, first_population=not args.general)
            identity_s, identity_c = time.perf_counter() - t, time.process_time() - c
            t, c = time.perf_counter(), time.process_time()
            counts = profiles_stage(session)
            profiles_s, profiles_c = time.perf_counter() - t, time.process_time() - c
        built = counts["customers_built"]
        distinct = int(wh.scalar("SELECT count(DISTINCT customer_id) FROM customers") or 0)
        digests = _digests(wh) if args.md5 else []
        floor_s, floor_c = (0.0, 0.0) if args.no_floor else _write_floor(wh)
        wh.close()
    for name, digest in digests:
        print(f"md5 {name:<22} {digest}")
    if distinct != args.customers:
        raise SystemExit(f"expected {args.customers:,} customers, the build made {distinct:,}")
    if timings:
        print("    CPU     wall  statement (slowest by CPU)")
    for cpu, seconds, sql in sorted(timings, reverse=True)[: args.statements]:
        print(f"{cpu:7.3f}  {seconds:7.3f}  {' '.join(sql.split())[:140]}")
    identity_notes = (
        f"{report.components.rounds} rounds; {report.counts['identifiers_added']:,} identifiers; "
        f"{'first population' if report.counts['first_population'] else 'general pass'}"
    )
    # (label, wall s, CPU s, goal, notes): a Markdown table, as ``paired.py`` reads it — the
    # labels say "time" and "CPU" so that it knows less is better
    rows = [
        ("load input time (Arrow → DuckDB)", load_s, load_c, "baseline", ""),
        *(
            []
            if args.no_floor
            else [
                (
                    "write floor time (the build's rows written again, nothing computed)",
                    floor_s,
                    floor_c,
                    "baseline",
                    "identity_nodes, edges, identities, customer_ids, observations, customers; "
                    "customer_id of every event and order",
                )
            ]
        ),
        (
            "identity time (graph, components, ids, stitching)",
            identity_s,
            identity_c,
            "",
            identity_notes,
        ),
        (
            "profiles time (observations, survivorship, traits)",
            profiles_s,
            profiles_c,
            "",
            f"{built:,} customers",
        ),
        (
            "full build time",
            identity_s + profiles_s,
            identity_c + profiles_c,
            "≤ 15 s",
            f"{args.events:,} events; load average {os.getloadavg()[0]:.1f}",
        ),
    ]
    print("| figure | value | goal |")
    print("|---|---|---|")
    for label, wall, cpu, goal, notes in rows:
        value = f"{wall:.1f} s wall, {cpu:.1f} CPU-s" + (f" ({notes})" if notes else "")
        print(f"| {label} | {value} | {goal} |")
    print(f"| full build CPU | {identity_c + profiles_c:.1f} CPU-s | |")
    print(f"| identity CPU | {identity_c:.1f} CPU-s | |")


if __name__ == "__main__":
    main()
