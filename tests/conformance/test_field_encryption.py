"""Field-level encryption of ``customers`` columns on every backend: sealed at rest by the
privacy stage (no plain address in the table), found by the blind index however the address is
written, decrypted at the one read seam (render context, profile, export, unsubscribe), bound to
its row (a token moved to another person's row does not decrypt), re-encrypted and re-indexed by
rotation, and gone with an erasure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from personify import clock
from personify.config import Project, parse_config
from personify.delivery import prepare
from personify.delivery.suppress import unsubscribe
from personify.delivery.tokens import UnsubscribeClaim
from personify.identity import resolve_batch
from personify.messages import read_customer, read_customers
from personify.privacy.crypto import DecryptionError, new_key
from personify.privacy.erase import erase_subject
from personify.privacy.export import export_subject
from personify.privacy.fields import cipher_of, lookup, lookup_many, rotate_customers
from personify.privacy.hashing import identifier_hash
from personify.privacy.stage import privacy_stage
from personify.profiles import profiles_stage
from personify.profiles.read import read_profile
from personify.session import Session
from personify.warehouse import Warehouse, table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=3)
TS = pa.timestamp("us", tz="UTC")
K1, K2 = f"k1:{new_key()}", f"k2:{new_key()}"
ANN = "Ann.Secret@Example.org"
ANN_NORMAL = "ann.secret@example.org"  # the profile keeps the normalized address
FIELDS = "[customers.email, customers.phone, customers.first_name]"


def _project(tmp: Path, url: str, keys: str = K1, extra: str = "") -> Project:
    text = (
        f"warehouse: {url}\nsigning_key: test-signing-key\n"
        f"privacy:\n  encryption_keys: {keys}\n  encrypted_fields: {FIELDS}\n{extra}"
    )
    (tmp / "templates").mkdir(exist_ok=True)
    (tmp / "templates" / "hello.liquid").write_text(
        "---\nsubject: Hello {{ customer.first_name }}\n---\n<p>Hi {{ customer.first_name }}, "
        "this goes to {{ customer.email }}</p>\n",
        encoding="utf-8",
    )
    return Project(parse_config(text), tmp, tmp / "personify.yml")


def _records(wh: Warehouse, rows: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(c for r in rows for c in r))
    wh.load(
        table("customer_records"),
        pa.table(
            {
                c: pa.array([r.get(c) for r in rows], TS if c.endswith("_at") else None)
                for c in names
            }
        ),
    )


def _run(wh: Warehouse, project: Project) -> dict[str, int]:
    with clock.frozen(NOW):
        session = Session(project, warehouse=wh)
        resolve_batch(wh, project.config.identity)
        profiles_stage(session)
        return privacy_stage(session)


@pytest.fixture
def world(warehouse: Warehouse, tmp_path: Path) -> tuple[Warehouse, Project]:
    project = _project(tmp_path, warehouse.url)
    _records(
        warehouse,
        [
            {
                "source": "crm",
                "record_id": "c-ann",
                "email": ANN,
                "first_name": "Annabel",
                "phone": "+33 6 12 34 56 78",
                "observed_at": T0,
                "received_at": T0,
            },
            {
                "source": "crm",
                "record_id": "c-bob",
                "email": "bob@example.org",
                "first_name": "Bob",
                "observed_at": T0,
                "received_at": T0,
            },
        ],
    )
    counts = _run(warehouse, project)
    # the profile build seals the rows it writes (2 emails, 1 phone, 2 first names) before
    # they commit: nothing plain is left for the privacy stage; it seals the records' values
    assert counts["fields_sealed"] == 0 and counts["record_values_sealed"] == 5
    return warehouse, project


def _ann(wh: Warehouse) -> str:
    found = lookup(wh, "email", "  ann.secret@EXAMPLE.org ")
    assert len(found) == 1
    return found[0]


def test_sealed_at_rest_and_found_by_the_blind_index(world: tuple[Warehouse, Project]) -> None:
    wh, project = world
    rows = wh.fetch("SELECT email, phone, first_name, last_name FROM customers")
    assert len(rows) == 2
    for email, phone, first, last in rows:
        assert str(email).startswith("enc1:k1:") and str(first).startswith("enc1:k1:")
        assert phone is None or str(phone).startswith("enc1:k1:")
        assert last is None  # not configured, nothing to seal
    text = " ".join(str(v) for r in wh.fetch("SELECT * FROM customers") for v in r).lower()
    assert "secret" not in text and "annabel" not in text and "12 34" not in text
    ann = _ann(wh)
    assert lookup(wh, "phone", "+33612345678") == [ann]
    assert lookup(wh, "email", "nobody@example.org") == []
    assert wh.scalar("SELECT count(*) FROM field_index") == 3
    # plain text only at the seam
    assert read_customers(wh, [ann])[ann]["email"] == ANN_NORMAL
    assert read_customer(wh, "ann.secret@example.org", project)["first_name"] == "Annabel"


def test_many_addresses_are_found_in_one_statement(world: tuple[Warehouse, Project]) -> None:
    """``lookup_many`` answers as :func:`lookup` per value does (spellings, strangers, blanks
    left out), in one statement whatever their number (ESP bounce deliveries name hundreds)."""
    wh, _ = world
    values = [ANN, "  ann.secret@EXAMPLE.org ", "bob@example.org", "nobody@example.org", " "]
    values += [f"stranger{i}@example.org" for i in range(50)]
    statements: list[str] = []
    fetch = wh.fetch

    def counted(sql: Any, params: Any = ()) -> Any:
        statements.append(str(sql))
        return fetch(sql, params)

    wh.fetch = counted  # type: ignore[method-assign]
    try:
        found = lookup_many(wh, "email", values)
    finally:
        del wh.fetch
    assert len(statements) == 1
    assert found == {v: lookup(wh, "email", v) for v in values if lookup(wh, "email", v)}
    assert set(found) == {ANN, "  ann.secret@EXAMPLE.org ", "bob@example.org"}
    assert lookup_many(wh, "email", []) == {} and lookup_many(wh, "last_name", [ANN]) == {}


def test_render_profile_export_and_unsubscribe_see_plain_text(
    world: tuple[Warehouse, Project],
) -> None:
    wh, project = world
    ann = _ann(wh)
    with clock.frozen(NOW):
        envelope = prepare(wh, project, "hello", "ann.secret@example.org", key="k-hello-ann")
    assert envelope.recipient == ANN_NORMAL
    assert "Annabel" in envelope.subject
    assert b"enc1:" not in envelope.raw
    profile = read_profile(wh, ann, project)
    assert (
        profile["profile"]["email"] == ANN_NORMAL and profile["profile"]["first_name"] == "Annabel"
    )
    doc = export_subject(wh, project, "ann.secret@example.org")
    assert doc["profile"]["email"] == ANN_NORMAL and doc["profile"]["phone"] == "+33612345678"
    assert doc["tables"]["field_index"] and "value_hash" not in doc["tables"]["field_index"][0]
    # an unsubscribe tombstones the address itself, not its ciphertext
    with clock.frozen(NOW):
        unsubscribe(wh, project, UnsubscribeClaim(ann, "email_marketing"))
    hashes = {str(r[0]) for r in wh.fetch("SELECT subject_hash FROM suppressions")}
    # (the address as the graph holds it: its blind value, so the privacy stage's re-link meets it)
    assert identifier_hash(wh, b"test-signing-key", "email", ANN) in hashes


def test_a_token_moved_to_another_row_does_not_decrypt(world: tuple[Warehouse, Project]) -> None:
    wh, project = world
    ann = _ann(wh)
    bob = lookup(wh, "email", "bob@example.org")[0]
    stolen = wh.scalar("SELECT email FROM customers WHERE customer_id = ?", [ann])
    wh.execute("UPDATE customers SET email = ? WHERE customer_id = ?", [stolen, bob])
    with pytest.raises(DecryptionError):
        read_profile(wh, bob, project)
    # at send time the row fails alone: its address stays sealed (no usable address)
    assert str(read_customers(wh, [bob])[bob]["email"]).startswith("enc1:")


def test_rotation_reencrypts_and_reindexes(
    world: tuple[Warehouse, Project], tmp_path: Path
) -> None:
    wh, _ = world
    ann = _ann(wh)
    rotated = _project(
        tmp_path, wh.url, keys=f"{K2},{K1}", extra="  blind_index_key: another-index-key\n"
    )
    Session(rotated, warehouse=wh)  # attaches the new ring and index key
    assert lookup(wh, "email", ANN) == []  # the new index key: not recomputed yet
    done = rotate_customers(wh, cipher_of(wh))  # type: ignore[arg-type]
    assert done["reencrypted"] == 5 and done["indexed"] == 3
    assert all(str(r[0]).startswith("enc1:k2:") for r in wh.fetch("SELECT email FROM customers"))
    assert lookup(wh, "email", ANN) == [ann]
    assert read_customers(wh, [ann])[ann]["phone"] == "+33612345678"
    # the old key can go now
    Session(
        _project(tmp_path, wh.url, keys=K2, extra="  blind_index_key: another-index-key\n"),
        warehouse=wh,
    )
    assert read_customers(wh, [ann])[ann]["email"] == ANN_NORMAL


def test_rebuilt_rows_are_sealed_again_and_erasure_removes_the_index(
    world: tuple[Warehouse, Project],
) -> None:
    wh, project = world
    _run(wh, project)  # the profile build rewrites rows in plain text; the stage seals them
    assert not wh.fetch("SELECT 1 FROM customers WHERE email NOT LIKE 'enc1:%'")
    _records(
        wh,
        [
            {
                "source": "crm",
                "record_id": "c-ann",
                "email": ANN,
                "first_name": "Anna",
                "observed_at": NOW,
                "received_at": NOW,
            }
        ],
    )
    _run(wh, project)
    ann = _ann(wh)
    assert read_customers(wh, [ann])[ann]["first_name"] == "Anna"
    assert not wh.fetch("SELECT 1 FROM customers WHERE first_name = 'Anna'")
    with clock.frozen(NOW):
        erase_subject(wh, project, ANN)
    assert wh.scalar("SELECT count(*) FROM field_index WHERE customer_id = ?", [ann]) == 0
    assert lookup(wh, "email", ANN) == []
    assert wh.scalar("SELECT count(*) FROM customers") == 1


def test_the_real_time_path_seals_what_it_rebuilds(world: tuple[Warehouse, Project]) -> None:
    from personify.profiles.realtime import apply_record

    wh, project = world
    _records(
        wh,
        [
            {
                "source": "crm",
                "record_id": "c-cat",
                "email": "cat@example.org",
                "first_name": "Cat",
                "observed_at": NOW,
                "received_at": NOW,
            }
        ],
    )
    with clock.frozen(NOW):
        touched = apply_record(Session(project, warehouse=wh), "crm", "c-cat")
    (cat,) = lookup(wh, "email", "CAT@example.org")
    assert cat in touched
    assert str(wh.scalar("SELECT email FROM customers WHERE customer_id = ?", [cat])).startswith(
        "enc1:"
    )
    assert read_customers(wh, [cat])[cat]["first_name"] == "Cat"
    assert not wh.fetch("SELECT 1 FROM customers WHERE email NOT LIKE 'enc1:%'")


def test_the_real_time_path_seals_the_emails_of_the_orders_and_tickets_it_reads(
    world: tuple[Warehouse, Project],
) -> None:
    """A webhook's order or a synced ticket applied in real time (``personify serve``) has its
    email sealed in the same pass, as the batch privacy stage seals it — and a batch run
    afterwards links the sealed rows to the same customers."""
    from personify.identity.sightings import Scope
    from personify.profiles.realtime import apply, apply_order

    wh, project = world
    ann = _ann(wh)

    def rows(name: str, data: list[dict[str, Any]]) -> None:
        names = list(dict.fromkeys(c for r in data for c in r))
        wh.load(
            table(name),
            pa.table(
                {
                    c: pa.array([r.get(c) for r in data], TS if c.endswith("_at") else None)
                    for c in names
                }
            ),
        )

    order = {"status": "paid", "total": 30.0, "created_at": NOW, "received_at": NOW}
    rows(
        "orders",
        [
            {"order_id": "o-ann", "email": ANN, "source": "shop", **order},
            {"order_id": "o-dan", "email": "Dan.Secret@Example.org", "source": "shop", **order},
        ],
    )
    ticket = {"ticket_id": "t-dan", "email": " dan.secret@example.org", "subject": "Help"}
    rows("tickets", [{**ticket, "status": "open", "created_at": NOW, "source": "desk"}])
    with clock.frozen(NOW):
        session = Session(project, warehouse=wh)
        assert ann in apply_order(session, "o-ann")
        apply(
            session,
            Scope(orders=("order_id = ?", ("o-dan",)), tickets=("ticket_id = ?", ("t-dan",))),
        )
    # what a scheduled sync stored, applied by the continuous pass (inputs by received_at)
    from personify.realtime.continuous import Applier

    later = NOW + timedelta(minutes=5)
    synced = {**ticket, "ticket_id": "t-ann", "email": "ANN.secret@example.org "}
    rows(
        "tickets",
        [{**synced, "status": "open", "source": "desk", "created_at": later, "received_at": later}],
    )
    with clock.frozen(later):
        applier = Applier(Session(project, warehouse=wh), react=False, tick_every=None)
        try:
            applier.submit_synced("desk", later - timedelta(seconds=1))
            assert applier.wait_idle(60) and applier.failures == 0
        finally:
            applier.close()
    stored = wh.fetch("SELECT email FROM orders UNION ALL SELECT email FROM tickets")
    assert len(stored) == 4 and all(str(e).startswith("encd1:") for (e,) in stored)
    assert "secret" not in str(stored).lower()
    (dan,) = lookup(wh, "email", "dan.secret@example.org")
    linked = {
        str(i): str(c)
        for i, c in wh.fetch(
            "SELECT order_id, customer_id FROM orders "
            "UNION ALL SELECT ticket_id, customer_id FROM tickets"
        )
    }
    assert linked == {"o-ann": ann, "o-dan": dan, "t-dan": dan, "t-ann": ann}

    counts = _run(wh, project)  # the batch: nothing left to seal, the same links
    assert counts["input_emails_sealed"] == 0
    again = wh.fetch(
        "SELECT order_id, customer_id FROM orders UNION ALL SELECT ticket_id, customer_id "
        "FROM tickets"
    )
    assert {str(i): str(c) for i, c in again} == linked
