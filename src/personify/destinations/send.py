"""Sending: the changed rows upserted in batches through the polite client, refused records
isolated, acknowledgements recorded; then the removals (``on_remove: delete``)."""

from __future__ import annotations

import functools
import urllib.parse
from datetime import datetime
from typing import Any, Final

from personify.config import RestDestination
from personify.destinations.model import READ, leaving, pages
from personify.destinations.presets import (
    HUBSPOT_ARCHIVE,
    HUBSPOT_READ,
    endpoint,
    hubspot_ids,
    hubspot_merged,
    hubspot_read,
    refused_inside,
    removal_body,
    shaped,
)
from personify.destinations.state import ERASED, LOST_KEY, MERGED, Acks, opened, still_pushing
from personify.http import HttpClient
from personify.http.errors import RestHttpError
from personify.privacy.crypto import KeyRing
from personify.privacy.masking import mask_text
from personify.warehouse.base import Warehouse

STOPPING: Final = frozenset({401, 403, 404, 405})
"""Refusals that are not about a record: the push stops (the state keeps what was taken)."""


def _answer(d: RestDestination, response: Any) -> Any:
    """The JSON body of a 2xx answer when it may list refused records, else ``None`` (not
    decoded: HubSpot lists them only in a 207, and a 200 echoes every record it took)."""
    if d.errors_path is None and (d.preset is None or response.status_code != 207):
        return None
    return _json(response)


def _json(response: Any) -> Any:
    """A 2xx answer's JSON body (``None`` when it has none or is not JSON)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def send(
    wh: Warehouse,
    d: RestDestination,
    counts: dict[str, int],
    ring: KeyRing | None,
    *,
    remove: bool = True,
    since: datetime | None = None,
) -> None:
    """Send the changed rows of ``d`` (staged), then its removals (unless not ``remove``);
    ``counts`` gains what was sent, rejected, removed, the requests and retries (as far as it
    got, when it raises); ``since``: when the push began reading its model (:class:`Acks`)."""
    if d.preset == "meta_audience":
        from personify.destinations import meta

        meta.send(wh, d, counts, ring, remove=remove, since=since)
        return
    if d.preset == "google_ads_audience":
        from personify.destinations import google

        google.send(wh, d, counts, ring, remove=remove, since=since)
        return
    path, records_key, size = endpoint(d)
    counts |= {"rows_sent": 0, "rows_rejected": 0, "requests": 0}
    acks = Acks(wh, d, ring, since=since)
    guard = functools.partial(still_pushing, wh, d.name)  # (before each request)
    with HttpClient(d.client, source=f"destination {d.name}", before_send=guard) as client:

        def post(rows: list[dict[str, Any]]) -> None:
            records = shaped(d, rows)
            body: Any = {records_key: records} if records_key else records
            counts["requests"] += 1
            try:
                response = client.send(d.method, path, json=body)
            except RestHttpError as e:
                if e.status in STOPPING or e.status < 400 or e.status >= 500:
                    raise
                split(rows, mask_text(e.message)[:500])
                return
            keys = [str(r[d.key]) for r in rows]
            refused, unnamed = refused_inside(d, _answer(d, response), keys)
            if unnamed is not None:  # some record was refused, which one is unsaid: halves
                split(rows, mask_text(f"the API refused it: {unnamed}")[:500])
                return
            for i, said in refused.items():
                acks.add([rows[i]], "rejected", mask_text(f"the API refused it: {said}")[:500])
            taken = [r for i, r in enumerate(rows) if i not in refused]
            acks.add(taken, "sent")
            counts["rows_sent"] += len(taken)
            counts["rows_rejected"] += len(refused)

        def split(rows: list[dict[str, Any]], error: str) -> None:
            if len(rows) > 1:  # which record? halves until the refused ones stand alone
                half = len(rows) // 2
                post(rows[:half])
                post(rows[half:])
                return
            acks.add(rows, "rejected", error)
            counts["rows_rejected"] += 1

        try:
            if ring is not None:  # an erasure's removals first, whatever the model says
                _remove(wh, d, ring, client, acks, counts, erased=True)
                acks.flush()
            for page in pages(wh, d):
                for i in range(0, len(page), size):
                    post(page[i : i + size])
            if ring is not None and remove:
                _remove(wh, d, ring, client, acks, counts)
        finally:  # what the API took before a stop is recorded too
            acks.flush()
            counts["retries"] = client.stats.retries


def removal_counts(erased: bool) -> tuple[str, str, str]:
    """The counts of a removal pass (removed, refused) and the status a refused record keeps:
    ``rows_removed``, ``rows_remove_rejected``, ``remove_rejected`` — or, for the records
    erasures left to remove, ``rows_erased_removed``, ``rows_erased_remove_rejected`` and
    ``erased`` (still to remove: tried again first next push)."""
    if erased:
        return "rows_erased_removed", "rows_erased_remove_rejected", ERASED
    return "rows_removed", "rows_remove_rejected", "remove_rejected"


def _remove(
    wh: Warehouse,
    d: RestDestination,
    ring: KeyRing,
    client: HttpClient,
    acks: Acks,
    counts: dict[str, int],
    *,
    erased: bool = False,
) -> None:
    """Remove at the API the records that left the model (``on_remove: delete``), after the
    upserts (a record whose key changed: the new one first). A removal the API took drops the
    record's state; one it refused is kept as ``remove_rejected`` and tried again next push.
    ``erased``: the records erasures left to remove instead (:func:`removal_counts`)."""
    removed, rejected, status = removal_counts(erased)
    counts |= {removed: 0, rejected: 0}
    path = d.delete_path or HUBSPOT_ARCHIVE
    one_by_one = "{key}" in path
    by_record_id = d.preset == "hubspot_contacts" and d.delete_path is None
    size = 1 if one_by_one else endpoint(d)[2]

    def refuse(rows: list[tuple[str, str, str | None]], error: str) -> None:
        acks.keep([(h, r, tokens[h]) for h, r, _ in rows], mask_text(error)[:500], status=status)
        counts[rejected] += len(rows)

    def delete(rows: list[tuple[str, str, str | None]]) -> None:
        keys = [k for _, _, k in rows if k is not None]
        assert len(keys) == len(rows)
        try:
            if by_record_id:  # (HubSpot archives by its record ids: read them by the keys)
                counts["requests"] += 1
                read = _json(client.send("POST", HUBSPOT_READ, json=hubspot_read(d, keys)))
                if not (isinstance(read, dict) and isinstance(read.get("results"), list)):
                    # (not HubSpot's answer: a key it holds none by would count as removed)
                    refuse(rows, "HubSpot's batch read of their record ids answered no results")
                    return
                found = hubspot_ids(d, read, keys)
                merged = hubspot_merged(d, read, keys)
                if merged:  # (archiving the survivor archives whoever was merged into it too)
                    refuse(
                        [rows[i] for i in sorted(merged)],
                        f"{MERGED} (it holds other email addresses too): archiving it would "
                        "archive them as well — remove the record, or this address, at HubSpot "
                        "by hand",
                    )
                gone = [h for i, (h, _, _) in enumerate(rows) if i not in found and i not in merged]
                acks.remove(gone)  # (HubSpot holds none by that key: removed already)
                counts[removed] += len(gone)
                rows = [rows[i] for i in sorted(found) if i not in merged]
                keys = [found[i] for i in sorted(found) if i not in merged]
                if not rows:
                    return
            counts["requests"] += 1
            if one_by_one:
                where = path.replace("{key}", urllib.parse.quote(keys[0], safe=""))
                response = client.send(d.delete_method, where)
            else:
                response = client.send(d.delete_method, path, json=removal_body(d, keys))
        except RestHttpError as e:
            if one_by_one and e.status in (404, 410):  # gone already: what a removal wants
                acks.remove([rows[0][0]])
                counts[removed] += 1
                return
            if e.status in STOPPING or e.status < 400 or e.status >= 500:
                raise
            if len(rows) > 1:
                half = len(rows) // 2
                delete(rows[:half])
                delete(rows[half:])
                return
            refuse(rows, e.message)
            return
        refused, unnamed = refused_inside(d, _answer(d, response), keys)
        if unnamed is not None and len(rows) > 1:
            half = len(rows) // 2
            delete(rows[:half])
            delete(rows[half:])
            return
        if unnamed is not None:
            refused = {0: unnamed}
        for i, said in refused.items():
            refuse([rows[i]], f"the API refused its removal: {said}")
        acks.remove([h for i, (h, _, _) in enumerate(rows) if i not in refused])
        counts[removed] += len(rows) - len(refused)

    after = ""
    tokens: dict[str, str] = {}
    while page := leaving(wh, d, limit=READ, after=after, erased=erased):
        after = page[-1][0]
        tokens = {h: k for h, _, k in page}
        named = opened(wh, d, ring, page)
        readable = [row for row in named if row[2] is not None]
        unreadable = [row for row in named if row[2] is None]
        if unreadable:  # (a key under a key no longer in the ring, or altered: named, kept)
            refuse(
                unreadable,
                f"its kept key cannot be read for this record (altered, or {LOST_KEY} it was "
                "encrypted under)",
            )
        for i in range(0, len(readable), size):
            delete(readable[i : i + size])
