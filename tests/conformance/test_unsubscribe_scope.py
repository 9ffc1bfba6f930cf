"""``email.unsubscribe_scope: purpose`` on every backend (DuckDB, PostgreSQL): an unsubscribe
revokes only the token's purpose — with proof, no suppression — so a journey of another purpose
still sends, the ``sendable`` view and the send gate agree, and a bounce still stops everything.
A pause (the preference page's) stops its purpose until it ends, in the gate and the view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from personify import clock
from personify.config import Project, parse_config
from personify.delivery.events import EspEvent
from personify.delivery.suppress import apply_events, unsubscribe
from personify.delivery.tokens import UnsubscribeClaim
from personify.journeys.decide import allowed, suppressed
from personify.privacy.consent import consented, pause, paused_until, record, resume
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.migrations import migrate

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1 = datetime(2026, 2, 1, tzinfo=UTC)
PURPOSES = ("newsletter", "promotions")


def _project(tmp_path: Path, scope: str) -> Project:
    config = parse_config(f"signing_key: k-123\nemail:\n  unsubscribe_scope: {scope}\n")
    return Project(config, tmp_path, tmp_path / "personify.yml")


def _world(wh: Warehouse) -> None:
    people = ("c1", "c2")
    wh.load(
        table("customers"),
        pa.Table.from_pylist(
            [{"customer_id": c, "email": f"{c}@x.org", "updated_at": T0} for c in people]
        ),
    )
    wh.load(
        table("segment_memberships"),
        pa.table(
            {
                "segment": ["all"] * len(people),
                "customer_id": list(people),
                "entered_at": pa.array([T0] * len(people), pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    for c in people:
        for p in PURPOSES:
            record(wh, subject=c, purpose=p, status="granted", source="signup", at=T0)


def _view(wh: Warehouse, purpose: str) -> set[str]:
    return {
        str(r[0])
        for r in wh.fetch(
            "SELECT customer_id FROM sendable WHERE segment = 'all' AND purpose = ?", [purpose]
        )
    }


def _gate(wh: Warehouse, purpose: str) -> set[str]:
    """Who a journey of ``purpose`` would queue: the send-time check of ``decide``."""
    people = ["c1", "c2"]
    blocked = suppressed(wh, people, purpose=purpose)
    return allowed(wh, [c for c in people if c not in blocked], purpose=purpose, source_kinds={})


def test_a_purpose_unsubscribe_stops_that_purpose_only(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    _world(warehouse)
    project = _project(tmp_path, "purpose")
    claim = UnsubscribeClaim("c1", "promotions")
    proof = {"ip": "198.51.100.7", "user_agent": "Mail/1"}
    done = unsubscribe(
        warehouse, project, claim, form="list-unsubscribe one-click", proof=proof, at=T1
    )
    assert done.new and done.customer_id == "c1"
    assert warehouse.fetch("SELECT count(*) FROM suppressions") == [(0,)]
    assert _gate(warehouse, "promotions") == _view(warehouse, "promotions") == {"c2"}
    assert _gate(warehouse, "newsletter") == _view(warehouse, "newsletter") == {"c1", "c2"}
    history = warehouse.fetch(
        "SELECT purpose, status, source, form, ip, user_agent FROM consent_history "
        "WHERE customer_id = 'c1' AND status = 'revoked'"
    )
    assert history == [
        ("promotions", "revoked", "unsubscribe", "list-unsubscribe one-click", *proof.values())
    ]
    audit = warehouse.fetch("SELECT action, actor FROM audit_log")
    assert audit == [("consent", "unsubscribe")]

    again = unsubscribe(warehouse, project, claim, proof=proof)
    assert not again.new
    assert len(warehouse.fetch("SELECT 1 FROM consent_history WHERE status = 'revoked'")) == 1

    # a bounce still suppresses every purpose
    apply_events(warehouse, project, "sendgrid", 1, [EspEvent("bounced", "c1@x.org")], at=T1)
    for purpose in PURPOSES:
        assert _gate(warehouse, purpose) == _view(warehouse, purpose) == {"c2"}


def test_scope_all_still_suppresses_every_purpose(warehouse: Warehouse, tmp_path: Path) -> None:
    _world(warehouse)
    project = _project(tmp_path, "all")
    unsubscribe(warehouse, project, UnsubscribeClaim("c1", "promotions"), proof={"ip": "192.0.2.1"})
    assert warehouse.fetch("SELECT count(*) FROM suppressions WHERE customer_id = 'c1'") == [(2,)]
    for purpose in PURPOSES:
        assert _gate(warehouse, purpose) == _view(warehouse, purpose) == {"c2"}
    assert warehouse.fetch("SELECT ip FROM consent_history WHERE status = 'revoked'") == [
        ("192.0.2.1",)
    ]


def test_a_pause_stops_that_purpose_until_it_ends(warehouse: Warehouse) -> None:
    """``consent_pauses``: paused people are left out by the send gate and the ``sendable`` view
    alike, for the paused purpose only, until the pause ends — consent untouched."""
    _world(warehouse)
    now = clock.now()
    pause(warehouse, "c1", ["promotions"], until=now + timedelta(days=30), source="test")
    assert paused_until(warehouse, "c1") == now + timedelta(days=30)
    assert _gate(warehouse, "promotions") == _view(warehouse, "promotions") == {"c2"}
    assert _gate(warehouse, "newsletter") == _view(warehouse, "newsletter") == {"c1", "c2"}
    assert consented(warehouse, ["c1"], purpose="promotions", paused=False) == {"c1"}
    # a pause that is over stops nothing (nobody has to lift it)
    pause(warehouse, "c1", ["promotions"], until=now - timedelta(seconds=1), source="test")
    assert paused_until(warehouse, "c1") is None
    assert _gate(warehouse, "promotions") == _view(warehouse, "promotions") == {"c1", "c2"}
    pause(warehouse, "c2", PURPOSES, until=now + timedelta(days=90), source="test")
    assert resume(warehouse, "c2") == 2
    assert _gate(warehouse, "newsletter") == _view(warehouse, "newsletter") == {"c1", "c2"}


def test_migration_24_adds_pauses_to_an_older_warehouse(warehouse_url: str) -> None:
    with connect(warehouse_url, migrate_schema=False) as wh:
        migrate(wh, target=19)
        wh.execute("DROP VIEW sendable")
        wh.execute("DROP TABLE consent_pauses")  # the layout before migration 24
        wh.execute(
            "CREATE VIEW sendable AS SELECT segment, customer_id, customer_id AS email, "
            "'x' AS purpose, entered_at FROM segment_memberships"
        )
        assert migrate(wh)[0] == 24  # (and any later ones)
        _world(wh)
        pause(wh, "c1", ["promotions"], until=clock.now() + timedelta(days=1), source="test")
        assert _view(wh, "promotions") == {"c2"}
