"""The tracking-hit journal: which segments a starting server replays — those of processes that
are gone, and those an earlier process with this very pid left (a container restarted after a
crash gets the same pid), never the segments of a recorder running in this process."""

from __future__ import annotations

import errno
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from personify.config import load_project
from personify.engagement import Hit, TrackingClaim
from personify.server.app import create_app
from personify.server.engagement import _LIVE, SEGMENT_BYTES, Recorder
from personify.session import Session


def test_leftovers_are_the_dead_and_this_pids_earlier_life(project_dir: Path) -> None:
    session = Session(load_project(project_dir))
    try:
        state = create_app(session).state.personify
        folder = project_dir / ".personify" / "engagement"
        folder.mkdir(parents=True)
        dead = subprocess.Popen(["true"])  # noqa: S607
        dead.wait()
        me = os.getpid()
        parent = os.getppid()  # alive
        names = [
            f"hits-{dead.pid}-00000001.jsonl",  # a dead process (the format without a tag)
            f"hits-{dead.pid}-abcd0123-00000002.jsonl",
            f"hits-{me}-feedbeef-00000001.jsonl",  # this pid's earlier life
            f"hits-{parent}-12345678-00000001.jsonl",  # a live process's: not ours to replay
            "notes.txt",
        ]
        for name in names:
            (folder / name).write_bytes(b"")
        running = Recorder(state, folder)  # its own segment exists from now on
        second = Recorder(state, folder)  # another recorder in this process: also running
        found = {p.name for p in second.leftovers()}
        assert found == set(names[:3])
        assert running.path.name not in found and second.path.name not in found
        assert running.path.name.startswith(f"hits-{me}-{running.tag}-")
    finally:
        session.close()


def test_a_segment_grows_and_a_crash_left_one_replays_every_hit(project_dir: Path) -> None:
    """Hits are journalled through a shared memory map: past the first size the segment grows;
    what a process that died left (the unused end still NUL bytes) replays hit for hit."""
    session = Session(load_project(project_dir))
    try:
        state = create_app(session).state.personify
        folder = project_dir / ".personify" / "engagement"
        crashed = Recorder(state, folder)  # its thread never runs: nothing is recorded
        at = datetime.now(UTC)
        hits = [
            Hit(TrackingClaim("open", f"m-{i}", f"c-{i}"), at, "x" * 300 + str(i), "203.0.113.9")
            for i in range(2 * SEGMENT_BYTES // 300)
        ]
        for hit in hits:
            crashed.add(hit)
        assert len(crashed.map) > SEGMENT_BYTES  # grown
        data = crashed.path.read_bytes()  # what any other process reads: the page cache
        assert data.endswith(b"\0") and data.count(b"\n") == len(hits)
        _LIVE.discard(crashed.tag)  # as if its process were gone (an earlier life of this pid)
        second = Recorder(state, folder)
        assert second.leftovers() == [crashed.path]
        assert second.replay([crashed.path]) == len(hits)
        assert not crashed.path.exists()
        crashed.map.close()
    finally:
        session.close()


def test_a_full_disk_keeps_the_segment_and_refuses_what_does_not_fit(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are reserved before they are written (a full disk is an error, never SIGBUS): no
    new segment → the recorder keeps journalling into the current one; no room left → the hit
    is refused (not answered), never half-kept."""
    session = Session(load_project(project_dir))
    try:
        state = create_app(session).state.personify
        recorder = Recorder(state, project_dir / ".personify" / "engagement")
        hit = Hit(TrackingClaim("open", "m-1", "c-1"), datetime.now(UTC), "Firefox", None)
        recorder.add(hit)

        def full(fd: int, offset: int, length: int) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "posix_fallocate", full)
        path, used = recorder.path, recorder.end
        recorder._rotate()
        assert recorder.path == path and recorder.end == used  # kept, nothing lost
        recorder.add(hit)  # still fits
        big = Hit(hit.claim, hit.at, "x" * SEGMENT_BYTES, None)
        with pytest.raises(OSError, match="space"):
            recorder.add(big)
        assert recorder.end == 2 * used
        queued = [recorder.hits.get() for _ in range(3)]
        assert [type(q).__name__ for q in queued] == ["Hit", "_Mark", "Hit"]
        assert recorder.hits.empty()
        recorder.map.close()
    finally:
        session.close()
