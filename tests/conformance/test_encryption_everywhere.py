"""With ``privacy.encrypted_fields`` on, no table of the warehouse holds a configured field's
plain text — not ``customers`` only, but the inputs (person records, orders, identify traits),
the identity graph (``identity_nodes``, ``identities``: blind emails and phones) and the
provenance (``profile_observations``). A world is loaded and run through identity, profiles and
the privacy stage on every backend, then every column of every table (JSON values included) is
scanned for the people's addresses, phones and names: none. And everything that reads them still
works: merges by email (two sources, two spellings), the blind index, the profile (plain text,
with provenance), ``identity explain``, the send-time read, the batch recompute, the export and
the erasure with its tombstone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.audience_data import arrow_rows

from personify import clock
from personify.config import Project, parse_config
from personify.identity import explain, resolve_batch, state
from personify.messages import read_customer, read_customers
from personify.privacy.crypto import new_key
from personify.privacy.erase import erase_subject
from personify.privacy.export import export_subject
from personify.privacy.fields import cipher_of, lookup, rotate_customers
from personify.privacy.stage import privacy_stage
from personify.profiles import profiles_stage
from personify.profiles.read import read_profile
from personify.session import Session
from personify.warehouse import Warehouse, table
from personify.warehouse.base import quote
from personify.warehouse.schema import TABLES

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=5)
FIELDS = "[customers.email, customers.phone, customers.first_name, customers.last_name]"

ANN_EMAIL, ANN_NORMAL = "Ann.Scan@Example.org", "ann.scan@example.org"
ANN_PHONE, ANN_E164 = "+33 6 11 22 33 44", "+33611223344"
BOB_EMAIL = "bob.probe@example.net"
PLAIN = (
    "ann.scan@",
    "11 22 33 44",
    "611223344",
    "annika",
    "scanwell",
    "bob.probe@",
    "bobbert",
    "probington",
    "+4915112345678",
    "151 1234",
)
"""Lower-cased fragments of every configured value of the world (addresses, phones, names)."""


K1, K2 = f"k1:{new_key()}", f"k2:{new_key()}"


def _project(tmp: Path, url: str, keys: str = K1) -> Project:
    text = (
        f"warehouse: {url}\nsigning_key: test-signing-key\n"
        f"privacy:\n  encryption_keys: {keys}\n  encrypted_fields: {FIELDS}\n"
        "identity:\n  source_kinds:\n    shop: user_id\n"
    )
    return Project(parse_config(text), tmp, tmp / "personify.yml")


def _load(wh: Warehouse, name: str, rows: list[dict[str, Any]]) -> None:
    wh.load(table(name), arrow_rows(name, rows))


def _ingest(wh: Warehouse, at: datetime) -> None:
    _load(
        wh,
        "customer_records",
        [
            {
                "source": "crm",
                "record_id": "c-1",
                "email": ANN_EMAIL,
                "phone": ANN_PHONE,
                "first_name": "Annika",
                "last_name": "Scanwell",
                "country": "FR",
                "observed_at": at,
                "received_at": at,
            },
            {  # the same person in another source, the address spelled differently
                "source": "shop",
                "record_id": "u-ann",
                "email": f"  {ANN_NORMAL.upper()} ",
                "first_name": "Annika",
                "observed_at": at,
                "received_at": at,
            },
            {
                "source": "crm",
                "record_id": "c-2",
                "email": BOB_EMAIL,
                "phone": "+49 151 12345678",
                "first_name": "Bobbert",
                "last_name": "Probington",
                "observed_at": at,
                "received_at": at,
            },
        ],
    )
    # an order known only by the address (stitched and observed through its blind value), and
    # an identify call (traits): inputs that keep the address in plain text for now (see INPUTS)
    _load(
        wh,
        "orders",
        [
            {
                "order_id": f"o-{at:%d}",
                "email": ANN_EMAIL.upper(),
                "status": "paid",
                "currency": "EUR",
                "total": 30.0,
                "created_at": at,
                "source": "shop_orders",
            }
        ],
    )
    _load(
        wh,
        "events",
        [
            {
                "message_id": f"m-{at:%d}",
                "type": "identify",
                "user_id": "u-ann",
                "timestamp": at,
                "received_at": at,
                "source": "web",
                "traits": '{"email": "ann.scan@example.org", "plan": "gold"}',
            }
        ],
    )


def _run(wh: Warehouse, project: Project) -> dict[str, int]:
    with clock.frozen(NOW):
        session = Session(project, warehouse=wh)
        resolve_batch(wh, project.config.identity)
        profiles_stage(session)
        return privacy_stage(session)


INPUTS = {"events.traits"}
"""Inputs not sealed yet: an identify call's traits stay as the source sent them (the graph, the
provenance and the profile built from them do not hold them)."""


def _plain_left(wh: Warehouse) -> list[str]:
    """``table.column: fragment`` for every configured plain value found anywhere but in
    :data:`INPUTS`."""
    found = []
    for t in TABLES:
        cols = t.column_names
        select = ", ".join(f"CAST({quote(c)} AS VARCHAR)" for c in cols)
        for row in wh.fetch(f"SELECT {select} FROM {quote(t.name)}"):
            for column, value in zip(cols, row, strict=True):
                text = str(value or "").lower()
                if f"{t.name}.{column}" not in INPUTS:
                    found += [f"{t.name}.{column}: {p}" for p in PLAIN if p in text]
    return sorted(set(found))


@pytest.fixture
def world(warehouse: Warehouse, tmp_path: Path) -> tuple[Warehouse, Project]:
    project = _project(tmp_path, warehouse.url)
    Session(project, warehouse=warehouse)  # attaches the cipher
    _ingest(warehouse, T0)
    _run(warehouse, project)
    return warehouse, project


def test_no_table_holds_a_configured_plain_value(world: tuple[Warehouse, Project]) -> None:
    wh, _ = world
    assert _plain_left(wh) == []
    # the graph holds blind values for emails and phones, plain ones for other kinds
    kinds = {str(k): str(v) for k, v in wh.fetch("SELECT kind, value FROM identity_nodes")}
    assert len(kinds["email"]) == 64 and "@" not in kinds["email"]
    assert kinds["user_id"] == "u-ann"


def test_merges_lookups_and_reads_still_work(world: tuple[Warehouse, Project]) -> None:
    wh, project = world
    (ann,) = lookup(wh, "email", ANN_EMAIL)
    assert wh.scalar("SELECT count(*) FROM customers") == 2  # crm + shop Ann merged by email
    # the order (by address) and the identify call (by user id) are stitched to her
    assert wh.scalar("SELECT customer_id FROM orders") == ann
    assert wh.scalar("SELECT customer_id FROM events") == ann
    assert read_customers(wh, [ann])[ann]["order_count"] == 1
    assert lookup(wh, "phone", "+33 (6) 11-22-33-44") == [ann]
    assert read_customers(wh, [ann])[ann]["last_name"] == "Scanwell"
    assert read_customer(wh, ANN_NORMAL, project)["email"] == ANN_NORMAL  # send-time read
    profile = read_profile(wh, ANN_EMAIL, project)
    assert profile["customer_id"] == ann
    assert profile["profile"]["phone"] == ANN_E164
    assert profile["fields"]["first_name"]["value"] == "Annika"
    assert profile["fields"]["email"]["value"] == ANN_NORMAL
    shown = {(i["kind"], i["value"]) for i in profile["identities"]}
    assert {("email", ANN_NORMAL), ("phone", ANN_E164), ("user_id", "u-ann")} <= shown
    why = explain(wh, f"email:{ANN_EMAIL}", "user_id:u-ann", project.config.identity)
    assert why.linked and why.a.value == ANN_NORMAL  # the address, not its blind value
    shown_chain = {link[end]["value"] for link in why.chain for end in ("from", "to")}
    assert ANN_NORMAL in shown_chain and not any(len(v) == 64 for v in shown_chain)
    assert read_profile(wh, f"phone:{ANN_PHONE}", project)["customer_id"] == ann


def test_a_second_run_and_a_recompute_keep_everything_sealed(
    world: tuple[Warehouse, Project],
) -> None:
    from personify.realtime.drift import recompute

    wh, project = world
    _ingest(wh, NOW)  # new versions of the records arrive
    _run(wh, project)
    assert _plain_left(wh) == []
    with clock.frozen(NOW):
        drift = recompute(Session(project, warehouse=wh))  # serve --recompute
    assert not drift.drifted  # an unchanged profile seals to the same tokens
    assert _plain_left(wh) == []
    (ann,) = lookup(wh, "email", ANN_NORMAL)
    assert read_customers(wh, [ann])[ann]["first_name"] == "Annika"
    # a full re-resolution reads the sealed inputs: records decrypted, orders by the blind value
    # their sealed address carries — everything lands on the same customer again
    assert all(str(r[0]).startswith("encd1:") for r in wh.fetch("SELECT email FROM orders"))
    wh.execute("UPDATE orders SET customer_id = NULL")
    state.put(wh, "identity.fingerprint", "rules changed")
    _run(wh, project)
    assert {str(r[0]) for r in wh.fetch("SELECT customer_id FROM orders")} == {ann}
    assert lookup(wh, "email", ANN_NORMAL) == [ann]
    assert read_customers(wh, [ann])[ann]["order_count"] == 2
    assert _plain_left(wh) == []


def test_export_shows_plain_text_and_erasure_leaves_a_working_tombstone(
    world: tuple[Warehouse, Project],
) -> None:
    wh, project = world
    (ann,) = lookup(wh, "email", ANN_EMAIL)
    doc = export_subject(wh, project, ANN_EMAIL)
    assert {"kind": "email", "value": ANN_NORMAL} in doc["identifiers"]
    assert doc["profile"]["last_name"] == "Scanwell"
    assert {r["email"] for r in doc["tables"]["customer_records"]} == {
        ANN_EMAIL,
        f"  {ANN_NORMAL.upper()} ",
    }
    assert [r["email"] for r in doc["tables"]["orders"]] == [ANN_EMAIL.upper()]
    values = {(r["field"], r["value"]) for r in doc["tables"]["profile_observations"]}
    assert ("email", ANN_NORMAL) in values and ("phone", ANN_E164) in values
    with clock.frozen(NOW):
        report = erase_subject(wh, project, ANN_EMAIL)
    assert report.status != "already_erased"
    assert lookup(wh, "email", ANN_EMAIL) == []
    assert wh.scalar("SELECT count(*) FROM customers") == 1
    with clock.frozen(NOW):
        again = erase_subject(wh, project, ANN_EMAIL)
    assert again.status == "already_erased"  # the tombstone is found by the address
    # Ann's records come back: the tombstone follows the (blind) address to the new customer
    _ingest(wh, NOW)
    _run(wh, project)
    (back,) = lookup(wh, "email", ANN_EMAIL)
    linked = wh.fetch(
        "SELECT count(*) FROM suppressions WHERE customer_id = ? AND reason = 'erased'", [back]
    )
    assert linked[0][0] >= 1
    assert _plain_left(wh) == []


def test_turning_encryption_on_seals_what_was_stored_in_plain_text(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    plain = Project(
        parse_config(f"warehouse: {warehouse.url}\nsigning_key: test-signing-key\n"),
        tmp_path,
        tmp_path / "personify.yml",
    )
    _ingest(warehouse, T0)
    _run(warehouse, plain)
    before = {
        str(r[0]): str(r[1])
        for r in warehouse.fetch("SELECT kind || ':' || value, customer_id FROM identities")
    }
    assert "email:" + ANN_NORMAL in before and _plain_left(warehouse)  # plain, as configured
    counts = _run(warehouse, _project(tmp_path, warehouse.url))  # the graph is rebuilt blind
    assert counts["observations_sealed"] > 0 and counts["record_values_sealed"] > 0
    assert _plain_left(warehouse) == []
    (ann,) = lookup(warehouse, "email", ANN_EMAIL)
    assert ann == before["email:" + ANN_NORMAL]  # the same customer id survives the rebuild
    assert read_customers(warehouse, [ann])[ann]["email"] == ANN_NORMAL


def test_rotation_reencrypts_records_and_observations(
    world: tuple[Warehouse, Project], tmp_path: Path
) -> None:
    wh, _ = world
    (ann,) = lookup(wh, "email", ANN_EMAIL)
    Session(_project(tmp_path, wh.url, keys=f"{K2},{K1}"), warehouse=wh)
    done = rotate_customers(wh, cipher_of(wh))  # type: ignore[arg-type]
    assert done["reencrypted_inputs"] > 0
    for sql in (
        "SELECT value FROM profile_observations WHERE field IN ('email', 'first_name')",
        "SELECT email FROM customer_records",
        "SELECT email FROM orders",
    ):
        assert all(str(r[0]).startswith("encd1:k2:") for r in wh.fetch(sql))
    rotated = _project(tmp_path, wh.url, keys=K2)  # the old key can go
    Session(rotated, warehouse=wh)
    profile = read_profile(wh, ANN_EMAIL, rotated)
    assert profile["customer_id"] == ann and profile["fields"]["last_name"]["value"] == "Scanwell"
    doc = export_subject(wh, rotated, ANN_EMAIL)
    assert [r["email"] for r in doc["tables"]["orders"]] == [ANN_EMAIL.upper()]
    _ingest(wh, NOW)  # new versions sealed under k2 meet the re-encrypted ones
    _run(wh, rotated)
    assert lookup(wh, "email", ANN_EMAIL) == [ann]
    assert _plain_left(wh) == []


def test_engagement_events_carry_the_address_not_its_blind_value(
    world: tuple[Warehouse, Project],
) -> None:
    """An open or click of a customer known only by address goes into ``events`` with the
    address in its traits so a re-resolution keeps it theirs; the blind value there would be
    blinded a second time and become an identifier of nobody."""
    from personify.engagement.record import _identifiers

    wh, _ = world
    (bob,) = lookup(wh, "email", BOB_EMAIL)
    assert _identifiers(wh, [bob])[bob] == (None, f"personify:{bob}", BOB_EMAIL)
