"""Freshness figures of this process's continuous mode, for ``personify status``.

``personify serve`` registers one :class:`LiveStats` (:func:`register`); a ``status`` command
that runs inside that server (forwarded, on DuckDB) reports its figures: the in-process queue
depth, the event-to-profile latency (p50/p99 of the last :data:`WINDOW` passes), the cache hit
ratio, the bus depth. A ``status`` in a process of its own (PostgreSQL) sees no server's memory:
it reports the bus depth it reads from JetStream itself, and points at each server's
``/metrics`` for the rest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

WINDOW: Final = 1_000
"""Passes whose latency the percentiles cover."""

_live: list[LiveStats] = []
_lock = threading.Lock()


@dataclass
class LiveStats:
    """What one server process knows about its own freshness."""

    cache: Any = None
    """The process's :class:`~personify.realtime.cache.ProfileCache`."""
    applier: Any = None
    """The :class:`~personify.realtime.continuous.Applier` (``None`` on ``--role ingest``)."""
    bus_depth: Callable[[], float] | None = None
    applied: int = 0
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def observe(self, count: int, seconds: float) -> None:
        self.applied += count
        self._latencies.append(seconds)

    def report(self) -> dict[str, Any]:
        latencies = sorted(self._latencies)
        out: dict[str, Any] = {"continuous": self.applier is not None, "applied": self.applied}
        if self.applier is not None:
            out["queue_depth"] = self.applier.depth
            out["passes"] = self.applier.passes
            out["failures"] = self.applier.failures
        out["event_to_profile_seconds"] = {
            "passes": len(latencies),
            "p50": _quantile(latencies, 0.5),
            "p99": _quantile(latencies, 0.99),
        }
        if self.cache is not None:
            out["cache"] = {
                "hits": self.cache.hits,
                "misses": self.cache.misses,
                "hit_ratio": round(self.cache.hit_ratio, 4),
            }
        if self.bus_depth is not None:
            try:
                out["bus_depth"] = int(self.bus_depth())
            except Exception as e:  # unreachable bus: say so, never fail the report
                from personify.realtime.bus import bus_error_text

                out["bus_depth"] = None
                out["bus_error"] = bus_error_text(e)
        return out


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(q * len(values)))], 4)


def register(stats: LiveStats) -> Callable[[], None]:
    """Make ``stats`` this process's; returns the function that withdraws it."""
    with _lock:
        _live.append(stats)

    def withdraw() -> None:
        with _lock:
            if stats in _live:
                _live.remove(stats)

    return withdraw


def live() -> list[LiveStats]:
    """The registered stats of this process (one per running server)."""
    with _lock:
        return list(_live)
