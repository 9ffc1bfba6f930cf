"""REST sources on every backend, against the real local mock APIs: each preset's pagination
reads the whole source; 429 storms, 500s and timeouts end with the warehouse equal to the source;
a crash between pages resumes with nothing lost or doubled; a second sync after updates pulls
only what changed; the incremental state commits with the rows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.conformance.lock_support import lock_thief

from personify.config import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    Project,
    ProjectConfig,
    RestClient,
    RestSource,
    Secret,
)
from personify.demo.mock_apis import TOKEN, MockApis, sample_apis, serve_mock_apis
from personify.session import Session
from personify.sources.presets import resolve_preset
from personify.sources.rest import sync_rest_source
from personify.sources.rest.incremental import load_state

N = 230


@pytest.fixture
def apis() -> MockApis:
    apis = sample_apis(N)
    apis.zendesk_page_size = 50
    return apis


@pytest.fixture
def url(apis: MockApis) -> Iterator[str]:
    with serve_mock_apis(apis) as base:
        yield base


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "project"
    root.mkdir()
    with Session(Project(ProjectConfig(warehouse=warehouse_url), root, root / "p.yml")) as s:
        yield s


def preset(name: str, url: str, *, batch_rows: int = 5_000, **client: Any) -> RestSource:
    auth: Any = {
        "hubspot_contacts": BearerAuth(token=Secret(TOKEN)),
        "shopify_orders": ApiKeyAuth(api_key=Secret(TOKEN), name="X-Shopify-Access-Token"),
        "zendesk_tickets": BasicAuth(username=Secret("me@x.org/token"), password=Secret(TOKEN)),
        "stripe_charges": BasicAuth(username=Secret(TOKEN)),
    }[name]
    settings = {"requests_per_second": 1000.0, "backoff_base": 0.01, **client}
    return RestSource(
        name=name.split("_")[0],
        preset=name,  # type: ignore[arg-type]
        client=RestClient(base_url=url, auth=auth, **settings),
        batch_rows=batch_rows,
    )


def warehouse_equals_source(session: Session, apis: MockApis) -> None:
    wh = session.warehouse
    contacts = wh.fetch(
        "SELECT record_id, email FROM customer_records WHERE source = 'hubspot' ORDER BY record_id"
    )
    latest = {c["id"]: c["properties"]["email"] for c in apis.contacts}
    assert {r[0] for r in contacts} == set(latest)
    orders = wh.fetch(
        "SELECT order_id, total FROM orders WHERE source = 'shopify' ORDER BY order_id"
    )
    assert orders == sorted((str(o["id"]), float(o["total_price"])) for o in apis.orders)
    items = wh.scalar("SELECT count(*) FROM order_items WHERE source = 'shopify'")
    assert items == sum(len(o["line_items"]) for o in apis.orders)
    tickets = wh.fetch("SELECT ticket_id, status FROM tickets ORDER BY ticket_id")
    assert tickets == sorted((str(t["id"]), t["status"]) for t in apis.tickets)
    charges = wh.fetch(
        "SELECT order_id, total FROM orders WHERE source = 'stripe' ORDER BY order_id"
    )
    assert charges == sorted((c["id"], c["amount"] / 100) for c in apis.charges)


PRESETS = ("hubspot_contacts", "shopify_orders", "zendesk_tickets", "stripe_charges")


def sync_all(session: Session, url: str, **client: Any) -> dict[str, dict[str, int]]:
    return {p: sync_rest_source(session, preset(p, url, **client)).counts for p in PRESETS}


def test_every_preset_reads_its_whole_source(session: Session, apis: MockApis, url: str) -> None:
    counts = sync_all(session, url)
    warehouse_equals_source(session, apis)
    assert counts["hubspot_contacts"]["pages"] == 3  # 100 per page, cursor in the body
    assert counts["shopify_orders"]["pages"] == 1  # 250 per page, Link header
    assert counts["zendesk_tickets"]["pages"] == 5  # 50 per page here, after_url
    assert counts["stripe_charges"]["pages"] == 3  # 100 per page, starting_after
    for c in counts.values():
        assert c["rows_read"] == c["rows_loaded"] + c["rows_duplicate"] + c["rows_quarantined"]
    assert session.warehouse.scalar("SELECT count(*) FROM quarantine") == 0


def test_429_storms_500s_and_timeouts_end_equal_to_the_source(
    session: Session, apis: MockApis, url: str
) -> None:
    apis.faults.rate_limit_every = 3
    apis.faults.fail_every = 5
    apis.faults.slow_next = 2
    apis.faults.slow_seconds = 0.6
    counts = sync_all(session, url, timeout=0.3, max_retries=10)
    warehouse_equals_source(session, apis)
    assert sum(c["rate_limited"] for c in counts.values()) >= 3
    assert sum(c["retries"] for c in counts.values()) >= 6


def test_a_crash_between_pages_resumes_with_nothing_lost_or_doubled(
    session: Session, apis: MockApis, url: str
) -> None:
    for name in PRESETS:
        source = preset(name, url, batch_rows=100)  # a commit every 100 records

        def crash(resource: str, page: int) -> None:
            if page == 2:
                raise RuntimeError("killed")

        if name != "shopify_orders":  # (one page only: nothing to crash between)
            with pytest.raises(RuntimeError):
                sync_rest_source(session, source, after_page=crash)
            resource = resolve_preset(source).resources[0].name
            state = load_state(session.warehouse, source.name, resource)
            assert state.run is not None and state.run.next is not None
        sync_rest_source(session, source)
    warehouse_equals_source(session, apis)


def test_a_resumed_sync_whose_next_page_is_gone_starts_over(
    session: Session, apis: MockApis, url: str
) -> None:
    """The interrupted sync's saved next page names a charge deleted since (Stripe answers 400
    "No such charge", as cursors that expire are refused): the sync starts over from the
    cursor instead of failing on that page at every sync for ever."""
    source = preset("stripe_charges", url, batch_rows=100)

    def crash(resource: str, page: int) -> None:
        if page == 1:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        sync_rest_source(session, source, after_page=crash)
    resource = resolve_preset(source).resources[0].name
    run = load_state(session.warehouse, source.name, resource).run
    assert run is not None and run.next is not None
    gone = run.next.params["starting_after"]
    apis.charges = [c for c in apis.charges if c["id"] != gone]
    sync_rest_source(session, source)
    stored = {r[0] for r in session.warehouse.fetch("SELECT order_id FROM orders")}
    assert stored >= {c["id"] for c in apis.charges}
    assert load_state(session.warehouse, source.name, resource).run is None


def test_a_second_sync_pulls_only_the_changed_records(
    session: Session, apis: MockApis, url: str
) -> None:
    first = sync_all(session, url)
    apis.upsert("contacts", {**apis.contacts[3], "properties": {"email": "new@example.org"}})
    apis.upsert("orders", {**apis.orders[7], "total_price": "77.00"})
    apis.upsert("tickets", {**apis.tickets[9], "status": "closed"})
    apis.charges.append({**apis.charges[0], "id": "ch_new", "created": 4_000_000_000})
    second = sync_all(session, url)
    for name in PRESETS:
        assert second[name]["pages"] == 1
        assert second[name]["rows_read"] < first[name]["rows_read"] / 10
    warehouse_equals_source(session, apis)
    email = session.warehouse.fetch(
        "SELECT email FROM customer_records WHERE record_id = ? ORDER BY observed_at DESC",
        [apis.contacts[3]["id"]],
    )[0][0]
    assert email == "new@example.org"


def test_max_pages_skips_nothing_on_an_api_that_answers_newest_first(
    session: Session, apis: MockApis, url: str
) -> None:
    """Stripe lists newest first: a sync stopped by max_pages must not move the cursor past the
    older charges it did not read — the next syncs read them."""
    source = preset("stripe_charges", url)
    resource = msgspec.structs.replace(resolve_preset(source).resources[0], max_pages=1)
    source = msgspec.structs.replace(source, preset=None, resources=(resource,))
    reads = [sync_rest_source(session, source).counts["rows_read"] for _ in range(4)]
    assert reads[0] == 100 and sum(reads) >= len(apis.charges)
    charges = session.warehouse.scalar("SELECT count(*) FROM orders WHERE source = 'stripe'")
    assert charges == len(apis.charges)
    assert load_state(session.warehouse, "stripe", resource.name).run is None


def test_hubspot_contacts_beyond_the_search_window_come_in_the_next_syncs(
    session: Session, apis: MockApis, url: str
) -> None:
    """HubSpot's search pages through 10,000 results at most (then 400): the preset stops one
    search there and the next sync searches again from the newest contact read. Here the window
    is 100 and a page holds 1 contact (the preset's page count is the window's)."""
    apis.search_window = 100
    source = preset("hubspot_contacts", url)
    resource = resolve_preset(source).resources[0]
    endpoint = msgspec.structs.replace(
        resource.endpoint, json={**resource.endpoint.json, "limit": 1}
    )
    resource = msgspec.structs.replace(resource, endpoint=endpoint)
    source = msgspec.structs.replace(source, preset=None, resources=(resource,))
    for _ in range(3):
        sync_rest_source(session, source)
    stored = session.warehouse.fetch("SELECT DISTINCT record_id FROM customer_records")
    assert {r[0] for r in stored} == {c["id"] for c in apis.contacts}


def test_a_source_never_syncs_twice_at_once(session: Session, apis: MockApis, url: str) -> None:
    """Another run of the same source holds its lock — in this process, or (PostgreSQL) in
    another one, through an advisory lock: the sync waits for it."""
    import threading

    from personify.sources.schedule import advisory_key, exclusive

    source = preset("stripe_charges", url)
    other = None
    if session.warehouse.capabilities.advisory_lock:
        import psycopg

        from personify.warehouse.postgres.backend import split_url

        conninfo, schema = split_url(session.warehouse.url)
        key = advisory_key(source.name, schema)
        other = psycopg.connect(conninfo, autocommit=True)
        # the same source name in another project (schema) of the same database: no wait
        elsewhere = advisory_key(source.name, f"{schema}_elsewhere")
        other.execute(f"SELECT pg_advisory_lock({elsewhere})")
        with exclusive(source.name, wait=False, warehouse=session.warehouse) as got:
            assert got
        other.execute(f"SELECT pg_advisory_unlock({elsewhere})")
        other.execute(f"SELECT pg_advisory_lock({key})")
        held = contextlib.nullcontext()
    else:
        held = exclusive(source.name)
    done = threading.Event()

    def run() -> None:
        from personify.sources import sync_sources

        session.project = Project(
            ProjectConfig(warehouse=session.project.config.warehouse, sources=(source,)),
            session.project.root,
            session.project.file,
        )
        sync_sources(session, [source.name])
        done.set()

    with held:
        thread = threading.Thread(target=run)
        thread.start()
        assert not done.wait(1.0)  # waiting for the other run
        if other is not None:
            other.execute(f"SELECT pg_advisory_unlock({key})")
    assert done.wait(30)
    thread.join()
    if other is not None:
        other.close()
    assert session.warehouse.scalar("SELECT count(*) FROM orders") == len(apis.charges)


def test_a_sync_whose_lock_went_with_its_connection_commits_nothing_more(
    session: Session, apis: MockApis, url: str
) -> None:
    """PostgreSQL: the server session holding the sync's advisory lock is terminated mid-sync
    (a restart, a network cut, an idle timeout), the warehouse opens a new connection, another
    sync takes the lock. The first sync must not commit beside it: its next commit fails,
    saying so, and the position stays where the last commit under the lock left it."""
    from personify.errors import WarehouseError
    from personify.sources.schedule import exclusive

    wh = session.warehouse
    source = preset("stripe_charges", url, batch_rows=100)  # a commit every 100 records
    resource = resolve_preset(source).resources[0].name
    with lock_thief(wh, source.name) as other:

        def drop_the_lock(_: str, page: int) -> None:
            if page == 1:
                other.steal(reconnect=True)  # (another sync starts)

        with (
            pytest.raises(WarehouseError, match="lost its lock") as lost,
            exclusive(source.name, warehouse=wh),
        ):
            sync_rest_source(session, source, after_page=drop_the_lock)
        assert "personify sync stripe" in (lost.value.hint or "")
        assert wh.scalar("SELECT count(*) FROM orders") == 100  # the first commit alone
        run = load_state(wh, source.name, resource).run
        assert run is not None and run.next is not None  # it goes on after the first page
        other.release()
        with exclusive(source.name, warehouse=wh):
            sync_rest_source(session, source)
        assert wh.scalar("SELECT count(*) FROM orders") == len(apis.charges)
