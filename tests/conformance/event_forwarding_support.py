"""Helpers of the event forwarding tests (``test_event_forwarding*.py``): a destination for
the local collector API, a session, stored events, one forwarding, its outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from tests.conformance.collector_api import WRITE_KEY

from personify import clock
from personify.config import (
    BasicAuth,
    EventsDestination,
    Project,
    ProjectConfig,
    RestClient,
    Secret,
)
from personify.destinations import push_destinations
from personify.session import Session
from personify.status import status_report
from personify.warehouse import table

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
LAG = timedelta(seconds=30)


def dest(url: str, **kw: Any) -> EventsDestination:
    client = {"requests_per_second": 1000.0, "backoff_base": 0.01, **kw.pop("client", {})}
    return EventsDestination(
        name=kw.pop("name", "analytics"),
        path="/v1/batch",
        client=RestClient(base_url=url, auth=BasicAuth(username=Secret(WRITE_KEY)), **client),
        **{"start": "all", "batch_size": 10, **kw},
    )


def session_for(warehouse_url: str, tmp_path: Path, *destinations: EventsDestination) -> Session:
    root = tmp_path / "project"
    root.mkdir(exist_ok=True)
    config = ProjectConfig(
        warehouse=warehouse_url, signing_key=Secret("fwd-test-key"), destinations=destinations
    )
    return Session(Project(config, root, root / "personify.yml"))


def ingest(
    session: Session,
    ids: list[str],
    *,
    at: datetime,
    event: str = "Order Completed",
    type_: str = "track",
    customer: str | None = None,
    properties: dict[str, Any] | None = None,
    context: dict[str, Any] | None = None,
    user: str | None = None,
    stored: datetime | None | str = "at",
) -> None:
    """Store events received ``at``; ``stored``: their ``stored_at`` — ``at`` (default: stored
    as they arrive, on the tests' clock), an instant, ``None`` (a row stored before the column
    existed) or ``"now"`` (none given: the warehouse's load stamps it, as for every writer)."""
    n = len(ids)
    ts = pa.timestamp("us", tz="UTC")
    extra: dict[str, Any] = {}
    if stored != "now":
        extra["stored_at"] = pa.array([at if stored == "at" else stored] * n, ts)
    session.warehouse.load(
        table("events"),
        pa.table(
            {
                "message_id": ids,
                "type": [type_] * n,
                "event": pa.array([event if type_ == "track" else None] * n, pa.string()),
                "user_id": pa.array(
                    [user or (f"u_{i}" if customer is None else None) for i in ids], pa.string()
                ),
                "customer_id": pa.array([customer] * n, pa.string()),
                "timestamp": pa.array([at - timedelta(seconds=1)] * n, ts),
                "received_at": pa.array([at] * n, ts),
                "source": ["web"] * n,
                "properties": [json.dumps(properties or {"total": 10})] * n,
                "context": [json.dumps(context or {"ip": "203.0.113.9"})] * n,
                **extra,
            }
        ),
    )


def forward(session: Session, at: datetime | None, name: str | None = None) -> dict[str, Any]:
    """One forwarding at ``at`` (``None``: the real clock)."""
    with clock.frozen(at):
        (result,) = push_destinations(session, [name] if name else None)
    return {"counts": result.counts, "error": result.error, "sample": result.sample}


def status_at(session: Session, at: datetime) -> dict[str, Any]:
    with clock.frozen(at):
        return status_report(session)


def outcomes(session: Session) -> dict[str, int]:
    rows = session.warehouse.fetch("SELECT status, count(*) FROM event_forwards GROUP BY 1")
    return {str(s): int(n) for s, n in rows}


def _two_people(session: Session) -> tuple[str, str]:
    """Ann and Bob, resolved into customers; their customer ids."""
    from personify.identity import resolve_batch
    from personify.profiles import profiles_stage

    wh = session.warehouse
    people = ["ann@x.org", "bob@x.org"]
    wh.load(
        table("customer_records"),
        pa.table(
            {
                "source": ["crm"] * 2,
                "record_id": ["r0", "r1"],
                "email": people,
                "observed_at": pa.array([T0] * 2, pa.timestamp("us", tz="UTC")),
                "received_at": pa.array([T0] * 2, pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    with clock.frozen(T0):
        resolve_batch(wh, session.project.config.identity)
        profiles_stage(session)
    ann, bob = [str(c) for (c,) in wh.fetch("SELECT customer_id FROM customers ORDER BY email")]
    return ann, bob
