"""What continuous mode adds to a server: the applier, its metrics, and ``recompute:`` running
the batch recompute on a timer with its drift on ``/metrics``."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

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
            "personify_profile_cache_hit_ratio 0",
            "# TYPE personify_event_to_profile_seconds histogram",
        ):
            assert name in text, name
    finally:
        session.close()
