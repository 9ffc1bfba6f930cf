"""Schema drift of a REST source is seen at sync time, not only by ``personify reconcile``: a
real loopback HTTP API (the mock Shopify) changes the shape of its orders between two syncs —
a field gained, one lost, one retyped — and the second sync records exactly those changes,
which ``personify status`` lists and ``/metrics`` counts. An incremental sync of a few records
never reports a field removed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from personify.config import ApiKeyAuth, Project, ProjectConfig, RestClient, RestSource, Secret
from personify.demo.mock_apis import TOKEN, MockApis, sample_apis, serve_mock_apis
from personify.quality.drift import recent_changes
from personify.server.app import create_app
from personify.session import Session
from personify.sources.presets import resolve_preset
from personify.sources.rest import sync_rest_source
from personify.status import status_report

N = 230


@pytest.fixture
def apis() -> MockApis:
    return sample_apis(N)


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


def shop(url: str) -> RestSource:
    return RestSource(
        name="shop",
        preset="shopify_orders",
        client=RestClient(
            base_url=url,
            auth=ApiKeyAuth(api_key=Secret(TOKEN), name="X-Shopify-Access-Token"),
            requests_per_second=1000.0,
        ),
    )


def reshape(apis: MockApis, change: dict[str, Any], drop: str, *, updated: range) -> None:
    """Give every order the fields ``change`` and take ``drop`` away (the API's new version),
    stamping the orders ``updated`` as changed (what an incremental sync pulls)."""
    for i, old in enumerate(list(apis.orders)):
        record = {k: v for k, v in {**old, **change}.items() if k != drop}
        with apis.lock:
            apis.orders[i] = record
        if i in updated:
            apis.upsert("orders", record)


def metric_samples(session: Session) -> list[tuple[dict[str, str], float]]:
    app = create_app(session)

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.get("/metrics")).text

    families = text_string_to_metric_families(asyncio.run(scrape()))
    return [
        (s.labels, s.value)
        for f in families
        if f.name == "personify_schema_changes"
        for s in f.samples
    ]


def test_a_sync_sees_fields_gained_lost_and_retyped(
    session: Session, apis: MockApis, url: str
) -> None:
    source = shop(url)
    resource = resolve_preset(source).resources[0].name
    sync_rest_source(session, source)  # the baseline
    assert recent_changes(session.warehouse) == []
    assert metric_samples(session) == []

    reshape(apis, {"loyalty_tier": "gold", "total_price": 12.5}, "cart_token", updated=range(N))
    sync_rest_source(session, source)

    got = {(c.source, c.stream, c.field, c.change, c.old_type, c.new_type) for c in
           recent_changes(session.warehouse)}  # fmt: skip
    stream = f"resource:{resource}"
    assert got == {
        ("shop", stream, "loyalty_tier", "added", None, "string"),
        ("shop", stream, "cart_token", "removed", "string", None),
        ("shop", stream, "total_price", "type_changed", "string", "number"),
    }
    listed = status_report(session)["quality"]["schema_changes"]
    assert {(c["field"], c["change"]) for c in listed} == {
        ("loyalty_tier", "added"),
        ("cart_token", "removed"),
        ("total_price", "type_changed"),
    }
    assert sorted((s[0]["change"], s[0]["stream"], s[1]) for s in metric_samples(session)) == [
        ("added", stream, 1.0),
        ("removed", stream, 1.0),
        ("type_changed", stream, 1.0),
    ]


def test_a_few_changed_records_report_nothing_removed(
    session: Session, apis: MockApis, url: str
) -> None:
    source = shop(url)
    sync_rest_source(session, source)
    reshape(apis, {"loyalty_tier": "gold"}, "cart_token", updated=range(5))
    assert sync_rest_source(session, source).counts["rows_read"] < 100  # five and the overlap
    got = {(c.field, c.change) for c in recent_changes(session.warehouse)}
    assert got == {("loyalty_tier", "added")}  # a few records without cart_token prove nothing
