"""The tracking client over a background server: Arrow batches in, every event accounted for —
and the demo world's web sessions sent through the API."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from personify.config import TrackingSource, load_project
from personify.ingest.tracking.sender import bodies, events_json, send_batches
from personify.server.background import background_server
from personify.session import Session


def _key(session: Session) -> str:
    source = session.project.config.sources[0]
    assert isinstance(source, TrackingSource)
    return source.write_key.reveal()


def test_arrow_batches_go_through_the_api(project_dir: Path) -> None:
    n = 1200
    table = pa.table(
        {
            "messageId": [f"s-{i % 1000}" for i in range(n)],  # 200 resent
            "type": ["track"] * n,
            "event": ["Signed Up"] * (n - 1) + [None],  # the last one lacks its name
            "anonymousId": [f"a-{i % 1000}" for i in range(n)],
            "timestamp": [datetime(2026, 1, 1, tzinfo=UTC)] * n,
            "properties": ['{"plan": "pro"}'] * n,
            "context": [{"locale": "fr-FR", "campaign": None}] * n,
        }
    )
    first = next(events_json(table.slice(0, 1)))
    assert b'"properties":{"plan": "pro"}' in first and b"campaign" not in first
    assert sum(k for _, k in bodies(events_json(table), budget=20_000)) == n
    with Session(load_project(project_dir)) as session:
        with background_server(session) as url:
            report = send_batches(url, _key(session), table.to_batches(max_chunksize=300))
        stored = session.warehouse.scalar("SELECT count(*) FROM events")
        stamps = session.warehouse.fetch("SELECT DISTINCT timestamp FROM events")
    assert stamps == [(datetime(2026, 1, 1, tzinfo=UTC),)]  # recorded events keep their time
    assert report.received == n
    assert (report.accepted, report.duplicates, report.quarantined) == (n - 1, 199, 1)
    assert report.reasons == {"missing_required": 1}
    assert stored == report.accepted - report.duplicates == 1000


def test_the_demo_worlds_web_sessions_through_the_api(project_dir: Path) -> None:
    from personify.demo.world import build_world

    world = build_world(60, seed=3, now=datetime(2026, 3, 1, tzinfo=UTC))
    with Session(load_project(project_dir)) as session:
        with background_server(session) as url:
            report = send_batches(url, _key(session), world.events.batches(2_000))
        stored = session.warehouse.scalar("SELECT count(*) FROM events")
        held = session.warehouse.scalar("SELECT count(*) FROM quarantine")
    assert report.received == world.events.num_rows > 0
    assert report.accepted + report.quarantined + report.rejected == report.received
    assert stored == report.accepted - report.duplicates
    assert held <= report.quarantined


def test_the_background_server_keeps_the_callers_pinned_clock(project_dir: Path) -> None:
    """``personify demo`` pins "now" and posts the world's web sessions through a background
    server: what that server's thread stores — events and quarantined ones alike — is stamped
    at the pinned instant (before, the thread saw the real clock: the demo's web quarantine
    rows were of today whatever ``--now`` said)."""
    from personify import clock

    pinned = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    table = pa.table(
        {
            "messageId": ["p-1", "p-2"],
            "type": ["track"] * 2,
            "event": ["Signed Up", None],  # the second one lacks its name: quarantined
            "anonymousId": ["a-1", "a-2"],
            "timestamp": [datetime(2026, 3, 1, tzinfo=UTC)] * 2,
        }
    )
    with Session(load_project(project_dir)) as session:
        with clock.frozen(pinned), background_server(session) as url:
            report = send_batches(url, _key(session), table.to_batches())
        stamps = session.warehouse.fetch("SELECT received_at FROM events")
        held = session.warehouse.fetch("SELECT received_at FROM quarantine")
    assert (report.accepted, report.quarantined) == (1, 1)
    assert stamps == [(pinned,)]
    assert held == [(pinned,)]
