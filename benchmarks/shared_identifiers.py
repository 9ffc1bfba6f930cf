"""An ad audience's removal: finding the identifiers a remaining member shares.

A Meta audience of N people (email and phone; every 50th pair of people shares a household
phone) is pushed to a Graph API stand-in on loopback (answers ``num_received``), on DuckDB (or
``--warehouse URL``). Then 1 % of the people leave the model, and the identifiers their
removal would name that a remaining member holds are found two ways, in the same run, over the
same state:

* **old**: every remaining member's kept state decrypted in Python, scanning until each
  identifier is found (what ``meta._held`` did before migration 36 — most leavers' emails are
  nobody else's, so it reads everyone);
* **new**: the leavers' identifiers' keyed hashes joined with ``destination_identifiers`` in the
  warehouse (:meth:`personify.destinations.shared.Held.shared`) — and, once, the backfill of a
  warehouse whose records predate the hashes.

Then the removal push itself runs (new code), end to end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa

from personify import clock
from personify.config import (
    PrivacyConfig,
    Project,
    ProjectConfig,
    RestClient,
    RestDestination,
    Secret,
)
from personify.destinations import push_destinations
from personify.destinations.audiences import sets_of
from personify.destinations.meta import units
from personify.destinations.model import READ, ROWS, leaving, stage_rows, staying
from personify.destinations.shared import Held, Pair
from personify.destinations.state import opened
from personify.privacy.crypto import KeyRing, new_key
from personify.session import Session
from personify.warehouse import table
from personify.warehouse.base import Warehouse

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
MODEL = "SELECT customer_id, email, phone, country FROM customers WHERE country <> 'gone'"


class _Graph(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        from urllib.parse import parse_qs

        payload = json.loads(parse_qs(body)["payload"][0])
        out = json.dumps({"num_received": len(payload["data"]), "num_invalid_entries": 0})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out.encode())

    do_POST = _answer
    do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def graph() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Graph)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def people(n: int) -> pa.Table:
    # every 50th pair of people shares a household phone; the others have their own
    phone = [f"+447700{(500_000 + i // 2 if i % 50 < 2 else i):06d}" for i in range(n)]
    return pa.table(
        {
            "customer_id": [f"cus_{i:08d}" for i in range(n)],
            "email": [f"c{i}@example.org" for i in range(n)],
            "phone": phone,
            "country": ["gb"] * n,
            "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
        }
    )


def old_held(wh: Warehouse, d: RestDestination, ring: KeyRing, wanted: set[Pair]) -> set[Pair]:
    """Before migration 36: every remaining member's kept state decrypted."""
    found: set[Pair] = set()
    after = ""
    while wanted - found and (page := staying(wh, d, limit=READ, after=after)):
        after = page[-1][0]
        for _, _, kept in opened(wh, d, ring, page):
            if kept is not None:
                found |= units(sets_of(kept)) & wanted
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--leaving", type=float, default=0.01, help="share leaving the model")
    parser.add_argument("--warehouse", default="", help="a warehouse URL (default: DuckDB)")
    args = parser.parse_args()
    n, k = args.people, int(args.people * args.leaving)
    keys = f"k1:{new_key()}"
    with tempfile.TemporaryDirectory() as tmp, graph() as url:
        root = Path(tmp)
        d = RestDestination(
            name="ads",
            model=MODEL,
            preset="meta_audience",
            audience_id="1234",
            access_token=Secret("token"),
            on_remove="delete",
            max_removals="50%",
            client=RestClient(base_url=url, requests_per_second=100_000.0),
        )
        config = ProjectConfig(
            warehouse=args.warehouse or f"duckdb:///{root / 'w.duckdb'}",
            signing_key=Secret("bench"),
            privacy=PrivacyConfig(encryption_keys=Secret(keys)),
            destinations=(d,),
        )
        with Session(Project(config, root, root / "personify.yml")) as session:
            wh = session.warehouse
            wh.load(table("customers"), people(n))
            wh.execute(
                "INSERT INTO consents (customer_id, purpose, channel, status, source, updated_at) "
                "SELECT customer_id, 'advertising', 'email', 'granted', 'bench', updated_at "
                "FROM customers"
            )
            t0 = time.perf_counter()
            with clock.frozen(NOW):
                (first,) = push_destinations(session)
            assert first.error is None, first.error
            add_s = time.perf_counter() - t0
            wh.execute(
                "UPDATE customers SET country = 'gone' WHERE customer_id IN (SELECT customer_id "
                f"FROM customers ORDER BY md5(customer_id) LIMIT {k})"
            )
            ring = KeyRing.parse(keys)
            with clock.frozen(NOW):
                stage_rows(wh, session.project, d)
            wanted: set[Pair] = set()
            after = ""
            while page := leaving(wh, d, limit=READ, after=after):
                after = page[-1][0]
                for _, _, kept in opened(wh, d, ring, page):
                    wanted |= units(sets_of(kept or ""))
            t0, c0 = time.perf_counter(), time.process_time()
            old = old_held(wh, d, ring, wanted)
            old_s, old_cpu = time.perf_counter() - t0, time.process_time() - c0
            held = Held(wh, d, ring, units)
            held._filled = True  # (the push kept every record's hashes)
            t0, c0 = time.perf_counter(), time.process_time()
            new = held.shared(wanted)
            new_s, new_cpu = time.perf_counter() - t0, time.process_time() - c0
            assert new == old, (len(new), len(old))
            # a warehouse whose records predate the hashes: backfilled once, then joined
            wh.execute("DELETE FROM destination_identifiers")
            wh.execute("UPDATE destination_state SET identifiers_key = NULL")
            t0 = time.perf_counter()
            filled = Held(wh, d, ring, units).backfill()
            fill_s = time.perf_counter() - t0
            wh.execute(f"DROP TABLE {ROWS}")
            t0 = time.perf_counter()
            with clock.frozen(NOW):
                (gone,) = push_destinations(session)
            assert gone.error is None, gone.error
            push_s = time.perf_counter() - t0
    engine = "PostgreSQL" if args.warehouse.startswith("postgres") else "DuckDB"
    c = gone.counts
    print(f"| figure ({n:,} people, {k:,} leaving, {engine}) | value |")
    print("|---|---|")
    print(f"| first push: {first.counts['rows_sent']:,} added | {add_s:.2f} s |")
    print(
        f"| shared identifiers of the leavers ({len(wanted):,} identifiers, {len(new):,} shared)"
        f": **old**, every remaining state decrypted | {old_s:.2f} s wall, {old_cpu:.2f} CPU-s |"
    )
    print(
        f"| the same: **new**, one join on keyed hashes | {new_s * 1000:.0f} ms wall, "
        f"{new_cpu * 1000:.0f} CPU-ms ({old_s / new_s:,.0f}× faster) |"
    )
    print(f"| once, for records kept before: backfill of {filled:,} | {fill_s:.2f} s |")
    print(
        f"| the removal push, end to end: {c.get('rows_removed', 0):,} removed, "
        f"{c.get('removals_shared', 0):,} not sent (shared) | {push_s:.2f} s |"
    )


if __name__ == "__main__":
    main()
