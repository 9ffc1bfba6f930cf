"""What continuous mode adds to a server: the applier, its metrics, and ``recompute:`` running
the batch recompute on a timer with its drift on ``/metrics``."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from pathlib import Path

import pytest

from personify.config import Project, parse_config
from personify.server.roles import APPLIER, attach_continuous
from personify.server.state import ServerState
from personify.session import Session


def test_applier_metrics_and_periodic_recompute(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    proj = Project(parse_config(f"warehouse: {url}\nrecompute: 0.2s\n"), tmp_path, tmp_path / "p")
    session = Session(proj)
    try:
        state = ServerState(session=session, instance="t")
        with contextlib.ExitStack() as stack:
            applier = attach_continuous(stack, state)
            assert state.extras[APPLIER] is applier
            runs = state.registry.get("personify_realtime_recomputes_total")
            deadline = time.monotonic() + 20
            while 'outcome="same"' not in runs.render() and time.monotonic() < deadline:
                time.sleep(0.05)
            text = state.registry.render()
        assert 'personify_realtime_recomputes_total{outcome="same"}' in text
        assert 'personify_realtime_drift{kind="added"} 0' in text
        for name in (
            "personify_realtime_queue_depth 0",
            "personify_realtime_retried 0",
            "personify_realtime_given_up 0",
            "personify_profile_cache_hit_ratio 0",
            "# TYPE personify_event_to_profile_seconds histogram",
        ):
            assert name in text, name
    finally:
        session.close()


def test_a_submission_learns_whether_its_pass_applied_it(tmp_path: Path) -> None:
    """Each ``submit…`` returns a future the pass resolves: ``None`` once applied, or
    :class:`PassFailed` when the pass was given up — here the warehouse is gone — so a bus
    worker leaves that message unacked, to be delivered and applied again."""
    from personify.realtime.continuous import Applier, PassFailed

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    proj = Project(parse_config(f"warehouse: {url}\n"), tmp_path, tmp_path / "p")
    session = Session(proj)
    applier = Applier(session, react=False, tick_every=None, retry_after=())  # no retries
    try:
        applied = applier.submit_orders(["o-1"])  # no such order: a pass over nothing
        assert applied is not None and applied.result(60) is None
        assert applier.submit_orders([]) is None  # nothing submitted, nothing to wait for
        session.warehouse.close()
        failed = applier.submit_orders(["o-2"])
        assert failed is not None
        with pytest.raises(PassFailed, match="real-time pass failed"):
            failed.result(60)
        assert (applier.failures, applier.retried, applier.given_up) == (1, 0, 1)
    finally:
        applier.close()
        session.close()


def test_the_recovery_mark_stays_before_what_is_not_applied(tmp_path: Path) -> None:
    """The applier's mark (every input received before it is applied) follows the clock while
    nothing waits, and stays before a submission whose pass failed for as long as it waits for
    its retry — on close too, when the retry is dropped: the next start applies it."""
    from datetime import timedelta

    from personify import clock
    from personify.realtime.continuous import Applier
    from personify.realtime.recovery import MARGIN

    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    proj = Project(parse_config(f"warehouse: {url}\n"), tmp_path, tmp_path / "p")
    session = Session(proj)
    marks: list[datetime] = []
    applier = Applier(
        session, react=False, tick_every=None, retry_after=(60.0,), marker=marks.append, beat=0.02
    )
    near = timedelta(seconds=0.5)
    try:
        deadline = time.monotonic() + 10
        while len(marks) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert abs(marks[-1] - (clock.now() - MARGIN)) < near  # idle: now, less the margin
        session.warehouse.close()  # the next pass fails, and waits a minute for its retry
        submitted = clock.now()
        assert applier.submit_orders(["o-1"]) is not None
        while applier.retried < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert applier.retried == 1
        seen = len(marks)
        time.sleep(1.5)  # the clock moves on; the mark does not
        assert len(marks) > seen  # beats go on while it waits
        assert all(abs(m - (submitted - MARGIN)) < near for m in marks[seen:])
        # a catch-up over what came since a crash holds the mark at its start
        since = submitted - timedelta(minutes=10)
        assert applier.submit_since(since) is not None
        while applier.retried < 2 and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        seen = len(marks)
        time.sleep(0.1)
        assert len(marks) > seen and abs(marks[-1] - (since - MARGIN)) < near
    finally:
        assert applier.close()
        session.close()
    assert abs(marks[-1] - (since - MARGIN)) < near  # the last mark, on close


def test_a_real_time_segment_the_warehouse_refuses_is_counted_on_metrics(
    project_dir: Path,
) -> None:
    """A real-time refresh the warehouse refuses (the segment keeps its memberships; the pass
    goes on) is counted per segment on ``/metrics``: before, only the log and ``status`` said so."""
    from personify.config import load_project

    broken = "-- name: buyers\nSELECT customer_id FROM customers WHERE ordr_count > 1\n"
    (project_dir / "segments" / "buyers.sql").write_text(broken, encoding="utf-8")
    session = Session(load_project(project_dir))
    try:
        state = ServerState(session=session, instance="t")
        with contextlib.ExitStack() as stack:
            applier = attach_continuous(stack, state)
            assert applier is not None
            for _ in range(2):
                done = applier.submit_customers(["c-1"])
                assert done is not None and done.result(60) is None
            text = state.registry.render()
    finally:
        session.close()
    assert 'personify_realtime_segment_failures_total{segment="buyers"} 2' in text
    assert text.count("personify_realtime_segment_failures_total{") == 1  # the others did not fail
