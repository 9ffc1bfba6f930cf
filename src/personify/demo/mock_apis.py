"""Local mock APIs: a real HTTP server (Starlette on uvicorn, a thread, an ephemeral loopback
port) emulating the four REST presets' APIs — for tests, the demo and the benchmark.

==========================================  ==============================================
endpoint                                    emulates
==========================================  ==============================================
``POST /crm/v3/objects/contacts/search``    HubSpot search: ``lastmodifieddate`` GTE filter
                                            (epoch ms), sorted ascending, cursor in the body
                                            (``paging.next.after`` → ``after``); Bearer auth
``GET /admin/api/2024-10/orders.json``      Shopify orders: ``updated_at_min``, ``limit``
                                            ≤ 250, ``Link`` header with an opaque
                                            ``page_info`` (other filters refused beside it);
                                            ``X-Shopify-Access-Token``
``GET /api/v2/incremental/tickets/          Zendesk incremental export: ``start_time`` (epoch
cursor.json``                               s), ``after_url`` / ``after_cursor``,
                                            ``end_of_stream``; Basic ``email/token:TOKEN``
``GET /v1/charges``                         Stripe list: newest first, ``created[gte]``,
                                            ``starting_after``, ``has_more``; Basic with the
                                            key as user name (or Bearer)
``GET /generic/items``                      offset/limit with ``total``
``GET /generic/pages``                      page number (1-based) with ``total_pages``
``GET /generic/linked``                     next URL in the body (``next``)
``GET /generic/moved?to=URL``               a redirect (302) to ``URL`` (no auth needed)
``POST /crm/v3/objects/contacts/batch/      HubSpot batch upsert / read / archive (a
upsert``, ``…/batch/read``,                 destination's pushes and removals: archive by
``…/batch/archive``                         record id, read by ``idProperty`` to learn it);
                                            with ``multi_status`` an upsert's bad inputs come
                                            back in a 207's ``errors`` (``context.ids``), the
                                            rest taken
``POST /generic/records``,                  a generic destination: a JSON array of records
``DELETE /generic/records/{key}``           (by ``id``) upserted, refused ones listed in a
                                            200's ``failures`` (``index``); one removed
``POST /oauth/token``                       OAuth2 client credentials (short-lived tokens)
==========================================  ==============================================

The generic endpoints take a Bearer token (static or issued by ``/oauth/token``) or
``?api_key=``. :class:`Faults` injects what real APIs do: 429 with ``Retry-After`` every Nth
request or above a request rate, 500s, slow answers (client timeouts), a one-off 400.
Records are changed with :meth:`MockApis.upsert` (stamping the update time), so incremental
syncs have something to find.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from personify.config import Project

TOKEN: Final = "mock-token"  # noqa: S105  (a test credential of a local mock)
"""The credential every mock API accepts by default."""
CLIENT_ID: Final = "mock-client"
CLIENT_SECRET: Final = "mock-secret"  # noqa: S105  (a test credential of a local mock)

APIS: Final = ("contacts", "orders", "tickets", "charges", "items")
_CURSOR: Final = {
    "contacts": "updatedAt",
    "orders": "updated_at",
    "tickets": "updated_at",
    "charges": "created",
    "items": "updated_at",
}


@dataclass
class Faults:
    """Failures to inject (counters shared by every endpoint except ``/oauth/token``)."""

    rate_limit_every: int = 0
    """Every Nth request answers 429 (0: never)."""
    retry_after: int = 0
    """``Retry-After`` seconds of those 429s."""
    requests_per_second: float | None = None
    """Above this rate (a token bucket, one second's burst), answer 429."""
    fail_every: int = 0
    """Every Nth request answers 500 (0: never)."""
    fail_next: int = 0
    """The next N requests answer 500."""
    unavailable_next: int = 0
    """The next N requests answer 503 with ``Retry-After: retry_after``."""
    slow_next: int = 0
    """The next N requests answer after ``slow_seconds``."""
    slow_seconds: float = 0.0
    refuse_next: int = 0
    """The next N data requests answer 400 (a terminal failure mid-sync)."""
    delay_seconds: float = 0.0
    """Every answer waits this long (a slow API)."""
    repeat_next: bool = False
    """``/generic/linked`` answers its own URL as the next page's (a pagination that loops)."""
    page_cap: int = 0
    """``/generic/items`` answers at most this many records a page, whatever ``limit`` asks
    (0: as many as asked) — an API's own maximum page size."""
    hide_every: int = 0
    """``/generic/items`` leaves every Nth record out of its pages (0: none) — a list filtered
    after paging (permissions): pages come short mid-stream."""
    clamp_offset: bool = False
    """``/generic/items`` answers an offset past the end with the last page again."""


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.astimezone(UTC).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return str(value)


def _instant(value: Any) -> datetime:
    """A record's time (a broken one — records may be broken on purpose — sorts first)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class MockApis:
    """The mock APIs' data and behaviour (mutable from the test thread; thread-safe)."""

    contacts: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    tickets: list[dict[str, Any]] = field(default_factory=list)
    charges: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    token: str = TOKEN
    token_ttl: int = 3600
    search_window: int = 10_000
    """Results a HubSpot search may page through (HubSpot's limit): beyond, it answers 400."""
    zendesk_page_size: int = 1000
    """Tickets per export page when the request names no ``per_page`` (Zendesk's is 1000)."""
    faults: Faults = field(default_factory=Faults)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    """Every data request: method, path, query parameters."""
    pushed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Contacts upserted through ``/crm/v3/objects/contacts/batch/upsert`` (a destination's
    pushes): id → properties, merged as HubSpot does."""
    upserts: int = 0
    """Records taken by that endpoint (a record sent twice counts twice)."""
    archives: int = 0
    """Records named to ``/crm/v3/objects/contacts/batch/archive`` or ``DELETE
    /generic/records/{key}`` and removed (a record removed twice counts once)."""
    archive_bodies: list[Any] = field(default_factory=list)
    """The body of each batch archive request, as sent."""
    record_ids: dict[str, str] = field(default_factory=dict)
    """HubSpot's record id of each contact in :attr:`pushed` (given at its creation)."""
    multi_status: bool = False
    """HubSpot's batch upsert answers 207 Multi-Status naming the inputs it refused in
    ``errors[].context.ids`` and takes the others (default: one bad input refuses all, 400)."""
    refuse_archive: frozenset[str] = frozenset()
    """Ids whose archive HubSpot refuses (a 207 ``errors`` entry naming them)."""
    merged_into: dict[str, str] = field(default_factory=dict)
    """HubSpot merged contacts: an email → the email of the contact it was merged into (the
    survivor, which holds it in ``hs_additional_emails``); a batch read by either finds the
    survivor, and archiving the survivor archives them both."""
    read_answers_nothing: bool = False
    """HubSpot's batch read answers 200 with an empty body (as a proxy or an outage page might)."""
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``/generic/records``: id → record."""
    issued: dict[str, float] = field(default_factory=dict)
    """OAuth tokens issued → expiry (monotonic)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _count: int = 0
    _next_record: int = 500
    _version: int = 0
    _cache: dict[str, Any] = field(default_factory=dict)
    _bucket: float = 0.0
    _stamp: float = 0.0

    # -------------------------------------------------------------------------- data
    def upsert(self, api: str, record: dict[str, Any], *, at: datetime | None = None) -> None:
        """Add or change a record of ``api`` (matched by ``id``), stamping its update time."""
        when = at or datetime.now(UTC)
        key = _CURSOR[api]
        record = dict(record)
        if api == "charges":
            record.setdefault(key, int(when.timestamp()))
        else:
            record[key] = _iso(when)
        with self.lock:
            self._version += 1
            rows: list[dict[str, Any]] = getattr(self, api)
            for i, old in enumerate(rows):
                if old["id"] == record["id"]:
                    rows[i] = {**old, **record}
                    return
            rows.append(record)

    def revoke_tokens(self) -> None:
        """Every OAuth token issued so far stops working (the next call gets a 401)."""
        with self.lock:
            self.issued.clear()

    def data_requests(self, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for _, p, _ in self.requests if path_part in p)

    # ----------------------------------------------------------------------- faults
    def _fault(self) -> Response | float | None:
        """A fault response for this request, or seconds to wait first, or nothing."""
        f = self.faults
        with self.lock:
            self._count += 1
            n = self._count
            if f.fail_next > 0:
                f.fail_next -= 1
                return _error(500, "injected failure")
            if f.unavailable_next > 0:
                f.unavailable_next -= 1
                return _error(503, "down for maintenance", {"Retry-After": str(f.retry_after)})
            if f.fail_every and n % f.fail_every == 0:
                return _error(500, "injected failure")
            if f.rate_limit_every and n % f.rate_limit_every == 0:
                return _error(429, "rate limited", {"Retry-After": str(f.retry_after)})
            if f.requests_per_second:
                now = time.monotonic()
                rate = f.requests_per_second
                self._bucket = min(rate, self._bucket + (now - self._stamp) * rate)
                self._stamp = now
                if self._bucket < 1:
                    wait = max(1, int((1 - self._bucket) / rate + 0.999))
                    return _error(429, "rate limited", {"Retry-After": str(wait)})
                self._bucket -= 1
            if f.refuse_next > 0:
                f.refuse_next -= 1
                return _error(400, "injected refusal")
            if f.slow_next > 0:
                f.slow_next -= 1
                return f.slow_seconds
            return f.delay_seconds or None

    def _authorized(self, request: Request, style: str) -> bool:
        h = request.headers
        auth = h.get("authorization", "")
        with self.lock:
            live = {t for t, exp in self.issued.items() if exp > time.monotonic()}
        bearer = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        if bearer is not None and (bearer == self.token or bearer in live):
            return style != "shopify"
        if style == "shopify":
            return h.get("x-shopify-access-token") == self.token
        if auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return False
            if style == "zendesk":
                return user.endswith("/token") and password == self.token
            if style == "stripe":
                return user == self.token
        return style == "generic" and request.query_params.get("api_key") == self.token

    # ------------------------------------------------------------------------ app
    def app(self) -> Starlette:
        routes = [
            Route("/oauth/token", self._token, methods=["POST"]),
            Route("/crm/v3/objects/contacts/search", self._hubspot, methods=["POST"]),
            Route("/crm/v3/objects/contacts/batch/upsert", self._hubspot_upsert, methods=["POST"]),
            Route("/crm/v3/objects/contacts/batch/read", self._hubspot_read, methods=["POST"]),
            Route(
                "/crm/v3/objects/contacts/batch/archive", self._hubspot_archive, methods=["POST"]
            ),
            Route("/generic/records", self._generic_records, methods=["POST"]),
            Route("/generic/records/{key}", self._generic_record_delete, methods=["DELETE"]),
            Route("/admin/api/2024-10/orders.json", self._shopify),
            Route("/api/v2/incremental/tickets/cursor.json", self._zendesk),
            Route("/v1/charges", self._stripe),
            Route("/generic/items", self._generic_offset),
            Route("/generic/pages", self._generic_pages),
            Route("/generic/linked", self._generic_linked),
            Route("/generic/moved", self._generic_moved),
        ]
        return Starlette(routes=routes)

    async def _guard(self, request: Request, style: str) -> Response | None:
        with self.lock:
            self.requests.append((request.method, request.url.path, dict(request.query_params)))
        fault = self._fault()
        if isinstance(fault, Response):
            return fault
        if fault:
            await asyncio.sleep(fault)
        if not self._authorized(request, style):
            return _error(401, "invalid credentials")
        return None

    def _since(self, api: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """The records of ``api`` updated at or after ``since``, oldest first (sorted once per
        change of the data, then sliced by binary search: a 100,000-record API stays fast)."""
        key = _CURSOR[api]
        with self.lock:
            rows: list[dict[str, Any]] = getattr(self, api)
            stamp = (id(rows), len(rows), self._version)
            cached = self._cache.get(api)
            if cached is None or cached[0] != stamp:
                ordered = sorted(rows, key=lambda r: (_instant(r[key]), str(r["id"])))
                cached = (stamp, ordered, [_instant(r[key]) for r in ordered])
                self._cache[api] = cached
        _, ordered, times = cached
        return ordered if since is None else ordered[bisect.bisect_left(times, since) :]

    async def _token(self, request: Request) -> Response:
        form = {k: v[0] for k, v in urllib.parse.parse_qs((await request.body()).decode()).items()}
        auth = request.headers.get("authorization", "")
        pair = base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else ""
        if form.get("grant_type") != "client_credentials" or pair != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return _error(401, "invalid_client")
        token = base64.urlsafe_b64encode(f"{time.monotonic_ns()}".encode()).decode()
        with self.lock:
            self.issued[token] = time.monotonic() + self.token_ttl
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl}
        )

    async def _hubspot(self, request: Request) -> Response:
        if (denied := await self._guard(request, "hubspot")) is not None:
            return denied
        body = await request.json()
        since = None
        for group in body.get("filterGroups", []):
            for f in group.get("filters", []):
                if f.get("propertyName") == "lastmodifieddate" and f.get("operator") == "GTE":
                    try:
                        since = datetime.fromtimestamp(int(f["value"]) / 1000, UTC)
                    except (TypeError, ValueError):
                        return _error(400, "lastmodifieddate must be epoch milliseconds")
        rows = self._since("contacts", since)
        limit = min(int(body.get("limit", 10)), 200)
        start = int(body.get("after") or 0)
        if start >= self.search_window:
            return _error(400, f"paging beyond {self.search_window} results is not supported")
        page = rows[start : start + limit]
        out: dict[str, Any] = {"total": len(rows), "results": page}
        if start + limit < len(rows):
            out["paging"] = {"next": {"after": str(start + limit)}}
        return JSONResponse(out)

    async def _hubspot_upsert(self, request: Request) -> Response:
        """HubSpot's batch upsert: at most 100 inputs ``{idProperty, id, properties}``; one bad
        input refuses the whole batch (400), as HubSpot does."""
        if (denied := await self._guard(request, "hubspot")) is not None:
            return denied
        inputs = (await request.json()).get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 objects")
        errors: list[dict[str, Any]] = []
        for one in inputs:
            key, value = one.get("idProperty"), str(one.get("id", ""))
            if key == "email" and "@" not in value:
                said = f"Property values were not valid: email {value!r}"
                if not self.multi_status:
                    return _error(400, said)
                errors.append(
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": said,
                        "context": {"ids": [value]},
                    }
                )
            if not isinstance(one.get("properties"), dict):
                return _error(400, "each input needs properties")
        refused = {str(i) for e in errors for i in e["context"]["ids"]}
        taken = [one for one in inputs if str(one["id"]) not in refused]
        with self.lock:
            for one in taken:
                self.pushed.setdefault(str(one["id"]), {}).update(one["properties"])
                self.upserts += 1
                if str(one["id"]) not in self.record_ids:
                    self._next_record += 1
                    self.record_ids[str(one["id"])] = str(self._next_record)
            results = [
                {"id": self.record_ids[str(one["id"])], "properties": one["properties"]}
                for one in taken
            ]
        if errors:
            return JSONResponse(
                {"status": "COMPLETE", "results": results, "numErrors": len(errors),
                 "errors": errors},
                status_code=207,
            )  # fmt: skip
        return JSONResponse({"status": "COMPLETE", "results": results})

    async def _hubspot_read(self, request: Request) -> Response:
        """HubSpot's batch read: at most 100 inputs ``{id}``, by ``idProperty`` (else by record
        id); the contacts it holds come back with their record id and the property read, the
        others in a 207's ``errors`` (OBJECT_NOT_FOUND)."""
        if (denied := await self._guard(request, "hubspot")) is not None:
            return denied
        body = await request.json()
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 objects")
        if self.read_answers_nothing:
            return Response(status_code=200)
        prop = body.get("idProperty")
        wanted = [str(one.get("id", "")) for one in inputs if isinstance(one, dict)]
        with self.lock:
            by_id = {v: k for k, v in self.record_ids.items()}
            results, missing = [], []
            for value in wanted:
                key = value.lower() if prop == "email" else value
                key = key if prop else by_id.get(value, "")
                key = self.merged_into.get(key, key)  # (a merged contact: its survivor)
                if key in self.pushed and key in self.record_ids:
                    properties = {prop or "hs_object_id": key}
                    if others := sorted(k for k, v in self.merged_into.items() if v == key):
                        properties["hs_additional_emails"] = ";".join(others)
                    results.append({"id": self.record_ids[key], "properties": properties})
                else:
                    missing.append(value)
        if missing:
            error = {"status": "error", "category": "OBJECT_NOT_FOUND",
                     "message": "Could not get some CONTACT objects, they may be deleted or not "
                     "exist. Check that ids are valid.", "context": {"ids": missing}}  # fmt: skip
            return JSONResponse(
                {"status": "COMPLETE", "results": results, "numErrors": 1, "errors": [error]},
                status_code=207,
            )
        return JSONResponse({"status": "COMPLETE", "results": results})

    async def _hubspot_archive(self, request: Request) -> Response:
        """HubSpot's batch archive: at most 100 inputs ``{"id": record id}`` — nothing else
        (HubSpot's ``BatchInputSimplePublicObjectId``: no ``idProperty``); 204. An id it does
        not hold is no error (archived already). Contacts whose key (email) is in
        :attr:`refuse_archive` come back in a 207's ``errors``, named by record id."""
        if (denied := await self._guard(request, "hubspot")) is not None:
            return denied
        body = await request.json()
        with self.lock:
            self.archive_bodies.append(body)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 100:
            return _error(400, "inputs must hold 1 to 100 objects")
        if not all(isinstance(one, dict) and set(one) == {"id"} for one in inputs):
            return _error(400, 'Invalid input JSON: each input is {"id": <record id>} only')
        ids = [str(one["id"]) for one in inputs]
        with self.lock:
            by_id = {v: k for k, v in self.record_ids.items()}
            refused = [i for i in ids if by_id.get(i) in self.refuse_archive]
            for i in ids:
                key = by_id.get(i)
                if i not in refused and key is not None and self.pushed.pop(key, None) is not None:
                    del self.record_ids[key]
                    self.archives += 1
        if refused:
            errors = [
                {"status": "error", "category": "FORBIDDEN", "message": "cannot archive",
                 "context": {"ids": [i]}}
                for i in refused
            ]  # fmt: skip
            return JSONResponse({"status": "COMPLETE", "errors": errors}, status_code=207)
        return Response(status_code=204)

    async def _generic_records(self, request: Request) -> Response:
        """A generic destination's batch upsert: a JSON array of records keyed by ``id``; a
        record without an ``id`` or with an ``email`` that is none is listed in ``failures`` by
        its position, the others kept."""
        if (denied := await self._guard(request, "generic")) is not None:
            return denied
        body = await request.json()
        if not isinstance(body, list):
            return _error(400, "send a JSON array of records")
        failures = []
        with self.lock:
            for i, record in enumerate(body):
                if not isinstance(record, dict) or not record.get("id"):
                    failures.append({"index": i, "error": "a record needs an id"})
                    continue
                if "@" not in str(record.get("email", "@")):
                    failures.append({"index": i, "error": f"not an email: {record['email']}"})
                    continue
                self.records[str(record["id"])] = record
                self.upserts += 1
        return JSONResponse({"ok": len(body) - len(failures), "failures": failures})

    async def _generic_record_delete(self, request: Request) -> Response:
        if (denied := await self._guard(request, "generic")) is not None:
            return denied
        key = request.path_params["key"]
        with self.lock:
            if self.records.pop(key, None) is None:
                return _error(404, "no such record")
            self.archives += 1
        return Response(status_code=204)

    async def _shopify(self, request: Request) -> Response:
        if (denied := await self._guard(request, "shopify")) is not None:
            return denied
        q = request.query_params
        limit = min(int(q.get("limit", 50)), 250)
        if "page_info" in q:
            if set(q) - {"page_info", "limit", "fields"}:
                return _error(400, "page_info cannot be combined with other filters")
            state = json.loads(base64.urlsafe_b64decode(q["page_info"]))
            start, since = state["o"], state["s"]
        else:
            start, since = 0, q.get("updated_at_min")
        rows = self._since("orders", _instant(since) if since else None)
        page = rows[start : start + limit]
        headers = {}
        if start + limit < len(rows):
            info = base64.urlsafe_b64encode(
                json.dumps({"o": start + limit, "s": since}).encode()
            ).decode()
            nxt = request.url.replace_query_params(limit=limit, page_info=info)
            headers["Link"] = f'<{nxt}>; rel="next"'
        return JSONResponse({"orders": page}, headers=headers)

    async def _zendesk(self, request: Request) -> Response:
        if (denied := await self._guard(request, "zendesk")) is not None:
            return denied
        q = request.query_params
        per_page = min(int(q.get("per_page", self.zendesk_page_size)), 1000)
        if "cursor" in q:
            state = json.loads(base64.urlsafe_b64decode(q["cursor"]))
            start, since = state["o"], state["s"]
        elif "start_time" in q:
            start, since = 0, int(q["start_time"])
        else:
            return _error(400, "start_time or cursor is required")
        rows = self._since("tickets", datetime.fromtimestamp(since, UTC))
        page = rows[start : start + per_page]
        cursor = base64.urlsafe_b64encode(
            json.dumps({"o": start + len(page), "s": since}).encode()
        ).decode()
        after = request.url.replace_query_params(cursor=cursor, per_page=per_page)
        return JSONResponse(
            {
                "tickets": page,
                "after_cursor": cursor,
                "after_url": str(after),
                "before_cursor": None,
                "end_of_stream": start + len(page) >= len(rows),
            }
        )

    async def _stripe(self, request: Request) -> Response:
        if (denied := await self._guard(request, "stripe")) is not None:
            return denied
        q = request.query_params
        limit = min(int(q.get("limit", 10)), 100)
        since = datetime.fromtimestamp(int(q["created[gte]"]), UTC) if "created[gte]" in q else None
        rows = self._since("charges", since)[::-1]  # newest first
        start = 0
        if "starting_after" in q:
            ids = [str(r["id"]) for r in rows]
            if q["starting_after"] not in ids:
                return _error(400, f"No such charge: {q['starting_after']}")
            start = ids.index(q["starting_after"]) + 1
        page = rows[start : start + limit]
        return JSONResponse(
            {
                "object": "list",
                "url": "/v1/charges",
                "has_more": start + limit < len(rows),
                "data": page,
            }
        )

    def _items_since(self, request: Request) -> list[dict[str, Any]]:
        since = request.query_params.get("since")
        return self._since("items", _instant(since) if since else None)

    async def _generic_offset(self, request: Request) -> Response:
        if (denied := await self._guard(request, "generic")) is not None:
            return denied
        q = request.query_params
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 10))
        rows = self._items_since(request)
        f = self.faults
        limit = min(limit, f.page_cap) if f.page_cap else limit
        if f.clamp_offset and rows and offset >= len(rows):
            offset = max(0, len(rows) - limit)
        page = [
            r
            for i, r in enumerate(rows[offset : offset + limit], offset)
            if not f.hide_every or (i + 1) % f.hide_every
        ]
        return JSONResponse({"items": page, "total": len(rows)})

    async def _generic_pages(self, request: Request) -> Response:
        if (denied := await self._guard(request, "generic")) is not None:
            return denied
        q = request.query_params
        page, per_page = int(q.get("page", 1)), int(q.get("per_page", 10))
        rows = self._items_since(request)
        pages = max(1, -(-len(rows) // per_page))
        start = (page - 1) * per_page
        return JSONResponse({"data": rows[start : start + per_page], "total_pages": pages})

    async def _generic_linked(self, request: Request) -> Response:
        if (denied := await self._guard(request, "generic")) is not None:
            return denied
        q = request.query_params
        page, per_page = int(q.get("page", 1)), int(q.get("per_page", 10))
        rows = self._items_since(request)
        start = (page - 1) * per_page
        more = start + per_page < len(rows)
        nxt = str(request.url.replace_query_params(**{**q, "page": page + 1})) if more else None
        if self.faults.repeat_next:
            nxt = str(request.url)
        return JSONResponse({"results": rows[start : start + per_page], "next": nxt})

    async def _generic_moved(self, request: Request) -> Response:
        with self.lock:  # (any credentials: a redirect is no data)
            self.requests.append((request.method, request.url.path, dict(request.query_params)))
        return Response(status_code=302, headers={"Location": request.query_params["to"]})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": {"message": message}}, status_code=status, headers=headers)


@contextlib.contextmanager
def serve_mock_apis(apis: MockApis, *, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``apis`` on a free loopback port until the block ends; yields the base URL."""
    import uvicorn

    from personify.server.runner import bind

    sock = bind(host, 0)
    config = uvicorn.Config(
        apis.app(),
        log_config=None,
        log_level="warning",
        access_log=False,
        ws="none",
        lifespan="off",
        server_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="personify-mock-apis", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the mock APIs did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


# ----------------------------------------------------------------------------- sample data
def sample_apis(n: int, *, start: datetime | None = None, step_seconds: int = 60) -> MockApis:
    """Mock APIs holding ``n`` records in each API (deterministic), updated one ``step_seconds``
    apart from ``start`` — for tests and the benchmark."""
    t0 = (start or datetime(2026, 1, 1, tzinfo=UTC)).timestamp()
    apis = MockApis()
    for i in range(1, n + 1):
        at = datetime.fromtimestamp(t0 + i * step_seconds, UTC)
        apis.contacts.append(
            {
                "id": str(100000 + i),
                "properties": {
                    "email": f"person{i}@example.org",
                    "firstname": f"First{i}",
                    "lastname": f"Last{i}",
                    "phone": None,
                    "city": "Paris",
                    "country": "FR",
                    "hs_timezone": "Europe/Paris",
                },
                "createdAt": _iso(at),
                "updatedAt": _iso(at),
                "archived": False,
            }
        )
        apis.orders.append(
            {
                "id": 5900000000000 + i,
                "email": f"person{i}@example.org",
                "cart_token": f"cart-{i}",
                "financial_status": "paid",
                "currency": "EUR",
                "subtotal_price": f"{10 + i % 50}.00",
                "total_discounts": "0.00",
                "total_price": f"{10 + i % 50}.00",
                "discount_codes": [],
                "customer": {"id": 7000000000000 + i},
                "created_at": _iso(at),
                "updated_at": _iso(at),
                "line_items": [
                    {"id": i * 10 + k, "product_id": 800 + k, "quantity": 1 + k, "price": "5.00"}
                    for k in range(1 + i % 3)
                ],
            }
        )
        apis.tickets.append(
            {
                "id": 10000 + i,
                "subject": f"Question {i}",
                "status": "open" if i % 3 else "solved",
                "priority": "normal",
                "requester_id": 100000 + i,
                "satisfaction_rating": {"score": "unoffered"},
                "created_at": _iso(at).replace(".000", ""),
                "updated_at": _iso(at).replace(".000", ""),
            }
        )
        apis.charges.append(
            {
                "id": f"ch_{i:08d}",
                "object": "charge",
                "amount": 1000 + i,
                "currency": "eur",
                "status": "succeeded",
                "customer": f"cus_{i:06d}",
                "billing_details": {"email": f"person{i}@example.org"},
                "created": int(at.timestamp()),
            }
        )
        apis.items.append({"id": i, "name": f"item {i}", "updated_at": _iso(at)})
    return apis


# ------------------------------------------------------------------- the demo world, served
_Records = tuple[
    list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]
]
_WORLDS: dict[tuple[str, int, int], _Records] = {}
_WORLDS_LOCK = threading.Lock()


def world_apis(data: Path) -> MockApis:
    """Mock APIs serving a demo world's data folder in the four presets' shapes: CRM contacts
    (HubSpot, the latest version of each), shop orders with their line items (Shopify), tickets
    (Zendesk, ``requester_id`` the CRM id) and a charge per paid order (Stripe). Malformed JSON
    lines of the files are not served (an API answers JSON). A 429 (``Retry-After: 0``) is
    sprinkled in every 40th request. The records are read once per process and world (its
    ``manifest.json``, written last, names the version): the demo's four syncs and its webhooks
    share them."""
    manifest = data / "manifest.json"
    key = None
    if manifest.is_file():
        stat = manifest.stat()
        key = (str(data.resolve()), stat.st_mtime_ns, stat.st_size)
    with _WORLDS_LOCK:
        records = _WORLDS.get(key) if key is not None else None
        if records is None:
            records = _world_records(data)
            if key is not None:
                _WORLDS.clear()  # one world at a time
                _WORLDS[key] = records
    apis = MockApis(faults=Faults(rate_limit_every=40))
    apis.contacts, apis.orders, apis.tickets, apis.charges = (list(r) for r in records)
    return apis


def _world_records(data: Path) -> _Records:
    import pyarrow.parquet as pq

    apis = MockApis()
    contacts: dict[str, dict[str, Any]] = {}
    keyless: list[dict[str, Any]] = []  # broken on purpose: each one served (and quarantined)
    for name in ("contacts.jsonl", "updates.jsonl"):
        for record in _json_lines(data / "crm" / name):
            if record.get("id") is None:
                keyless.append(record)
                continue
            old = contacts.get(str(record["id"]))
            if old is None or str(record.get("updatedAt")) >= str(old.get("updatedAt")):
                contacts[str(record["id"])] = record
    apis.contacts = [*contacts.values(), *keyless]
    items: dict[str, list[dict[str, Any]]] = {}
    for item in pq.read_table(data / "order_items.parquet").to_pylist():
        line = {k: item[k] for k in ("product_id", "sku", "title", "quantity", "price")}
        items.setdefault(str(item["order_id"]), []).append(line)
    for order in pq.read_table(data / "orders.parquet").to_pylist():
        created, updated = order["created_at"], order["updated_at"]
        code = order.pop("discount_code")
        shop = {
            **order,
            "customer": {"id": order.pop("customer_id")},
            "discount_codes": [{"code": code}] if code else [],
            "line_items": items.get(str(order["id"]), []),
            "created_at": _iso(created) if created else None,
            "updated_at": _iso(updated) if updated else None,
        }
        apis.orders.append(shop)
        paid = order["financial_status"] == "paid" and order["id"] is not None
        if paid and created and order["total_price"] is not None:
            apis.charges.append(
                {
                    "id": f"ch_{order['id']}",
                    "object": "charge",
                    "amount": round(order["total_price"] * 100),
                    "currency": str(order["currency"] or "eur").lower(),
                    "status": "succeeded",
                    "customer": shop["customer"]["id"],
                    "billing_details": {"email": order["email"]},
                    "metadata": {"order_id": order["id"]},
                    "created": int(created.timestamp()),
                }
            )
    for ticket in _json_lines(data / "tickets.jsonl"):
        requester = ticket.get("requester") or {}
        ticket["requester_id"] = requester.get("external_id")
        apis.tickets.append(ticket)
    return apis.contacts, apis.orders, apis.tickets, apis.charges


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open("rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "id" in record:
                yield record


@contextlib.contextmanager
def serve_project_apis(project: Project) -> Iterator[str]:
    """Serve a demo project's world (``demo.data``) as live mock APIs while the block runs: the
    REST sources of a demo project name ``client.base_url: local:demo`` and come up with it."""
    from personify.errors import SourceError

    settings = project.config.demo
    if settings is None:
        raise SourceError(
            "base_url local:demo serves a demo world, and this project is no demo",
            hint="give the source a real client.base_url",
        )
    with serve_mock_apis(world_apis(project.path(settings.data))) as url:
        yield url


# ---------------------------------------------------------------- a demo project wired to it
LIVE_REPLACED: Final = frozenset({"crm", "helpdesk", "shop_orders", "shop_order_items"})
"""The demo's file sources that ``personify demo --live-apis`` replaces by REST sources."""
WEBHOOK_SOURCE: Final = "shop_webhooks"
"""The demo's webhook source (signed Shopify order deliveries)."""
TOKEN_VAR: Final = "${PERSONIFY_DEMO_API_TOKEN:-" + TOKEN + "}"
_WEBHOOK_SECRET: Final = "demo-webhook-secret"  # noqa: S105  (the local demo's, not a real one)


def live_sources_yaml() -> str:
    """The demo's REST and webhook sources (YAML list items for ``sources:``): the CRM, the
    shop's orders, the help desk and the payments pulled from the world served as live mock
    APIs (``base_url: local:demo``), and the shop's signed order webhooks."""
    auth = {
        "crm": f'{{type: bearer, token: "{TOKEN_VAR}"}}',
        "shop_orders": f'{{type: api_key, name: X-Shopify-Access-Token, api_key: "{TOKEN_VAR}"}}',
        "helpdesk": '{type: http_basic, username: "support@shop.example/token", '
        f'password: "{TOKEN_VAR}"}}',
        "payments": f'{{type: http_basic, username: "{TOKEN_VAR}"}}',
    }
    presets = {
        "crm": (
            "hubspot_contacts",
            "CRM contacts, HubSpot-style (a search API, cursor in the body)",
        ),
        "shop_orders": (
            "shopify_orders",
            "shop orders and line items, Shopify-style (Link headers)",
        ),
        "helpdesk": ("zendesk_tickets", "help-desk tickets, Zendesk-style (an incremental export)"),
        "payments": ("stripe_charges", "payments, Stripe-style (starting_after), as events"),
    }
    lines = [
        "",
        "  # Live APIs: the world served as local mock APIs while a sync runs (base_url",
        "  # local:demo; 429s sprinkled in), pulled incrementally through the REST presets.",
    ]
    for name, (preset, about) in presets.items():
        lines += [
            "",
            f"  # {about}",
            f"  - name: {name}",
            "    kind: rest",
            f"    preset: {preset}",
            "    client:",
            "      base_url: local:demo",
            f"      auth: {auth[name]}",
            "      requests_per_second: 500",
            "      backoff_base: 0.05",
            "    schedule: {every: 15m}",
        ]
    lines += [
        "    resources:   # charges as events (the orders come from the shop)",
        "      - name: charges",
        "        table: events",
        "        endpoint:",
        "          path: /v1/charges",
        "          params: {limit: 100}",
        "          data_selector: data",
        "          paginator: {type: record_cursor, cursor_param: starting_after, "
        "has_more_path: has_more}",
        "          incremental: {cursor_path: created, start_param: 'created[gte]', "
        "start_format: unix, initial_value: '1970-01-01T00:00:00Z'}",
        "        mapping: {message_id: id, type: =track, event: =Payment Succeeded, "
        "user_id: customer, timestamp: created|unix, properties: metadata}",
        "",
        "  # The shop's order webhooks (POST /webhooks/shop_webhooks), signed as Shopify signs",
        f"  - name: {WEBHOOK_SOURCE}",
        "    kind: webhook",
        "    scheme: shopify",
        f'    secrets: ["${{PERSONIFY_DEMO_WEBHOOK_SECRET:-{_WEBHOOK_SECRET}}}"]',
        "    table: orders",
        "    mapping: {order_id: id|string, email: email, status: financial_status, "
        "currency: currency, subtotal: subtotal_price, discount: total_discounts, "
        "total: total_price, created_at: created_at, updated_at: updated_at, "
        "source_customer_id: customer.id|string}",
    ]
    return "\n".join(lines) + "\n"


def send_order_webhooks(url: str, data: Path, *, count: int = 10) -> dict[str, int]:
    """POST the world's ``count`` latest orders to the demo's webhook source, signed as Shopify
    signs them (the delivery id is the order's, so a rerun stores nothing twice). Returns the
    answers counted by status."""
    import httpx

    from personify.sources.webhooks import sign_shopify

    apis = world_apis(data)
    latest = sorted(
        (o for o in apis.orders if o.get("updated_at")), key=lambda o: str(o["updated_at"])
    )[-count:]
    out: dict[str, int] = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for order in latest:
            body = json.dumps(order, default=str).encode()
            headers = {
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/updated",
                "X-Shopify-Webhook-Id": f"orders-updated-{order['id']}-{order['updated_at']}",
                "X-Shopify-Hmac-Sha256": sign_shopify(_WEBHOOK_SECRET, body),
            }
            r = client.post(f"/webhooks/{WEBHOOK_SOURCE}", content=body, headers=headers)
            status = r.json().get("status", "refused") if r.status_code == 200 else "refused"
            out[status] = out.get(status, 0) + 1
    return out
