"""Sync one REST source: every resource, page by page, each page stored with its state at once.

For each resource: read its state (:mod:`~personify.sources.rest.incremental`); resume the
interrupted sync if there is one, else start a new one at ``cursor - overlap`` (or the initial
value); then, page after page: fetch it (politely: :mod:`~personify.http`), take
its records and work out the next page's request. Once ``batch_rows`` records are gathered (and
at the last page), in ONE warehouse transaction: load their rows
(:mod:`~personify.sources.rest.mapping`), quarantine the invalid ones and save the state saying
which page comes next. A crash loses nothing and doubles nothing: the rerun continues at the
first page not stored (pages fetched but not yet stored are fetched again) — or, the API
refusing that page (an expired cursor), starts over from the cursor. At the end, the keys
and value types of the records pulled are observed for schema drift
(:func:`personify.quality.drift.observe_resource`).

Counts: ``pages``, ``requests``, ``retries``, ``rate_limited``, ``rows_read``, ``rows_loaded``,
``rows_quarantined``, ``rows_duplicate`` (``rows_read = rows_loaded + rows_duplicate +
rows_quarantined``), per table in the log.

Public steps, for readers that re-read a source as its sync would (reconciliation,
:mod:`personify.quality.read`): :func:`local_api` (a ``local:`` base URL served),
:func:`paginator_of`, :func:`begin_run` (the first request of a run from a state),
:func:`largest` and :func:`oldest_first` (a page's largest cursor value; whether pages come
oldest first, so that a search stopped by ``max_pages`` goes on as a new one from there).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec

from personify import clock
from personify.config import (
    EventsDestination,
    Incremental,
    Paginator,
    RestDestination,
    RestResource,
    RestSource,
)
from personify.http import HttpClient
from personify.http.errors import RestError, RestHttpError, RestResponseError
from personify.progress import Progress
from personify.session import Session
from personify.sources import SyncResult
from personify.sources.presets import resolve_preset
from personify.sources.rest.incremental import (
    ResourceState,
    Run,
    as_instant,
    later,
    load_state,
    save_state,
    start_value,
    substitute,
)
from personify.sources.rest.mapping import Target, last_per_key, load_records, targets_for
from personify.sources.rest.paginators import PageRequest, first_request, next_request
from personify.sources.rest.paths import find_records, get_path
from personify.sources.schedule import still_held
from personify.warehouse import Warehouse

log = logging.getLogger(__name__)

COUNTS = (
    "pages",
    "requests",
    "retries",
    "rate_limited",
    "rows_read",
    "rows_loaded",
    "rows_quarantined",
    "rows_duplicate",
)

PageHook = Callable[[str, int], None]
"""Called after each commit: ``(resource, pages fetched so far)`` (tests inject faults with
it)."""


def sync_rest_source(
    session: Session,
    source: RestSource,
    *,
    progress: Progress | None = None,
    after_page: PageHook | None = None,
    client: HttpClient | None = None,
) -> SyncResult:
    """Pull every resource of ``source`` (see the module docstring)."""
    started = time.perf_counter()
    spec = resolve_preset(source)
    counts = dict.fromkeys(COUNTS, 0)
    with contextlib.ExitStack() as stack:
        spec = local_api(stack, session, spec)
        http = client or stack.enter_context(HttpClient(spec.client, source=spec.name))
        for resource in spec.resources:
            _sync_resource(session.warehouse, spec, resource, http, counts, progress, after_page)
        counts["requests"] = http.stats.requests
        counts["retries"] = http.stats.retries
        counts["rate_limited"] = http.stats.rate_limited
    return SyncResult(source.name, "rest", counts, time.perf_counter() - started)


_Api = TypeVar("_Api", RestSource, RestDestination, EventsDestination)

LOCAL_APIS: Final[dict[str, str]] = {"demo": "personify.demo.mock_apis:serve_project_apis"}
"""``client.base_url: local:NAME`` → ``module:function(project)``, a context manager serving a
local API for the duration of the sync and yielding its URL (``local:demo``: a demo project's
world as live mock APIs, so the demo's REST sources come up when a sync needs them)."""


def local_api(stack: contextlib.ExitStack, session: Session, source: _Api) -> _Api:
    """``source`` (a REST source or destination) itself, or — its ``client.base_url`` being
    ``local:NAME`` — ``source`` with the URL of that local API, served (:data:`LOCAL_APIS`)
    until ``stack`` closes."""
    base = source.client.base_url or ""
    if not base.startswith("local:"):
        return source
    name = base.removeprefix("local:")
    if name not in LOCAL_APIS:
        raise RestError(
            f"{source.name}: no local API named {name!r}",
            hint=f"known: {', '.join(f'local:{n}' for n in LOCAL_APIS)}",
        )
    module, _, attr = LOCAL_APIS[name].partition(":")
    serve = getattr(importlib.import_module(module), attr)
    url = stack.enter_context(serve(session.project))
    client = msgspec.structs.replace(source.client, base_url=url)
    return msgspec.structs.replace(source, client=client)


def paginator_of(source: RestSource, resource: RestResource) -> Paginator:
    """The resource's paginator, else the client's, else ``auto``."""
    return resource.endpoint.paginator or source.client.paginator or Paginator()


def begin_run(source: RestSource, resource: RestResource, state: ResourceState) -> Run:
    """A new run of ``resource`` from ``state``: its start value (``cursor − overlap``, or the
    initial value) put in the params or JSON body, and the first page's request.
    ``ResourceState()`` starts from the initial value: the whole source."""
    inc = resource.endpoint.incremental
    start = start_value(inc, state.cursor, source.initial_value) if inc else None
    ep = resource.endpoint
    params = {k: substitute(v, start) for k, v in ep.params.items()}
    if inc is not None and inc.start_param and start is not None:
        params[inc.start_param] = start
    body = substitute(ep.json, start) if ep.json is not None else None
    request = first_request(paginator_of(source, resource), PageRequest(ep.path, params, body))
    return Run(start=start, next=request, max=None)


def _sync_resource(
    wh: Warehouse,
    source: RestSource,
    resource: RestResource,
    http: HttpClient,
    counts: dict[str, int],
    progress: Progress | None,
    after_page: PageHook | None,
) -> None:
    state = load_state(wh, source.name, resource.name)
    run = state.run if state.run is not None and state.run.next is not None else None
    resuming = run is not None
    if run is None:
        run = begin_run(source, resource, state)
    else:
        log.info("%s/%s: resuming an interrupted sync", source.name, resource.name)
    inc = resource.endpoint.incremental
    paginator = paginator_of(source, resource)
    key = (resource.primary_key,) if isinstance(resource.primary_key, str) else resource.primary_key
    targets = targets_for(
        source.name, resource.name, resource.table, resource.mapping, resource.nested
    )
    now = clock.now()
    ahead = max(now, datetime.now(UTC)) + FUTURE_SLACK  # later cursor values are broken
    from personify.quality.drift import PAGE_SAMPLE, add_record_fields, observe_resource

    seen: dict[str, set[str]] = {}  # record keys and their types, for schema drift
    sampled = 0
    with contextlib.ExitStack() as stack:
        for target in targets:
            target.open(now)
            stack.callback(target.close)
        request: PageRequest | None = run.next
        asked: set[bytes] = set()  # the requests of this sync, to catch a pagination loop
        pages = 0
        group: list[Any] = []
        group_pages = 0
        while request is not None:
            asked.add(_asks(request))
            method = resource.endpoint.method
            try:
                response, body = http.get_json(
                    method, request.url, params=request.params or None, json=request.json
                )
            except RestHttpError as e:
                if not resuming or e.status in _NOT_THE_PAGE:
                    raise
                # the saved page is gone (an expired cursor, a deleted record it named): start
                # over from the cursor; what is read again is upserted, nothing doubled
                log.warning(
                    "%s/%s: the interrupted sync's next page answered %d; starting the sync over",
                    source.name,
                    resource.name,
                    e.status,
                )
                resuming = False
                run = begin_run(source, resource, state)
                request = run.next
                continue
            resuming = False
            records = find_records(body, resource.endpoint.data_selector)
            if records is None:
                selector = resource.endpoint.data_selector
                raise RestResponseError(
                    f"{source.name}/{resource.name}: {method} {http.shown(response.url)} "
                    "answered no list of records" + (f" at {selector!r}" if selector else ""),
                    hint="set the resource's endpoint.data_selector to where the records are",
                )
            pages += 1
            add_record_fields(seen, records[:PAGE_SAMPLE])
            sampled += min(len(records), PAGE_SAMPLE)
            nxt = next_request(paginator, request, response, body, records)
            capped = nxt is not None and resource.max_pages is not None
            capped = capped and pages >= (resource.max_pages or 0)
            if inc is not None:
                top = largest(records, inc, until=ahead)
                run.max = later(run.max, top, inc.start_format)
            if capped and inc is not None and oldest_first(records, inc, run.max):
                # what is left comes after this page's last record, and the next sync asks for
                # it from there — a new query, which also keeps under a search API's result
                # window (HubSpot's 10,000)
                nxt = None
            group.extend(records)
            group_pages += 1
            run.next = nxt
            looping = nxt is not None and _asks(nxt) in asked
            if nxt is None or capped or looping or len(group) >= source.batch_rows:
                with wh.transaction():  # the rows and the state saying what comes next: at once
                    _store(wh, targets, last_per_key(group, key), counts, now)
                    if nxt is None:
                        fmt = inc.start_format if inc else "auto"
                        saved = ResourceState(later(state.cursor, run.max, fmt), None)
                    else:  # (capped newest first: the next sync goes on at the next page)
                        saved = ResourceState(state.cursor, run)
                    still_held(wh, source.name)  # (PostgreSQL: lost with its connection?)
                    save_state(wh, source.name, resource.name, saved, finished=nxt is None)
                counts["pages"] += group_pages
                group, group_pages = [], 0
                if progress is not None:
                    progress(f"{source.name}: {resource.name}", counts["rows_read"], 0)
                if after_page is not None:
                    after_page(resource.name, pages)
            if looping:  # what was read is stored; the next sync fails here again until fixed
                raise RestResponseError(
                    f"{source.name}/{resource.name}: the page after page {pages} is one this "
                    f"sync has read already ({method} {http.shown(response.url)}): the "
                    "pagination loops",
                    hint="check the paginator: its cursor_path or next_url_path may name a "
                    "value that does not change",
                )
            if capped:  # the rest is not skipped: the next sync reads it
                log.warning(
                    "%s/%s: stopped at max_pages (%d); the next sync goes on from there",
                    source.name,
                    resource.name,
                    pages,
                )
                break
            request = nxt
    observe_resource(wh, source.name, resource.name, seen, sampled, now)


FUTURE_SLACK: Final = timedelta(days=1)
"""Cursor values further ahead of now (of the clock and of the wall clock, whichever is later)
are not taken as the cursor (see :func:`largest`); the records themselves are stored."""
_NOT_THE_PAGE: Final = frozenset({401, 403, 407})
"""Refusals of a resumed sync's first page that say nothing about the page (credentials): the
sync fails on them as always. Any other 4xx there starts the sync over."""


def _asks(request: PageRequest) -> bytes:
    """What a request asks for (its URL, parameters and body; not its page number)."""
    return msgspec.json.encode((request.url, request.params, request.json), order="sorted")


def oldest_first(records: list[Any], inc: Incremental, largest: Any) -> bool:
    """Whether the page's cursor values rise to the largest of the run (the API answers oldest
    first), as far as the page shows."""
    values = [as_instant(get_path(r, inc.cursor_path), inc.start_format) for r in records]
    instants = [v for v in values if v is not None]
    top = as_instant(largest, inc.start_format) if largest is not None else None
    rising = all(a <= b for a, b in zip(instants, instants[1:], strict=False))
    return bool(instants) and rising and instants[-1] == top


def largest(records: list[Any], inc: Incremental, *, until: datetime | None = None) -> Any:
    """The largest cursor value of a page (each value read once). Values that are no instant
    (a broken record's) are ignored when others are instants; text is compared only when no
    value is one. Instants after ``until`` are ignored too: a record dated years ahead (a
    mistyped year, milliseconds read as seconds) would make every later sync ask for changes
    since then — none, for years."""
    best: Any = None
    best_key: Any = None
    texts: list[str] = []
    for record in records:
        value = get_path(record, inc.cursor_path)
        if value is None:
            continue
        key = as_instant(value, inc.start_format)
        if key is None:
            texts.append(str(value))
        elif until is not None and key > until:
            continue
        elif best_key is None or key > best_key:
            best, best_key = value, key
    if best is None and texts:
        return max(texts)
    return best


def _store(
    wh: Warehouse, targets: list[Target], records: list[Any], counts: dict[str, int], now: Any
) -> None:
    for target in targets:
        done = load_records(wh, target, records, received_at=now)
        counts["rows_read"] += done.read
        counts["rows_loaded"] += done.loaded
        counts["rows_quarantined"] += done.quarantined
        counts["rows_duplicate"] += done.duplicate
