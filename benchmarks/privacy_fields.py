"""Cost of privacy protection at rest, with a baseline in the same run.

1. Sealing encrypted customer columns (``privacy.encrypted_fields``: email, phone, first name):
   the privacy stage's pass over N freshly built ``customers`` rows (AES-256-GCM per value, blind
   index of email and phone, one UPDATE and one upsert per 5,000 rows) — against a baseline pass
   that reads the same rows and writes the same values back unencrypted through the same
   statements (what the pass costs without the cryptography).
2. Decrypting at the read seam: ``read_customers`` of 500 ids with and without encryption.
3. Appending to the hash-chained audit log (``log_action``: lock, read the head, insert) against
   a plain insert of the same row.

Usage: ``.venv/bin/python benchmarks/privacy_fields.py [--customers N] [--warehouse URL]``
(default 100,000 customers, DuckDB in a temporary folder). Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from personify.config import Project, parse_config
from personify.messages import read_customers
from personify.privacy.audit import log_action
from personify.privacy.crypto import new_key
from personify.privacy.fields import FieldCipher, attach, cipher_of, seal_customers
from personify.warehouse import Warehouse, connect, table

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _customers(wh: Warehouse, n: int) -> None:
    wh.execute("DELETE FROM customers")
    ids = [f"c{i:08d}" for i in range(n)]
    wh.load(
        table("customers"),
        pa.table(
            {
                "customer_id": ids,
                "email": [f"person.{i}@example{i % 97}.org" for i in range(n)],
                "phone": [f"+3361{i:07d}" for i in range(n)],
                "first_name": [f"Name{i % 1000}" for i in range(n)],
                "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            }
        ),
    )


def _plain_pass(wh: Warehouse, cipher: FieldCipher) -> None:
    """The baseline: the same batches and statements, values written back as they are."""
    from personify.privacy import fields

    class Plain(FieldCipher):
        def seal(self, column: str, customer_id: str, value: str) -> str:
            return value

        def index(self, kind: str, value: str) -> str:
            return value

    plain = Plain(cipher.ring, cipher.index_key, cipher.columns, cipher.identity)
    # every value counts as "plain" each pass: walk once by id like the real pass
    after, at = "", NOW
    cols = ", ".join(cipher.columns)
    while True:
        batch = wh.fetch(
            f"SELECT customer_id, {cols} FROM customers WHERE customer_id > ? "
            f"ORDER BY customer_id LIMIT {fields._BATCH}",
            [after],
        )
        if not batch:
            break
        after = str(batch[-1][0])
        rows = [(str(r[0]), *r[1:]) for r in batch]
        entries: list[tuple[str, str, str | None]] = [
            (str(r[0]), c, str(v))
            for r in batch
            for c, v in zip(cipher.columns, r[1:], strict=True)
            if c in fields.INDEXED and v is not None
        ]
        with wh.transaction():
            fields._write(wh, plain, rows)
            fields._index(wh, entries, at)


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--warehouse", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="personify-bench-"))
    url = args.warehouse or f"duckdb:///{tmp / 'w.duckdb'}"
    text = (
        f"warehouse: {url}\nsigning_key: bench-key\nprivacy:\n"
        f"  encryption_keys: k1:{new_key()}\n"
        "  encrypted_fields: [customers.email, customers.phone, customers.first_name]\n"
    )
    project = Project(parse_config(text), tmp, tmp / "personify.yml")
    n = args.customers
    rows: list[tuple[str, str, str]] = []
    with connect(url) as wh:
        attach(wh, project)
        cipher = cipher_of(wh)
        assert cipher is not None
        _customers(wh, n)
        base = _timed(lambda: _plain_pass(wh, cipher))
        wh.execute("DELETE FROM field_index")
        _customers(wh, n)
        sealed: dict[str, int] = {}
        real = _timed(lambda: sealed.update(seal_customers(wh, cipher)))
        assert sealed["sealed"] == 3 * n, sealed
        rows.append(
            ("seal 3 columns (+ blind index)", f"{n / base:,.0f} rows/s", f"{n / real:,.0f} rows/s")
        )

        ids = [f"c{i:08d}" for i in range(0, min(n, 500))]
        reps = 20
        dec = _timed(lambda: [read_customers(wh, ids) for _ in range(reps)]) / reps
        attach(wh, Project(parse_config(f"warehouse: {url}\n"), tmp, tmp / "personify.yml"))
        raw = _timed(lambda: [read_customers(wh, ids) for _ in range(reps)]) / reps
        rows.append(
            ("read_customers(500 ids)", f"{raw * 1000:.1f} ms (no decrypt)", f"{dec * 1000:.1f} ms")
        )

        k = 2_000
        plain = _timed(
            lambda: [
                wh.execute(
                    "INSERT INTO audit_log (id, occurred_at, action, actor, subject_hash, detail) "
                    "VALUES (?, ?, 'consent', 'bench', 'h', CAST('{}' AS JSON))",
                    [uuid.uuid4().hex, NOW],
                )
                for _ in range(k)
            ]
        )
        chained = _timed(
            lambda: [
                log_action(wh, action="consent", actor="bench", customer_id="c1", key=b"k")
                for _ in range(k)
            ]
        )
        rows.append(
            (
                "audit log append",
                f"{k / plain:,.0f} /s (plain insert)",
                f"{k / chained:,.0f} /s (chained)",
            )
        )
    print(f"warehouse: {url.split(':', 1)[0]}, customers: {n:,}")
    print(f"| {'what':<32} | {'baseline':<28} | {'with protection':<22} |")
    print(f"|{'-' * 34}|{'-' * 30}|{'-' * 24}|")
    for what, b, r in rows:
        print(f"| {what:<32} | {b:<28} | {r:<22} |")


if __name__ == "__main__":
    main()
