"""Which customer ids are erased, asked for many at once: the same answers as one at a time, in
a fixed number of statements (ESP deliveries and unsubscribe checks used to ask once per id)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from personify.config import Project, parse_config
from personify.delivery.events import EspEvent
from personify.delivery.suppress import apply_events
from personify.privacy.audit import customer_hash
from personify.privacy.erase import IDENTITY_STEP, erased_customer, erased_customers
from personify.privacy.hashing import hash_normalized, project_key
from personify.warehouse import Warehouse
from personify.warehouse.schema import CUSTOMER_IDS, ERASURE_PROGRESS, SUPPRESSIONS

T = datetime(2026, 3, 1, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")


def _project(tmp: Path, url: str) -> Project:
    return Project(
        parse_config(f"warehouse: {url}\nsigning_key: test-signing-key\n"),
        tmp,
        tmp / "personify.yml",
    )


@contextmanager
def _statements(wh: Warehouse) -> Iterator[list[str]]:
    """The statements ``wh`` runs meanwhile (reads and writes: ``scalar`` goes through
    ``fetch``)."""
    seen: list[str] = []

    def counting(name: str) -> Callable[..., Any]:
        real = getattr(wh, name)

        def run(sql: Any, *args: Any, **kw: Any) -> Any:
            seen.append(str(sql))
            return real(sql, *args, **kw)

        return run

    for name in ("fetch", "execute", "fetch_arrow"):
        setattr(wh, name, counting(name))
    try:
        yield seen
    finally:
        for name in ("fetch", "execute", "fetch_arrow"):
            delattr(wh, name)


def _world(wh: Warehouse, key: bytes) -> dict[str, bool]:
    """Customer ids in every state erasure leaves, and whether each is erased."""
    held = ["present", "half_present", "back", "tomb_back"]
    wh.load(
        CUSTOMER_IDS,
        pa.table(
            {
                "customer_id": held,
                "founder": pa.array(range(len(held)), pa.int64()),
                "founded_at": pa.array([T] * len(held), TS),
                "status": ["active"] * len(held),
            }
        ),
    )
    progress = [
        ("half_present", "tombstone"),  # started, not finished: erased though still held
        ("half_gone", "events"),
        ("done_gone", IDENTITY_STEP),  # finished, no customer holds the id
        ("done_gone", "tombstone"),
        ("back", IDENTITY_STEP),  # finished, and re-ingested data gave the id a customer again
    ]
    wh.load(
        ERASURE_PROGRESS,
        pa.table(
            {
                "erasure_id": [customer_hash(key, c) for c, _ in progress],
                "step": [s for _, s in progress],
                "status": ["done"] * len(progress),
                "rows": pa.array([1] * len(progress), pa.int64()),
                "finished_at": pa.array([T] * len(progress), TS),
            }
        ),
    )
    tombs = [("tomb", None), ("tomb_back", None), ("unsubscribed_gone", "someone")]
    wh.load(
        SUPPRESSIONS,
        pa.table(
            {
                "subject_hash": [hash_normalized(key, "customer_id", c) for c, _ in tombs],
                "kind": ["customer_id"] * len(tombs),
                "customer_id": pa.array([c for _, c in tombs], pa.string()),
                "reason": ["erased", "erased", "unsubscribed"],
                "source": ["erasure"] * len(tombs),
                "created_at": pa.array([T] * len(tombs), TS),
            }
        ),
    )
    return {
        "present": False,
        "half_present": True,
        "half_gone": True,
        "done_gone": True,
        "back": False,
        "tomb": True,  # an erasure from before progress rows: its tombstone alone
        "tomb_back": False,
        "unsubscribed_gone": False,  # a suppression that is no tombstone (it names a customer)
        "never_seen": False,
    }


def test_many_ids_answer_as_one_at_a_time_in_three_statements(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    key = project_key(_project(tmp_path, warehouse.url))
    expected = _world(warehouse, key)
    one_by_one = {c: erased_customer(warehouse, key, c) for c in expected}
    assert one_by_one == expected
    with _statements(warehouse) as seen:
        erased = erased_customers(warehouse, key, [*expected, *expected])  # (repeats are fine)
    assert erased == {c for c, gone in expected.items() if gone}
    assert len(seen) == 3
    many = [f"stranger-{i}" for i in range(300)]
    with _statements(warehouse) as seen:
        assert erased_customers(warehouse, key, many) == set()
    assert len(seen) == 3
    with _statements(warehouse) as seen:
        assert erased_customers(warehouse, key, []) == set()
    assert seen == []


def test_a_bounce_delivery_asks_once_whatever_its_size(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """An ESP delivery naming customer ids (late bounces of old sends): as many statements for
    forty events as for four, and an erased customer's id is still not written back."""
    project = _project(tmp_path, warehouse.url)
    key = project_key(project)
    _world(warehouse, key)

    def delivery(n: int, prefix: str) -> list[EspEvent]:
        names = ["present", "done_gone", "tomb"] + [f"never_seen_{i}" for i in range(n - 3)]
        return [
            EspEvent("bounced", f"{prefix}{i}@x.org", customer_id=c) for i, c in enumerate(names)
        ]

    with _statements(warehouse) as four:  # one of each: erased or not, held or not
        apply_events(warehouse, project, "sendgrid", 4, delivery(4, "a"), at=T)
    with _statements(warehouse) as forty:
        done = apply_events(warehouse, project, "sendgrid", 40, delivery(40, "b"), at=T)
    assert done.suppressing == 40
    assert len(forty) == len(four)
    suppressed = {
        str(r[0])
        for r in warehouse.fetch(
            "SELECT customer_id FROM suppressions WHERE source = 'esp:sendgrid'"
        )
        if r[0] is not None
    }
    assert "done_gone" not in suppressed and "tomb" not in suppressed
    assert {"present", "never_seen_0", "never_seen_36"} <= suppressed
