"""Open/click hits survive the server stopping: a real ``personify serve`` gets a burst of pixel
and redirect hits, then SIGTERM (everything queued is recorded before it exits) or SIGKILL (every
answered hit is in the warehouse or in the journal at that instant, and the next start records
the rest, each once)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from personify.session import open_session
from tests.e2e.cli import Server, start_server

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from _load import Load, get_requests, tracked_messages_project  # noqa: E402  (the benchmarks' load generator)

MESSAGES = 200
HITS = 4000


def _project(root: Path) -> tuple[Path, list[tuple[str, str]]]:
    project = root / "shop"
    return project, tracked_messages_project(project, MESSAGES, HITS)


def _burst(server: Server, paths: list[tuple[str, str]]) -> Load:
    load = Load(server.port, get_requests(server.port, paths))
    asyncio.run(load.run(16))
    assert load.failures == 0 and len(load.latencies) == len(paths)
    return load


def _stored(project: Path) -> int:
    """Tracking events in the warehouse (the server is stopped: read the file directly)."""
    with open_session(project) as session:
        return int(
            session.warehouse.scalar(
                "SELECT count(*) FROM events WHERE source = ?", ["email_tracking"]
            )
        )


def _journalled(project: Path) -> int:
    """Lines the journal still holds; a running server removes a segment once it is recorded,
    so one listed a moment ago may be gone when read (nothing left in it)."""
    held = 0
    for p in (project / ".personify" / "engagement").glob("hits-*.jsonl"):
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            continue
        held += len([line for line in data.rstrip(b"\0").splitlines() if line])
    return held


def _restart_until_recorded(project: Path, tmp_path: Path) -> None:
    """Start the server again and let it record what its journal holds (for up to 120 s),
    then stop it: it must exit cleanly."""
    again = start_server(project, tmp_path / "serve2.log")
    deadline = time.monotonic() + 120
    try:
        while _journalled(project) and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        assert again.stop(signal.SIGTERM, timeout=120) == 0, again.output()


def test_sigterm_records_every_queued_hit_before_exiting(tmp_path: Path) -> None:
    project, paths = _project(tmp_path)
    server = start_server(project, tmp_path / "serve.log")
    _burst(server, paths)
    assert server.stop(signal.SIGTERM, timeout=120) == 0, server.output()
    assert _stored(project) == HITS  # before: the hits still queued at shutdown were lost
    assert _journalled(project) == 0
    assert list((project / ".personify" / "engagement").glob("hits-*.jsonl")) == []


def test_sigkill_loses_nothing_and_the_next_start_records_the_rest_once(tmp_path: Path) -> None:
    project, paths = _project(tmp_path)
    server = start_server(project, tmp_path / "serve.log")
    _burst(server, paths)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=30)
    stored, journalled = _stored(project), _journalled(project)
    # every answered hit is in the warehouse or the journal (often both: recorded, not yet cut)
    assert stored + journalled >= HITS, (stored, journalled)
    _restart_until_recorded(project, tmp_path)
    assert _stored(project) == HITS  # the rest recorded, nothing twice
    assert _journalled(project) == 0


def test_sigkill_in_the_middle_of_a_burst_loses_no_answered_hit(tmp_path: Path) -> None:
    """Killed while clients are still being answered (hits in the journal's memory map, a batch
    waiting to be recorded): every hit answered before the kill is recorded after the restart."""
    project, paths = _project(tmp_path)
    server = start_server(project, tmp_path / "serve.log")
    load = Load(server.port, get_requests(server.port, paths))

    async def burst_then_kill() -> None:
        clients = asyncio.gather(*(load.client() for _ in range(16)), return_exceptions=True)
        while len(load.latencies) < HITS // 2:
            await asyncio.sleep(0.001)
        server.proc.send_signal(signal.SIGKILL)
        await clients  # the connections fail from here on

    asyncio.run(burst_then_kill())
    server.proc.wait(timeout=30)
    answered = len(load.latencies)
    assert HITS // 2 <= answered < HITS
    _restart_until_recorded(project, tmp_path)
    # at most the 16 requests in flight were journalled without their answer reaching a client
    assert answered <= _stored(project) <= answered + 16
    assert _journalled(project) == 0


def test_a_journal_left_by_a_dead_process_is_replayed_at_start(tmp_path: Path) -> None:
    project, paths = _project(tmp_path)
    dead = subprocess.Popen(["true"])  # noqa: S607
    dead.wait()
    folder = project / ".personify" / "engagement"
    folder.mkdir(parents=True)
    at = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1e6)
    lines = [
        msgspec.json.encode(
            ["open", f"m-{i}", f"c-{i}", None, None, at, "Firefox", "203.0.113.9", "GET"]
        )
        for i in range(10)
    ]
    (folder / f"hits-{dead.pid}-00000001.jsonl").write_bytes(
        b"\n".join([*lines, lines[0], b'["open", "m-1'])  # a repeat, and a line cut by a crash
    )
    server = start_server(project, tmp_path / "serve.log")
    try:
        deadline = time.monotonic() + 60
        while _journalled(project) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _journalled(project) == 0
        metrics = server.get("/metrics").text
        assert 'personify_engagement_hits_total{kind="open",outcome="replayed"} 11' in metrics
    finally:
        assert server.stop() == 0
    assert _stored(project) == 10
