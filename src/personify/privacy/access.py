"""Access to personal data: admin tokens with scopes, compared in constant time, and a limit on
failed attempts.

Tokens come from the project file: ``admin_token`` (every scope — the one ``personify init``
writes) and ``admin_tokens`` (each with a ``name`` and its ``scopes``). Scopes:

* ``profiles:read`` — ``GET /v1/profiles/…``;
* ``privacy`` — ``/v1/privacy/…`` (export, erase, consent), raw personal data;
* ``privacy:masked`` — ``GET /v1/privacy/export`` only, with personal data masked (``***@domain``,
  ``+***78``, ``A***``, ``192.x.x.x``): a support role that may see *what* is held about a person
  but not the values (:func:`personify.privacy.masking.mask_document`), naming the person by
  customer id only (:attr:`Grant.finds_by_identifier`);
* ``console`` — the marketer console (``/console``, ``personify serve``): overview, segments,
  profile search and email previews, personal data masked unless the token also has
  ``profiles:read``, people named by customer id only unless it also has ``profiles:read`` or
  ``privacy`` (:attr:`Grant.finds_by_identifier`, the API's rule too);
* ``admin`` — every scope.

A scope implies the narrower ones (:data:`IMPLIED`): ``privacy`` includes ``privacy:masked``.

A presented token is compared with *every* configured token (:func:`hmac.compare_digest`, no
early exit), so timing says nothing about which one nearly matched. :class:`FailureLimiter` counts
failed attempts per key (a client address, a token prefix: :mod:`personify.server.auth_limits`):
after ``max_failures`` within ``window_s`` seconds that key gets 429 until the window has passed
— a guessing attack gets a few tries a minute.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SCOPES: tuple[str, ...] = ("profiles:read", "privacy", "privacy:masked", "console", "admin")
IMPLIED: dict[str, frozenset[str]] = {"privacy": frozenset({"privacy:masked"})}
"""Scopes a scope includes (``admin`` includes every scope)."""


@dataclass(frozen=True)
class Grant:
    """Who a valid token belongs to (its name, never the token)."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return (
            "admin" in self.scopes
            or scope in self.scopes
            or any(scope in IMPLIED.get(s, ()) for s in self.scopes)
        )

    @property
    def sees_pii(self) -> bool:
        """Whether exports show raw personal data (``privacy`` or ``admin``), else masked."""
        return self.allows("privacy")

    @property
    def finds_by_identifier(self) -> bool:
        """Whether the grant may name a person by email or another identifier — the one rule of
        the API (``/v1/profiles``, ``/v1/privacy/export``) and the console
        (:attr:`personify.server.console.auth.Viewer.finds_by_identifier`): only a grant that
        reads personal data in plain text somewhere (``profiles:read``, ``privacy``, ``admin``),
        since it learns whom an address belongs to anyway (``privacy`` exports a person named by
        email). Any other (``privacy:masked``, ``console`` alone) names people by customer id
        only: an email is answered as an unknown id would be, without being looked up, so the
        answer does not say whether someone has it. What is *shown* is another question
        (:attr:`sees_pii`; the console's own rule: ``profiles:read``)."""
        return self.allows("profiles:read") or self.allows("privacy")


class AdminTokens:
    """The configured tokens: ``(name, secret, scopes)``; empty secrets are ignored."""

    def __init__(self, tokens: Sequence[tuple[str, str, Sequence[str]]]) -> None:
        self._tokens = [
            (name, secret.encode("utf-8"), frozenset(scopes))
            for name, secret, scopes in tokens
            if secret
        ]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def check(self, given: str) -> Grant | None:
        """The grant of ``given``, or ``None``; constant time in which token matched."""
        presented = given.encode("utf-8")
        found: Grant | None = None
        for name, secret, scopes in self._tokens:
            if hmac.compare_digest(presented, secret) and found is None:
                found = Grant(name, scopes)
        return found


class FailureLimiter:
    """Failed attempts per client within a sliding window (thread-safe)."""

    def __init__(
        self,
        max_failures: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        with self._lock:
            now = self._clock()
            times = self._recent(client, now)
            if len(times) < self.max_failures:
                if not times:
                    self._failures.pop(client, None)
                return 0.0
            return max(times[0] + self.window_s - now, 0.0)

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(client, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of addresses
                self._failures = {
                    k: v for k, v in self._failures.items() if v and v[-1] > now - self.window_s
                }
