"""The limit on wrong admin tokens, one for the whole server: the API's admin routes
(:func:`personify.server.profiles.check_admin`) and the console's sign-in
(:func:`personify.server.console.auth.sign_in`) count in the same two budgets.

* **Per client address** (:func:`by_address`): 10 wrong tokens a minute, then that address waits.
* **Per presented token prefix** (:func:`by_prefix`): :data:`PREFIX_FAILURES` wrong tokens a minute
  starting with the same :data:`PREFIX_CHARS` characters, from every address together — a guess
  spread over many addresses at one token whose start is known (the start of a token that leaked,
  a weak token's obvious start) is slowed as much as one from a single address. Once spent, every
  attempt with that prefix waits, the right token too (its check is not even run), so a 429 says
  nothing about what was presented nor whether a configured token starts so.

**The prefix budget holds the console's sign-in only** (``held_by_prefix``): the API's admin
routes count their wrong tokens in it (a guess made at the API slows the sign-in) but are held
by the address budget alone — otherwise anyone could stop every integration whose token starts
``adm_`` with 30 requests a minute, for a guess that cannot succeed against a token of 32 random
characters.

The prefix is kept as a hash (never the characters). Both budgets live in the ``serve`` process
(``ServerState.extras``), not shared between processes.
"""

from __future__ import annotations

import hashlib

from personify.privacy.access import FailureLimiter
from personify.server.state import ServerState

PREFIX_CHARS = 10
"""A presented token's prefix, for :func:`by_prefix`: the start of a token that leaked, or a weak
token's. Ten characters, not a token family's few (``adm_``): a prefix anyone knows would let
anyone lock every sign-in with such tokens out — ``personify init``'s tokens carry six random
characters in theirs (64⁶ prefixes), so only someone who already holds a token's start can
spend its budget."""
PREFIX_FAILURES = 30
"""Wrong tokens a minute, from every address together, with one prefix."""


def by_address(state: ServerState) -> FailureLimiter:
    """Wrong tokens per client address (the API's and the console's, together)."""
    found: FailureLimiter = state.extras.setdefault("privacy.auth_failures", FailureLimiter())
    return found


def by_prefix(state: ServerState) -> FailureLimiter:
    """Wrong tokens per presented token prefix, whatever the address (see the module)."""
    found: FailureLimiter = state.extras.setdefault(
        "auth.prefix_failures", FailureLimiter(max_failures=PREFIX_FAILURES)
    )
    return found


def prefix_key(given: str) -> str:
    """The prefix budget's key for a presented token: a hash of its first characters."""
    return hashlib.sha256(given.strip()[:PREFIX_CHARS].encode("utf-8")).hexdigest()[:32]


def retry_after(
    state: ServerState, client: str, given: str | None, *, held_by_prefix: bool = True
) -> float:
    """Seconds before ``client`` may present ``given`` (``None``: no token yet); 0: now.
    ``held_by_prefix``: the prefix budget applies too (the console's sign-in; not the API)."""
    wait = by_address(state).retry_after(client)
    if held_by_prefix and given is not None and given.strip():
        wait = max(wait, by_prefix(state).retry_after(prefix_key(given)))
    return wait


def failed(state: ServerState, client: str, given: str) -> None:
    """Count a wrong token ``given`` from ``client`` in both budgets."""
    by_address(state).failed(client)
    by_prefix(state).failed(prefix_key(given))
