"""``segment_errors.kind`` on every backend: what failed (``sql``, ``cap``, ``timeout``,
``real-time-timeout``) is recorded where the failure is, shown by ``status``, and decides — not
the error's words — whether a successful real-time refresh clears it: a whole refresh over the
cap or its timeout stays until the next whole refresh; the real-time path's own timeout and a
refused query go with the next real-time success. Migration 39 derives the kind of rows stored
before from their text, once."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conformance.audience_data import load_customers
from tests.conformance.test_audience_stage_errors import BUYERS, _open, _project

from personify.audiences.memberships import refresh_isolated
from personify.audiences.stage import find_segment, project_segments, refresh
from personify.realtime.reactions import react
from personify.session import Session, open_session
from personify.status import status_report
from personify.warehouse import connect
from personify.warehouse.base import Warehouse
from personify.warehouse.migrations import migrate
from personify.warehouse.schema import TABLES_BY_NAME, Column

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SLOW = (
    "-- name: buyers\nSELECT a.customer_id FROM customers a, customers b, customers c, "
    "customers d WHERE a.order_count > 1 "
    "AND a.customer_id || b.customer_id || c.customer_id || d.customer_id = 'x'\n"
)
"""Longer than any timeout here, whole or for one customer (4 × 2,000 customers)."""
TIMEOUT_S = 0.3


def _failing(session: Session) -> list[tuple[str, str]]:
    return [(f["segment"], f["kind"]) for f in status_report(session)["segments_failing"]]


def _buyers(wh_session: Session) -> None:
    rows = [
        {"customer_id": f"c{i:04d}", "order_count": 0, "engagement_score": 1.0} for i in range(2000)
    ]
    rows += [
        {"customer_id": c, "order_count": 2, "engagement_score": 90.0, "last_purchase_at": NOW}
        for c in ("ann", "cy")
    ]
    load_customers(wh_session.warehouse, rows)


def test_rewording_a_message_changes_nothing(tmp_path: Path, warehouse_url: str) -> None:
    """The kind is recorded from the error's class: a stored cap failure reworded (no "more
    than the cap" in it) still stays through a real-time success, and a refused query whose
    message happens to read "ran longer than … more than the cap" is still cleared by one."""
    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        _buyers(session)
        segment = find_segment(session.project, "buyers")
        _, failed = refresh_isolated(wh, [segment], now=NOW, timeout_s=30, max_members=1)
        assert [(f.segment, f.kind) for f in failed] == [("buyers", "cap")]
        assert _failing(session) == [("buyers", "cap")]
        wh.execute("UPDATE segment_errors SET error = 'buyers: too many customers (2 > 1)'")
        assert react(session, ["cy"], now=NOW + timedelta(minutes=1)).segments_failed == []
        assert _failing(session) == [("buyers", "cap")]  # only a whole refresh judges it

        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        with_words = "segment 'buyers' ran longer than 1 s, more than the cap (reworded)"
        _, failed = refresh(session, project_segments(session.project), force=True)
        assert [(f.segment, f.kind) for f in failed] == [("buyers", "sql")]
        wh.execute("UPDATE segment_errors SET error = ? WHERE segment = 'buyers'", [with_words])
        buyers.write_text(BUYERS, encoding="utf-8")
        assert react(session, ["cy"], now=NOW + timedelta(minutes=2)).segments_failed == []
        assert _failing(session) == []  # its query runs now: whatever the words said


def test_a_whole_refresh_timeout_stays_a_real_time_one_clears(
    tmp_path: Path, warehouse_url: str
) -> None:
    """A whole refresh that ran over its timeout: a real-time success (a cheaper query, for one
    customer) does not clear it. A real-time refresh that ran over it — judged by the real-time
    path itself — is cleared by the next real-time success."""
    root = _project(tmp_path, warehouse_url)
    config = root / "personify.yml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text + f"audiences:\n  timeout_seconds: {TIMEOUT_S}\n", encoding="utf-8")
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        assert session.project.config.audiences.timeout_seconds == TIMEOUT_S
        _buyers(session)
        buyers.write_text(SLOW, encoding="utf-8")
        segment = find_segment(session.project, "buyers")
        _, failed = refresh_isolated(
            wh, [segment], now=NOW, timeout_s=TIMEOUT_S, max_members=10_000
        )
        assert [(f.segment, f.kind) for f in failed] == [("buyers", "timeout")]
        assert _failing(session) == [("buyers", "timeout")]

        buyers.write_text(BUYERS, encoding="utf-8")  # cheaper: runs for one customer
        done = react(session, ["cy"], now=NOW + timedelta(minutes=1))
        assert done.segments_failed == [] and _open(wh, "buyers") == ["cy"]
        assert _failing(session) == [("buyers", "timeout")]  # the whole refresh not judged

        buyers.write_text(SLOW, encoding="utf-8")  # the real-time refresh runs over it too
        done = react(session, ["ann"], now=NOW + timedelta(minutes=2))
        assert done.segments_failed == ["buyers"] and _open(wh, "buyers") == ["cy"]
        # not written over: as real-time-timeout, the next real-time success would clear it
        assert _failing(session) == [("buyers", "timeout")]
        buyers.write_text(BUYERS, encoding="utf-8")
        done = react(session, ["ann"], now=NOW + timedelta(minutes=3))
        assert done.segments_failed == [] and _open(wh, "buyers") == ["ann", "cy"]
        assert _failing(session) == [("buyers", "timeout")]  # still the whole refresh's

        _, failed = refresh(session, [find_segment(session.project, "buyers")], force=True)
        assert failed == [] and _failing(session) == []  # the next whole refresh judged it
        buyers.write_text(SLOW, encoding="utf-8")  # now a real-time refresh's own timeout
        done = react(session, ["ann"], now=NOW + timedelta(minutes=4))
        assert done.segments_failed == ["buyers"]
        (failing,) = status_report(session)["segments_failing"]
        assert failing["kind"] == "real-time-timeout" and "longer than" in failing["error"]
        buyers.write_text(BUYERS, encoding="utf-8")
        done = react(session, ["ann"], now=NOW + timedelta(minutes=5))
        assert done.segments_failed == []
        assert _failing(session) == []  # the real-time path judged it, and judges it gone

        # and a whole refresh's success clears a whole refresh's timeout
        buyers.write_text(SLOW, encoding="utf-8")
        _, failed = refresh_isolated(
            wh, [segment], now=NOW + timedelta(minutes=6), timeout_s=TIMEOUT_S, max_members=10
        )
        assert _failing(session) == [("buyers", "timeout")]
        buyers.write_text(BUYERS, encoding="utf-8")
        results, failed = refresh(session, [find_segment(session.project, "buyers")], force=True)
        assert failed == [] and _failing(session) == []


def test_a_real_time_failure_leaves_a_whole_refresh_cap_as_it_is(
    tmp_path: Path, warehouse_url: str
) -> None:
    """A whole refresh over the cap, then a real-time refresh of the segment refused by the
    warehouse: the cap failure is kept as it was (its kind, words and time) — written over as a
    refused query, the next real-time success cleared it, and status no longer said the whole
    refresh is over the cap until the next whole refresh."""
    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        _buyers(session)
        segment = find_segment(session.project, "buyers")
        _, failed = refresh_isolated(wh, [segment], now=NOW, timeout_s=30, max_members=1)
        assert _failing(session) == [("buyers", "cap")]
        before = status_report(session)["segments_failing"]

        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        done = react(session, ["cy"], now=NOW + timedelta(minutes=1))
        assert done.segments_failed == ["buyers"]  # (logged and counted, not recorded over)
        assert status_report(session)["segments_failing"] == before
        buyers.write_text(BUYERS, encoding="utf-8")
        assert react(session, ["cy"], now=NOW + timedelta(minutes=2)).segments_failed == []
        assert _failing(session) == [("buyers", "cap")]  # only a whole refresh judges it


def test_migration_39_derives_the_kind_of_stored_failures(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=38)
        wh.execute("ALTER TABLE segment_errors DROP COLUMN kind")  # the layout before 39
        stored = {
            "big": "segment 'big' returned 9 customers, more than the cap (1); its memberships…",
            "slow": "the statement ran longer than 60 s and was stopped\n  hint: make it cheaper",
            "typo": "segments/typo.sql: segment 'typo' failed on the warehouse: no ordr_count",
        }
        for name, error in stored.items():
            wh.execute(
                "INSERT INTO segment_errors (segment, file, error, failed_at, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [name, f"segments/{name}.sql", error, NOW, NOW],
            )
        assert migrate(wh)[0] == 39  # (and any later migration)
        kinds = wh.fetch("SELECT segment, kind FROM segment_errors ORDER BY segment")
        assert [tuple(r) for r in kinds] == [("big", "cap"), ("slow", "timeout"), ("typo", "sql")]
        assert migrate(wh) == []  # once


def _kind_nullable(wh: Warehouse) -> bool:
    rows = wh.fetch(
        "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'segment_errors' "
        "AND column_name = 'kind'"
        + (" AND table_schema = current_schema()" if wh.capabilities.advisory_lock else "")
    )
    assert len(rows) == 1
    return str(rows[0][0]) == "YES"


def test_migration_44_makes_kind_required_on_an_upgraded_warehouse(warehouse_url: str) -> None:
    """A warehouse whose ``segment_errors`` predates ``kind`` got it nullable from migration
    39; migration 44 derives the kind of rows still without one (a process older than 39
    wrote them meanwhile) and makes it NOT NULL, as a new warehouse has it."""
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=38)
        wh.execute("ALTER TABLE segment_errors DROP COLUMN kind")  # the layout before 39
        migrate(wh, target=43)
        assert _kind_nullable(wh)
        wh.execute(  # an older process, still running, records a failure without a kind
            "INSERT INTO segment_errors (segment, file, error, failed_at, recorded_at) "
            "VALUES (?, ?, ?, ?, ?)",
            ["big", "segments/big.sql", "returned 9 customers, more than the cap (1)", NOW, NOW],
        )
        assert migrate(wh) == [44]
        assert not _kind_nullable(wh)
        assert [tuple(r) for r in wh.fetch("SELECT segment, kind FROM segment_errors")] == [
            ("big", "cap")
        ]
        with pytest.raises(Exception, match="(?i)null"):
            wh.execute(
                "INSERT INTO segment_errors (segment, file, error, failed_at, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                ["typo", "segments/typo.sql", "no ordr_count", NOW, NOW],
            )
        assert migrate(wh) == []


def test_a_new_warehouse_has_kind_required_too(warehouse: Warehouse) -> None:
    assert not _kind_nullable(warehouse)


def test_migration_44_moves_only_the_columns_the_warehouse_has(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 44 rebuilds ``segment_errors`` as the schema defines it *today*. A column a
    later migration adds to it (here ``later``) is not there yet when a warehouse from before 44
    upgrades: the rows are moved by the columns the table has, the new one left empty — not
    read from a table that lacks it, which failed the upgrade."""
    table = TABLES_BY_NAME["segment_errors"]
    grown = dataclasses.replace(table, columns=(*table.columns, Column("later", "VARCHAR")))
    monkeypatch.setitem(TABLES_BY_NAME, "segment_errors", grown)
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=43)  # (migration 1 creates the tables of the unpatched schema)
        wh.execute(
            "INSERT INTO segment_errors (segment, file, error, failed_at, recorded_at, kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            ["typo", "segments/typo.sql", "no ordr_count", NOW, NOW, "sql"],
        )
        assert migrate(wh, target=44) == [44]
        rows = wh.fetch("SELECT segment, kind, later FROM segment_errors")
        assert [tuple(r) for r in rows] == [("typo", "sql", None)]
