"""File imports and bad input, on every backend: bad rows — a missing key, an invalid value, a
malformed JSON line, an event the tracking API would refuse, a NUL, a timestamp far ahead — are
quarantined with reasons while the rest load; a corrected file replaces its quarantine rows; a
file that cannot be read raises, naming it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conformance.file_import_support import (
    NOW,
    count,
    event,
    invariant,
    rows,
    write,
)

from personify import clock
from personify.config import FileSource, Project, ProjectConfig
from personify.errors import FileImportError
from personify.session import Session
from personify.sources.files import import_file, import_file_source


@pytest.fixture
def session(warehouse_url: str, tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    project = Project(ProjectConfig(warehouse=warehouse_url), root, root / "personify.yml")
    with Session(project) as s, clock.frozen(NOW):
        yield s


BAD_CSV = (
    "customer_id,email,created_at,order_count\n"
    "c1,ann@example.org,2025-01-01,1\n"
    ",nobody@example.org,2025-01-01,1\n"
    "c3,not-an-email,2025-01-01,1\n"
    "c4,dee@example.org,31/02/2024,1\n"
    "c5,eve@example.org,2025-01-01,1.5\n"
    "c1,ann.again@example.org,2025-01-01,1\n"
    "c7,fay@example.org,2025-01-01\n"
    'c8,"multi\nline@example.org",2025-01-01,1\n'
    "c9,gus@example.org,2025-01-01,2\n"
)


def test_bad_rows_are_quarantined_and_the_rest_load(session: Session) -> None:
    path = write(session, "customers.csv", BAD_CSV)
    result = import_file(session, path, table="customers", source_name="crm")
    assert result.counts["rows_read"] == 9
    assert result.counts["rows_loaded"] == 2 and result.counts["rows_quarantined"] == 7
    assert [r[0] for r in rows(session, "SELECT record_id FROM customer_records ORDER BY 1")] == [
        "c1",
        "c9",
    ]
    got = rows(
        session, "SELECT location, reason, detail, payload, source FROM quarantine ORDER BY 1"
    )
    where = "data/customers.csv"
    assert [(r[0], r[1]) for r in got] == [
        (f"{where}:3", "missing_required"),
        (f"{where}:4", "invalid_email"),
        (f"{where}:5", "invalid_type"),
        (f"{where}:6", "invalid_type"),
        (f"{where}:7", "duplicate_key_in_file"),
        (f"{where}:8", "malformed_row"),
        (f"{where}:9", "invalid_email"),  # a quoted field spanning lines 9 and 10
    ]
    detail = {r[0]: r[2] for r in got}
    assert detail[f"{where}:5"] == (
        f'{where}:5: column "created_at": "31/02/2024" is not an ISO 8601 timestamp'
    )
    assert detail[f"{where}:6"].endswith('column "order_count": "1.5" is not an integer')
    assert detail[f"{where}:3"].endswith('column "customer_id" is required but missing')
    payload = {r[0]: r[3] for r in got}
    assert payload[f"{where}:4"] == "c3,not-an-email,2025-01-01,1"
    assert payload[f"{where}:8"] == "c7,fay@example.org,2025-01-01"
    assert {r[4] for r in got} == {"crm"}
    stored = rows(session, "SELECT rows_read, rows_loaded, rows_quarantined FROM file_imports")
    assert stored == [(9, 2, 7)]


def test_a_corrected_file_replaces_its_quarantine_rows(session: Session) -> None:
    """Importing a file again after fixing some rows: a row still bad is quarantined once (its
    id unchanged); said to correct the earlier version (``corrects``), a fixed row leaves the
    quarantine, a deleted one too; another file's and another source's rows stay, and so do
    an uncorrected new version's predecessor's (a daily export over one name)."""
    path = write(session, "customers.csv", BAD_CSV)
    import_file(session, path, table="customers", source_name="crm")
    other = write(session, "other.csv", BAD_CSV + "c10,hal@example.org,2025-01-01,1\n")
    import_file(session, other, table="customers", source_name="crm")
    import_file(session, path, table="customers", source_name="shop")
    before = dict(rows(session, "SELECT location, id FROM quarantine WHERE source = 'crm'"))
    lines = BAD_CSV.split("\n")
    assert lines[3].startswith("c3,not-an-email")  # line 4: fixed; line 9-10: deleted
    lines[3] = lines[3].replace("not-an-email", "cy@example.org")
    fixed = "\n".join(lines[:8]) + "\n"
    path.write_text(fixed, encoding="utf-8")
    with clock.frozen(NOW + timedelta(minutes=30)):  # not said to correct it: both versions'
        plain = import_file(session, path, table="customers", source_name="shop")
    assert plain.counts["quarantine_cleared"] == 0
    # its still-bad rows not doubled, its fixed and deleted lines' rows kept
    assert count(session, "quarantine") == 3 * 7
    with clock.frozen(NOW + timedelta(hours=1)):
        result = import_file(session, path, table="customers", source_name="crm", corrects=True)
    invariant(result.counts)
    assert result.counts["rows_quarantined"] == 5 and result.counts["quarantine_cleared"] == 2
    where = "data/customers.csv"
    got = dict(
        rows(
            session,
            "SELECT location, id FROM quarantine WHERE source = 'crm' AND location LIKE ?",
            [f"{where}:%"],
        )
    )
    assert sorted(got) == [f"{where}:{n}" for n in (3, 5, 6, 7, 8)]
    assert all(got[k] == before[k] for k in got)  # the same rows, not copies
    assert count(session, "quarantine") == 3 * 7 - 2
    assert "c3" in [r[0] for r in rows(session, "SELECT record_id FROM customer_records")]


def test_a_malformed_json_line_is_quarantined_not_fatal(session: Session) -> None:
    text = (
        f"{event('m1')}\n".encode()
        + b'{"messageId": "m2", "type": \n'
        + b"\xff\xfe not utf-8\n"
        + b"\n"
        + event("m3").encode()
    )
    path = session.project.root / "data" / "events.jsonl"
    path.write_bytes(text)
    result = import_file(session, path, table="events", source_name="web")
    assert result.counts["rows_read"] == 4 and result.counts["rows_loaded"] == 2
    got = rows(session, "SELECT location, reason, detail FROM quarantine ORDER BY location")
    assert [(r[0], r[1]) for r in got] == [
        ("data/events.jsonl:2", "malformed_json"),
        ("data/events.jsonl:3", "malformed_json"),
    ]
    assert got[0][2] == "data/events.jsonl:2: the line is not valid JSON"
    assert got[1][2] == "data/events.jsonl:3: the line is not UTF-8 text"


def test_events_the_tracking_api_would_quarantine_are_quarantined(session: Session) -> None:
    path = write(
        session,
        "ev.jsonl",
        "\n".join(
            [
                event("f1"),
                event("f5", type="bogus"),
                event("f6", event=None),
                event("f7", properties="notobj"),
                event("f8", event="E\u0000"),
            ]
        )
        + "\n",
    )
    result = import_file(session, path, table="events", source_name="web")
    assert (result.counts["rows_loaded"], result.counts["rows_quarantined"]) == (1, 4)
    assert rows(session, "SELECT message_id FROM events") == [("f1",)]
    got = rows(session, "SELECT location, reason, detail, payload FROM quarantine ORDER BY 1")
    assert [r[:3] for r in got] == [
        (
            "data/ev.jsonl:2",
            "invalid_type",
            'data/ev.jsonl:2: column "type": "bogus" is not a message type (one of track, '
            "identify, page, screen, group, alias)",
        ),
        (
            "data/ev.jsonl:3",
            "missing_required",
            'data/ev.jsonl:3: column "event" is required but missing (a track call needs event)',
        ),
        (
            "data/ev.jsonl:4",
            "invalid_type",
            'data/ev.jsonl:4: column "properties": "notobj" is not a JSON object',
        ),
        (
            "data/ev.jsonl:5",
            "invalid_value",
            'data/ev.jsonl:5: column "event": text may not contain NUL characters (\\u0000)',
        ),
    ]
    assert '"event": "E\\u0000"' in got[3][3]  # the line as read


def test_a_csv_row_with_a_nul_is_quarantined_and_the_rest_load(session: Session) -> None:
    path = session.project.root / "data" / "nul.csv"
    path.write_bytes(b"customer_id,email\nn1,n1@exa\x00mple.com\nn2,n2@example.com\n")
    result = import_file(session, path, table="customers", source_name="crm")
    assert (result.counts["rows_loaded"], result.counts["rows_quarantined"]) == (1, 1)
    assert rows(session, "SELECT record_id FROM customer_records") == [("n2",)]
    assert rows(session, "SELECT location, reason, detail, payload FROM quarantine") == [
        (
            "data/nul.csv:2",
            "invalid_value",
            'data/nul.csv:2: column "email": text may not contain NUL characters (\\u0000)',
            "n1,n1@exa\\u0000mple.com",  # (PostgreSQL's text holds no NUL)
        )
    ]


def test_files_that_cannot_be_read_raise_naming_them(session: Session) -> None:
    with pytest.raises(FileImportError, match="missing.csv: no such file"):
        import_file_source(
            session, FileSource(name="x", path="data/missing.csv", table="customers")
        )
    csv = write(session, "really.csv", "customer_id\nc1\n")
    with pytest.raises(FileImportError, match="really.csv: not a readable Parquet file"):
        import_file(session, csv, table="customers", source_name="x", format="parquet")
    with pytest.raises(FileImportError, match="has no column for .customer_id."):
        import_file(
            session, write(session, "c.csv", "email\na@b.co\n"), table="customers", source_name="x"
        )
    assert count(session, "file_imports") == 0


def test_an_event_far_after_the_import_is_quarantined_unless_the_source_tolerates_it(
    session: Session,
) -> None:
    """The tracking API's rule for a clock years ahead, on files: ``future_timestamp`` (the
    import's start standing for the receipt), the source's ``future_tolerance`` deciding."""
    far = {"timestamp": "2031-01-01T00:00:00Z"}
    write(session, "a.jsonl", f"{event('m1')}\n{event('m2', **far)}\n")
    strict = FileSource(name="web", path="data/a.jsonl", table="events")
    result = import_file_source(session, strict)
    assert (result.counts["rows_loaded"], result.counts["rows_quarantined"]) == (1, 1)
    assert rows(session, "SELECT reason, location FROM quarantine") == [
        ("future_timestamp", "data/a.jsonl:2")
    ]
    write(session, "b.jsonl", f"{event('m3', **far)}\n")
    lenient = FileSource(name="app", path="data/b.jsonl", table="events", future_tolerance="3650d")
    assert import_file_source(session, lenient).counts["rows_loaded"] == 1
    assert {m for (m,) in rows(session, "SELECT message_id FROM events")} == {"m1", "m3"}
