"""Paginators: from one page (request, response, body, records) to the next request, or none.

The styles (dlt's names): ``json_link`` (a next URL in the body), ``header_link`` (RFC 8288
``Link: <…>; rel="next"``), ``cursor`` (a cursor in the body sent back as a parameter or in the
JSON body), ``record_cursor`` (the last record's id: Stripe's ``starting_after``), ``offset``,
``page_number``, ``single_page``, and ``auto``. Stop conditions apply to every style: an empty
page (``stop_after_empty_page``), ``has_more_path`` false, ``stop_path`` true, no next link or
cursor, the total reached (``total_path``), ``maximum_offset`` / ``maximum_page``. ``offset``
without a total ends at an empty page, not a short one (see :func:`_next_offset`).

A :class:`PageRequest` is plain data, saved with the incremental state after every page, so an
interrupted sync resumes at the page after the last one stored.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import msgspec

from personify.config import Paginator
from personify.sources.rest.paths import get_path


class PageRequest(msgspec.Struct, frozen=True):
    """One page's request: the URL (relative to the base URL, or absolute), query parameters and
    JSON body."""

    url: str
    params: dict[str, Any] = {}
    json: Any = None
    page: int = 1
    """Pages of this sync so far, this one included."""
    previous: str | None = None
    """``offset`` without a total: a digest of the records of the page before this one (the
    same records again at a further offset end the sync)."""


def first_request(paginator: Paginator, request: PageRequest) -> PageRequest:
    """The first page's request, with the paginator's own parameters added."""
    params = dict(request.params)
    if paginator.type == "offset":
        params.setdefault(paginator.offset_param, paginator.offset)
        params.setdefault(paginator.limit_param, paginator.limit)
    elif paginator.type == "page_number":
        params.setdefault(paginator.page_param, paginator.base_page)
    return msgspec.structs.replace(request, params=params)


def next_request(
    paginator: Paginator,
    request: PageRequest,
    response: httpx.Response,
    body: Any,
    records: list[Any],
) -> PageRequest | None:
    """The request of the page after this one, or ``None`` when this was the last."""
    p = paginator
    if p.type == "single_page":
        return None
    if not records and p.stop_after_empty_page:
        return None
    if p.has_more_path is not None and not get_path(body, p.has_more_path):
        return None
    if p.stop_path is not None and get_path(body, p.stop_path):
        return None
    kind = p.type
    if kind == "auto":
        if p.links_next_key in response.links:
            kind = "header_link"
        elif isinstance(get_path(body, p.next_url_path), str):
            kind = "json_link"
        else:
            return None
    page = request.page + 1
    if kind == "header_link":
        link = response.links.get(p.links_next_key, {}).get("url")
        return _follow(link, response, page)
    if kind == "json_link":
        return _follow(get_path(body, p.next_url_path), response, page)
    if kind == "cursor":
        return _with_cursor(p, request, get_path(body, p.cursor_path), page)
    if kind == "record_cursor":
        last = records[-1] if records else None
        cursor = get_path(last, p.record_field) if isinstance(last, dict) else None
        return _with_cursor(p, request, cursor, page)
    if kind == "offset":
        return _next_offset(p, request, body, records, page)
    if kind == "page_number":
        return _next_page_number(p, request, body, page)
    raise AssertionError(kind)


def _follow(link: Any, response: httpx.Response, page: int) -> PageRequest | None:
    if not isinstance(link, str) or not link:
        return None
    return PageRequest(url=str(response.url.join(link)), page=page)


def _with_cursor(p: Paginator, request: PageRequest, cursor: Any, page: int) -> PageRequest | None:
    if cursor is None or cursor == "":
        return None
    if p.cursor_body_path:
        body = dict(request.json or {})
        body[p.cursor_body_path] = cursor
        return msgspec.structs.replace(request, json=body, page=page)
    params = {**request.params, p.cursor_param or "after": cursor}
    return msgspec.structs.replace(request, params=params, page=page)


def _next_offset(
    p: Paginator, request: PageRequest, body: Any, records: list[Any], page: int
) -> PageRequest | None:
    """With a total, the next ``limit`` records until the total is reached. Without one a short
    page is not the end — an API capping its page size below ``limit``, or filtering a page
    after paging, sends short pages mid-stream — so the next offset is what this page held (a
    capped page skips nothing; a filtered one reads a few records again, upserted by key) and
    the end is an empty page, or the same records as the page before (an API answering an
    offset past the end with its last page)."""
    limit = int(request.params.get(p.limit_param, p.limit))
    start = int(request.params.get(p.offset_param, p.offset))
    total = get_path(body, p.total_path) if p.total_path else None
    previous = None
    if total is not None:
        offset = start + limit
        if offset >= int(total):
            return None
    else:
        if not records:
            return None
        previous = _digest(records)
        if previous == request.previous:
            return None
        offset = start + min(len(records), limit)
    if p.maximum_offset is not None and offset >= p.maximum_offset:
        return None
    params = {**request.params, p.offset_param: offset}
    return msgspec.structs.replace(request, params=params, page=page, previous=previous)


def _digest(records: list[Any]) -> str:
    encoded = msgspec.json.encode(records, order="sorted")
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _next_page_number(
    p: Paginator, request: PageRequest, body: Any, page: int
) -> PageRequest | None:
    number = int(request.params.get(p.page_param, p.base_page)) + 1
    total = get_path(body, p.total_path) if p.total_path else None
    if total is not None and number - p.base_page >= int(total):
        return None
    if p.maximum_page is not None and number > p.maximum_page:
        return None
    params = {**request.params, p.page_param: number}
    return msgspec.structs.replace(request, params=params, page=page)
