"""The ``meta_audience`` preset: a Meta Custom Audience kept equal to the people a model selects.

* **Adds**: ``POST /{api_version}/{audience_id}/users`` with the form field ``payload`` =
  ``{"schema": ["EMAIL", "PHONE", …], "data": [[hash, hash, …], …]}`` — the model's identifier
  columns normalized and hashed (:mod:`.audiences`), up to 10,000 people a request (Meta's most;
  ``batch_size`` lowers it). The token goes as ``Authorization: Bearer``, never in the URL.
* **Removals** (``on_remove: delete``): ``DELETE`` on the same path with the same payload. To
  name a person who left the model, each record keeps (encrypted, under
  ``privacy.encryption_keys``) the hashed identifier rows it was sent with — every distinct one,
  so a person whose email changed is removed under the old address too.
* **Shared identifiers**: Meta removes whoever a removal's identifiers match — any of them —
  so removing a person whose phone (or email …) a remaining member of the audience shares
  would remove that member too. A removal leaves out every identifier still held by a record
  of the destination that stays in the model (by any identifier row it was sent with: found
  in the warehouse by their keyed hashes, :mod:`.shared`); a person left with none that
  singles them out is not sent: counted as ``removals_shared``, their state dropped (the
  member's own removal, later, names what they share).
* **Answers**: a 200 counts ``num_received`` and ``num_invalid_entries`` (rows Meta could not
  read: counted as ``api_invalid_entries``; Meta does not say which — the batch's halves are
  sent again to find them, up to :data:`PROBES` requests a push: each is kept ``rejected``,
  holding no identifiers, since it is not in the audience). Meta's errors are
  ``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``: its rate limits
  (codes 4, 17, 32, 613, 80003, 80004 …) and transient errors (``is_transient``, codes 1 and 2)
  come back as 400s and are retried like a 429, with backoff; any other refusal is about the
  request (the token, the audience, the payload), not a person: it stops the push, the error
  (type, code, subcode, trace id) recorded — what Meta took before is recorded and the rest goes
  next push.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import httpx
import msgspec

from personify.config import (
    META_API_VERSION,
    META_GRAPH_URL,
    BearerAuth,
    RestClient,
    RestDestination,
)
from personify.destinations.audiences import (
    KEPT_SETS,
    MATCHING,
    Sets,
    identifiers,
    masked_hashes,
    merged,
    never_added,
    previous,
    refused_keep,
    schema_key,
    sets_of,
    to_keep,
    unmatchable,
)
from personify.destinations.model import READ, leaving, pages
from personify.destinations.send import removal_counts
from personify.destinations.shared import Held, Pair
from personify.destinations.state import (
    KEY,
    LOST_KEY,
    NO_IDENTIFIERS,
    Acks,
    kept_key,
    opened,
    still_pushing,
)
from personify.http import HttpClient
from personify.http.errors import RestHttpError
from personify.privacy.crypto import KeyRing
from personify.privacy.masking import mask_text
from personify.warehouse.base import Warehouse

MOST: Final = 10_000
"""People per request (Meta's limit)."""
RATE_LIMITED: Final = frozenset({4, 17, 32, 613, 80000, 80003, 80004, 80014})
"""Meta's error codes for "too many calls" (application, user, page, custom rate, ad account,
custom audience): retried with backoff."""
TRANSIENT: Final = frozenset({1, 2})
"""Meta's "unknown" and "temporary" errors: retried."""
_HINTS: Final = {
    190: "the access token is invalid or expired: make a new system-user token with "
    "ads_management and set it in access_token",
    200: "the token lacks a permission: it needs ads_management on the audience's ad account",
    10: "the token lacks a permission: it needs ads_management on the audience's ad account",
    100: "check audience_id (a Custom Audience of type CUSTOM the token can manage) and the "
    "model's identifier columns",
}


PROBES: Final = 64
"""Requests a push may spend finding which rows of a batch Meta could not read (halves sent
again): about two per row per halving — a few unreadable rows are found, a batch of many is
left as Meta counted it."""
UNREAD: Final = (
    "Meta could not read it (num_invalid_entries): not in the audience — check its identifier "
    "columns; sent again when its row changes"
)
"""The error kept on a row Meta could not read."""
Ready = tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]
"""A row to add: the model row, the payload's schema, its values in that schema."""


def client_of(d: RestDestination) -> RestClient:
    """The destination's client: Meta's Graph API unless ``client.base_url`` says otherwise,
    authenticated by ``access_token`` unless ``client.auth`` is given."""
    client = d.client
    if not client.base_url:
        client = msgspec.structs.replace(client, base_url=META_GRAPH_URL)
    if client.auth is None and d.access_token is not None:
        client = msgspec.structs.replace(client, auth=BearerAuth(token=d.access_token))
    return client


def users_path(d: RestDestination) -> str:
    return f"/{d.api_version or META_API_VERSION}/{(d.audience_id or '').strip()}/users"


def error_of(body: Any) -> dict[str, Any]:
    """Meta's ``error`` object of an answer (empty when there is none)."""
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def retryable(response: httpx.Response) -> bool:
    """Whether a 4xx answer is one of Meta's rate limits or transient errors."""
    try:
        error = error_of(response.json())
    except ValueError:
        return False
    return error.get("code") in RATE_LIMITED | TRANSIENT or error.get("is_transient") is True


def _stopped(e: RestHttpError) -> RestHttpError:
    """``e`` with Meta's hint for its code, hashes masked."""
    code = error_of(e.body).get("code")
    hint = _HINTS.get(code) if isinstance(code, int) else None
    return RestHttpError(
        masked_hashes(e.message), status=e.status, url=e.url, hint=hint or e.hint, body=None
    )


def sample(d: RestDestination, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``--dry-run``: what each row would be sent as, each hash shortened."""
    out = []
    for r in rows:
        ids, unreadable = identifiers(d, r)
        if not ids:
            out.append({"not_sent": unmatchable(unreadable)})
            continue
        out.append({k: masked_hashes(v) if len(v) == 64 else "***" for k, v in ids.items()})
    return out


def send(
    wh: Warehouse,
    d: RestDestination,
    counts: dict[str, int],
    ring: KeyRing | None,
    *,
    remove: bool = True,
    since: datetime | None = None,
) -> None:
    """Add the changed rows' people to the audience, then (``on_remove: delete``, unless not
    ``remove``) remove those who left the model; ``counts`` as :func:`..send.send`'s, plus
    ``api_invalid_entries``, ``rows_unread`` (those of them found, kept rejected) and
    ``removals_shared``."""
    counts |= {
        "rows_sent": 0,
        "rows_rejected": 0,
        "requests": 0,
        "api_invalid_entries": 0,
        "rows_unread": 0,
        "removals_shared": 0,
    }
    size = min(d.batch_size or MOST, MOST)
    path = users_path(d)
    known = Held(wh, d, ring, units) if ring is not None else None
    acks = Acks(wh, d, ring, known, since=since)
    guard = functools.partial(still_pushing, wh, d.name)  # (before each request)
    with HttpClient(
        client_of(d), source=f"destination {d.name}", retry_if=retryable, before_send=guard
    ) as client:

        def call(
            method: str,
            schema: tuple[str, ...],
            data: list[tuple[str, ...]],
            *,
            probe: bool = False,
        ) -> int:
            """One request; returns how many rows Meta could not read (``probe``: a half of a
            batch sent again to find them — not counted again)."""
            payload = json.dumps({"schema": list(schema), "data": [list(v) for v in data]})
            counts["requests"] += 1
            try:
                response = client.send(method, path, data={"payload": payload})
            except RestHttpError as e:
                raise _stopped(e) from None
            try:
                body = response.json()
            except ValueError:
                body = None
            invalid = body.get("num_invalid_entries") if isinstance(body, dict) else None
            if not isinstance(invalid, int) or invalid < 0:
                return 0
            if not probe:
                counts["api_invalid_entries"] += invalid
            return invalid

        probes = [PROBES]

        def add(
            batch: list[Ready], before: dict[str, Sets], unknown: set[str], *, probe: bool = False
        ) -> None:
            """Add ``batch``'s people; the rows Meta could not read (it says how many, not which)
            are found by sending halves again (adding someone twice changes nothing), up to
            :data:`PROBES` requests a push: kept as ``rejected``, not as holding their
            identifiers (they are not in the audience). Past that, or when the halves say
            otherwise, they stay ``sent`` (the push's warning counts them)."""
            invalid = call("POST", batch[0][1], [v for _, _, v in batch], probe=probe)
            if invalid and invalid < len(batch) and probes[0] >= 2:
                probes[0] -= 2
                half = len(batch) // 2
                add(batch[:half], before, unknown, probe=True)
                add(batch[half:], before, unknown, probe=True)
                return
            if invalid and invalid >= len(batch):  # (none of them read: none in the audience)
                for r, _, _ in batch:
                    held = refused_keep(str(r[d.key]), str(r[KEY]), before, unknown)
                    acks.add([r], "rejected", UNREAD, kept=[held])
                counts["rows_rejected"] += len(batch)
                counts["rows_unread"] += len(batch)
                return
            rows = [r for r, _, _ in batch]
            kept = [
                to_keep(str(r[d.key]), merged(before.get(str(r[KEY]), []), (s, v)))
                for r, s, v in batch
            ]
            acks.add(rows, "sent", kept=kept)
            counts["rows_sent"] += len(rows)

        try:
            if known is not None:  # an erasure's removals first, whatever the model says
                _remove(wh, d, known, acks, counts, call, erased=True)
                acks.flush()
            for page in pages(wh, d):
                unknown: set[str] = set()
                before = previous(wh, d, ring, page, unknown) if ring is not None else {}
                ready: list[Ready] = []
                schema = schema_of(d, page[0])
                for row in page:
                    ids, unreadable = identifiers(d, row)
                    if not MATCHING & ids.keys():  # (what it was sent with before is kept)
                        held = refused_keep(str(row[d.key]), str(row[KEY]), before, unknown)
                        acks.add([row], "rejected", unmatchable(unreadable), kept=[held])
                        counts["rows_rejected"] += 1
                        continue
                    ready.append((row, schema, tuple(ids.get(k, "") for k in schema)))
                for i in range(0, len(ready), size):
                    add(ready[i : i + size], before, unknown)
            if known is not None and remove:
                acks.flush()  # (who was just added holds their identifiers: see Held.shared)
                _remove(wh, d, known, acks, counts, call)
        finally:
            acks.flush()
            counts["retries"] = client.stats.retries


def schema_of(d: RestDestination, row: dict[str, Any]) -> tuple[str, ...]:
    """The payload's ``schema``: Meta's keys of the model's identifier columns, in their order
    (a person without one of them sends ``""`` there, as Meta asks)."""
    from personify.destinations.consent import WHOSE

    keys = (schema_key(c, d) for c in row if c != KEY and (c != WHOSE or c == d.key))
    return tuple(dict.fromkeys(k for k in keys if k is not None))


def _remove(
    wh: Warehouse,
    d: RestDestination,
    held: Held,
    acks: Acks,
    counts: dict[str, int],
    call: Callable[[str, tuple[str, ...], list[tuple[str, ...]]], object],
    *,
    erased: bool = False,
) -> None:
    """``DELETE`` the people who left the model (``erased``: those erasures left to remove), by
    the identifier rows each was sent with; a record whose state names none (kept before it was
    an audience, or unreadable) is kept as ``remove_rejected`` (``erased``) with the reason."""
    removed, rejected, status = removal_counts(erased)
    counts |= {removed: 0, rejected: 0}
    per_request = max(1, min(d.batch_size or MOST, MOST) // KEPT_SETS)
    after = ""
    while page := leaving(wh, d, limit=READ, after=after, erased=erased):
        after = page[-1][0]
        tokens = {h: k for h, _, k in page}
        named: list[tuple[str, Sets]] = []
        for h, r, kept in opened(wh, d, held.ring, page):
            sets = sets_of(kept) if kept is not None else []
            if not sets and kept is not None and never_added(kept):
                # kept as never added (rejected: unmatchable, or Meta could not read it): not in
                # the audience, nothing to remove there — its state goes
                acks.remove([h])
                counts[removed] += 1
                continue
            if not sets:
                why = (
                    f"its kept identifiers cannot be read (altered, or {LOST_KEY} they were "
                    "encrypted under)"
                    if kept is None
                    else f"{NO_IDENTIFIERS} (pushed before the destination was "
                    f"an audience: key {mask_text(kept_key(d, kept))})"
                )
                acks.keep([(h, r, tokens[h])], why, status=status)
                counts[rejected] += 1
                continue
            named.append((h, sets))
        shared = held.shared({i for _, sets in named for i in units(sets)})
        unshared: list[tuple[str, Sets]] = []
        for h, sets in named:
            if left := without(sets, shared):
                unshared.append((h, left))
            else:  # (naming them would name the member who shares their identifiers too)
                acks.remove([h])
                counts["removals_shared"] = counts.get("removals_shared", 0) + 1
        named = unshared
        for i in range(0, len(named), per_request):
            chunk = named[i : i + per_request]
            by_schema: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
            for _, sets in chunk:
                for schema, values in sets:
                    by_schema.setdefault(schema, []).append(values)
            for schema, data in by_schema.items():
                call("DELETE", schema, list(dict.fromkeys(data)))
            acks.remove([h for h, _ in chunk])
            counts[removed] += len(chunk)


def units(sets: Sets) -> set[Pair]:
    """Every identifier of ``sets`` (Meta matches on each; the others are blanked when shared,
    as a whole row is)."""
    return {(k, v) for schema, values in sets for k, v in zip(schema, values, strict=True) if v}


def without(sets: Sets, held: set[Pair]) -> Sets:
    """``sets`` with the identifiers in ``held`` blanked (Meta's "not given"), keeping only the
    rows still naming an identifier that singles a person out."""
    out: Sets = []
    for schema, values in sets:
        kept = tuple("" if (k, v) in held else v for k, v in zip(schema, values, strict=True))
        if any(v and k in MATCHING for k, v in zip(schema, kept, strict=True)):
            out.append((schema, kept))
    return list(dict.fromkeys(out))
