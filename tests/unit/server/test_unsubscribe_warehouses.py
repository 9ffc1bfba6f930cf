"""Unsubscribes and ESP events write the same suppressions on every backend (DuckDB, PostgreSQL):
once, keyed hashes only, merged ids followed, and the send-time check sees them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from personify.config import Project, parse_config
from personify.delivery.events import EspEvent
from personify.delivery.suppress import apply_events, unsubscribe
from personify.delivery.tokens import UnsubscribeClaim
from personify.journeys.decide import suppressed
from personify.warehouse import Warehouse, table

WHEN = datetime(2026, 2, 1, tzinfo=UTC)


def test_suppressions_on_every_backend(warehouse: Warehouse, tmp_path: Path) -> None:
    project = Project(parse_config("signing_key: k-123"), tmp_path, tmp_path / "personify.yml")
    warehouse.load(
        table("customers"),
        pa.Table.from_pylist(
            [
                {"customer_id": "c1", "email": "ann@x.org", "updated_at": WHEN},
                {"customer_id": "c2", "email": "Bob@X.org", "updated_at": WHEN},
            ]
        ),
    )
    warehouse.load(
        table("customer_ids"),
        pa.Table.from_pylist(
            [
                {
                    "customer_id": "old",
                    "founder": 1,
                    "founded_at": WHEN,
                    "status": "merged",
                    "merged_into": "c1",
                    "merged_at": WHEN,
                }
            ]
        ),
    )
    first = unsubscribe(warehouse, project, UnsubscribeClaim("old", "marketing"), at=WHEN)
    assert first.customer_id == "c1" and first.new
    assert not unsubscribe(warehouse, project, UnsubscribeClaim("c1", "marketing")).new
    events = [EspEvent("bounced", "bob@x.org"), EspEvent("complained", "who@x.org")]
    done = apply_events(warehouse, project, "sendgrid", 3, events, at=WHEN)
    assert (done.received, done.suppressing, done.written) == (3, 2, 3)
    assert apply_events(warehouse, project, "sendgrid", 3, events).written == 0
    got = warehouse.fetch(
        "SELECT kind, customer_id, reason, source FROM suppressions "
        "ORDER BY kind, customer_id NULLS LAST"
    )
    assert got == [
        ("customer_id", "c1", "unsubscribed", "unsubscribe"),
        ("customer_id", "c2", "bounced", "esp:sendgrid"),
        ("email", "c1", "unsubscribed", "unsubscribe"),
        ("email", "c2", "bounced", "esp:sendgrid"),
        ("email", None, "complained", "esp:sendgrid"),
    ]
    assert suppressed(warehouse, ["c1", "c2", "c3"]) == {"c1", "c2"}
    hashes = [r[0] for r in warehouse.fetch("SELECT subject_hash FROM suppressions")]
    assert all(len(h) == 64 and "@" not in h for h in hashes)
