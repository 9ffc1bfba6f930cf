"""What the destination suites share: a project holding only destinations, a push at a fixed
instant, the rows they load (customers, consents, ad-audience people) — and, for each API they
push to, its fake on loopback as fixtures and a destination wired to it.

Fixtures: ``apis`` / ``url`` (the demo's mock APIs), ``graph`` / ``meta_url`` (Meta's Graph API),
``ads`` / ``ads_url`` (Google Ads); a module uses them by importing them (and naming them in its
``__all__``), under another name where it wants one."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tests.conformance.google_ads import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEVELOPER,
    LIST,
    REFRESH,
    Ads,
    serve_ads,
)
from tests.conformance.meta_graph import AUDIENCE, TOKEN, Graph, serve_graph

from personify import clock
from personify.config import (
    OAuth2RefreshToken,
    PrivacyConfig,
    Project,
    ProjectConfig,
    RestClient,
    RestDestination,
    Secret,
)
from personify.demo.mock_apis import MockApis, serve_mock_apis
from personify.destinations import push_destinations
from personify.privacy.crypto import new_key
from personify.session import Session
from personify.warehouse import table

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
KEYS = f"k1:{new_key()}"
"""The key ring of :func:`session_for` (removals keep the keys people were sent with, encrypted)."""
FAST = {"requests_per_second": 1000.0, "backoff_base": 0.01}
"""Client settings for a fake on loopback: no rate limit to speak of, retries without waiting."""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def session_for(
    warehouse_url: str, tmp_path: Path, *destinations: RestDestination, keys: str | None = KEYS
) -> Session:
    """A session on a project of ``destinations`` only (``keys``: its encryption key ring)."""
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    config = ProjectConfig(
        warehouse=warehouse_url,
        signing_key=Secret("push-test-key"),
        privacy=PrivacyConfig(encryption_keys=Secret(keys) if keys is not None else None),
        destinations=destinations,
    )
    return Session(Project(config, root, root / "personify.yml"))


def push(session: Session, **kw: Any) -> dict[str, Any]:
    """The project's one destination pushed at :data:`NOW`."""
    with clock.frozen(NOW):
        (result,) = push_destinations(session, **kw)
    return {
        "counts": result.counts,
        "error": result.error,
        "sample": result.sample,
        "removals": result.removals,
    }


def states(session: Session) -> dict[str, int]:
    """``destination_state`` rows by status."""
    rows = session.warehouse.fetch("SELECT status, count(*) FROM destination_state GROUP BY 1")
    return {str(s): int(n) for s, n in rows}


def customers(session: Session, n: int, *, bad: int | None = None) -> None:
    """Customers ``cus_0`` … ``cus_<n-1>``, active, ``c<i>@x.org`` (``bad``: one that is no
    email address)."""
    session.warehouse.load(
        table("customers"),
        pa.table(
            {
                "customer_id": [f"cus_{i}" for i in range(n)],
                "email": [f"c{i}@x.org" if i != bad else f"c{i} at x.org" for i in range(n)],
                "engagement_score": [float(i % 100) for i in range(n)],
                "lifecycle_stage": ["active"] * n,
                "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            }
        ),
    )


def consent(session: Session, rows: list[tuple[str, str, str]]) -> None:
    """(customer_id, purpose, status) on the email channel."""
    session.warehouse.load(
        table("consents"),
        pa.table(
            {
                "customer_id": [r[0] for r in rows],
                "purpose": [r[1] for r in rows],
                "channel": ["email"] * len(rows),
                "status": [r[2] for r in rows],
                "source": ["test"] * len(rows),
                "updated_at": pa.array([NOW] * len(rows), pa.timestamp("us", tz="UTC")),
            }
        ),
        on_conflict="update",
    )


def people(session: Session, rows: list[dict[str, Any]]) -> None:
    """Customers (customer_id, email, phone, first_name, last_name, country), each granting
    advertising."""
    n = len(rows)
    columns = ("customer_id", "email", "phone", "first_name", "last_name", "country")
    session.warehouse.load(
        table("customers"),
        pa.table(
            {
                **{c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns},
                "updated_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            }
        ),
        on_conflict="update",
    )
    consent(session, [(str(r["customer_id"]), "advertising", "granted") for r in rows])


def many(n: int, start: int = 0) -> list[dict[str, Any]]:
    """People ``cus_<i>`` with ``c<i>@x.org``, for :func:`people`."""
    return [{"customer_id": f"cus_{i}", "email": f"c{i}@x.org"} for i in range(start, start + n)]


# ------------------------------------------------------------------------------ the demo's APIs
@pytest.fixture
def apis() -> MockApis:
    return MockApis()


@pytest.fixture
def url(apis: MockApis) -> Iterator[str]:
    with serve_mock_apis(apis) as base:
        yield base


# ------------------------------------------------------------------------------ Meta's Graph API
META_MODEL = "SELECT customer_id, email, phone, first_name, country FROM customers"


@pytest.fixture
def graph() -> Graph:
    return Graph()


@pytest.fixture
def meta_url(graph: Graph) -> Iterator[str]:
    with serve_graph(graph) as base:
        yield base


def meta(url: str, *, model: str = META_MODEL, **kw: Any) -> RestDestination:
    """``preset: meta_audience`` pushing to the fake at ``url`` (``client``: more settings)."""
    settings = {**FAST, **kw.pop("client", {})}
    fields: dict[str, Any] = {
        "audience_id": AUDIENCE,
        "access_token": Secret(TOKEN),
        "on_remove": "delete",
        **kw,
    }
    return RestDestination(
        name="ads",
        model=model,
        preset="meta_audience",
        client=RestClient(base_url=url, **settings),
        **fields,
    )


# --------------------------------------------------------------------------------- Google Ads
GOOGLE_MODEL = "SELECT customer_id, email, phone, country FROM customers"


@pytest.fixture
def ads() -> Ads:
    return Ads()


@pytest.fixture
def ads_url(ads: Ads) -> Iterator[str]:
    with serve_ads(ads) as base:
        yield base


def google(url: str, *, model: str = GOOGLE_MODEL, **kw: Any) -> RestDestination:
    """``preset: google_ads_audience`` pushing to the fake at ``url`` (``client``: more
    settings)."""
    settings = {**FAST, **kw.pop("client", {})}
    auth = OAuth2RefreshToken(
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
        refresh_token=Secret(REFRESH),
        access_token_url=f"{url}/token",
    )
    fields: dict[str, Any] = {
        "ads_customer_id": "123-456-7890",
        "user_list_id": LIST,
        "developer_token": Secret(DEVELOPER),
        "on_remove": "delete",
        **kw,
    }
    return RestDestination(
        name="gads",
        model=model,
        preset="google_ads_audience",
        client=RestClient(base_url=url, auth=auth, **settings),
        **fields,
    )
