"""Segments over the team's own data, on every backend: uploaded lists (normalized, quarantined,
idempotent, replaced atomically, matched through identities at read time, blind under encrypted
fields, exported and erased with the person) and ``relations:`` (the team's own tables read under
a local name, a missing one named by its key in personify.yml)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.audience_data import arrow_rows, load_customers

from personify import clock
from personify.audiences.lists import (
    blind_list_members,
    delete_list,
    list_lists,
    show_list,
    upload_list,
)
from personify.audiences.memberships import refresh_segments
from personify.audiences.relations import project_relations
from personify.audiences.segments import parse_segment
from personify.audiences.stage import find_segment, preview, refresh
from personify.config import Project, parse_config
from personify.errors import ConfigError, DefinitionError, FileImportError, UsageError
from personify.identity.normalize import blind_of
from personify.privacy.crypto import new_key
from personify.privacy.erase import erase_subject
from personify.privacy.export import export_subject
from personify.session import Session
from personify.warehouse import Warehouse, table
from personify.warehouse.query import run_user_query

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def _project(tmp: Path, url: str, extra: str = "") -> Project:
    text = (
        f"warehouse: {url}\nsigning_key: test-signing-key\nidentity:\n  phone_region: FR\n" + extra
    )
    (tmp / "personify.yml").write_text(text)
    return Project(parse_config(text), tmp, tmp / "personify.yml")


def _identities(wh: Warehouse, rows: list[tuple[str, str, str]]) -> None:
    wh.load(
        table("identities"),
        arrow_rows(
            "identities",
            [
                {
                    "customer_id": c,
                    "kind": k,
                    "value": v,
                    "source": "crm",
                    "first_seen": T0,
                    "last_seen": T0,
                }
                for c, k, v in rows
            ],
        ),
    )


def _on_list(wh: Warehouse, name: str) -> list[str]:
    rows = wh.fetch("SELECT customer_id FROM list_customers WHERE list = ? ORDER BY 1", [name])
    return [r[0] for r in rows]


def _members(wh: Warehouse, name: str) -> list[tuple[str, str]]:
    return [
        (str(k), str(v))
        for k, v in wh.fetch(
            "SELECT kind, value FROM list_members WHERE list = ? ORDER BY kind, value", [name]
        )
    ]


@pytest.fixture
def session(warehouse: Warehouse, warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    clock.pin(T0)
    s = Session(_project(tmp_path, warehouse_url), warehouse=warehouse)
    yield s
    clock.pin(None)


VIP = (
    "email,name\n"
    "Ann@Example.org,Ann\n"  # line 2: lower-cased
    "  bob@example.org ,Bob\n"  # 3: trimmed
    "not-an-email,X\n"  # 4: invalid_email
    ",Empty\n"  # 5: missing_required
    "ann@example.org,again\n"  # 6: a duplicate in the file
    "carl@example.org,Carl,extra\n"  # 7: malformed_row
    "dora@example.org,Dora\n"  # 8: not a customer yet
)


def test_upload_normalizes_quarantines_and_matches_through_identities(
    session: Session, tmp_path: Path
) -> None:
    wh = session.warehouse
    load_customers(wh, [{"customer_id": "c1"}, {"customer_id": "c2"}, {"customer_id": "c3"}])
    _identities(
        wh,
        [("c1", "email", "ann@example.org"), ("c2", "email", "bob@example.org")]
        + [("c3", "email", "eve@example.org")],
    )
    file = tmp_path / "vip.csv"
    file.write_text(VIP)
    result = upload_list(session, "vip_2026", file)
    c = result.counts
    assert (c["rows_read"], c["rows_added"], c["rows_duplicate"], c["rows_quarantined"]) == (
        7,
        3,
        1,
        3,
    )
    assert c["rows_read"] == c["rows_added"] + c["rows_duplicate"] + c["rows_quarantined"]
    assert _members(wh, "vip_2026") == [
        ("email", "ann@example.org"),
        ("email", "bob@example.org"),
        ("email", "dora@example.org"),
    ]
    bad = wh.fetch(
        "SELECT location, reason, detail FROM quarantine WHERE source = 'list:vip_2026' "
        "ORDER BY location"
    )
    assert [(loc, reason) for loc, reason, _ in bad] == [
        ("vip.csv:4", "invalid_email"),
        ("vip.csv:5", "missing_required"),
        ("vip.csv:7", "malformed_row"),
    ]
    assert bad[0][2] == "vip.csv:4: column \"email\": 'not-an-email' is not an email address"
    # quarantine replay leaves them, saying how to fix them
    from personify.ingest.tracking.replay import replay

    skipped = replay(wh, session.project, source="list:vip_2026").skipped
    assert len(skipped) == 3 and all("personify lists upload" in why for _, why in skipped)
    assert _on_list(wh, "vip_2026") == ["c1", "c2"]

    # a member who becomes a customer later is on the list from then on: matched when read
    load_customers(wh, [{"customer_id": "c4"}])
    _identities(wh, [("c4", "email", "dora@example.org")])
    assert _on_list(wh, "vip_2026") == ["c1", "c2", "c4"]

    # the same file again changes nothing: no member, no quarantine row, no upload recorded
    before = wh.scalar("SELECT count(*) FROM quarantine")
    again = upload_list(session, "vip_2026", file)
    assert again.counts["rows_added"] == 0 and again.counts["already_uploaded"] == 1
    assert wh.scalar("SELECT count(*) FROM quarantine") == before
    assert wh.scalar("SELECT count(*) FROM list_uploads") == 1
    assert len(_members(wh, "vip_2026")) == 3

    # a segment reads it, as written in MySQL
    segment = parse_segment(
        "-- dialect: mysql\nSELECT customer_id FROM list_customers WHERE list = 'vip_2026'",
        file=Path("vip.sql"),
        default_dialect="duckdb",
    )
    [done] = refresh_segments(wh, [segment], now=T0, timeout_s=30, max_members=100)
    assert done.members == 3

    listed = {r["list"]: r for r in list_lists(wh)}
    assert listed["vip_2026"]["members"] == 3 and listed["vip_2026"]["customers"] == 3
    assert listed["vip_2026"]["quarantined"] == 3
    shown = show_list(wh, "vip_2026")
    assert shown["by_kind"] == {"email": 3} and shown["stale_kinds"] == []


def test_replace_swaps_the_list_in_one_transaction(session: Session, tmp_path: Path) -> None:
    wh = session.warehouse
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("email\na@x.org\nb@x.org\n")
    second.write_text("email\nb@x.org\nc@x.org\n")
    upload_list(session, "l", first)
    result = upload_list(session, "l", second, replace=True)
    assert result.counts["rows_removed"] == 1 and result.counts["rows_added"] == 1
    assert _members(wh, "l") == [("email", "b@x.org"), ("email", "c@x.org")]

    # a failing upload leaves the list as it was (here: a column the file lacks)
    with pytest.raises(Exception, match="no column 'mail'"):
        upload_list(session, "l", first, column="mail", replace=True)
    assert _members(wh, "l") == [("email", "b@x.org"), ("email", "c@x.org")]

    # a corrected version of a file: its earlier version's rejected rows leave the quarantine
    bad = tmp_path / "bad.csv"
    bad.write_text("email\nnope\nd@x.org\nworse\n")
    assert upload_list(session, "l", bad).counts["rows_quarantined"] == 2
    clock.pin(T0 + timedelta(minutes=1))
    bad.write_text("email\nn@x.org\nd@x.org\nworse\n")
    assert upload_list(session, "l", bad).counts["rows_quarantined"] == 1
    left = wh.fetch("SELECT location FROM quarantine WHERE source = 'list:l'")
    assert left == [("bad.csv:4",)]
    clock.pin(T0)
    wh.execute("DELETE FROM list_members WHERE value IN ('n@x.org', 'd@x.org')")

    deleted = delete_list(wh, "l")
    assert deleted["members"] == 2
    assert _members(wh, "l") == [] and list_lists(wh) == []


def test_phones_ids_and_parquet(session: Session, tmp_path: Path) -> None:
    wh = session.warehouse
    load_customers(wh, [{"customer_id": "c1"}, {"customer_id": "c2"}])
    _identities(wh, [("c1", "phone", "+33612345678"), ("c2", "crm_id", "CRM-9")])
    phones = tmp_path / "phones.parquet"
    pq.write_table(pa.table({"tel": ["06 12 34 56 78", "+33 6 12 34 56 78", "12", None]}), phones)
    result = upload_list(session, "p", phones, kind="phone")
    assert result.counts["rows_added"] == 1 and result.counts["rows_duplicate"] == 1
    assert result.counts["rows_quarantined"] == 2
    assert _on_list(wh, "p") == ["c1"]
    reasons = wh.fetch("SELECT location, reason FROM quarantine WHERE source = 'list:p' ORDER BY 1")
    assert reasons == [
        ("phones.parquet:3", "invalid_value"),
        ("phones.parquet:4", "missing_required"),
    ]

    ids = tmp_path / "ids.csv"
    ids.write_text("id\n CRM-9 \nc2\n")
    with pytest.raises(UsageError, match="unknown identifier kind 'nope'"):
        upload_list(session, "ids", ids, kind="nope")
    # crm_id is a source's own kind only if the project names the source; customer ids always
    upload_list(session, "ids", ids, kind="customer_id")
    assert _on_list(wh, "ids") == ["c2"]


def test_blocked_values_are_quarantined_not_stored(session: Session, tmp_path: Path) -> None:
    """identity.blocked values link nobody: on a list they would match nobody, silently."""
    wh = session.warehouse
    file = tmp_path / "vip.csv"
    # line 3 is blocked; 4 and 5 are blocked too, but no address in the first place
    file.write_text("email\nann@x.org\nTest@Example.com\nNULL\nn/a\nbob@x.org\n")
    c = upload_list(session, "b", file).counts
    counts = (c["rows_read"], c["rows_added"], c["rows_quarantined"], c["rows_blocked"])
    assert counts == (5, 2, 3, 1)
    assert c["rows_read"] == c["rows_added"] + c["rows_duplicate"] + c["rows_quarantined"]
    assert _members(wh, "b") == [("email", "ann@x.org"), ("email", "bob@x.org")]
    bad = wh.fetch(
        "SELECT location, reason, detail FROM quarantine WHERE source = 'list:b' ORDER BY 1"
    )
    assert [(loc, reason) for loc, reason, _ in bad] == [
        ("vip.csv:3", "blocked_value"),
        ("vip.csv:4", "invalid_email"),  # (not an address: refused as such first)
        ("vip.csv:5", "invalid_email"),
    ]
    assert bad[0][2] == (
        "vip.csv:3: column \"email\": 'Test@Example.com' is a blocked value (identity.blocked): "
        "it would match nobody"
    )

    # ids and phones: the kind's own list and "*" (compared lower-cased), phones once parsed
    ids = tmp_path / "ids.csv"
    ids.write_text("user_id\nu1\nUnknown\n guest \nu2\n")
    c = upload_list(session, "u", ids, kind="user_id").counts
    assert (c["rows_added"], c["rows_blocked"]) == (2, 2)
    session.project = _project(
        tmp_path, wh.url, "  blocked: {phone: ['+33 6 00 00 00 00'], '*': ['null']}\n"
    )
    phones = tmp_path / "phones.csv"
    phones.write_text("phone\n06 00 00 00 00\n+33600000000\n06 12 34 56 78\n")
    c = upload_list(session, "p", phones, kind="phone").counts
    assert (c["rows_added"], c["rows_blocked"], c["rows_quarantined"]) == (1, 2, 2)


JSONL = (
    '{"email": "Ann@Example.org", "name": "Ann"}\n'  # line 1
    "\n"  # 2: blank, skipped
    '{"email": "bob@example.org"}\n'  # 3
    "not json\n"  # 4: malformed_json
    '["carl@example.org"]\n'  # 5: not an object
    '{"email": ["dora@example.org"]}\n'  # 6: invalid_value
    '{"name": "no email"}\n'  # 7: missing_required
    '{"email": "null"}\n'  # 8: blocked_value (no address anyway: invalid_email)
    '{"email": "test@example.com"}\n'  # 9: blocked_value
    '{"email": "eve@example.org"}'  # 10: no newline at the end
)


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_json_lines_lists_with_line_numbers(session: Session, tmp_path: Path, suffix: str) -> None:
    wh = session.warehouse
    file = tmp_path / f"vip{suffix}"
    file.write_text(JSONL)
    c = upload_list(session, "j", file).counts
    assert (c["rows_read"], c["rows_added"], c["rows_quarantined"]) == (9, 3, 6)
    assert c["rows_read"] == c["rows_added"] + c["rows_duplicate"] + c["rows_quarantined"]
    assert _members(wh, "j") == [
        ("email", "ann@example.org"),
        ("email", "bob@example.org"),
        ("email", "eve@example.org"),
    ]
    bad = wh.fetch(
        "SELECT location, reason, detail, payload FROM quarantine WHERE source = 'list:j' "
        "ORDER BY received_at, id"
    )
    got = sorted((int(loc.rsplit(":", 1)[1]), reason) for loc, reason, _, _ in bad)
    assert got == [
        (4, "malformed_json"),
        (5, "malformed_json"),
        (6, "invalid_value"),
        (7, "missing_required"),
        (8, "invalid_email"),
        (9, "blocked_value"),
    ]
    by_line = {int(loc.rsplit(":", 1)[1]): (detail, payload) for loc, _, detail, payload in bad}
    assert by_line[4] == (f"vip{suffix}:4: the line is not a JSON object", "not json")
    assert by_line[9][1] == '{"email": "test@example.com"}'  # the line as written
    # numbers are ids; --column picks another key than the first object's
    ids = tmp_path / f"ids{suffix}"
    ids.write_text('{"n": 1, "id": 42}\n{"id": "u7"}\n{"id": true}\n')
    c = upload_list(session, "i", ids, kind="user_id", column="id").counts
    assert (c["rows_added"], c["rows_quarantined"]) == (2, 1)
    assert _members(wh, "i") == [("user_id", "42"), ("user_id", "u7")]
    with pytest.raises(FileImportError, match="no column 'mail'"):
        upload_list(session, "i", ids, kind="user_id", column="mail")
    # a .json file is refused (a JSON array is not JSON Lines), --format jsonl reads it
    array = tmp_path / "vip.json"
    array.write_text(JSONL)
    with pytest.raises(FileImportError, match="is this JSON Lines"):
        upload_list(session, "k", array)
    assert upload_list(session, "k", array, format="jsonl").counts["rows_added"] == 3


def test_lists_follow_encrypted_identifiers_and_privacy(
    warehouse: Warehouse, warehouse_url: str, tmp_path: Path
) -> None:
    wh = warehouse
    clock.pin(T0)
    extra = (
        f"privacy:\n  encryption_keys: k1:{new_key()}\n"
        "  encrypted_fields: [customers.email, customers.phone]\n"
    )
    session = Session(_project(tmp_path, warehouse_url, extra), warehouse=wh)
    blind = blind_of(wh)
    assert blind is not None
    load_customers(wh, [{"customer_id": "c1"}, {"customer_id": "c2"}])
    _identities(
        wh,
        [
            ("c1", "email", blind.hash("email", "ann@example.org")),
            ("c2", "email", blind.hash("email", "bob@example.org")),
        ],
    )
    for node, (customer, address) in enumerate((("c1", "ann"), ("c2", "bob")), 1):
        wh.execute(
            "INSERT INTO identity_nodes (node_id, kind, value, source, first_seen, last_seen, "
            "blocked, cluster, part, customer_id) VALUES (?, 'email', ?, 'crm', ?, ?, FALSE, ?, "
            "0, ?)",
            [node, blind.hash("email", f"{address}@example.org"), T0, T0, node, customer],
        )
    file = tmp_path / "vip.csv"
    file.write_text("email\nANN@example.org\nbob@example.org\n")
    result = upload_list(session, "vip", file)
    assert result.form.startswith("blind:")
    values = [v for _, v in _members(wh, "vip")]
    assert all("@" not in v for v in values)  # no address at rest
    assert _on_list(wh, "vip") == ["c1", "c2"]

    exported = export_subject(wh, session.project, "c1")
    assert exported["lists"] == ["vip"]
    erase_subject(wh, session.project, "c1")
    assert _on_list(wh, "vip") == ["c2"]
    assert len(_members(wh, "vip")) == 1
    clock.pin(None)


# ------------------------------------------------------------------------------------- relations
@pytest.fixture
def team_schema(warehouse: Warehouse) -> Iterator[str]:
    """A schema of the team's own, beside Personify's, with a table of scores."""
    name = f"analytics_{uuid.uuid4().hex[:8]}"
    wh = warehouse
    wh.execute(f"CREATE SCHEMA {name}")
    wh.execute(f"CREATE TABLE {name}.crm_scores (customer_id VARCHAR, score DOUBLE)")
    wh.execute(f"INSERT INTO {name}.crm_scores VALUES ('c1', 0.9), ('c2', 0.2), ('c3', 0.95)")
    yield name
    wh.execute(f"DROP SCHEMA {name} CASCADE")


def test_relations_let_segments_and_sql_read_the_teams_tables(
    warehouse: Warehouse, warehouse_url: str, tmp_path: Path, team_schema: str
) -> None:
    wh = warehouse
    clock.pin(T0)
    project = _project(
        tmp_path, warehouse_url, f"relations:\n  crm_scores: {team_schema}.crm_scores\n"
    )
    session = Session(project, warehouse=wh)
    load_customers(wh, [{"customer_id": "c1"}, {"customer_id": "c2"}])
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "likely.sql").write_text(
        "-- dialect: mysql\n"
        "SELECT c.customer_id FROM customers c JOIN crm_scores s ON s.customer_id = c.customer_id\n"
        "WHERE s.score > 0.8"
    )
    segment = find_segment(project, "likely")
    assert [r.name for r in segment.relations] == ["crm_scores"]
    [done], _ = refresh(session, [segment], force=True)
    assert done.members == 1
    shown = preview(wh, segment, sample=5, timeout_s=30)
    assert shown.size == 1 and f"{team_schema}.crm_scores" in shown.sql

    relations = project_relations(project)
    from functools import partial

    from personify.audiences.relations import qualify

    result = run_user_query(
        wh,
        "SELECT count(*) FROM crm_scores WHERE crm_scores.score > 0.5",
        names=["crm_scores"],
        rewrite=partial(qualify, relations=relations),
    )
    assert result.rows == [(2,)]

    # a CTE of the same name is the CTE's
    own = parse_segment(
        "WITH crm_scores AS (SELECT customer_id FROM customers) SELECT customer_id FROM crm_scores",
        file=Path("own.sql"),
        default_dialect="duckdb",
        relations=relations,
    )
    assert own.relations == ()

    # without the relation, the name is unknown to segments
    with pytest.raises(DefinitionError, match="unknown table 'crm_scores'"):
        parse_segment(
            "SELECT customer_id FROM crm_scores", file=Path("x.sql"), default_dialect="duckdb"
        )
    clock.pin(None)


def test_a_relation_to_a_missing_table_names_its_key(
    warehouse: Warehouse, warehouse_url: str, tmp_path: Path
) -> None:
    wh = warehouse
    clock.pin(T0)
    project = _project(tmp_path, warehouse_url, "relations:\n  crm_scores: nowhere.crm_scores\n")
    session = Session(project, warehouse=wh)
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "likely.sql").write_text(
        "SELECT customer_id FROM crm_scores WHERE score > 0.8"
    )
    segment = find_segment(project, "likely")
    with pytest.raises(ConfigError) as caught:
        refresh(session, [segment], force=True)
    assert str(caught.value).startswith(
        "personify.yml:6: relations.crm_scores: relation 'crm_scores' names nowhere.crm_scores, "
        "which the warehouse does not have"
    )
    # the engine's own refusal (a refresh without the check) names it too
    with pytest.raises(ConfigError, match="relations.crm_scores"):
        refresh_segments(wh, [segment], now=T0, timeout_s=30, max_members=100)
    clock.pin(None)


def test_relation_names_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match="relations.customers: 'customers' is a Personify"):
        parse_config("relations:\n  customers: analytics.customers\n")
    with pytest.raises(ConfigError, match="personify.yml:2: relations.x: 'a b' is not a qualified"):
        parse_config("relations:\n  x: a b\n")


def test_turning_encryption_on_blinds_lists_uploaded_before(
    warehouse: Warehouse, warehouse_url: str, tmp_path: Path
) -> None:
    wh = warehouse
    clock.pin(T0)
    plain = Session(_project(tmp_path, warehouse_url), warehouse=wh)
    file = tmp_path / "vip.csv"
    file.write_text("email\nann@example.org\n")
    upload_list(plain, "vip", file)
    other = tmp_path / "both.csv"
    other.write_text("email\nann@example.org\nbob@example.org\n")
    extra = (
        f"privacy:\n  encryption_keys: k1:{new_key()}\n"
        "  encrypted_fields: [customers.email, customers.phone]\n"
    )
    sealed = Session(_project(tmp_path, warehouse_url, extra), warehouse=wh)
    blind = blind_of(wh)
    assert blind is not None
    assert blind_list_members(wh) == 1
    assert _members(wh, "vip") == [("email", blind.hash("email", "ann@example.org"))]
    assert show_list(wh, "vip")["stale_kinds"] == []
    # an upload under encryption meets the converted values: no duplicate
    done = upload_list(sealed, "vip", other)
    assert done.counts["rows_added"] == 1 and done.counts["rows_duplicate"] == 1
    assert all("@" not in v for _, v in _members(wh, "vip"))
    assert blind_list_members(wh) == 0
    clock.pin(None)


_ADDRESSES = st.sampled_from(
    ["ann@x.org", "ANN@x.org ", "bob@x.org", "carl@y.org", "nope", "", " dora@y.org"]
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(_ADDRESSES, max_size=12), cut=st.integers(0, 12), flip=st.booleans())
def test_a_list_does_not_depend_on_how_its_rows_were_split_or_ordered(
    session: Session, tmp_path: Path, rows: list[str], cut: int, flip: bool
) -> None:
    """Invariant: a list uploaded as one file or as two parts in either order holds the same
    members; every row read is added, a duplicate or quarantined; uploading again adds none."""
    wh = session.warehouse
    for listed in list_lists(wh):
        delete_list(wh, listed["list"])

    def write(name: str, part: list[str]) -> Path:
        path = tmp_path / f"{name}.csv"
        path.write_text("email\n" + "".join(f'"{r}"\n' for r in part))
        return path

    whole = upload_list(session, "whole", write("w", rows)).counts
    parts = [rows[:cut], rows[cut:]]
    counts = [
        upload_list(session, "parts", write(f"p{i}", p)).counts
        for i, p in enumerate(parts[::-1] if flip else parts)
    ]
    assert _members(wh, "whole") == _members(wh, "parts")
    for c in (whole, *counts):
        assert c["rows_read"] == c["rows_added"] + c["rows_duplicate"] + c["rows_quarantined"]
    assert sum(c["rows_quarantined"] for c in counts) == whole["rows_quarantined"]
    assert upload_list(session, "whole", write("w", rows)).counts["rows_added"] == 0
