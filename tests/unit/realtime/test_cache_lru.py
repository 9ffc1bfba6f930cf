"""The profile cache: LRU with TTL, versioned invalidation (a read racing a write never leaves a
stale value), and the Redis-coherent cache shared by two instances as two processes would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import service_missing

from personify.errors import ConfigError, ServiceUnavailable
from personify.realtime.cache import (
    CacheSettings,
    LocalCache,
    ProfileCache,
    RedisCache,
    open_cache,
    parse_cache_url,
)

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def redis_settings() -> Iterator[CacheSettings]:
    """Settings with a key prefix of the test's own; its keys are deleted afterwards."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS, socket_timeout=2)
        client.ping()
    except Exception as e:  # no server, no driver
        service_missing("Redis", type(e).__name__)
    prefix = f"personify-test-{uuid.uuid4().hex[:10]}"
    yield CacheSettings(url=REDIS, ttl=60, size=100, prefix=prefix)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


class Store:
    """A pretend warehouse: values by id, and how often each was read."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.reads = 0

    def load(self, ids: list[str]) -> dict[str, Any]:
        self.reads += 1
        return {i: {"v": self.values[i]} for i in ids if i in self.values}


def test_parse_cache_url() -> None:
    assert parse_cache_url("memory") == CacheSettings(url=None)
    s = parse_cache_url("redis://h:1/2?ttl=5&size=7&prefix=shop")
    assert s == CacheSettings(url="redis://h:1/2", ttl=5.0, size=7, prefix="shop")
    with pytest.raises(ConfigError, match="scheme"):
        parse_cache_url("memcached://h")
    with pytest.raises(ConfigError, match="numbers"):
        parse_cache_url("redis://h?ttl=soon")


def test_hits_misses_invalidation_lru_and_ttl() -> None:
    store, cache = Store(), LocalCache(ttl=0.2, size=2)
    store.values = {"a": 1, "b": 2, "c": 3}
    assert cache.get_many(["a", "b", "zz"], store.load) == {"a": {"v": 1}, "b": {"v": 2}}
    assert cache.get_many(["a", "b"], store.load) == {"a": {"v": 1}, "b": {"v": 2}}
    assert store.reads == 1 and cache.hits == 2 and cache.misses == 3
    store.values["a"] = 10
    cache.invalidate(["a"])
    assert cache.get("a", lambda i: store.load([i])[i]) == {"v": 10}
    cache.get_many(["c"], store.load)  # evicts the least recently used: b
    reads = store.reads
    cache.get_many(["b"], store.load)
    assert store.reads == reads + 1
    time.sleep(0.25)
    cache.get_many(["b"], store.load)
    assert store.reads == reads + 2  # expired
    cache.clear()
    cache.get_many(["b"], store.load)
    assert store.reads == reads + 3
    assert 0 < cache.hit_ratio < 1


def racing(cache: ProfileCache) -> None:
    """A reader loads the old value while a writer commits and invalidates: what the reader
    stores afterwards must not be served."""
    store = Store()
    store.values = {"a": 1}

    def slow_load(ids: list[str]) -> dict[str, Any]:
        out = store.load(ids)  # reads the old value …
        store.values["a"] = 2  # … the write commits …
        cache.invalidate(["a"])  # … and invalidates, before the reader stores what it read
        return out

    assert cache.get_many(["a"], slow_load) == {"a": {"v": 1}}
    assert cache.get_many(["a"], store.load) == {"a": {"v": 2}}


def test_a_read_racing_a_write_leaves_nothing_stale() -> None:
    racing(LocalCache())


def test_redis_read_racing_a_write(redis_settings: CacheSettings) -> None:
    cache = RedisCache(redis_settings)
    try:
        racing(cache)
    finally:
        cache.close()


def test_redis_two_processes_never_read_stale(redis_settings: CacheSettings) -> None:
    """Two caches on one Redis (two processes): an update through one is never missed by the
    other, even before the pub/sub message arrives; clear() reaches both."""
    store = Store()
    store.values = {"a": 1}
    one, two = open_cache(redis_settings), open_cache(redis_settings)
    try:
        assert two.get_many(["a"], store.load) == {"a": {"v": 1}}
        assert two.get_many(["a"], store.load) == {"a": {"v": 1}} and two.hits == 1
        for n in range(2, 40):
            store.values["a"] = n
            one.invalidate(["a"])
            assert two.get_many(["a"], store.load) == {"a": {"v": n}}
        store.values["a"] = 99
        one.clear()
        assert two.get_many(["a"], store.load) == {"a": {"v": 99}}
        deadline = time.monotonic() + 2
        store.values["a"] = 100
        one.invalidate(["a"])
        while ("row", "a") in two._entries and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ("row", "a") not in two._entries  # pub/sub dropped the local copy too
    finally:
        one.close()
        two.close()


def test_unreachable_redis_fails_with_a_hint() -> None:
    with pytest.raises(ServiceUnavailable, match="cannot reach the profile cache"):
        open_cache(CacheSettings(url="redis://127.0.0.1:1/0"))
