"""Erasure on every backend: unique markers planted for one person in every store (events under
several ids, nested JSON, quarantine, messages, the outbox, provenance, every table with a
``customer_id`` — journey tables included, found by the schema), erased, then every table and file
scanned: no marker left, others untouched; re-ingesting the person's old records does not bring a
marketable profile back until they opt in again. Also: the export finds the same footprint."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from personify import clock
from personify.config import Project, parse_config
from personify.errors import NotFound
from personify.identity import resolve_batch
from personify.privacy.consent import consented
from personify.privacy.erase import erase_subject, erased_customer
from personify.privacy.export import export_subject
from personify.privacy.footprint import NOT_PERSONAL, RULES, unclassified
from personify.privacy.hashing import project_key
from personify.privacy.stage import privacy_stage
from personify.profiles import profiles_stage
from personify.session import Session
from personify.warehouse import Warehouse, table
from personify.warehouse.schema import TABLES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=40)
TS = pa.timestamp("us", tz="UTC")
MARKERS = ("zorblatt", "ann.marker@x.org", "u-ann-777", "anon-ann-123456", "612345678", "c-ann-1")


def _project(tmp: Path, url: str) -> Project:
    text = (
        f"warehouse: {url}\nsigning_key: test-signing-key\n"
        "identity:\n  source_kinds:\n    shop: user_id\n"
    )
    return Project(parse_config(text), tmp, tmp / "personify.yml")


def _load(wh: Warehouse, name: str, rows: list[dict[str, Any]]) -> None:
    t = table(name)
    names = list(dict.fromkeys(c for r in rows for c in r))
    wh.load(
        t,
        pa.table(
            {
                c: pa.array(
                    [r.get(c) for r in rows], TS if t.column(c).type == "TIMESTAMPTZ" else None
                )
                for c in names
            }
        ),
    )


def _day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def _ingest(wh: Warehouse) -> None:
    _load(
        wh,
        "customer_records",
        [
            {
                "source": "crm",
                "record_id": "c-ann-1",
                "email": "Ann.Marker@X.org",
                "first_name": "Zorblatt",
                "phone": "+33 6 12 34 56 78",
                "attributes": '{"nick": {"deep": ["Zorblatt"]}}',
                "observed_at": _day(0),
                "received_at": _day(0),
            },
            {
                "source": "crm",
                "record_id": "c-bob-1",
                "email": "bob@x.org",
                "first_name": "Bob",
                "observed_at": _day(0),
                "received_at": _day(0),
            },
        ],
    )
    _load(
        wh,
        "events",
        [
            {
                "message_id": "m-ann-1",
                "type": "identify",
                "anonymous_id": "anon-ann-123456",
                "user_id": "u-ann-777",
                "traits": '{"email": "ann.marker@x.org"}',
                "timestamp": _day(1),
                "received_at": _day(1),
                "source": "web",
            },
            {
                "message_id": "m-ann-2",
                "type": "track",
                "event": "Viewed",
                "anonymous_id": "anon-ann-123456",
                "properties": '{"n": {"deep": ["Zorblatt"]}}',
                "timestamp": _day(2),
                "received_at": _day(2),
                "source": "web",
            },
            {
                "message_id": "m-ann-3",
                "type": "track",
                "event": "Viewed",
                "user_id": " u-ann-777 ",  # stray spaces: identity trims, erasure too
                "timestamp": _day(2),
                "received_at": _day(2),
                "source": "web",
            },
            {
                "message_id": "m-bob-1",
                "type": "identify",
                "user_id": "u-bob-888",
                "traits": '{"email": "bob@x.org"}',
                "timestamp": _day(1),
                "received_at": _day(1),
                "source": "web",
            },
            {
                "message_id": "m-bob-2",
                "type": "track",
                "event": "Referred",
                "user_id": "u-bob-888",
                "properties": '{"friend": {"email": "Ann.Marker@X.org"}}',
                "timestamp": _day(3),
                "received_at": _day(3),
                "source": "web",
            },
        ],
    )
    _load(
        wh,
        "orders",
        [
            {
                "order_id": "o-ann",
                "email": "ann.marker@x.org",
                "source_customer_id": "u-ann-777",
                "total": 10.0,
                "created_at": _day(5),
                "source": "shop",
            }
        ],
    )
    _load(
        wh,
        "order_items",
        [
            {
                "order_id": "o-ann",
                "line_no": 1,
                "product_id": "p1",
                "quantity": 1,
                "price": 10.0,
                "source": "shop",
            }
        ],
    )
    _load(
        wh,
        "tickets",
        [
            {
                "ticket_id": "t-ann",
                "email": "ann.marker@x.org",
                "subject": "Zorblatt is upset",
                "created_at": _day(6),
                "source": "helpdesk",
            }
        ],
    )
    _load(
        wh,
        "consents",
        [
            {
                "customer_id": "u-ann-777",
                "purpose": "email_marketing",
                "channel": "email",
                "status": "granted",
                "source": "shop",
                "updated_at": _day(1),
            },
            {
                "customer_id": "u-bob-888",
                "purpose": "email_marketing",
                "channel": "email",
                "status": "granted",
                "source": "shop",
                "updated_at": _day(1),
            },
        ],
    )
    _load(
        wh,
        "quarantine",
        [
            {
                "id": "q-ann",
                "source": "crm",
                "received_at": _day(1),
                "reason": "invalid",
                "detail": "bad phone",
                "payload": '{"email": "ANN.MARKER@x.org", "name": "Zorblatt"}',
            },
            {
                "id": "q-other",
                "source": "crm",
                "received_at": _day(1),
                "reason": "invalid",
                "detail": "bad",
                "payload": '{"email": "carol@x.org"}',
            },
        ],
    )


def _run(wh: Warehouse, project: Project) -> None:
    with clock.frozen(NOW):
        session = Session(project, warehouse=wh)
        resolve_batch(wh, project.config.identity)
        profiles_stage(session)
        privacy_stage(session)


def _come_back(wh: Warehouse, project: Project, later: datetime) -> dict[str, int]:
    """After Ann's erasure, her old CRM record and the consent the CRM still holds (granted
    before the erasure) are synced again at ``later``; the batch stages run. Their counts."""
    wh.execute("DELETE FROM file_imports")
    _load(
        wh,
        "customer_records",
        [
            {
                "source": "crm",
                "record_id": "c-ann-1",
                "email": "ann.marker@x.org",
                "observed_at": later,
                "received_at": later,
            }
        ],
    )
    _load(
        wh,
        "consents",
        [
            {
                "customer_id": "c-ann-1",
                "purpose": "email_marketing",
                "channel": "email",
                "status": "granted",
                "source": "crm",
                "updated_at": _day(1),
            }
        ],
    )
    with clock.frozen(later):
        session = Session(project, warehouse=wh)
        resolve_batch(wh, project.config.identity)
        profiles_stage(session)
        return privacy_stage(session)


def _value(col: Any, marker: str) -> Any:
    return {
        "VARCHAR": f"{marker}-{col.name}",
        "TIMESTAMPTZ": NOW,
        "BIGINT": 1,
        "DOUBLE": 1.0,
        "BOOLEAN": False,
        "DATE": NOW.date(),
        "JSON": json.dumps({"m": [marker]}),
    }[col.type]


def _plant_everywhere(wh: Warehouse, customer_id: str) -> list[str]:
    """A row with a marker in every table that has a customer_id and no rule of its own."""
    planted = []
    for t in TABLES:
        if "customer_id" not in t.column_names or t.name in RULES or t.name in NOT_PERSONAL:
            continue
        if t.name in {"customers", "suppressions", "customer_ids"}:
            continue
        row = {c.name: _value(c, "Zorblatt") for c in t.columns}
        row["customer_id"] = customer_id
        _load(wh, t.name, [row])
        planted.append(t.name)
    return planted


def _plant_mentions(wh: Warehouse) -> list[str]:
    """Rows of report tables (reconciliation, data quality) whose JSON mentions Ann's address."""
    planted = []
    for name in ("reconciliation_discrepancies", "quality_violations"):
        t = next((t for t in TABLES if t.name == name), None)
        if t is None:
            continue
        row = {c.name: _value(c, "report") for c in t.columns}
        for c in t.columns:
            if c.type == "JSON":
                row[c.name] = json.dumps({"email": "Ann.Marker@X.org"})
        _load(wh, name, [row])
        planted.append(name)
    return planted


def _scan(wh: Warehouse) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for t in TABLES:
        text = json.dumps(
            wh.fetch_arrow(f'SELECT * FROM "{t.name}"').to_pylist(), default=str
        ).lower()
        hits = [m for m in MARKERS if m in text]
        if hits:
            found[t.name] = hits
    return found


def test_every_table_is_classified() -> None:
    assert unclassified() == []


@pytest.mark.slow
def test_erase_leaves_no_marker_and_reingest_is_not_marketable(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _ingest(wh)
    _run(wh, project)
    ann = wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'u-ann-777'")
    bob = wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'u-bob-888'")
    assert ann and bob and ann != bob
    assert consented(wh, [ann, bob], purpose="email_marketing") == {ann, bob}
    planted = _plant_everywhere(wh, ann)
    mentioned = _plant_mentions(wh)
    assert {"messages", "discount_codes", "customer_tags", "segment_memberships"} <= set(planted)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "k-ann.eml").write_text("To: Zorblatt <ann.marker@x.org>\r\n\r\nHi Zorblatt")
    (outbox / "k-ann2.eml").write_text("To: <Ann.Marker@X.org>\r\n\r\nHello")
    (outbox / "k-bob.eml").write_text("To: Bob <bob@x.org>\r\n\r\nHi Bob")
    (outbox / "index.jsonl").write_text(
        json.dumps({"key": "k-ann", "customer_id": ann, "file": "k-ann.eml"})
        + "\n"
        + json.dumps({"key": "k-bob", "customer_id": bob, "file": "k-bob.eml"})
        + "\n"
    )

    with clock.frozen(NOW):
        doc = export_subject(wh, project, "ann.marker@x.org")
    assert doc["customer_id"] == ann
    counts = doc["counts"]
    assert counts["events"] == 3 and counts["orders"] == 1 and counts["order_items"] == 1
    assert counts["tickets"] == 1 and counts["quarantine"] == 1 and counts["consents"] == 1
    assert {"anon-ann-123456", "u-ann-777"} <= {i["value"] for i in doc["identifiers"]}
    assert all(counts[name] >= 1 for name in planted + mentioned)
    assert [e["key"] for e in doc["outbox"]] == ["k-ann"]
    assert "bob@x.org" not in json.dumps(doc, default=str)

    with clock.frozen(NOW):
        report = erase_subject(wh, project, "ANN.MARKER@x.org")
    assert report.status == "erased"
    steps = {s.step: s for s in report.steps}
    assert steps["outbox"].rows == 2 and steps["events"].rows >= 3  # 2 deleted + 1 scrubbed
    assert _scan(wh) == {}
    assert sorted(p.name for p in outbox.iterdir()) == ["index.jsonl", "k-bob.eml"]
    assert "ann" not in (outbox / "index.jsonl").read_text().lower()
    # others untouched, their JSON scrubbed of Ann's address only
    assert wh.scalar("SELECT count(*) FROM events WHERE message_id LIKE 'm-bob-%'") == 2
    assert "[erased]" in str(
        wh.scalar("SELECT properties FROM events WHERE message_id = 'm-bob-2'")
    )
    assert wh.scalar("SELECT count(*) FROM quarantine") == 1
    assert consented(wh, [bob], purpose="email_marketing") == {bob}
    # idempotent: again by address or id changes nothing
    with clock.frozen(NOW):
        assert erase_subject(wh, project, "ann.marker@x.org").status == "already_erased"
        assert erase_subject(wh, project, ann).status == "already_erased"
        # … or by any identifier they had, bare or as kind:value (the first one asked by, too)
        for who in ("u-ann-777", "user_id:u-ann-777", "email:Ann.Marker@x.org", "anon-ann-123456"):
            assert erase_subject(wh, project, who).status == "already_erased", who
        with pytest.raises(NotFound):
            erase_subject(wh, project, "user_id:u-nobody")
    audit = wh.fetch("SELECT action, subject_hash FROM audit_log")
    assert [a[0] for a in audit] == ["erase"] and ann not in str(audit)

    # the old records come back (a re-sync): a customer again, but not marketable
    later = NOW + timedelta(days=1)
    counts = _come_back(wh, project, later)
    assert counts["tombstones_relinked"] == 1
    again = wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'c-ann-1'")
    assert again
    assert not erased_customer(wh, project_key(project), again)  # their links work again
    assert consented(wh, [again], purpose="email_marketing") == set()
    # … until they opt in again after the erasure
    from personify.privacy.consent import record

    record(
        wh,
        subject=again,
        purpose="email_marketing",
        status="granted",
        source="web",
        at=later + timedelta(hours=1),
    )
    assert consented(wh, [again], purpose="email_marketing") == {again}
    # erased a second time (the same customer id: the hash of the same founder): every step
    # runs again, nothing of the comeback is left
    with clock.frozen(later + timedelta(hours=2)):
        second = erase_subject(wh, project, "ann.marker@x.org")
    assert second.status == "erased"
    assert all(s.status == "done" for s in second.steps)
    assert _scan(wh) == {}
    assert wh.scalar("SELECT count(*) FROM customer_records WHERE record_id = 'c-ann-1'") == 0


def test_erase_is_resumable(warehouse: Warehouse, tmp_path: Path) -> None:
    """A crash after some steps: the re-run skips them and finishes."""
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _ingest(wh)
    _run(wh, project)
    import personify.privacy.erase as erase_mod

    real = erase_mod._erase_table
    calls = {"n": 0}

    def flaky(w: Warehouse, t: Any, f: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("crash")
        return real(w, t, f)

    erase_mod._erase_table = flaky
    try:
        with clock.frozen(NOW), pytest.raises(RuntimeError):
            erase_subject(wh, project, "ann.marker@x.org")
    finally:
        erase_mod._erase_table = real
    ann = str(wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'u-ann-777'"))
    assert erased_customer(wh, project_key(project), ann)  # half-erased: no unsubscribe rows
    with clock.frozen(NOW):
        report = erase_subject(wh, project, "ann.marker@x.org")
    statuses = [s.status for s in report.steps]
    assert statuses.count("already_done") == 6  # tombstone, outbox, event_forwards, 3 tables
    assert report.status == "erased"
    assert _scan(wh) == {}


@pytest.mark.parametrize(
    "subject", ["x' OR '1'='1", "'; DELETE FROM customers; --", "%", "ann%", "email:%@x.org"]
)
def test_hostile_subjects_find_nobody(warehouse: Warehouse, tmp_path: Path, subject: str) -> None:
    """Subjects are bound parameters, never SQL or patterns: nothing is found, nothing erased."""
    from personify.errors import NotFound

    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _ingest(wh)
    _run(wh, project)
    before = wh.scalar("SELECT count(*) FROM customers")
    with clock.frozen(NOW):
        with pytest.raises(NotFound):
            export_subject(wh, project, subject)
        with pytest.raises(NotFound):
            erase_subject(wh, project, subject)
    assert wh.scalar("SELECT count(*) FROM customers") == before == 2


def _event(message_id: str, user_id: str | None, day: int, **kw: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "anonymous_id": "anon-shared-device",
        "user_id": user_id,
        "timestamp": _day(day),
        "received_at": _day(day),
        "source": "web",
        **kw,
    }


@pytest.mark.slow
def test_a_shared_device_exports_and_erases_only_its_owner(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Two people on one anonymous id, kept apart by identity (a refused merge): Alice's export
    and erasure leave Bob's events alone; an unresolved event with Alice's user id is hers, one
    with Bob's is not; an unresolved one by the shared id alone cannot be attributed: exported
    apart as possibly hers, and erased with hers (kept, it would still identify her device)."""
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _load(
        wh,
        "events",
        [
            _event("a-1", "u-alice", 1, type="identify", traits='{"email": "alice@ex.example"}'),
            _event("a-2", "u-alice", 2, type="track", event="Viewed"),
            _event("b-1", "u-bob", 3, type="identify", traits='{"email": "bob@ex.example"}'),
            _event("b-2", "u-bob", 4, type="track", event="Order Completed"),
        ],
    )
    _run(wh, project)
    assert wh.scalar("SELECT count(*) FROM identity_refusals") >= 1
    owners = dict(wh.fetch("SELECT message_id, customer_id FROM events"))
    assert owners["a-1"] != owners["b-1"]
    # arrived after the identity pass: not resolved yet
    _load(
        wh,
        "events",
        [
            _event("x-shared", None, 5, type="track", event="Viewed"),
            _event("x-alice", "u-alice", 5, type="track", event="Viewed", anonymous_id=None),
            _event("x-alice-device", "u-alice", 5, type="track", event="Viewed"),
            _event("x-mixed", "u-bob", 5, type="track", event="Viewed", anonymous_id="anon-a"),
        ],
    )

    with clock.frozen(NOW):
        doc = export_subject(wh, project, "alice@ex.example")
    mine = sorted(e["message_id"] for e in doc["tables"]["events"])
    assert mine == ["a-1", "a-2", "x-alice", "x-alice-device"]
    maybe = [e["message_id"] for e in doc["possibly_theirs"]["events"]]
    assert maybe == ["x-shared"]
    assert "bob@ex.example" not in json.dumps(doc, default=str)
    with clock.frozen(NOW):
        bobs = export_subject(wh, project, "bob@ex.example")
    assert sorted(e["message_id"] for e in bobs["tables"]["events"]) == ["b-1", "b-2", "x-mixed"]

    with clock.frozen(NOW):
        erase_subject(wh, project, "alice@ex.example")
    left = [r[0] for r in wh.fetch("SELECT message_id FROM events ORDER BY message_id")]
    assert left == ["b-1", "b-2", "x-mixed"]
    _run(wh, project)  # nothing of Alice's device comes back to Bob
    owners = dict(wh.fetch("SELECT message_id, customer_id FROM events"))
    assert owners["b-1"] == owners["b-2"] == owners["x-mixed"]


def _alice_and_bob(wh: Warehouse, project: Project) -> tuple[str, str]:
    """Alice on a device of her own, Bob on his; identity run. Returns their customer ids."""
    _load(
        wh,
        "events",
        [
            _event(
                "a-1",
                "u-alice",
                1,
                type="identify",
                traits='{"email": "alice@ex.example"}',
                anonymous_id="anon-alice-own",
            ),
            _event(
                "b-1",
                "u-bob",
                2,
                type="identify",
                traits='{"email": "bob@ex.example"}',
                anonymous_id="anon-bob-own",
            ),
        ],
    )
    _run(wh, project)
    owners = dict(wh.fetch("SELECT message_id, customer_id FROM events"))
    return str(owners["a-1"]), str(owners["b-1"])


@pytest.mark.slow
def test_loose_events_are_matched_by_user_id_first(warehouse: Warehouse, tmp_path: Path) -> None:
    """An event resolved to another live customer is never Alice's; one unresolved or resolved
    to a stale id (merged into someone else, or gone) is hers by her user id — stitching gives
    a user-id event to that id's customer — or, without one, by her own anonymous id."""
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    alice, bob = _alice_and_bob(wh, project)
    wh.execute(
        "INSERT INTO customer_ids (customer_id, founder, founded_at, status, merged_into) "
        "VALUES ('cus_old', 0, ?, 'merged', ?)",
        [_day(0), bob],
    )
    _load(
        wh,
        "events",
        [
            _event("s-unresolved", "u-alice", 5, type="track", anonymous_id=None),
            _event("s-gone", "u-alice", 5, type="track", anonymous_id=None, customer_id="cus_gone"),
            _event(
                "s-merged", " u-alice ", 5, type="track", anonymous_id=None, customer_id="cus_old"
            ),
            _event(
                "s-anon-gone",
                None,
                5,
                type="track",
                anonymous_id="anon-alice-own",
                customer_id="cus_gone",
            ),
            # resolved to Bob, a live customer: his, whatever it carries
            _event("s-bobs", "u-alice", 5, type="track", anonymous_id=None, customer_id=bob),
            _event(
                "s-bob-gone", "u-bob", 5, type="track", anonymous_id=None, customer_id="cus_gone"
            ),
        ],
    )

    with clock.frozen(NOW):
        doc = export_subject(wh, project, "alice@ex.example")
    mine = sorted(e["message_id"] for e in doc["tables"]["events"])
    assert mine == ["a-1", "s-anon-gone", "s-gone", "s-merged", "s-unresolved"]
    assert doc["possibly_theirs"]["events"] == []

    with clock.frozen(NOW):
        erase_subject(wh, project, "alice@ex.example")
    left = [r[0] for r in wh.fetch("SELECT message_id FROM events ORDER BY message_id")]
    assert left == ["b-1", "s-bob-gone", "s-bobs"]
    assert alice not in {r[0] for r in wh.fetch("SELECT customer_id FROM events")}


@pytest.mark.slow
def test_another_persons_user_id_makes_an_anonymous_id_shared(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Bob signs in on Alice's device after the identity pass: that event is his (his user id),
    so Alice's anonymous id is now carried by his events too, and a later event with no user id
    on it can be either's — possibly hers, not hers, and erased with hers."""
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _alice_and_bob(wh, project)
    _load(
        wh,
        "events",
        [
            _event("x-bob-on-alices", "u-bob", 5, type="track", anonymous_id="anon-alice-own"),
            _event("x-anon", None, 6, type="track", anonymous_id="anon-alice-own"),
        ],
    )

    with clock.frozen(NOW):
        doc = export_subject(wh, project, "alice@ex.example")
    assert [e["message_id"] for e in doc["tables"]["events"]] == ["a-1"]
    assert [e["message_id"] for e in doc["possibly_theirs"]["events"]] == ["x-anon"]

    with clock.frozen(NOW):
        erase_subject(wh, project, "alice@ex.example")
    left = [r[0] for r in wh.fetch("SELECT message_id FROM events ORDER BY message_id")]
    assert left == ["b-1", "x-bob-on-alices"]


@pytest.mark.slow
def test_free_text_and_json_match_whole_identifiers_only(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Ann (crm id 100121, ann@ex.example) is erased; Joann (joann@ex.example) and a product
    SKU-SPO-100121 are not her: their quarantined rows, JSON values and outbox files stay."""
    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _load(
        wh,
        "customer_records",
        [
            {
                "source": "crm",
                "record_id": rid,
                "email": email,
                "observed_at": _day(0),
                "received_at": _day(0),
            }
            for rid, email in (("100121", "Ann@Ex.example"), ("200343", "joann@ex.example"))
        ],
    )
    _load(
        wh,
        "events",
        [
            {
                "message_id": "m-joann",
                "type": "identify",
                "user_id": "u-joann",
                "traits": '{"email": "joann@ex.example", "friend": "ANN@ex.example", '
                '"note": "ask Ann@ex.example,ann@ex.example,ANN@ex.example or joann@ex.example"}',
                "timestamp": _day(1),
                "received_at": _day(1),
                "source": "web",
            }
        ],
    )
    quarantined = {
        "q-ann": ('{"email": "ann@ex.example"}', "bad phone"),
        "q-ann-id": ('{"crm_id": "100121", "sku": "x"}', "bad"),
        "q-ann-text": ("", "no such address: <Ann@Ex.example>."),
        "q-joann": ('{"email": "joann@ex.example"}', "bad phone"),
        "q-sku": ('{"sku": "SKU-SPO-100121"}', "unknown product SKU-SPO-100121"),
        "q-longer": ('{"email": "ann@ex.example.org", "id": "1001212"}', "bad"),
    }
    _load(
        wh,
        "quarantine",
        [
            {
                "id": qid,
                "source": "crm",
                "received_at": _day(1),
                "reason": "invalid",
                "detail": detail,
                "payload": payload,
            }
            for qid, (payload, detail) in quarantined.items()
        ],
    )
    _run(wh, project)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    (outbox / "k-ann.eml").write_text("To: Ann <ANN@ex.example>\r\n\r\nHi")
    (outbox / "k-joann.eml").write_text("To: Joann <joann@ex.example>\r\n\r\nHi")
    (outbox / "index.jsonl").write_text("")

    with clock.frozen(NOW):
        doc = export_subject(wh, project, "ann@ex.example")
    found = sorted(r["id"] for r in doc["tables"]["quarantine"])
    assert found == ["q-ann", "q-ann-id", "q-ann-text"]
    text = json.dumps(doc, default=str).lower()
    assert "joann" not in text and "sku-spo" not in text

    with clock.frozen(NOW):
        erase_subject(wh, project, "ann@ex.example")
    left = sorted(r[0] for r in wh.fetch("SELECT id FROM quarantine"))
    assert left == ["q-joann", "q-longer", "q-sku"]
    traits = wh.scalar("SELECT traits FROM events WHERE message_id = 'm-joann'")
    traits = json.loads(traits) if isinstance(traits, str) else traits
    assert traits == {
        "email": "joann@ex.example",
        "friend": "[erased]",
        "note": "ask [erased],[erased],[erased] or joann@ex.example",  # whole tokens
    }
    assert sorted(p.name for p in outbox.iterdir()) == ["index.jsonl", "k-joann.eml"]


@pytest.mark.slow
def test_an_old_unsubscribe_link_after_erasure_writes_nothing(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """The erased person clicks an unsubscribe link from an old email: they are suppressed by
    their tombstones already, and no row brings their customer id back."""
    from personify.delivery.suppress import unsubscribe
    from personify.delivery.tokens import UnsubscribeClaim

    wh, project = warehouse, _project(tmp_path, warehouse.url)
    _ingest(wh)
    _run(wh, project)
    ann = str(wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'u-ann-777'"))
    with clock.frozen(NOW):
        erase_subject(wh, project, "ann.marker@x.org")

    def held() -> list[Any]:
        return [
            wh.fetch(f"SELECT * FROM {name} ORDER BY 1, 2")
            for name in ("consents", "consent_history", "suppressions", "audit_log")
        ]

    before = held()
    with clock.frozen(NOW + timedelta(days=1)):
        done = unsubscribe(wh, project, UnsubscribeClaim(ann, "email_marketing"))
    assert not done.new
    assert held() == before
    assert ann not in json.dumps(before, default=str)
    # a late bounce report naming them (the ESP echoes the customer id of an old send): the
    # address is suppressed already (its tombstone), their customer id is not written back
    from personify.delivery.events import EspEvent
    from personify.delivery.suppress import apply_events

    with clock.frozen(NOW + timedelta(days=1)):
        bounce = EspEvent("bounced", "ann.marker@x.org", customer_id=ann)
        assert apply_events(wh, project, "sendgrid", 1, [bounce]).written == 0
        assert held() == before
        # (an erasure made before customer ids had tombstones: known by its progress rows)
        wh.execute("DELETE FROM suppressions WHERE kind = 'customer_id'")
        apply_events(wh, project, "sendgrid", 1, [bounce])
    assert ann not in json.dumps(held(), default=str)


@pytest.mark.slow
def test_an_unsubscribe_after_coming_back_revokes_consent(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Erased, back (a re-sync under the same customer id and address) and opted in again, the
    person clicks unsubscribe. Every suppression row it would write exists already (the
    erasure's tombstones, the address's pointed at them), yet the click revokes the purpose —
    in ``consents``, the history and the audit log — so the consent granted since no longer
    lets them through; a second click changes nothing."""
    from personify.delivery.suppress import unsubscribe
    from personify.delivery.tokens import UnsubscribeClaim
    from personify.journeys.decide import suppressed
    from personify.privacy.consent import record

    wh, project = warehouse, _project(tmp_path, warehouse.url)
    key = project_key(project)
    _ingest(wh)
    _run(wh, project)
    with clock.frozen(NOW):
        erase_subject(wh, project, "ann.marker@x.org")
    later = NOW + timedelta(days=1)
    _come_back(wh, project, later)
    again = str(wh.scalar("SELECT customer_id FROM identity_nodes WHERE value = 'c-ann-1'"))
    record(
        wh,
        subject=again,
        purpose="email_marketing",
        status="granted",
        source="web",
        at=later + timedelta(hours=1),
    )
    assert consented(wh, [again], purpose="email_marketing") == {again}
    assert suppressed(wh, [again], key, purpose="email_marketing") == set()
    tombs = "SELECT kind, subject_hash, customer_id, reason FROM suppressions ORDER BY 1, 2"
    before = wh.fetch(tombs)

    with clock.frozen(later + timedelta(hours=2)):
        done = unsubscribe(wh, project, UnsubscribeClaim(again, "email_marketing"))
    assert done.new and done.customer_id == again
    assert wh.fetch(tombs) == before  # (nothing new to write: the tombstones stand)
    assert wh.fetch(
        "SELECT status, source FROM consents WHERE customer_id = ? AND purpose = ?",
        [again, "email_marketing"],
    ) == [("revoked", "unsubscribe")]
    history = "SELECT status, source FROM consent_history WHERE customer_id = ? ORDER BY changed_at"
    assert wh.fetch(history, [again]) == [("granted", "web"), ("revoked", "unsubscribe")]
    audit = "SELECT action FROM audit_log WHERE action = 'consent'"
    assert wh.fetch(audit) == [("consent",)]
    assert consented(wh, [again], purpose="email_marketing") == set()
    assert suppressed(wh, [again], key, purpose="email_marketing") == {again}

    with clock.frozen(later + timedelta(hours=3)):  # again: nothing changes
        assert not unsubscribe(wh, project, UnsubscribeClaim(again, "email_marketing")).new
    assert wh.fetch(history, [again]) == [("granted", "web"), ("revoked", "unsubscribe")]
    assert wh.fetch(audit) == [("consent",)]
