"""The engine end to end on an embedded warehouse against the mock APIs: every pagination
style, incremental state and resuming, mapping (transforms, constants, nested arrays) and the
quarantine."""

from __future__ import annotations

from typing import Any

import pytest

from personify.config import (
    BearerAuth,
    Endpoint,
    Incremental,
    Paginator,
    RestClient,
    RestResource,
    RestSource,
    Secret,
)
from personify.demo.mock_apis import TOKEN, MockApis
from personify.session import Session
from personify.sources.rest import RestResponseError, sync_rest_source
from personify.sources.rest.incremental import load_state, start_value

MAPPING = {"product_id": "id|string", "name": "name", "updated_at": "updated_at"}


def source(
    url: str, path: str, paginator: Paginator, *, batch_rows: int = 1, **kw: Any
) -> RestSource:
    """A source over the generic endpoints, storing every page at once by default."""
    endpoint = Endpoint(
        path=path,
        params=kw.pop("params", {"per_page": 7}),
        paginator=paginator,
        incremental=kw.pop("incremental", None),
        data_selector=kw.pop("data_selector", None),
    )
    resource = RestResource(
        name="items", endpoint=endpoint, table="products", mapping=kw.pop("mapping", MAPPING), **kw
    )
    client = RestClient(base_url=url, auth=BearerAuth(token=Secret(TOKEN)))
    return RestSource(name="catalog", client=client, resources=(resource,), batch_rows=batch_rows)


def stored(session: Session) -> list[str]:
    rows = session.warehouse.fetch("SELECT product_id FROM products ORDER BY product_id")
    return [r[0] for r in rows]


def expected(apis: MockApis) -> list[str]:
    return sorted(str(r["id"]) for r in apis.items)


@pytest.mark.parametrize(
    ("path", "paginator"),
    [
        ("/generic/items", Paginator(type="offset", limit=7, total_path="total")),
        ("/generic/items", Paginator(type="offset", limit=7)),  # no total: on to an empty page
        ("/generic/pages", Paginator(type="page_number", base_page=1, total_path="total_pages")),
        ("/generic/pages", Paginator(type="page_number", base_page=1)),  # stop on an empty page
        ("/generic/linked", Paginator(type="json_link", next_url_path="next")),
        ("/generic/linked", Paginator()),  # auto: finds the next URL in the body
    ],
    ids=["offset-total", "offset-short", "page-total", "page-empty", "json_link", "auto"],
)
def test_every_pagination_style_reads_everything_once(
    session: Session, apis: MockApis, api_url: str, path: str, paginator: Paginator
) -> None:
    result = sync_rest_source(session, source(api_url, path, paginator))
    assert stored(session) == expected(apis)
    assert result.counts["rows_read"] == len(apis.items) == result.counts["rows_loaded"]
    assert result.counts["pages"] >= len(apis.items) // 7


def test_pages_are_stored_in_batches(session: Session, apis: MockApis, api_url: str) -> None:
    commits: list[int] = []
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), batch_rows=20)
    result = sync_rest_source(session, src, after_page=lambda _, page: commits.append(page))
    assert commits == [3, 6, 9]  # 21 records, 42, 57 (the last page)
    assert result.counts["pages"] == 9 and stored(session) == expected(apis)


def test_max_pages_stops_early(session: Session, apis: MockApis, api_url: str) -> None:
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), max_pages=2)
    assert sync_rest_source(session, src).counts["rows_read"] == 14


def test_max_pages_on_records_oldest_first_asks_again_from_the_largest_value(
    session: Session, apis: MockApis, api_url: str
) -> None:
    """A new query from the cursor, not the 3rd page of the old one (a search API's result
    window, HubSpot's 10,000, is never reached), and nothing skipped."""
    inc = Incremental(cursor_path="updated_at", start_param="since", initial_value="2000-01-01")
    src = source(
        api_url, "/generic/linked", Paginator(type="json_link"), incremental=inc, max_pages=2
    )
    assert sync_rest_source(session, src).counts["rows_read"] == 14
    state = load_state(session.warehouse, "catalog", "items")
    assert state.run is None and state.cursor == apis.items[13]["updated_at"]
    for _ in range(5):
        sync_rest_source(session, src)
    assert stored(session) == expected(apis)
    assert all(q.get("page", "1") in ("1", "2") for _, _, q in apis.requests)


def test_incremental_pulls_only_what_changed(
    session: Session, apis: MockApis, api_url: str
) -> None:
    inc = Incremental(cursor_path="updated_at", start_param="since", initial_value="2000-01-01")
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), incremental=inc)
    first = sync_rest_source(session, src)
    assert first.counts["rows_read"] == len(apis.items)
    state = load_state(session.warehouse, "catalog", "items")
    assert state.run is None and state.cursor == max(r["updated_at"] for r in apis.items)
    apis.upsert("items", {"id": 3, "name": "renamed"})
    apis.upsert("items", {"id": 999, "name": "new"})
    second = sync_rest_source(session, src)
    # the two changed, and the last one of the first sync (the start is inclusive)
    assert second.counts["rows_read"] == 3
    assert stored(session) == expected(apis)
    name = session.warehouse.scalar("SELECT name FROM products WHERE product_id = '3'")
    assert name == "renamed"


def test_a_crash_between_pages_resumes_with_nothing_lost_or_doubled(
    session: Session, apis: MockApis, api_url: str
) -> None:
    inc = Incremental(cursor_path="updated_at", start_param="since", initial_value="2000-01-01")
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), incremental=inc)

    def crash(resource: str, page: int) -> None:
        if page == 3:
            raise KeyboardInterrupt  # as abrupt as it gets inside the process

    with pytest.raises(KeyboardInterrupt):
        sync_rest_source(session, src, after_page=crash)
    assert len(stored(session)) == 21  # three pages stored, with their state
    state = load_state(session.warehouse, "catalog", "items")
    assert state.run is not None and state.run.next is not None and state.run.next.page == 4
    before = apis.data_requests("/generic/linked")
    resumed = sync_rest_source(session, src)
    assert apis.data_requests("/generic/linked") - before == resumed.counts["pages"] == 6
    assert stored(session) == expected(apis)
    assert load_state(session.warehouse, "catalog", "items").run is None


def test_a_failure_mid_sync_resumes_at_the_failed_page(
    session: Session, apis: MockApis, api_url: str
) -> None:
    src = source(api_url, "/generic/items", Paginator(type="offset", limit=7, total_path="total"))
    pages = 0

    def count(resource: str, page: int) -> None:
        nonlocal pages
        pages = page
        if page == 4:
            apis.faults.refuse_next = 1  # the fifth page's request answers 400

    with pytest.raises(Exception, match="answered 400"):
        sync_rest_source(session, src, after_page=count)
    assert len(stored(session)) == 28
    sync_rest_source(session, src)
    assert stored(session) == expected(apis)


def test_a_pagination_that_loops_stops_with_a_clear_error(
    session: Session, apis: MockApis, api_url: str
) -> None:
    """A next link (or cursor) naming a page already read would be followed forever."""
    apis.faults.repeat_next = True
    src = source(api_url, "/generic/linked", Paginator(type="json_link"))
    with pytest.raises(RestResponseError, match="the pagination loops") as failed:
        sync_rest_source(session, src)
    assert "next_url_path" in (failed.value.hint or "")
    assert apis.data_requests("/generic/linked") <= 3
    assert stored(session) == sorted(str(r["id"]) for r in apis.items[:7])  # what was read


def test_transforms_constants_and_nested_arrays(
    session: Session, apis: MockApis, api_url: str
) -> None:
    src = RestSource(
        name="shop",
        preset="shopify_orders",
        client=RestClient(
            base_url=api_url,
            auth=BearerAuth(token=Secret("unused")),
            headers={"X-Shopify-Access-Token": TOKEN},
        ),
    )
    result = sync_rest_source(session, src)
    items = sum(len(o["line_items"]) for o in apis.orders)
    assert result.counts["rows_loaded"] == len(apis.orders) + items
    wh = session.warehouse
    assert wh.scalar("SELECT count(*) FROM order_items") == items
    row = wh.fetch(
        "SELECT order_id, total, source_customer_id, source FROM orders ORDER BY order_id LIMIT 1"
    )[0]
    first = apis.orders[0]
    customer = str(first["customer"]["id"])
    assert row == (str(first["id"]), float(first["total_price"]), customer, "shop")
    line = wh.fetch(
        "SELECT line_no, product_id, quantity FROM order_items ORDER BY order_id, line_no"
    )
    assert line[0] == (1, "800", 1)


def test_bad_records_are_quarantined_with_a_reason(
    session: Session, apis: MockApis, api_url: str
) -> None:
    apis.items[4]["updated_at"] = "not a time"
    apis.items[5]["name"] = None
    src = source(
        api_url,
        "/generic/items",
        Paginator(type="offset", limit=50),
        mapping={**MAPPING, "created_at": "updated_at"},
    )
    result = sync_rest_source(session, src)
    assert result.counts["rows_quarantined"] == 2
    assert result.counts["rows_loaded"] == len(apis.items) - 2
    reasons = dict(session.warehouse.fetch("SELECT reason, detail FROM quarantine"))
    assert set(reasons) == {"invalid_type", "missing_required"}
    assert reasons["invalid_type"].startswith("catalog/items:")
    sync_rest_source(session, src)  # the same bad records again: quarantined once
    assert session.warehouse.scalar("SELECT count(*) FROM quarantine") == 2


def test_records_without_their_key_are_each_quarantined(
    session: Session, apis: MockApis, api_url: str
) -> None:
    """Two records of one page lacking their primary key repeat nothing: both are read and both
    quarantined (they used to collapse into one, the other lost uncounted)."""
    apis.items[2]["id"] = None
    apis.items[3]["id"] = None
    src = source(api_url, "/generic/items", Paginator(type="offset", limit=50), batch_rows=1000)
    result = sync_rest_source(session, src)
    assert result.counts["rows_read"] == len(apis.items)
    assert result.counts["rows_quarantined"] == 2
    assert result.counts["rows_loaded"] == len(apis.items) - 2
    reasons = session.warehouse.fetch("SELECT reason FROM quarantine")
    assert reasons == [("missing_required",), ("missing_required",)]


def test_no_records_where_the_selector_says_is_a_clear_error(
    session: Session, api_url: str
) -> None:
    src = source(api_url, "/generic/items", Paginator(type="single_page"), data_selector="nope")
    with pytest.raises(RestResponseError, match="no list of records at 'nope'"):
        sync_rest_source(session, src)


def test_start_value_overlap_and_formats() -> None:
    inc = Incremental(cursor_path="t", initial_value="2026-01-01T00:10:00Z", overlap="5m")
    assert start_value(inc, None) == "2026-01-01T00:05:00Z"
    assert start_value(inc, "2026-02-01T00:00:00Z") == "2026-01-31T23:55:00Z"
    unix = Incremental(cursor_path="t", start_format="unix", overlap="60s")
    assert start_value(unix, 1_767_225_600) == 1_767_225_540
    ms = Incremental(cursor_path="t", start_format="unix_ms")
    assert start_value(ms, "2026-01-01T00:00:00Z") == 1_767_225_600_000


def test_a_cursor_value_years_ahead_does_not_become_the_cursor(
    session: Session, apis: MockApis, api_url: str
) -> None:
    """Else every later sync asks for changes since 2999: none, for ever."""
    apis.items[5]["updated_at"] = "2999-01-01T00:00:00Z"  # a mistyped year at the source
    inc = Incremental(cursor_path="updated_at", start_param="since", initial_value="2000-01-01")
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), incremental=inc)
    sync_rest_source(session, src)
    assert stored(session) == expected(apis)  # the record itself is stored
    cursor = load_state(session.warehouse, "catalog", "items").cursor
    assert cursor == max(r["updated_at"] for r in apis.items if r["id"] != apis.items[5]["id"])
    apis.upsert("items", {"id": 3, "name": "renamed"})
    sync_rest_source(session, src)
    name = session.warehouse.scalar("SELECT name FROM products WHERE product_id = '3'")
    assert name == "renamed"


def test_a_broken_cursor_value_does_not_become_the_cursor(
    session: Session, apis: MockApis, api_url: str
) -> None:
    apis.items[-1]["updated_at"] = "31/02/2024 25:61"  # a broken record sorts first on the API
    inc = Incremental(cursor_path="updated_at", start_param="since", initial_value="2000-01-01")
    src = source(api_url, "/generic/linked", Paginator(type="json_link"), incremental=inc)
    sync_rest_source(session, src)
    cursor = load_state(session.warehouse, "catalog", "items").cursor
    assert cursor == max(r["updated_at"] for r in apis.items[:-1])
    assert sync_rest_source(session, src).counts["rows_read"] == 1  # only the last one again


@pytest.mark.parametrize(
    ("fault", "value"),
    [("page_cap", 5), ("hide_every", 3), ("clamp_offset", True)],
    ids=["capped-page-size", "filtered-pages", "clamped-offset"],
)
def test_offset_without_a_total_reads_on_past_short_pages(
    session: Session, apis: MockApis, api_url: str, fault: str, value: Any
) -> None:
    """Without ``total_path`` a short page is not the end: an API that caps its page size below
    ``limit``, or filters its pages after paging, sends short pages mid-stream. The next offset
    is what the page held (a capped page skips nothing; a filtered one reads a few records
    again, upserted), and the end is an empty page — or, for an API that answers an offset
    past the end with its last page again, that same page a second time."""
    setattr(apis.faults, fault, value)
    result = sync_rest_source(
        session, source(api_url, "/generic/items", Paginator(type="offset", limit=7))
    )
    every = apis.faults.hide_every
    visible = [str(r["id"]) for i, r in enumerate(apis.items) if not every or (i + 1) % every]
    assert stored(session) == sorted(visible)
    assert result.counts["rows_loaded"] == len(visible)
    offsets = [int(q["offset"]) for _, path, q in apis.requests if path == "/generic/items"]
    assert offsets == sorted(set(offsets))  # always further on: no loop
