"""What records look like on the wire, per API: the generic REST shape (dotted columns nested)
and the ``hubspot_contacts`` preset — endpoints, bodies, and the records a 2xx answer refuses."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Sequence
from typing import Any, Final

from personify.config import RestDestination
from personify.destinations.consent import unsent_columns as _hidden
from personify.destinations.state import HASH, KEY
from personify.errors import ConfigError

HUBSPOT: Final = ("/crm/v3/objects/contacts/batch/upsert", "inputs", 100)


HUBSPOT_ARCHIVE: Final = "/crm/v3/objects/contacts/batch/archive"
"""HubSpot's batch archive: ``{"inputs": [{"id": …}]}`` by HubSpot's record id only (it takes
no ``idProperty``, and answers 204 for an id it does not hold)."""
HUBSPOT_READ: Final = "/crm/v3/objects/contacts/batch/read"
"""HubSpot's batch read: ``{"idProperty", "inputs": [{"id": …}], "properties"}`` — the record
ids of the contacts a removal names by the destination's key (an email)."""
HUBSPOT_OTHER_EMAILS: Final = "hs_additional_emails"
"""The property of a HubSpot contact holding its other email addresses (``;``-separated): those
of the contacts merged into it — the survivor of a merge holds both people's."""


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _record(row: dict[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A row as the record sent: ``a.b`` columns nested as ``{"a": {"b": …}}``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in (KEY, HASH) or name in skip:
            continue
        *path, last = name.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"column {name!r} nests inside {part!r}, which is a value")
        node[last] = _plain(value)
    return out


def shaped(d: RestDestination, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if d.preset == "meta_audience":  # (hashed identifiers, in the request's own shape: meta)
        from personify.destinations.meta import sample

        return sample(d, rows)
    if d.preset == "google_ads_audience":
        from personify.destinations import google

        return google.sample(d, rows)
    hidden = _hidden(d)
    if d.preset == "hubspot_contacts":
        return [
            {
                "idProperty": d.key,
                "id": str(r[d.key]),
                "properties": {
                    k: v
                    for k, v in _record(r, frozenset({d.key}) | hidden).items()
                    if v is not None
                },
            }
            for r in rows
        ]
    return [_record(r, hidden) for r in rows]


BATCH: Final = 100
"""Records per request when ``batch_size`` is not given."""


def endpoint(d: RestDestination) -> tuple[str, str | None, int]:
    if d.preset == "hubspot_contacts":
        path, key, most = HUBSPOT
        return d.path or path, d.records_key or key, min(d.batch_size or BATCH, most)
    assert d.path is not None
    return d.path, d.records_key, d.batch_size or BATCH


def removal_body(d: RestDestination, keys: list[str]) -> Any:
    """The body of a batch removal naming ``keys`` (``hubspot_contacts``: HubSpot's record ids,
    :func:`hubspot_read` and :func:`hubspot_ids`)."""
    if d.preset == "hubspot_contacts":
        return {d.records_key or "inputs": [{"id": k} for k in keys]}
    records = [{d.key: k} for k in keys]
    return {d.records_key: records} if d.records_key else records


def hubspot_read(d: RestDestination, keys: Sequence[str]) -> dict[str, Any]:
    """The body of a batch read of the contacts whose key (``d.key``, e.g. ``email``) is one of
    ``keys``: HubSpot answers their record ids and that property."""
    return {
        "idProperty": d.key,
        "properties": [d.key, HUBSPOT_OTHER_EMAILS],
        "inputs": [{"id": k} for k in keys],
    }


def hubspot_ids(d: RestDestination, body: Any, keys: Sequence[str]) -> dict[int, str]:
    """The record id of each of ``keys`` (by position) a batch read's answer holds; a key it
    does not hold (never created, or archived already: HubSpot lists it in ``errors``) is
    absent. HubSpot stores emails lower-cased: a key matches case-insensitively when no other
    key of the batch differs from it by case alone."""
    exact = {k: i for i, k in enumerate(keys)}
    folded: dict[str, int | None] = {}
    for i, k in enumerate(keys):
        folded[k.lower()] = None if k.lower() in folded else i
    out: dict[int, str] = {}
    results = body.get("results") if isinstance(body, dict) else None
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict) or not result.get("id"):
            continue
        properties = result.get("properties")
        value = properties.get(d.key) if isinstance(properties, dict) else None
        if value is None:
            continue
        at = exact.get(str(value), folded.get(str(value).lower()))
        if at is not None:
            out.setdefault(at, str(result["id"]))
    return out


def hubspot_merged(d: RestDestination, body: Any, keys: Sequence[str]) -> dict[int, str]:
    """Of ``keys`` (by position), those a batch read's answer found on a contact HubSpot merged
    with another — one holding other email addresses too (``hs_additional_emails``), as its
    own or as one of those — and that contact's record id. Archiving it would archive the other
    record(s) merged into it as well: maybe another person, maybe one the destination still
    holds."""
    folded = {k.lower(): i for i, k in enumerate(keys)}
    out: dict[int, str] = {}
    results = body.get("results") if isinstance(body, dict) else None
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict) or not result.get("id"):
            continue
        properties = result.get("properties")
        if not isinstance(properties, dict):
            continue
        others = [
            e.strip().lower() for e in str(properties.get(HUBSPOT_OTHER_EMAILS) or "").split(";")
        ]
        others = [e for e in others if e]
        if not others:
            continue
        for address in [str(properties.get(d.key) or "").lower(), *others]:
            at = folded.get(address)
            if at is not None:
                out.setdefault(at, str(result["id"]))
    return out


def _errors_path(d: RestDestination) -> str | None:
    return d.errors_path or ("errors" if d.preset == "hubspot_contacts" else None)


def refused_inside(
    d: RestDestination, body: Any, keys: Sequence[str]
) -> tuple[dict[int, str], str | None]:
    """The records of a batch (``keys``, in order) a 2xx answer's ``errors_path`` list says the
    API refused (a HubSpot 207 Multi-Status): their positions → the API's message; and the
    message of an error naming no record of the batch (then which record is unknown)."""
    path = _errors_path(d)
    if path is None or body is None:
        return {}, None
    node = body
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, list):
        return {}, None
    where = {k: i for i, k in enumerate(keys)}
    refused: dict[int, str] = {}
    unnamed: str | None = None
    for item in node:
        said = _said(item)
        named: set[int] = set()
        if isinstance(item, dict):
            index = item.get("index")
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(keys):
                named.add(index)
            context = item.get("context")
            candidates = [item.get(d.key), item.get("id")]
            if isinstance(context, dict):
                candidates += [context.get("ids"), context.get("id"), context.get(d.key)]
            for value in candidates:
                for one in value if isinstance(value, list) else [value]:
                    if one is not None and str(one) in where:
                        named.add(where[str(one)])
        for i in named:
            refused.setdefault(i, said)
        if not named:
            unnamed = unnamed or said
    return refused, unnamed


def _said(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("message", "error", "detail"):
            if isinstance(item.get(key), str) and item[key]:
                return str(item[key])
    return json.dumps(item, default=str)[:300]
