"""The ``google_ads_audience`` preset: a Google Ads Customer Match list kept equal to the people a
model selects, through the OfflineUserDataJob flow of the Google Ads API (REST).

1. ``POST /{version}/customers/{cid}/offlineUserDataJobs:create`` — a job of type
   ``CUSTOMER_MATCH_USER_LIST`` for ``customers/{cid}/userLists/{list}``, with the list's consent
   (``adUserData`` and ``adPersonalization`` ``GRANTED``: only people who granted advertising
   reach a job, see the consent default);
2. ``POST /{version}/{job}:addOperations`` with ``enablePartialFailure`` — ``create`` (or, for
   removals, ``remove``) operations, one per person, each ``{"userIdentifiers":
   [{"hashedEmail": …}, {"hashedPhoneNumber": …}, {"addressInfo": {"hashedFirstName": …,
   "hashedLastName": …, "countryCode": "GB", "postalCode": "WC2H 8LG"}}]}`` (SHA-256 hex of the
   email trimmed and lower-cased, Gmail dots removed, of the phone in E.164 with its ``+``, of
   the names lower-cased without punctuation; the address only when the model selects all four
   of its columns and the row has them: else it goes without, counted as
   ``rows_address_incomplete``), 10,000 operations
   a request at most (``batch_size`` lowers it). An operation Google refuses comes back in
   ``partialFailureError`` (its ``location`` names ``operations[i]``): that person is kept as
   ``rejected`` with Google's message (masked), the others go on;
3. ``POST /{version}/{job}:run`` — Google processes the job (hours, sometimes). Records are
   acknowledged once the job runs: a push that stops before leaves its job unrun (Google drops
   it) and sends those people again next push (an add twice is one member).

**Shared identifiers**: Google matches each ``UserIdentifier`` of an operation on its own (an
email, a phone, a whole address), so a ``remove`` naming a household's phone removes whoever
else in the list has it. As for Meta (:mod:`.meta`, :mod:`.shared`), a removal leaves out what a
record staying in the model holds, and a person left with nothing is not sent
(``removals_shared``).

A job holds at most 100,000 people (then it runs and another starts). Requests carry
``developer-token`` (and ``login-customer-id`` for a manager account); the access token comes
from the ``oauth2_refresh_token`` auth, refreshed before it expires. Google's errors
(``{"error": {"code", "message", "status", "details": [{"errors": [{"errorCode", "message"}]}]}}``)
that are quota or concurrency problems (``RESOURCE_EXHAUSTED``, ``quotaError``,
``CONCURRENT_MODIFICATION``, ``internalError``) are retried with backoff; any other stops the
push with the message, status and request id.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Final

import httpx
import msgspec

from personify.config import GOOGLE_ADS_API_VERSION, GOOGLE_ADS_URL, RestClient, RestDestination
from personify.destinations.audiences import (
    ADDRESS,
    Sets,
    google_identifiers,
    masked_hashes,
    merged,
    never_added,
    previous,
    refused_keep,
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
from personify.http.errors import RestHttpError, RestResponseError
from personify.privacy.crypto import KeyRing
from personify.privacy.masking import mask_text
from personify.warehouse.base import Warehouse

MOST: Final = 10_000
"""Operations per ``addOperations`` request."""
JOB: Final = 100_000
"""People per job: then it runs, and the next ones go in a new job."""
FIELD: Final = {"EMAIL": "hashedEmail", "PHONE": "hashedPhoneNumber"}
"""The identifier keys of a ``UserIdentifier`` of one value."""
ADDRESS_FIELD: Final = {
    "FN": "hashedFirstName",
    "LN": "hashedLastName",
    "COUNTRY": "countryCode",
    "ZIP": "postalCode",
}
"""The fields of its ``addressInfo`` (an ``OfflineUserAddressInfo``)."""
RETRIED_STATUSES: Final = frozenset({"RESOURCE_EXHAUSTED", "UNAVAILABLE", "ABORTED"})
RETRIED_CODES: Final = frozenset({"RESOURCE_EXHAUSTED", "RESOURCE_TEMPORARILY_EXHAUSTED"})
_CONCURRENT: Final = "CONCURRENT_MODIFICATION"


def client_of(d: RestDestination) -> RestClient:
    """The destination's client: the Google Ads API unless ``client.base_url`` says otherwise,
    with the developer token (and the manager account) as headers."""
    client = d.client
    headers = dict(client.headers)
    if d.developer_token is not None:
        headers["developer-token"] = d.developer_token.reveal()
    if d.login_customer_id:
        headers["login-customer-id"] = d.login_customer_id.replace("-", "").strip()
    return msgspec.structs.replace(
        client, base_url=client.base_url or GOOGLE_ADS_URL, headers=headers
    )


def customer(d: RestDestination) -> str:
    return (d.ads_customer_id or "").replace("-", "").strip()


def user_list(d: RestDestination) -> str:
    return f"customers/{customer(d)}/userLists/{(d.user_list_id or '').replace('-', '').strip()}"


def _failures(body: Any) -> list[dict[str, Any]]:
    """The ``GoogleAdsFailure`` errors of an error or partial failure body."""
    error = body.get("error") or body.get("partialFailureError") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return []
    out: list[dict[str, Any]] = []
    for detail in error.get("details") or []:
        if isinstance(detail, dict):
            out += [e for e in detail.get("errors") or [] if isinstance(e, dict)]
    return out


def retryable(response: httpx.Response) -> bool:
    """Whether a 4xx answer is a quota or concurrency problem (worth retrying)."""
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("status") in RETRIED_STATUSES:
        return True
    for failure in _failures(body):
        code = failure.get("errorCode")
        if not isinstance(code, dict):
            continue
        if "quotaError" in code or "internalError" in code:
            return True
        if code.get("databaseError") == _CONCURRENT or code.get("quotaError") in RETRIED_CODES:
            return True
    return False


def _operation_index(failure: dict[str, Any]) -> int | None:
    location = failure.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    for element in elements or []:
        if isinstance(element, dict) and element.get("fieldName") == "operations":
            index = element.get("index")
            return index if isinstance(index, int) else None
    return None


def refused(body: Any, n: int) -> tuple[dict[int, str], str | None]:
    """The operations (by position, of ``n``) a partial failure names, with Google's message;
    and the message of a failure naming none."""
    out: dict[int, str] = {}
    unnamed: str | None = None
    error = body.get("partialFailureError") if isinstance(body, dict) else None
    for failure in _failures({"partialFailureError": error}):
        said = str(failure.get("message") or failure.get("errorCode") or "refused")
        index = _operation_index(failure)
        if index is not None and 0 <= index < n:
            out.setdefault(index, said)
        else:
            unnamed = unnamed or said
    return out, unnamed


class _Job:
    """One OfflineUserDataJob: created on its first operations, run by :meth:`run`."""

    def __init__(self, client: HttpClient, d: RestDestination, counts: dict[str, int]) -> None:
        self.client, self.d, self.counts = client, d, counts
        self.version = d.api_version or GOOGLE_ADS_API_VERSION
        self.name: str | None = None

    def _post(self, path: str, body: Any) -> Any:
        self.counts["requests"] += 1
        try:
            response = self.client.send("POST", f"/{self.version}/{path}", json=body)
        except RestHttpError as e:
            raise RestHttpError(
                masked_hashes(e.message),
                status=e.status,
                url=e.url,
                hint="check ads_customer_id, user_list_id (a Customer Match list), the "
                "developer token and the OAuth credentials' access to the account"
                if e.status in (400, 403, 404)
                else e.hint,
            ) from None
        try:
            return response.json() if response.content else {}
        except ValueError:
            raise RestResponseError(
                f"destination {self.d.name}: {path} did not answer JSON"
            ) from None

    def add(self, operations: list[dict[str, Any]]) -> dict[int, str]:
        """Add ``operations``; the positions Google refused, with its message."""
        if self.name is None:
            metadata = {
                "userList": user_list(self.d),
                "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
            }
            job = {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}
            body = self._post(
                f"customers/{customer(self.d)}/offlineUserDataJobs:create", {"job": job}
            )
            name = body.get("resourceName") if isinstance(body, dict) else None
            if not isinstance(name, str) or "/offlineUserDataJobs/" not in name:
                raise RestResponseError(
                    f"destination {self.d.name}: offlineUserDataJobs:create gave no job"
                )
            self.name = name
        body = self._post(
            f"{self.name}:addOperations",
            {"enablePartialFailure": True, "operations": operations},
        )
        named, unnamed = refused(body, len(operations))
        if unnamed is not None:  # a failure of the request, not of one person: stop
            raise RestResponseError(
                f"destination {self.d.name}: Google refused the operations: "
                + masked_hashes(mask_text(unnamed))[:300]
            )
        return named

    def run(self) -> bool:
        """Run the job (when it was created); whether it was."""
        if self.name is None:
            return False
        self._post(f"{self.name}:run", {})
        self.counts["jobs_run"] = self.counts.get("jobs_run", 0) + 1
        self.name = None
        return True


def user_identifiers(values: dict[str, str]) -> list[dict[str, Any]]:
    """The ``UserIdentifier`` objects of one identifier set (key → value as sent): one per
    email and phone, and an ``addressInfo`` when all four of its fields are there."""
    out: list[dict[str, Any]] = [{FIELD[k]: v} for k, v in values.items() if v and k in FIELD]
    if all(values.get(k) for k in ADDRESS):
        out.append({"addressInfo": {ADDRESS_FIELD[k]: values[k] for k in ADDRESS}})
    return out


def _operation(kind: str, sets: Sets) -> dict[str, Any]:
    ids = [
        i
        for schema, values in sets
        for i in user_identifiers(dict(zip(schema, values, strict=True)))
    ]
    return {kind: {"userIdentifiers": list({str(i): i for i in ids}.values())}}


def sample(d: RestDestination, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``--dry-run``: the identifiers each row would be sent with, hashes shortened (the
    address's country and postal code shown as ``***``)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        ids, unreadable, _ = google_identifiers(d, r)
        if not ids:
            out.append({"not_sent": unmatchable(unreadable, google=True)})
            continue
        shown: dict[str, Any] = {FIELD[k]: masked_hashes(v) for k, v in ids.items() if k in FIELD}
        if all(k in ids for k in ADDRESS):
            shown["addressInfo"] = {
                ADDRESS_FIELD[k]: masked_hashes(ids[k]) if len(ids[k]) == 64 else "***"
                for k in ADDRESS
            }
        out.append(shown)
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
    """Add the changed rows' people to the list (jobs, acknowledged once run), then
    (``on_remove: delete``, unless not ``remove``) remove those who left the model."""
    counts |= {
        "rows_sent": 0,
        "rows_rejected": 0,
        "requests": 0,
        "rows_address_incomplete": 0,
        "removals_shared": 0,
    }
    size = min(d.batch_size or MOST, MOST)
    known = Held(wh, d, ring, units) if ring is not None else None
    acks = Acks(wh, d, ring, known, since=since)
    guard = functools.partial(still_pushing, wh, d.name)  # (before each request)
    with HttpClient(
        client_of(d), source=f"destination {d.name}", retry_if=retryable, before_send=guard
    ) as client:
        job = _Job(client, d, counts)
        pending: list[tuple[dict[str, Any], str]] = []

        def run() -> None:
            job.run()
            acks.add([r for r, _ in pending], "sent", kept=[k for _, k in pending])
            counts["rows_sent"] += len(pending)
            pending.clear()

        try:
            if known is not None:  # an erasure's removals first, whatever the model says
                _remove(wh, d, known, acks, counts, _Job(client, d, counts), erased=True)
                acks.flush()
            for page in pages(wh, d):
                unknown: set[str] = set()
                before = previous(wh, d, ring, page, unknown) if ring is not None else {}
                ready: list[tuple[dict[str, Any], Sets]] = []
                for row in page:
                    ids, unreadable, incomplete = google_identifiers(d, row)
                    counts["rows_address_incomplete"] += incomplete
                    if not ids:  # (what it was sent with before is kept, for its removal)
                        held = refused_keep(str(row[d.key]), str(row[KEY]), before, unknown)
                        why = unmatchable(unreadable, google=True)
                        acks.add([row], "rejected", why, kept=[held])
                        counts["rows_rejected"] += 1
                        continue
                    now = (tuple(ids), tuple(ids.values()))
                    ready.append((row, merged(before.get(str(row[KEY]), []), now)))
                for i in range(0, len(ready), size):
                    batch = ready[i : i + size]
                    if len(pending) + len(batch) > JOB:
                        run()
                    said = job.add([_operation("create", sets[:1]) for _, sets in batch])
                    for j, (row, sets) in enumerate(batch):
                        if j in said:  # (refused now: what it was sent with before is kept)
                            error = mask_text(f"Google refused it: {masked_hashes(said[j])}")
                            held = refused_keep(str(row[d.key]), str(row[KEY]), before, unknown)
                            acks.add([row], "rejected", error[:500], kept=[held])
                            counts["rows_rejected"] += 1
                        else:
                            pending.append((row, to_keep(str(row[d.key]), sets)))
            run()
            if known is not None and remove:
                acks.flush()  # (who was just added holds their identifiers: see Held.shared)
                _remove(wh, d, known, acks, counts, _Job(client, d, counts))
        finally:
            acks.flush()
            counts["retries"] = client.stats.retries


def _remove(
    wh: Warehouse,
    d: RestDestination,
    held: Held,
    acks: Acks,
    counts: dict[str, int],
    job: _Job,
    *,
    erased: bool = False,
) -> None:
    """``remove`` operations for the people who left the model (``erased``: those erasures
    left to remove), by every identifier set they were sent with; acknowledged once their job
    ran."""
    removed, rejected, status = removal_counts(erased)
    counts |= {removed: 0, rejected: 0}
    size = min(d.batch_size or MOST, MOST)
    pending: list[str] = []

    def run() -> None:
        job.run()
        acks.remove(list(pending))
        counts[removed] += len(pending)
        pending.clear()

    after = ""
    while page := leaving(wh, d, limit=READ, after=after, erased=erased):
        after = page[-1][0]
        tokens = {h: k for h, _, k in page}
        named: list[tuple[str, str, Sets]] = []
        for h, r, kept in opened(wh, d, held.ring, page):
            sets = sets_of(kept) if kept is not None else []
            if sets:
                named.append((h, r, sets))
                continue
            if kept is not None and never_added(kept):
                # kept as never added (rejected: no identifier Google takes, or Google refused
                # it): not in the list, nothing to remove there — its state goes
                acks.remove([h])
                counts[removed] += 1
                continue
            why = (
                f"its kept identifiers cannot be read (altered, or {LOST_KEY} they were "
                "encrypted under)"
                if kept is None
                else f"{NO_IDENTIFIERS} (pushed before the destination was an "
                f"audience: key {mask_text(kept_key(d, kept))})"
            )
            acks.keep([(h, r, tokens[h])], why, status=status)
            counts[rejected] += 1
        shared = held.shared({u for _, _, sets in named for u in units(sets)})
        unshared: list[tuple[str, str, Sets]] = []
        for h, r, sets in named:
            if left := without(sets, shared):
                unshared.append((h, r, left))
            else:  # (naming them would name the member who shares their identifiers too)
                acks.remove([h])
                counts["removals_shared"] += 1
        named = unshared
        for i in range(0, len(named), size):
            batch = named[i : i + size]
            if len(pending) + len(batch) > JOB:
                run()
            said = job.add([_operation("remove", sets) for _, _, sets in batch])
            for j, (h, r, _) in enumerate(batch):
                if j in said:
                    acks.keep(
                        [(h, r, tokens[h])],
                        mask_text(f"Google refused its removal: {masked_hashes(said[j])}")[:500],
                        status=status,
                    )
                    counts[rejected] += 1
                else:
                    pending.append(h)
    run()


def units(sets: Sets) -> set[Pair]:
    """What Google matches people on, one by one, in ``sets``: each email, each phone, and each
    whole postal address (``ADDRESS``: its four values)."""
    out: set[Pair] = set()
    for schema, values in sets:
        given = dict(zip(schema, values, strict=True))
        out |= {(k, v) for k, v in given.items() if v and k in FIELD}
        if all(given.get(k) for k in ADDRESS):
            out.add(("ADDRESS", "\0".join(given[k] for k in ADDRESS)))
    return out


def without(sets: Sets, held: set[Pair]) -> Sets:
    """``sets`` without the identifiers in ``held`` (an address as a whole), keeping only the
    rows that still name someone."""
    out: Sets = []
    for schema, values in sets:
        given = dict(zip(schema, values, strict=True))
        left = {k: "" if k in FIELD and (k, v) in held else v for k, v in given.items()}
        if ("ADDRESS", "\0".join(given.get(k) or "" for k in ADDRESS)) in held:
            left |= dict.fromkeys(ADDRESS, "")
        if user_identifiers(left):
            out.append((schema, tuple(left[k] for k in schema)))
    return list(dict.fromkeys(out))
