"""The group writer: one transaction for many requests, and how a busy writer gathers them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from personify.ingest.tracking import writer as w
from personify.ingest.tracking.intake import take_in
from personify.ingest.tracking.limits import RecentIds
from personify.ingest.tracking.normalize import Inputs, Row
from personify.ingest.tracking.writer import GroupWriter, Job
from personify.warehouse import Warehouse, connect


@pytest.fixture
def wh(tmp_path: Path) -> Iterator[Warehouse]:
    with connect(f"duckdb:///{tmp_path / 'w.duckdb'}") as warehouse:
        yield warehouse


def rows(prefix: str, n: int) -> list[Row]:
    raws = [
        msgspec.json.encode(
            {"type": "track", "event": "Viewed", "messageId": f"{prefix}{i}", "anonymousId": "a"}
        )
        for i in range(n)
    ]
    intake = take_in(raws, Inputs(source="web", received_at=datetime.now(UTC)), RecentIds())
    assert len(intake.rows) == n
    return intake.rows


def job(prefix: str, n: int) -> Job:
    return Job(rows(prefix, n), (), (), lambda _: None)


def test_concurrent_requests_share_commits_and_each_is_stored_once(wh: Warehouse) -> None:
    commits: list[int] = []
    writer = GroupWriter(wh, on_commit=lambda n, _: commits.append(n))
    try:
        statuses = [writer.write_sync(rows(f"r{i}-", 3)) for i in range(3)]  # one at a time
        assert commits == [3, 3, 3], "a lone client's requests are committed one by one"
        assert statuses == [[0, 0, 0]] * 3
    finally:
        writer.close()
    assert wh.scalar("SELECT count(*) FROM events") == 9


def test_a_busy_writer_gathers_as_many_requests_as_its_last_group(wh: Warehouse) -> None:
    writer = GroupWriter(wh)
    writer.close()  # its thread is gone: the test drives the queue
    for i in range(5):
        writer.submit(job(f"q{i}-", 10))
    jobs = [job("first-", 10)]
    started = time.monotonic()
    assert writer._gather(jobs, burst=4) is False
    assert [len(j.rows) for j in jobs] == [10, 10, 10, 10]  # three joined; the burst is whole
    assert writer._queue.qsize() == 2
    assert time.monotonic() - started < w.GATHER_MAX  # no wait once the burst is there
    jobs = [job("second-", 10)]
    assert writer._gather(jobs, burst=5) is False  # two more came, then the time was up
    assert len(jobs) == 3 and writer._queue.qsize() == 0


def test_gathering_stops_at_its_size_and_at_a_stop(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(w, "GATHER_ROWS", 25)
    writer = GroupWriter(wh)
    writer.close()
    for i in range(4):
        writer.submit(job(f"s{i}-", 10))
    jobs = [job("first-", 10)]
    assert writer._gather(jobs, burst=10) is False
    assert sum(len(j.rows) for j in jobs) == 30  # 25 reached: the rest stays queued
    assert writer._queue.qsize() == 2
    writer._queue.put(None)  # close() meanwhile
    more = [writer._queue.get_nowait()]
    assert writer._gather(more, burst=10) is True
