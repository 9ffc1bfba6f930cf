"""Normalizer processes (``serve --ingest-processes``): real helper processes give the very
``Intake`` the in-process path gives, and every way they can fail leads back to in process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from personify.ingest.tracking import pool as pool_module
from personify.ingest.tracking.intake import Intake, normalize_all
from personify.ingest.tracking.normalize import Inputs
from personify.ingest.tracking.plan import PlanCache
from personify.ingest.tracking.pool import MIN_EVENTS, NormalizerPool

RECEIVED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SENT = datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)


def raws() -> list[bytes]:
    """A batch with every kind of outcome: good events of each type, a plan violation,
    missing fields, bad JSON, a NUL character, an event over 32 KB."""
    good = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": f"m-{i}",
            "anonymousId": f"a-{i % 3}",
            "timestamp": "2026-03-01T11:59:00Z",
            "properties": {
                "product_id": f"p-{i}",
                "sku": "S-1",
                "name": "Mug",
                "category": "Kitchen",
                "price": 12.5,
                "currency": "EUR",
                "url": "https://shop.example/p",
            },
            "context": {"page": {"path": "/p"}},
        }
        for i in range(20)
    ]
    good += [
        {"type": "identify", "messageId": "id-1", "userId": "u-1", "traits": {"email": "a@b.c"}},
        {"type": "page", "messageId": "pg-1", "anonymousId": "a-1", "name": "Home"},
        {"type": "alias", "messageId": "al-1", "userId": "u-1", "previousId": "a-1"},
    ]
    bad: list[Any] = [
        {
            "type": "track",
            "event": "Product Viewed",
            "messageId": "v-1",
            "anonymousId": "a",
            "properties": {"price": "free"},
        },  # the plan wants a number
        {"type": "track", "messageId": "x-1", "anonymousId": "a"},  # no event
        {"type": "track", "event": "E", "messageId": "x-2"},  # no identity
        {
            "type": "track",
            "event": "E",
            "messageId": "x-3",
            "anonymousId": "a",
            "timestamp": "yesterday",
        },
        {"type": "track", "event": "E\u0000", "messageId": "x-4", "anonymousId": "a"},
        {
            "type": "track",
            "event": "E",
            "messageId": "x-5",
            "anonymousId": "a",
            "properties": {"blob": "x" * 33_000},
        },
    ]
    out = [json.dumps(doc).encode() for doc in good + bad]
    out.append(b'{"type": "track", "event": ')  # not JSON
    return out


@pytest.fixture
def pool() -> Iterator[NormalizerPool]:
    p = NormalizerPool(1)
    try:
        yield p
    finally:
        p.close()


def offloaded(
    p: NormalizerPool, batch: list[bytes], inputs: Inputs, plan: Any = None
) -> Intake | None:
    async def go() -> Intake | None:
        assert await p.started(60), "the helper did not start"
        return await p.normalize(batch, inputs, plan, prefix="/batch")

    return asyncio.run(go())


@pytest.mark.parametrize("warn_only", [False, True], ids=["enforce", "warn"])
def test_a_helper_gives_the_in_process_intake(
    pool: NormalizerPool, project_dir: Path, warn_only: bool
) -> None:
    cache = PlanCache(project_dir / "tracking-plan")
    inputs = Inputs(
        source="web",
        received_at=RECEIVED,
        sent_at=SENT,
        context={"library": {"name": "test"}},
        ip="203.0.113.9",
        plan=cache.get(),
        warn_only=warn_only,
    )
    batch = raws()
    helped = offloaded(pool, batch, inputs, cache.key())
    assert helped is not None
    here = normalize_all(batch, inputs, prefix="/batch")
    assert helped == here
    assert len(here.rows) >= 23 and len(here.problems) >= 6  # every kind was there
    assert pool.offloaded == 1


def test_a_whole_body_gives_the_same_intake(pool: NormalizerPool, project_dir: Path) -> None:
    """The server sends the batch body (cheaper than its events one by one): the helper decodes
    it again and normalizes the very same events."""
    cache = PlanCache(project_dir / "tracking-plan")
    inputs = Inputs(source="web", received_at=RECEIVED, plan=cache.get())
    batch = raws()[:-1]  # (the last one is not JSON: it could not sit in a body)
    body = b'{"batch": [' + b", ".join(batch) + b'], "sentAt": "2026-03-01T12:00:01Z"}'

    async def go() -> Intake | None:
        assert await pool.started(60)
        return await pool.normalize(body, inputs, cache.key(), prefix="/batch", events=len(batch))

    helped = asyncio.run(go())
    assert helped is not None
    assert helped == normalize_all(batch, inputs, prefix="/batch")


def test_small_requests_stay_in_process(pool: NormalizerPool) -> None:
    inputs = Inputs(source="web", received_at=RECEIVED)
    assert offloaded(pool, raws()[: MIN_EVENTS - 1], inputs) is None
    assert pool.offloaded == 0


def test_a_changed_plan_is_normalized_in_process(pool: NormalizerPool, project_dir: Path) -> None:
    folder = project_dir / "tracking-plan"
    cache = PlanCache(folder)
    key = cache.key()
    schema = next(folder.glob("*.json"))
    time.sleep(0.01)
    schema.write_text(schema.read_text() + "\n")  # another size: the key no longer names it
    inputs = Inputs(source="web", received_at=RECEIVED, plan=cache.get())
    assert offloaded(pool, raws(), inputs, key) is None
    assert pool.in_process == 1 and pool.offloaded == 0


def test_a_killed_helper_is_replaced(pool: NormalizerPool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "RESTART_AFTER", 0.0)
    inputs = Inputs(source="web", received_at=RECEIVED)
    batch = raws()

    async def go() -> list[Intake | None]:
        assert await pool.started(60)
        first = await pool.normalize(batch, inputs, None, prefix="/batch")
        (pid,) = pool.pids
        os.kill(pid, signal.SIGKILL)
        lost = await pool.normalize(batch, inputs, None, prefix="/batch")  # fails over
        for _ in range(3):  # the dead helper is noticed …
            await asyncio.sleep(0.2)
            await pool.normalize(batch, inputs, None, prefix="/batch")
        assert await pool.started(60), "no new helper"
        assert pool.pids and pool.pids != [pid]
        again = await pool.normalize(batch, inputs, None, prefix="/batch")
        return [first, lost, again]

    first, lost, again = asyncio.run(go())
    assert first is not None and again == first
    assert lost is None


def test_closing_stops_the_helpers() -> None:
    p = NormalizerPool(2)
    asyncio.run(p.started(60))
    pids = p.pids
    assert len(pids) == 2
    p.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert p.pids == []


@pytest.mark.parametrize(
    ("cores", "helpers"), [(1, 0), (2, 1), (3, 2), (16, pool_module.MAX_PROCESSES)]
)
def test_by_default_one_helper_per_core_beyond_the_first(
    cores: int, helpers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)), raising=False)
    assert pool_module.default_processes() == helpers


def test_a_helper_whose_server_hangs_up_exits_quietly() -> None:
    """At shutdown the server closes a helper's socket with the helper's READY still unread:
    the helper's read then fails with ECONNRESET, which is its cue to exit, not a traceback."""
    import socket
    import subprocess
    import sys

    ours, theirs = socket.socketpair()
    helper = subprocess.Popen(
        [sys.executable, "-m", "personify.ingest.tracking.pool", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    theirs.close()
    ours.settimeout(60)
    assert ours.recv(1, socket.MSG_PEEK)  # its READY is here, left unread
    ours.close()
    _, err = helper.communicate(timeout=60)
    assert helper.returncode == 0
    assert "Traceback" not in err and "ConnectionResetError" not in err
