"""Per-transport rate limits: a token bucket of messages per second.

:meth:`TokenBucket.reserve` takes a token and says how long to wait before using it; tokens may
go negative, so concurrent senders queue up behind each other instead of all waking at once. The
clock is injected (``time.monotonic`` by default) so that tests drive it by hand.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from personify.config import Delivery
from personify.delivery.transport import Delivered, Envelope, Transport


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst`` (default: one second's worth)."""

    def __init__(
        self,
        rate: float,
        burst: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive, finite number of messages per second")
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, math.floor(rate)))
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def reserve(self, n: int = 1) -> float:
        """Take ``n`` tokens; the seconds to wait before acting on them (0.0: act now)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self, sleep: Callable[[float], object] = time.sleep) -> float:
        """Take one token, sleeping as long as needed; returns the seconds slept."""
        wait = self.reserve()
        if wait > 0:
            sleep(wait)
        return wait


def bucket_for(
    delivery: Delivery, *, clock: Callable[[], float] = time.monotonic
) -> TokenBucket | None:
    """The bucket of a configured transport (``None``: no ``rate_limit``)."""
    if delivery.rate_limit is None:
        return None
    return TokenBucket(delivery.rate_limit, delivery.rate_burst, clock=clock)


class RateLimitedTransport:
    """Any transport behind a token bucket (the outbox with a ``rate_limit``)."""

    def __init__(
        self,
        inner: Transport,
        bucket: TokenBucket,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.inner = inner
        self.bucket = bucket
        self.name = inner.name
        self._sleep = sleep

    def send(self, envelope: Envelope) -> Delivered:
        """Wait for a token, then hand the message to the inner transport."""
        self.bucket.acquire(self._sleep)
        return self.inner.send(envelope)

    def close(self) -> None:
        self.inner.close()
