"""Segments that rank (``ORDER BY … LIMIT``, window functions) on the real-time path, on every
backend: whether one customer is in "the top 2 spenders" depends on everyone else, so a change
of one customer's spend moves another one in or out. Such a segment is refreshed whole by each
real-time pass (never left with three members of a top 2 until the next run); the customers it
moved are reacted for as well (their journeys, their other segments); ``personify segments`` and
``personify status`` say which segments are refreshed this way, and why."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.conformance.audience_data import load_customers
from tests.conformance.test_audience_stage_errors import _project

from personify.audiences.segments import ranking
from personify.audiences.stage import find_segment, project_segments, refresh
from personify.realtime.reactions import react
from personify.session import Session, open_session
from personify.status import status_report
from personify.warehouse import Warehouse

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
TOP = "-- name: top_spenders\nSELECT customer_id FROM customers ORDER BY total_spent DESC LIMIT 2\n"
FIRST = (
    "-- name: first_in_city\n"
    "SELECT customer_id FROM (SELECT customer_id, row_number() OVER "
    "(PARTITION BY city ORDER BY total_spent DESC) AS n FROM customers) AS r WHERE n = 1\n"
)
"""The biggest spender of each city (here: everyone shares one city)."""


def _members(wh: Warehouse, segment: str) -> list[str]:
    rows = wh.fetch(
        "SELECT customer_id FROM segment_memberships WHERE segment = ? AND exited_at IS NULL "
        "ORDER BY customer_id",
        [segment],
    )
    return [str(r[0]) for r in rows]


def _three_spenders(wh: Warehouse) -> None:
    """ann (300), bob (200) and cy (100), all of Lyon."""
    load_customers(
        wh,
        [
            {"customer_id": c, "total_spent": spent, "order_count": 1, "city": "Lyon"}
            for c, spent in (("ann", 300.0), ("bob", 200.0), ("cy", 100.0))
        ],
    )


def _spend(session: Session, customer: str, amount: float) -> None:
    session.warehouse.execute(
        "UPDATE customers SET total_spent = ? WHERE customer_id = ?", [amount, customer]
    )


@pytest.fixture
def shop(tmp_path: Path, warehouse_url: str) -> Path:
    root = _project(tmp_path, warehouse_url)
    (root / "segments" / "top_spenders.sql").write_text(TOP, encoding="utf-8")
    (root / "segments" / "first_in_city.sql").write_text(FIRST, encoding="utf-8")
    return root


def test_a_ranking_segment_is_refreshed_whole_by_the_real_time_path(shop: Path) -> None:
    with open_session(shop) as session:
        wh = session.warehouse
        _three_spenders(wh)
        _, failed = refresh(session, project_segments(session.project), force=True)
        assert failed == []
        assert _members(wh, "top_spenders") == ["ann", "bob"]
        assert _members(wh, "first_in_city") == ["ann"]

        _spend(session, "cy", 500.0)  # cy overtakes everyone: bob drops out of the top 2
        done = react(session, ["cy"], now=NOW + timedelta(minutes=1))
        assert _members(wh, "top_spenders") == ["ann", "cy"]
        assert _members(wh, "first_in_city") == ["cy"]
        assert done.segments_failed == []
        assert done.entered == 2 and done.exited == 2  # cy into both; bob, ann out of one each
        changes = wh.fetch(
            "SELECT name, customer_id, change FROM audience_changes WHERE changed_at = ? "
            "ORDER BY name, customer_id",
            [NOW + timedelta(minutes=1)],
        )
        assert [tuple(r) for r in changes] == [
            ("first_in_city", "ann", "exited"),
            ("first_in_city", "cy", "entered"),
            ("top_spenders", "bob", "exited"),
            ("top_spenders", "cy", "entered"),
        ]
        # the same pass again changes nothing
        again = react(session, ["cy"], now=NOW + timedelta(minutes=2))
        assert again.entered == 0 and again.exited == 0
        assert _members(wh, "top_spenders") == ["ann", "cy"]

        # and the batch path agrees
        refresh(session, project_segments(session.project), force=True)
        assert _members(wh, "top_spenders") == ["ann", "cy"]
        assert _members(wh, "first_in_city") == ["cy"]


def test_which_segments_rank_is_shown_with_the_reason(shop: Path) -> None:
    with open_session(shop) as session:
        assert ranking(find_segment(session.project, "top_spenders").query) == "LIMIT"
        assert ranking(find_segment(session.project, "first_in_city").query) == (
            "a window function (ROW_NUMBER)"
        )
        assert ranking(find_segment(session.project, "buyers").query) is None
        shown = {s["segment"]: s for s in status_report(session)["segments_whole_in_real_time"]}
        assert sorted(shown) == ["first_in_city", "top_spenders"]
        assert shown["top_spenders"]["ranks"] == "LIMIT"
        assert shown["top_spenders"]["file"] == "segments/top_spenders.sql"


@pytest.mark.postgres
def test_two_processes_refreshing_a_ranking_segment_at_once_agree(
    tmp_path: Path, postgres_url: str
) -> None:
    """Real-time workers on one PostgreSQL warehouse (``serve --role worker`` × M) each refresh a
    ranking segment whole at every pass, so two such refreshes meet. One that starts while
    another's is not committed yet waits for it and then finds nothing left to change: the
    winner's entries are not made a second time (two open memberships of one customer, an
    ``entered`` told twice), nor its exits (an ``exited`` change for a membership already
    closed)."""
    root = _project(tmp_path, postgres_url)
    (root / "segments" / "top_spenders.sql").write_text(TOP, encoding="utf-8")
    with open_session(root) as first, open_session(root) as second:
        _three_spenders(first.warehouse)
        refresh(first, project_segments(first.project), force=True)
        _spend(first, "cy", 500.0)
        errors: list[BaseException] = []

        def other_worker() -> None:
            try:
                react(second, ["cy"], now=NOW + timedelta(minutes=2))
            except BaseException as e:  # re-raised below
                errors.append(e)
            finally:
                second.warehouse.release_thread()

        with first.warehouse.transaction():  # a pass under way, not committed yet
            react(first, ["cy"], now=NOW + timedelta(minutes=1))
            racing = threading.Thread(target=other_worker)
            racing.start()
            racing.join(timeout=2.0)  # it waits for this pass, or went ahead
        racing.join(timeout=30.0)
        assert not racing.is_alive() and errors == []
        wh = first.warehouse
        assert _members(wh, "top_spenders") == ["ann", "cy"]  # once each
        changes = wh.fetch(
            "SELECT customer_id, change, count(*) FROM audience_changes "
            "WHERE name = 'top_spenders' AND changed_at IN (?, ?) GROUP BY customer_id, change "
            "ORDER BY customer_id",
            [NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)],
        )
        assert [tuple(r) for r in changes] == [("bob", "exited", 1), ("cy", "entered", 1)]


@pytest.mark.postgres
def test_refreshes_naming_segments_in_any_order_do_not_deadlock(
    tmp_path: Path, postgres_url: str
) -> None:
    """Each whole refresh holds its segments' locks to its commit, so refreshes of several
    segments take them in one order — the segments' names — whatever order they were asked in:
    ``personify segments refresh top_spenders first_in_city`` beside a run (or a real-time pass)
    refreshing both in the project's order waits for it, instead of each holding the lock the
    other waits for (PostgreSQL aborts one: deadlock detected)."""
    from personify.audiences.memberships import refresh_segment

    root = _project(tmp_path, postgres_url)
    (root / "segments" / "top_spenders.sql").write_text(TOP, encoding="utf-8")
    (root / "segments" / "first_in_city.sql").write_text(FIRST, encoding="utf-8")
    with open_session(root) as first, open_session(root) as second:
        _three_spenders(first.warehouse)
        city, top = (find_segment(first.project, n) for n in ("first_in_city", "top_spenders"))
        errors: list[BaseException] = []

        def asked_in_reverse() -> None:
            try:
                _, failed = refresh(second, [top, city], force=True)
                errors.extend(f.error for f in failed)
            except BaseException as e:  # re-raised below
                errors.append(e)
            finally:
                second.warehouse.release_thread()

        wh, at = first.warehouse, NOW
        with wh.transaction():  # a run's refresh of both, in the project's order, under way
            refresh_segment(wh, city, now=at, timeout_s=30, max_members=100)
            racing = threading.Thread(target=asked_in_reverse)
            racing.start()
            racing.join(timeout=1.5)  # (it took top_spenders' lock first, or waits for ours)
            refresh_segment(wh, top, now=at, timeout_s=30, max_members=100)
        racing.join(timeout=30.0)
        assert not racing.is_alive() and errors == []
        assert _members(wh, "top_spenders") == ["ann", "bob"]
        assert _members(wh, "first_in_city") == ["ann"]


@pytest.mark.postgres
def test_a_real_time_pass_does_not_wait_for_a_whole_refresh_held_elsewhere(
    tmp_path: Path, postgres_url: str
) -> None:
    """A ``personify run`` holds a segment's lock to the end of its audiences step (minutes at
    1M customers): a real-time pass meanwhile leaves that ranking segment to it — no wait, no
    failure recorded — and still reacts for its customers; its next pass refreshes it."""
    root = _project(tmp_path, postgres_url)
    (root / "segments" / "top_spenders.sql").write_text(TOP, encoding="utf-8")
    with open_session(root) as run, open_session(root) as worker:
        _three_spenders(run.warehouse)
        refresh(run, project_segments(run.project), force=True)
        _spend(run, "cy", 500.0)
        done: list[object] = []
        with run.warehouse.transaction():  # the run's refresh of top_spenders, not committed
            run.warehouse.scalar(
                "SELECT pg_advisory_xact_lock(?)", [_segment_lock_key(run, "top_spenders")]
            )
            passing = threading.Thread(
                target=lambda: (
                    done.append(react(worker, ["cy"], now=NOW + timedelta(minutes=1))),
                    worker.warehouse.release_thread(),
                )
            )
            passing.start()
            passing.join(timeout=20.0)
            assert not passing.is_alive(), "the real-time pass waited for the run's refresh"
        (reaction,) = done
        assert reaction.segments_failed == []  # type: ignore[attr-defined]
        assert _members(run.warehouse, "top_spenders") == ["ann", "bob"]  # (left to the run)
        assert run.warehouse.scalar("SELECT count(*) FROM segment_errors") == 0
        react(worker, ["cy"], now=NOW + timedelta(minutes=2))  # the next pass refreshes it
        assert _members(run.warehouse, "top_spenders") == ["ann", "cy"]


def _segment_lock_key(session: Session, segment: str) -> int:
    import hashlib

    schema = session.warehouse.scalar("SELECT current_schema()")
    digest = hashlib.sha256(f"personify:segment:{schema}:{segment}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
