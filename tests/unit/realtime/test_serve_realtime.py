"""What continuous mode adds to a server: the applier, its metrics, and ``recompute:`` running
the batch recompute on a timer with its drift on ``/metrics``."""

from __future__ import annotations

import contextlib
import time
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
