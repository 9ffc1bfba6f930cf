"""Per-transport rate limits: a token bucket driven by a fake clock (never wall time)."""

from __future__ import annotations

import threading

import pytest

from personify.config import parse_config
from personify.delivery.ratelimit import TokenBucket, bucket_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_sustained_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10.0, 3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # queued behind the previous one
    clock.now += 0.2  # both waits over: the bucket is empty, not negative
    assert bucket.reserve() == pytest.approx(0.1)
    clock.now += 10  # refills up to the burst, no more
    assert [bucket.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_messages_per_second_over_a_long_run() -> None:
    clock = Clock()
    bucket = TokenBucket(50.0, clock=clock)
    sent_at = []
    for _ in range(500):
        clock.now += bucket.reserve()  # a sender that sleeps exactly as told
        sent_at.append(clock.now)
    elapsed = sent_at[-1] - sent_at[0]
    assert 499 / elapsed == pytest.approx(50.0, rel=0.11)  # the first second is the burst
    assert all(b - a <= 0.02 + 1e-9 for a, b in zip(sent_at, sent_at[1:], strict=False))


def test_acquire_sleeps_with_the_given_function() -> None:
    clock = Clock()
    slept: list[float] = []
    bucket = TokenBucket(4.0, 1, clock=clock)
    assert bucket.acquire(slept.append) == 0.0
    assert bucket.acquire(slept.append) == 0.25
    assert slept == [0.25]


def test_thread_safe_reservations() -> None:
    clock = Clock()
    bucket = TokenBucket(100.0, 1, clock=clock)
    waits: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            w = bucket.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 200 reservations, one free, each next one 10 ms later: every slot taken exactly once
    assert sorted(round(w, 6) for w in waits) == [round(i * 0.01, 6) for i in range(200)]


def test_from_the_project_file() -> None:
    config = parse_config("delivery: {kind: smtp, host: mail.local, rate_limit: 5, rate_burst: 20}")
    bucket = bucket_for(config.delivery)
    assert bucket is not None and bucket.rate == 5.0 and bucket.burst == 20
    assert bucket_for(parse_config("delivery: {kind: outbox}").delivery) is None
    with pytest.raises(ValueError):
        TokenBucket(0)
