"""The profile cache: send-time and API lookups read customers through it.

An entry is a customer's ``customers`` row (or any value derived from it) keyed by customer id.
Every entry carries the customer's *version*: a counter bumped by :meth:`ProfileCache.invalidate`
after each write that touches the customer commits (events, webhooks, syncs, consent changes,
erasure, the batch build). A reader takes the version **before** it reads the warehouse and
stores what it read under that version; an entry whose version is no longer current is a miss.
So a read that races a write can never leave a stale value behind — a stale read after an update
is a bug, not a TTL.

Two kinds:

* :class:`LocalCache` — in-process LRU with a TTL (the default, ``cache: memory``);
* :class:`RedisCache` — ``cache: redis://host:port/db``: the versions live in Redis, shared by
  every process, and invalidations are published on a pub/sub channel so every process drops its
  local copies at once. A local hit is still checked against the shared versions (one ``MGET``
  per lookup, ~0.1 ms), so even a pub/sub message in flight cannot serve a stale value. Values
  themselves stay in each process (rows hold dates and decimals that JSON would not give back
  unchanged, and unpickling what a shared store holds is not safe).

:func:`cache_for` gives the one cache of a warehouse in this process (settings from the URL's
query: ``ttl`` seconds, ``size`` entries, ``prefix`` of Redis keys and channel).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from personify.errors import ConfigError, ServiceUnavailable

DEFAULT_TTL = 300.0
DEFAULT_SIZE = 100_000

Loader = Callable[[list[str]], dict[str, Any]]
"""Reads the warehouse for the missing ids; ids it does not return are not cached."""


@dataclass(frozen=True)
class CacheSettings:
    """``cache:`` of ``personify.yml``, parsed."""

    url: str | None
    """``None``: in-process only; else the Redis URL (without the query settings)."""
    ttl: float = DEFAULT_TTL
    size: int = DEFAULT_SIZE
    prefix: str = "personify"


def parse_cache_url(text: str | None, default_prefix: str = "personify") -> CacheSettings:
    """``memory`` (or nothing) or ``redis://host:port/db?ttl=60&size=10000&prefix=shop``."""
    if not text or text == "memory" or text.startswith("memory:"):
        parts = urlsplit(text or "memory:")
        url = None
    else:
        parts = urlsplit(text)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ConfigError(
                f"unsupported cache URL scheme {parts.scheme!r}",
                key="cache",
                hint="use cache: memory or cache: redis://host:6379/0",
            )
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    try:
        return CacheSettings(
            url=url,
            ttl=float(query.get("ttl", DEFAULT_TTL)),
            size=int(query.get("size", DEFAULT_SIZE)),
            prefix=query.get("prefix", default_prefix),
        )
    except ValueError:
        raise ConfigError(
            f"cache URL settings must be numbers: {parts.query!r}",
            key="cache",
            hint="e.g. ?ttl=60&size=10000",
        ) from None


class ProfileCache:
    """Read-through cache of customers by id, with versioned invalidation (module docstring)."""

    def __init__(self, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE) -> None:
        self.ttl = ttl
        self.size = size
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], tuple[int, float, Any]] = OrderedDict()
        self._kinds: set[str] = set()

    # -- what a backend provides -------------------------------------------------------------
    def versions(self, ids: list[str]) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _bump(self, ids: list[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the API -----------------------------------------------------------------------------
    def get_many(self, ids: Iterable[str], load: Loader, kind: str = "row") -> dict[str, Any]:
        """The values of ``ids``: cached ones, the rest from ``load`` (then cached). ``kind``
        names what the value is (a ``customers`` row, a whole profile …): one cache, one
        version per customer, a value per kind."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        versions = dict(zip(wanted, self.versions(wanted), strict=True))
        out: dict[str, Any] = {}
        now = time.monotonic()
        with self._lock:
            self._kinds.add(kind)
            for cid in wanted:
                entry = self._entries.get((kind, cid))
                if entry is not None and entry[0] == versions[cid] and entry[1] > now:
                    self._entries.move_to_end((kind, cid))
                    out[cid] = entry[2]
        missing = [c for c in wanted if c not in out]
        if missing:
            loaded = load(missing)
            fresh = {c: (versions[c], v) for c, v in loaded.items() if c in versions}
            self._remember(kind, fresh)
            out.update(loaded)
        with self._lock:
            self.hits += len(wanted) - len(missing)
            self.misses += len(missing)
        return out

    def get(self, customer_id: str, load: Callable[[str], Any], kind: str = "row") -> Any:
        """One value; ``load`` returns it (exceptions pass through, nothing cached)."""
        found = self.get_many([customer_id], lambda ids: {ids[0]: load(ids[0])}, kind)
        return found[customer_id]

    def invalidate(self, ids: Iterable[str]) -> None:
        """Call after the write touching ``ids`` commits: their cached values are gone."""
        todo = sorted({str(i) for i in ids if i})
        if not todo:
            return
        self._bump(todo)
        self._drop(todo)

    def clear(self) -> None:
        """Everything is stale (a batch rebuild of every customer)."""
        with self._lock:
            self._entries.clear()

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def close(self) -> None:
        return None

    def _drop(self, ids: Iterable[str]) -> None:
        with self._lock:
            for cid in ids:
                for kind in self._kinds:
                    self._entries.pop((kind, cid), None)

    def _remember(self, kind: str, values: dict[str, tuple[int, Any]]) -> None:
        if not values:
            return
        expires = time.monotonic() + self.ttl
        with self._lock:
            for cid, (version, value) in values.items():
                self._entries[kind, cid] = (version, expires, value)
                self._entries.move_to_end((kind, cid))
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class LocalCache(ProfileCache):
    """In-process only: versions are a dict (a cleared cache bumps an epoch)."""

    def __init__(self, ttl: float = DEFAULT_TTL, size: int = DEFAULT_SIZE) -> None:
        super().__init__(ttl, size)
        self._versions: dict[str, int] = {}
        self._epoch = 0

    def versions(self, ids: list[str]) -> list[int]:
        with self._lock:
            return [self._epoch + self._versions.get(c, 0) for c in ids]

    def _bump(self, ids: list[str]) -> None:
        with self._lock:
            for cid in ids:
                self._versions[cid] = self._versions.get(cid, 0) + 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._epoch += 1_000_000_007  # every older version becomes unreachable


class RedisCache(ProfileCache):
    """Coherent through Redis: ``{prefix}:v:{id}`` versions, ``{prefix}:epoch`` (bumped by
    :meth:`clear`), ``{prefix}:invalidate`` the pub/sub channel."""

    def __init__(self, settings: CacheSettings) -> None:
        import redis

        super().__init__(settings.ttl, settings.size)
        assert settings.url is not None
        self.prefix = settings.prefix
        self.channel = f"{self.prefix}:invalidate"
        self.redis = redis.Redis.from_url(settings.url, socket_timeout=5)
        self.redis.ping()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        self._pubsub.subscribe(**{self.channel: self._on_message})
        self._listener = self._pubsub.run_in_thread(
            sleep_time=0.2, daemon=True, exception_handler=self._on_error
        )

    def _on_error(self, error: BaseException, pubsub: Any, thread: Any) -> None:
        """A lost subscription cannot serve stale values (reads check the shared versions):
        drop the local copies and stop listening (closing, or Redis went away)."""
        ProfileCache.clear(self)
        thread.stop()

    def _on_message(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        text = data.decode() if isinstance(data, bytes) else str(data)
        if text == "*":
            ProfileCache.clear(self)
            return
        self._drop(str(cid) for cid in json.loads(text))

    def versions(self, ids: list[str]) -> list[int]:
        keys = [f"{self.prefix}:epoch", *(f"{self.prefix}:v:{c}" for c in ids)]
        raw = self.redis.mget(keys)
        epoch = int(raw[0] or 0)
        return [epoch + int(v or 0) for v in raw[1:]]

    def _bump(self, ids: list[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for cid in ids:
            pipe.incr(f"{self.prefix}:v:{cid}")
        pipe.publish(self.channel, json.dumps(ids))
        pipe.execute()

    def clear(self) -> None:
        self.redis.incrby(f"{self.prefix}:epoch", 1_000_000_007)
        self.redis.publish(self.channel, "*")
        ProfileCache.clear(self)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._listener.stop()
            self._listener.join(2)
            self._pubsub.close()
            self.redis.close()


def open_cache(settings: CacheSettings) -> ProfileCache:
    """A cache for ``settings`` (Redis ones connect now; a dead Redis fails here)."""
    if settings.url is None:
        return LocalCache(settings.ttl, settings.size)
    try:
        return RedisCache(settings)
    except Exception as e:  # redis errors: connection refused, auth …
        raise ServiceUnavailable(
            f"cannot reach the profile cache at {settings.url}: {type(e).__name__}",
            hint="start Redis or set cache: memory",
        ) from None


_CACHES: weakref.WeakKeyDictionary[object, ProfileCache] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def cache_of(warehouse: object) -> ProfileCache | None:
    """The cache of ``warehouse`` if this process made one (long-lived servers do)."""
    return _CACHES.get(warehouse)


def cache_for(warehouse: object, url: str | None = None, prefix: str = "personify") -> ProfileCache:
    """The one profile cache of ``warehouse`` in this process (made on first use)."""
    with _LOCK:
        found = _CACHES.get(warehouse)
        if found is None:
            found = open_cache(parse_cache_url(url, prefix))
            _CACHES[warehouse] = found
        return found


def close_cache(warehouse: object) -> None:
    """Forget and close the cache of ``warehouse`` (when the warehouse closes)."""
    with _LOCK:
        found = _CACHES.pop(warehouse, None)
    if found is not None:
        found.close()
