"""Files as a source, on every backend: CSV, JSON Lines and Parquet load; nothing loads twice;
every row read is loaded, a duplicate or quarantined; one file is one transaction. Bad rows and
unreadable files: ``test_file_import_quarantine.py``."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.file_import_support import (
    NOW,
    count,
    event,
    invariant,
    rows,
    with_sources,
    write,
)
from tests.conformance.lock_support import lock_thief

from personify import clock
from personify.config import FileSource, Project, ProjectConfig
from personify.errors import FileImportError
from personify.session import Session
from personify.sources import files, sync_sources
from personify.sources.files import import_file, import_file_source


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    project = Project(ProjectConfig(warehouse=warehouse_url), root, root / "personify.yml")
    with Session(project) as s, clock.frozen(NOW):
        yield s


CUSTOMERS_CSV = (
    "id,email,first_name,created_at,order_count,total_spent\n"
    "c1,ann@example.org,Ann,2025-03-01T10:00:00+02:00,3,120.50\n"
    "c2,bob@example.org,Bob,2025-03-02 08:00:00,0,0\n"
    'c3,cy@example.org,"Cy, Jr.",2025-03-03,1,9.99\n'
)


def test_csv_loads_typed_rows(session: Session) -> None:
    path = write(session, "customers.csv", CUSTOMERS_CSV)
    result = import_file(
        session, path, table="customers", mapping={"customer_id": "id"}, source_name="crm"
    )
    assert result.counts == {
        "files": 1,
        "files_skipped": 0,
        "rows_read": 3,
        "rows_loaded": 3,
        "rows_quarantined": 0,
        "rows_duplicate": 0,
        "quarantine_cleared": 0,
    }
    # person records land in customer_records (customers is derived by identity and profiles)
    assert count(session, "customers") == 0
    got = rows(
        session,
        "SELECT record_id, first_name, created_at, source, observed_at, received_at "
        "FROM customer_records ORDER BY record_id",
    )
    assert [r[0] for r in got] == ["c1", "c2", "c3"]
    assert got[0][2] == datetime(2025, 3, 1, 8, 0, tzinfo=UTC)  # +02:00 → UTC
    assert got[1][2] == datetime(2025, 3, 2, 8, 0, tzinfo=UTC)  # no zone: UTC
    assert got[2][1] == "Cy, Jr."
    assert {r[3] for r in got} == {"crm"} and {r[4] for r in got} == {r[5] for r in got} == {NOW}


def test_jsonl_loads_nested_fields_and_segment_names(session: Session) -> None:
    lines = [
        {
            "messageId": "m1",
            "type": "track",
            "event": "Product Viewed",
            "userId": "u1",
            "timestamp": "2025-05-01T12:00:00.250Z",
            "properties": {"product_id": "p9", "price": 12.5, "tags": ["a", "b"]},
            "context": {"page": {"url": "https://shop.example/p9"}},
        },
        {"messageId": "m2", "type": "page", "anonymousId": "a1", "timestamp": "2025-05-01"},
    ]
    path = write(session, "events.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    result = import_file(
        session, path, table="events", source_name="export", mapping={"name": "context.page.url"}
    )
    assert result.counts["rows_loaded"] == 2
    got = rows(
        session,
        "SELECT message_id, type, user_id, anonymous_id, timestamp, name, source, received_at "
        "FROM events ORDER BY message_id",
    )
    assert got[0][:4] == ("m1", "track", "u1", None)
    assert got[0][4] == datetime(2025, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert got[0][5] == "https://shop.example/p9"
    assert got[1][1:4] == ("page", None, "a1")
    assert got[1][6:] == ("export", NOW)
    props = session.warehouse.scalar(
        "SELECT CAST(properties AS VARCHAR) FROM events WHERE message_id = ?", ["m1"]
    )
    assert json.loads(props) == {"product_id": "p9", "price": 12.5, "tags": ["a", "b"]}


def test_parquet_loads_typed_and_nested_columns(session: Session) -> None:
    path = session.project.root / "data" / "orders.parquet"
    table = pa.table(
        {
            "order_id": ["o1", "o2"],
            "customer": pa.array([{"id": "c1", "email": "ann@example.org"}, {"id": "c2"}]),
            "status": ["paid", "refunded"],
            "total": pa.array([42.0, 7], pa.float64()),
            "created_at": pa.array(
                [datetime(2025, 1, 1, 9, 30), datetime(2025, 1, 2)], pa.timestamp("ms")
            ),
        }
    )
    pq.write_table(table, path)
    source = FileSource(
        name="shop",
        path="data/*.parquet",
        table="orders",
        mapping={"customer_id": "customer.id", "email": "customer.email"},
    )
    result = import_file_source(session, source)
    assert result.counts["rows_loaded"] == 2 and result.counts["files"] == 1
    got = rows(
        session,
        "SELECT order_id, customer_id, email, total, created_at FROM orders ORDER BY order_id",
    )
    assert got == [
        ("o1", None, "ann@example.org", 42.0, datetime(2025, 1, 1, 9, 30, tzinfo=UTC)),
        ("o2", None, None, 7.0, datetime(2025, 1, 2, tzinfo=UTC)),
    ]
    # the source's customer id is kept apart; identity fills the resolved customer_id
    own = rows(session, "SELECT source_customer_id FROM orders ORDER BY order_id")
    assert own == [("c1",), ("c2",)]


def test_reimporting_the_same_file_loads_nothing_twice(session: Session) -> None:
    write(session, "customers.csv", CUSTOMERS_CSV)
    source = FileSource(
        name="crm", path="data/customers.csv", table="customers", mapping={"customer_id": "id"}
    )
    first = import_file_source(session, source)
    second = import_file_source(session, source)
    assert first.counts["rows_loaded"] == 3
    assert second.counts == {**dict.fromkeys(first.counts, 0), "files_skipped": 1}
    assert count(session, "customer_records") == 3
    recorded = rows(
        session, "SELECT source, path, table_name, rows_read, rows_loaded FROM file_imports"
    )
    assert recorded == [("crm", "data/customers.csv", "customer_records", 3, 3)]


def test_events_sent_again_in_another_file_are_not_doubled(session: Session) -> None:
    a = write(session, "a.jsonl", f"{event('m1')}\n{event('m2')}\n")
    b = write(session, "b.jsonl", f"{event('m2')}\n{event('m3')}\n")
    import_file(session, a, table="events", source_name="web")
    result = import_file(session, b, table="events", source_name="web")
    assert (result.counts["rows_loaded"], result.counts["rows_duplicate"]) == (1, 1)
    invariant(result.counts)
    assert count(session, "events") == 3


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_keys_hashed_by_validation_meet_keys_stored_by_other_writers(
    session: Session, fmt: str
) -> None:
    """An importer's load takes its rows' key hashes from validation (another engine than the
    warehouse's): they must be the hashes the warehouse gives the same keys, both ways round —
    a key stored by another writer is found when a file sends it again, and a key a file stored
    is found when another writer sends it again."""
    from personify.warehouse import table

    ids = ["m-1", "é-ü-☃", "", " x", "m" * 300]
    n = len(ids)
    stored = pa.table(
        {
            "message_id": ids,
            "type": ["track"] * n,
            "timestamp": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            "source": ["api"] * n,
            "user_id": ["u"] * n,
        }
    )
    wh = session.warehouse
    assert wh.load(table("events"), stored, on_conflict="ignore") == n
    sent = ["m-1", "é-ü-☃", " x", "m" * 300, "m-2", "m-3"]  # ("" is no key: quarantined)
    path = session.project.root / "data" / f"again.{fmt}"
    data = pa.table(
        {
            "messageId": sent,
            "type": ["page"] * len(sent),
            "userId": ["u"] * len(sent),
            "timestamp": ["2025-05-01T00:00:00Z"] * len(sent),
        }
    )
    if fmt == "parquet":
        pq.write_table(data, path)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(data, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in data.to_pylist()), "utf-8")
    result = import_file(session, path, table="events", source_name="web")
    assert (result.counts["rows_loaded"], result.counts["rows_duplicate"]) == (2, 4)
    again = stored.slice(0, 1).set_column(0, "message_id", pa.array(["m-3"]))
    assert wh.load(table("events"), again, on_conflict="ignore") == 0
    assert count(session, "events") == 7


def test_person_records_keep_every_version(session: Session) -> None:
    import_file(
        session,
        write(session, "v1.csv", CUSTOMERS_CSV),
        table="customers",
        mapping={"customer_id": "id"},
        source_name="crm",
    )
    later = NOW + timedelta(days=1)
    newer = write(
        session,
        "v2.csv",
        f"customer_id,email,updated_at\nc1,ann.new@example.org,{later:%Y-%m-%dT%H:%M:%SZ}\n",
    )
    result = import_file(session, newer, table="customers", source_name="crm")
    assert result.counts["rows_loaded"] == 1
    got = rows(
        session,
        "SELECT email, first_name, observed_at FROM customer_records WHERE record_id = ? "
        "ORDER BY observed_at",
        ["c1"],
    )
    assert got == [("ann@example.org", "Ann", NOW), ("ann.new@example.org", None, later)]
    # the same version sent again is a duplicate, not a second row
    again = write(
        session,
        "v3.csv",
        newer.read_text() + f"c2,bob@example.org,{later:%Y-%m-%dT%H:%M:%SZ}\n",
    )
    result = import_file(session, again, table="customers", source_name="crm")
    assert (result.counts["rows_loaded"], result.counts["rows_duplicate"]) == (1, 1)
    invariant(result.counts)


def test_entities_update_to_the_newer_file(session: Session) -> None:
    write(session, "p1.csv", "product_id,name,category,price\np1,Shoe,shoes,10\n")
    import_file(
        session, session.project.root / "data" / "p1.csv", table="products", source_name="shop"
    )
    newer = write(session, "p2.csv", "product_id,name,price\np1,Shoe,12\n")
    result = import_file(session, newer, table="products", source_name="shop")
    assert result.counts["rows_loaded"] == 1
    got = rows(session, "SELECT name, category, price FROM products WHERE product_id = ?", ["p1"])
    assert got == [("Shoe", "shoes", 12.0)]  # columns the file lacks are kept


def test_one_file_is_one_transaction(session: Session) -> None:
    lines = "".join(f"{event(f'm{i}')}\n" for i in range(5))
    path = write(session, "events.jsonl", lines + "{broken\n")
    calls: list[int] = []

    def crash(description: str, done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise RuntimeError("killed mid-file")

    with pytest.raises(RuntimeError, match="killed mid-file"):
        import_file(session, path, table="events", source_name="web", progress=crash, batch_rows=2)
    for table in ("events", "quarantine", "file_imports"):
        assert count(session, table) == 0, table
    again = import_file(session, path, table="events", source_name="web", batch_rows=2)
    assert (again.counts["rows_loaded"], again.counts["rows_quarantined"]) == (5, 1)
    once_more = import_file(session, path, table="events", source_name="web", batch_rows=2)
    assert once_more.counts["files_skipped"] == 1
    assert (count(session, "events"), count(session, "quarantine")) == (5, 1)


def test_a_file_changed_after_it_was_hashed_loads_nothing(session: Session) -> None:
    """The next file of a glob is hashed while the one before it imports: a change after that
    (here: while the first file imports) is caught at the end of its own import."""
    first = write(session, "web-1.jsonl", "".join(f"{event(f'a{i}')}\n" for i in range(3)))
    second = write(session, "web-2.jsonl", "".join(f"{event(f'b{i}')}\n" for i in range(3)))

    def edit(description: str, done: int, total: int) -> None:
        if description.endswith(first.name):
            time.sleep(0.2)  # (the second file's fingerprint and SHA-256 are taken by now)
            with second.open("a", encoding="utf-8") as f:
                f.write(event("b-late") + "\n")

    source = FileSource(name="web", path="data/web-*.jsonl", table="events")
    with pytest.raises(FileImportError, match="web-2.jsonl changed while it was being imported"):
        import_file_source(session, source, progress=edit)
    assert [r[0] for r in rows(session, "SELECT path FROM file_imports")] == ["data/web-1.jsonl"]
    assert count(session, "events") == 3
    again = import_file_source(session, source)
    assert (again.counts["files"], again.counts["files_skipped"]) == (1, 1)
    assert count(session, "events") == 7


def test_sync_sources_imports_a_glob_in_order(session: Session) -> None:
    for day in ("02", "01"):
        write(session, f"orders-{day}.csv", f"order_id,created_at\no{day},2025-01-{day}\n")
    source = FileSource(name="shop", path="data/orders-*.csv", table="orders")
    with_sources(session, source)
    [result] = sync_sources(session)
    assert result.counts["files"] == 2 and result.counts["rows_loaded"] == 2
    paths = [r[0] for r in rows(session, "SELECT path FROM file_imports ORDER BY imported_at")]
    assert sorted(paths) == ["data/orders-01.csv", "data/orders-02.csv"]


def test_sync_sources_imports_tables_side_by_side(session: Session) -> None:
    """Sources of different tables run in parallel lanes (same table: one after the other);
    results come back in the project's order, and a failing source fails the sync only after
    the other lanes finished (each file being its own transaction, what they loaded stays)."""
    from personify import sources

    assert sources.PARALLEL_SOURCES > 1
    write(session, "orders.csv", "order_id,created_at\no1,2025-01-01\no2,2025-01-02\n")
    events = "\n".join(event(f"m{i}") for i in range(300)) + "\n"
    write(session, "events-a.jsonl", events)
    write(session, "events-b.jsonl", event("m0") + "\n" + event("m300") + "\n")
    write(session, "crm.csv", "id,email\nc1,ann@example.org\n")
    config = (
        FileSource(name="web-a", path="data/events-a.jsonl", table="events"),
        FileSource(name="shop", path="data/orders.csv", table="orders"),
        FileSource(name="web-b", path="data/events-b.jsonl", table="events"),
        FileSource(
            name="crm", path="data/crm.csv", table="customers", mapping={"customer_id": "id"}
        ),
    )
    with_sources(session, *config)
    pinned = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)  # (after the events: none is ahead)
    pg = session.warehouse.dialect == "postgres"
    held = len(session.warehouse._all) if pg else 0  # type: ignore[attr-defined]
    with clock.frozen(pinned):  # the lanes' threads run at the caller's --now
        results = sync_sources(session)
    if pg:  # each lane's connection closed with its thread: none left behind
        assert len(session.warehouse._all) == held  # type: ignore[attr-defined]
    stamped = {r[0] for r in rows(session, "SELECT DISTINCT imported_at FROM file_imports")}
    assert {v if v.tzinfo else v.replace(tzinfo=UTC) for v in stamped} == {pinned}
    assert [r.source for r in results] == ["web-a", "shop", "web-b", "crm"]
    loaded = {r.source: (r.counts["rows_loaded"], r.counts["rows_duplicate"]) for r in results}
    # web-b ran after web-a (same table): its m0 is a duplicate of web-a's
    assert loaded == {"web-a": (300, 0), "shop": (2, 0), "web-b": (1, 1), "crm": (1, 0)}
    assert (count(session, "events"), count(session, "orders")) == (301, 2)
    assert count(session, "customer_records") == 1

    write(session, "more-orders.csv", "order_id,created_at\no3,2025-01-03\n")
    broken = (
        FileSource(name="gone", path="data/no-such-file.csv", table="consents"),
        FileSource(name="shop2", path="data/more-orders.csv", table="orders"),
    )
    with_sources(session, *broken)
    with pytest.raises(FileImportError, match="no-such-file.csv: no such file"):
        sync_sources(session)
    assert count(session, "orders") == 3  # the other lane finished


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priorities: Linux")
def test_the_lanes_beside_the_largest_run_at_a_lower_priority(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The largest lane sets the sync's length: the threads of the others (and the threads
    they start) run LANE_NICE steps lower; the caller's thread and the largest lane's keep
    theirs."""
    from personify import sources

    write(session, "events.jsonl", "\n".join(event(f"m{i}") for i in range(200)) + "\n")
    write(session, "orders.csv", "order_id,created_at\no1,2025-01-01\n")
    write(
        session, "consents.csv", "customer_id,purpose,channel,status\nc1,marketing,email,granted\n"
    )
    config = (
        FileSource(name="shop", path="data/orders.csv", table="orders"),
        FileSource(name="web", path="data/events.jsonl", table="events"),
        FileSource(name="consent", path="data/consents.csv", table="consents"),
    )
    with_sources(session, *config)
    seen: dict[str, tuple[int, int]] = {}
    run_one = sources._run_one

    def recorded(*args: Any, **kwargs: Any) -> sources.SyncResult:
        def started() -> int:
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        child: list[int] = []
        worker = threading.Thread(target=lambda: child.append(started()))
        worker.start()
        worker.join()
        seen[args[1].name] = (started(), child[0])
        return run_one(*args, **kwargs)

    monkeypatch.setattr(sources, "_run_one", recorded)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lower = min(base + sources.LANE_NICE, 19)
    results = sync_sources(session)
    assert [r.counts["rows_loaded"] for r in results] == [1, 200, 1]
    assert seen["web"] == (base, base)  # the largest lane
    assert seen["shop"] == (lower, lower) and seen["consent"] == (lower, lower)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


# ------------------------------------------------------------------------- property: nothing lost
KINDS = {
    "good": lambda i: event(i),
    "no_timestamp": lambda i: event(i, timestamp=None),
    "bad_timestamp": lambda i: event(i, timestamp="yesterday"),
    "anonymous": lambda i: event(i, userId=None),
    "malformed": lambda i: f'{{"messageId": "{i}", "type": ',
    "not_object": lambda i: f'["{i}"]',
}


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(KINDS)), st.integers(min_value=0, max_value=15)),
        max_size=20,
    ),
    st.integers(min_value=1, max_value=8),
)
def test_every_row_read_is_loaded_duplicate_or_quarantined(
    session: Session, lines: list[tuple[str, int]], batch_rows: int
) -> None:
    events, quarantined = count(session, "events"), count(session, "quarantine")
    text = "\n".join(KINDS[kind](f"m{n}") for kind, n in lines)
    path = write(session, f"{uuid.uuid4().hex}.jsonl", text)
    result = import_file(
        session,
        path,
        table="events",
        source_name=f"s{uuid.uuid4().hex[:8]}",
        batch_rows=batch_rows,
    )
    c = result.counts
    invariant(c)
    assert c["rows_read"] == len(lines)
    assert count(session, "events") - events == c["rows_loaded"]
    assert count(session, "quarantine") - quarantined == c["rows_quarantined"]


def test_empty_files_import_nothing_and_are_remembered(session: Session) -> None:
    for name in ("empty.csv", "header.csv", "blank.jsonl"):
        text = {"empty.csv": "", "header.csv": "id,mail\n", "blank.jsonl": "\n\n"}[name]
        result = import_file(
            session,
            write(session, name, text),
            table="customers",
            source_name="crm",
            mapping={"customer_id": "id"},
        )
        assert result.counts["files"] == 1 and result.counts["rows_read"] == 0, name
    assert count(session, "file_imports") == 3


def test_identities_keep_their_first_sighting(session: Session) -> None:
    later = datetime(2026, 3, 1, tzinfo=UTC)
    import_file(
        session,
        write(session, "ids-1.csv", "customer_id,kind,value\nc1,email,a@b.co\n"),
        table="identities",
        source_name="crm",
    )
    with clock.frozen(later):
        import_file(
            session,
            write(session, "ids-2.csv", "customer_id,kind,value\nc2,email,a@b.co\n"),
            table="identities",
            source_name="crm",
        )
    got = rows(session, "SELECT customer_id, first_seen, last_seen, source FROM identities")
    assert got == [("c2", NOW, later, "crm")]


def _event_part(session: Session, name: str, ids: list[str], tag: str) -> Path:
    """A Parquet part of web events (``properties`` names the part, to tell whose row is
    stored); an empty id is an invalid row (quarantined)."""
    path = session.project.root / "data" / name
    table = pa.table(
        {
            "messageId": ids,
            "type": ["track"] * len(ids),
            "event": ["Viewed"] * len(ids),
            "userId": ["u"] * len(ids),
            "timestamp": pa.array([datetime(2025, 5, 1)] * len(ids), pa.timestamp("ms", "UTC")),
            "properties": [json.dumps({"part": tag})] * len(ids),
        }
    )
    pq.write_table(table, path)
    return path


def test_event_parts_import_two_at_a_time_as_one_after_another(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``SIDE_BY_SIDE`` on, Parquet parts of events import two at a time on DuckDB:
    the outcome is the one-after-another import's — per file the same rows loaded, duplicate
    and quarantined; a key resent in a later part keeps the first part's row, also when the
    two parts would otherwise run side by side; nothing is stored twice."""
    ids = [f"m{i:03}" for i in range(400)]
    _event_part(session, "web-0.parquet", ids[0:100], "0")
    _event_part(session, "web-1.parquet", [*ids[100:200], "", ids[150]], "1")
    _event_part(session, "web-2.parquet", [*ids[200:300], ids[199], ids[5]], "2")  # resends
    _event_part(session, "web-3.parquet", [*ids[300:400], ids[250], ids[0]], "3")

    def slow(description: str, done: int, total: int) -> None:
        time.sleep(0.01)  # (long enough for the next part to start beside it)

    monkeypatch.setattr(files, "BATCH_ROWS", 10)
    monkeypatch.setattr(files, "SIDE_BY_SIDE", True)
    source = FileSource(name="web", path="data/web-*.parquet", table="events")
    result = import_file_source(session, source, progress=slow)
    invariant(result.counts)
    assert result.counts["files"] == 4
    assert result.counts["rows_loaded"] == 400
    assert (result.counts["rows_duplicate"], result.counts["rows_quarantined"]) == (4, 2)
    per_file = rows(
        session,
        "SELECT path, rows_read, rows_loaded, rows_quarantined FROM file_imports ORDER BY path",
    )
    assert per_file == [
        ("data/web-0.parquet", 100, 100, 0),
        ("data/web-1.parquet", 102, 100, 2),  # the blank id, and the id repeated in the file
        ("data/web-2.parquet", 102, 100, 0),
        ("data/web-3.parquet", 102, 100, 0),
    ]
    assert count(session, "events") == 400
    stored = rows(
        session,
        "SELECT message_id, count(*), min(CAST(properties AS VARCHAR)) FROM events "
        "WHERE message_id IN ('m005', 'm000', 'm199', 'm250') GROUP BY 1 ORDER BY 1",
    )
    assert [(m, n, json.loads(p)["part"]) for m, n, p in stored] == [
        ("m000", 1, "0"),
        ("m005", 1, "0"),
        ("m199", 1, "1"),
        ("m250", 1, "2"),
    ]


def test_a_part_failing_rolls_back_the_one_beside_it(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two parts side by side: when the first fails, the second (which a one-after-another
    import would not have started) is rolled back too, and the first's error is raised."""
    _event_part(session, "web-0.parquet", [f"a{i}" for i in range(50)], "0")
    _event_part(session, "web-1.parquet", [f"b{i}" for i in range(50)], "1")
    calls: list[str] = []

    def crash(description: str, done: int, total: int) -> None:
        calls.append(description)
        if description.endswith("web-0.parquet") and done >= 30:
            time.sleep(0.2)  # (the second part is importing by now, on DuckDB)
            raise RuntimeError("killed mid-file")

    monkeypatch.setattr(files, "BATCH_ROWS", 10)
    monkeypatch.setattr(files, "SIDE_BY_SIDE", True)
    source = FileSource(name="web", path="data/web-*.parquet", table="events")
    with pytest.raises(RuntimeError, match="killed mid-file"):
        import_file_source(session, source, progress=crash)
    for table in ("events", "quarantine", "file_imports"):
        assert count(session, table) == 0, table
    again = import_file_source(session, source)
    assert (again.counts["files"], again.counts["rows_loaded"]) == (2, 100)
    assert count(session, "events") == 100


def test_an_older_export_does_not_roll_back_newer_rows(session: Session) -> None:
    """Entities update to a file's values unless the stored row is newer: last week's export
    imported after this week's shows its new orders, not its stale versions of later ones."""
    header = "order_id,created_at,total,status,updated_at\n"
    current = write(
        session, "now.csv", header + "o1,2026-01-10T00:00:00Z,20,refunded,2026-01-20T00:00:00Z\n"
    )
    import_file(session, current, table="orders", source_name="shop")
    old = write(
        session,
        "last_week.csv",
        header
        + "o1,2026-01-10T00:00:00Z,20,paid,2026-01-12T00:00:00Z\n"
        + "o2,2026-01-11T00:00:00Z,35,paid,2026-01-12T00:00:00Z\n",
    )
    result = import_file(session, old, table="orders", source_name="shop")
    assert (result.counts["rows_loaded"], result.counts["rows_duplicate"]) == (1, 1)
    invariant(result.counts)
    got = rows(session, "SELECT order_id, status FROM orders ORDER BY order_id")
    assert got == [("o1", "refunded"), ("o2", "paid")]
    same_time = write(
        session, "fix.csv", header + "o1,2026-01-10T00:00:00Z,20,void,2026-01-20T00:00:00Z\n"
    )
    import_file(session, same_time, table="orders", source_name="shop")  # as new: it applies
    assert rows(session, "SELECT status FROM orders WHERE order_id = 'o1'") == [("void",)]


def test_an_import_whose_lock_went_with_its_connection_records_nothing(session: Session) -> None:
    """PostgreSQL: the session holding the source's advisory lock is terminated before the file
    is committed, the warehouse goes on with a new connection and another sync takes the lock:
    the import fails saying so, and neither the rows nor the file's record are committed."""
    from personify.errors import WarehouseError
    from personify.sources.schedule import exclusive

    wh = session.warehouse
    write(session, "e.jsonl", event("m1") + "\n" + event("m2") + "\n")
    source = FileSource(name="evts", path="data/e.jsonl", table="events")
    with lock_thief(wh, source.name) as other:
        with exclusive(source.name, warehouse=wh):
            other.steal(reconnect=True)  # (another sync starts)
            with pytest.raises(WarehouseError, match="lost its lock"):
                import_file_source(session, source)
        assert count(session, "events") == 0
        assert count(session, "file_imports") == 0
        other.release()
    with exclusive(source.name, warehouse=wh):
        assert import_file_source(session, source).counts["rows_loaded"] == 2
