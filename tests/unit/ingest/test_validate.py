"""Validation of raw batches: typing, each reason code, line numbers and where-in-the-row."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.errors import FileImportError
from personify.ingest.tracking.messages import REQUIRED
from personify.ingest.tracking.normalize import Inputs, Problem, normalize
from personify.ingest.validate import Checked, Validator, validate
from personify.sources.formats import RAW_COLUMN
from personify.warehouse.schema import CUSTOMERS, EVENTS, ORDER_ITEMS, PRODUCTS

NOW = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def csv_rows(header: list[str], *rows: list[str]) -> pa.Table:
    return pa.table({h: pa.array([r[i] for r in rows], pa.string()) for i, h in enumerate(header)})


def jsonl(*lines: str | bytes) -> pa.Table:
    raw = [x if isinstance(x, bytes) else x.encode() for x in lines]
    return pa.table({RAW_COLUMN: pa.array([x + b"\n" for x in raw], pa.large_binary())})


def check_csv(table: Any, header: list[str], *rows: list[str], **kw: Any) -> Checked:
    lines = pa.array(list(range(2, len(rows) + 2)), pa.int64())
    return validate(csv_rows(header, *rows), table=table, lines=lines, label="f.csv", now=NOW, **kw)


def bad(checked: Checked) -> list[tuple[int, str, str]]:
    return [(r["line"], r["reason"], r["detail"]) for r in checked.bad.to_pylist()]


def test_timestamps_with_or_without_zone_are_stored_in_utc() -> None:
    got = check_csv(
        CUSTOMERS,
        ["customer_id", "created_at"],
        ["a", "2025-03-01T10:00:00+02:00"],
        ["b", "2025-03-01T10:00:00Z"],
        ["c", "2025-03-01 10:00:00"],
        ["d", "2025-03-01"],
        ["e", " 2025-03-01T10:00:00.5-05:00 "],
    )
    assert got.good.column("created_at").to_pylist() == [
        datetime(2025, 3, 1, 8, tzinfo=UTC),
        datetime(2025, 3, 1, 10, tzinfo=UTC),
        datetime(2025, 3, 1, 10, tzinfo=UTC),
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2025, 3, 1, 15, 0, 0, 500000, tzinfo=UTC),
    ]
    assert got.good.column("updated_at").to_pylist() == [NOW] * 5  # bookkeeping default
    assert got.good.column("source").to_pylist() == ["adhoc"] * 5


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        (
            "created_at",
            "31/02/2024",
            'column "created_at": "31/02/2024" is not an ISO 8601 timestamp',
        ),
        ("created_at", "infinity", 'column "created_at": "infinity" is not an ISO 8601 timestamp'),
        ("order_count", "1.5", 'column "order_count": "1.5" is not an integer'),
        ("order_count", "1,000", 'column "order_count": "1,000" is not an integer'),
        ("total_spent", "12,50", 'column "total_spent": "12,50" is not a finite number'),
        ("total_spent", "nan", 'column "total_spent": "nan" is not a finite number'),
        (
            "preferred_categories",
            "[shoes",
            'column "preferred_categories": "[shoes" is not valid JSON',
        ),
    ],
)
def test_values_that_do_not_cast_are_invalid_type(column: str, value: str, expected: str) -> None:
    ok = {"created_at": "2025-01-01", "preferred_categories": '["a"]'}.get(column, "1")
    got = check_csv(CUSTOMERS, ["customer_id", column], ["ok", ok], ["bad", value])
    assert bad(got) == [(3, "invalid_type", f"f.csv:3: {expected}")]
    assert got.good.num_rows == 1 and got.read == 2


def test_numbers_booleans_and_dates_cast() -> None:
    table = pa.table(
        {
            "product_id": ["p1", "p2"],
            "name": ["Shoe", "Hat"],
            "stock": ["12", " 7.0 "],
            "price": ["9.5", "1e2"],
        }
    )
    got = validate(table, table=PRODUCTS, now=NOW)
    assert got.good.column("stock").to_pylist() == [12, 7]
    assert got.good.column("price").to_pylist() == [9.5, 100.0]
    assert got.good.schema.field("stock").type == pa.int64()


def test_missing_required_names_the_column_and_blank_counts_as_missing() -> None:
    got = check_csv(PRODUCTS, ["product_id", "name"], ["p1", "Shoe"], ["p2", "  "], ["", "Hat"])
    assert bad(got) == [
        (3, "missing_required", 'f.csv:3: column "name" is required but missing'),
        (4, "missing_required", 'f.csv:4: column "product_id" is required but missing'),
    ]


def test_email_syntax_is_checked_and_the_value_kept_as_given() -> None:
    got = check_csv(
        CUSTOMERS,
        ["customer_id", "email"],
        ["a", " Ann.Lee+promo@Example.ORG  "],
        ["b", "bob@@example.org"],
        ["c", "no-at-sign"],
        ["d", ""],
        ["e", "eve @ example.org"],
    )
    assert got.good.column("email").to_pylist() == [" Ann.Lee+promo@Example.ORG  ", None]
    assert [r[:2] for r in bad(got)] == [
        (3, "invalid_email"),
        (4, "invalid_email"),
        (6, "invalid_email"),
    ]
    assert bad(got)[1][2] == 'f.csv:4: column "email": "no-at-sign" is not an email address'


def test_row_rules_quarantine_impossible_rows() -> None:
    header = ["order_id", "line_no", "product_id", "quantity", "price"]
    got = check_csv(
        ORDER_ITEMS,
        header,
        ["o1", "1", "p1", "2", "5"],
        ["o1", "2", "p1", "-2", "5"],
        ["o1", "3", "p1", "1", "-0.5"],
    )
    assert bad(got) == [
        (3, "out_of_range", 'f.csv:3: column "quantity": -2 must be greater than 0'),
        (4, "out_of_range", 'f.csv:4: column "price": -0.5 must not be negative'),
    ]
    events = validate(
        jsonl(
            '{"messageId": "m1", "type": "page", "userId": "u1", "timestamp": "2025-01-01"}',
            '{"messageId": "m2", "type": "page", "timestamp": "2025-01-01"}',
        ),
        table=EVENTS,
        fmt="jsonl",
        label="e.jsonl",
    )
    assert bad(events) == [
        (
            2,
            "missing_identity",
            "e.jsonl:2: the event has neither a userId nor an anonymousId (it needs one of them)",
        ),
    ]


def test_duplicate_keys_keep_the_first_row_across_batches() -> None:
    header = ["order_id", "line_no", "product_id", "quantity", "price"]
    with Validator(
        ORDER_ITEMS,
        fmt="csv",
        fields=dict.fromkeys(header, pa.string()),
        label="items.csv",
        source="shop",
        now=NOW,
    ) as v:
        first = v.check(
            csv_rows(
                header,
                ["o1", "1", "p1", "1", "5"],
                ["o1", "2", "p2", "1", "5"],
                ["o1", "1", "p9", "9", "9"],
            ),
            pa.array([2, 3, 4]),
        )
        second = v.check(
            csv_rows(header, ["o1", "2", "p3", "1", "5"], ["o2", "1", "p1", "1", "5"]),
            pa.array([5, 6]),
        )
    assert first.good.column("product_id").to_pylist() == ["p1", "p2"]
    assert bad(first) == [
        (
            4,
            "duplicate_key_in_file",
            'items.csv:4: key (order_id, line_no) = ["o1",1] appeared earlier in this file; '
            "the first row was kept",
        ),
    ]
    assert second.good.column("order_id").to_pylist() == ["o2"]
    assert [r[:2] for r in bad(second)] == [(5, "duplicate_key_in_file")]


def test_an_invalid_first_row_does_not_shadow_a_valid_later_one() -> None:
    got = check_csv(PRODUCTS, ["product_id", "name"], ["p1", ""], ["p1", "Shoe"])
    assert got.good.column("name").to_pylist() == ["Shoe"]
    assert [r[1] for r in bad(got)] == ["missing_required"]


def test_blank_csv_rows_are_not_rows() -> None:
    got = check_csv(PRODUCTS, ["product_id", "name"], ["p1", "Shoe"], ["", ""])
    assert (got.read, got.good.num_rows, got.bad.num_rows) == (1, 1, 0)


def test_csv_payload_is_the_row_as_csv() -> None:
    got = check_csv(PRODUCTS, ["product_id", "name", "url"], ["", 'A "big", hat', "x"])
    assert got.bad.column("payload").to_pylist() == [',"A ""big"", hat",x']
    assert got.bad.column("location").to_pylist() == ["f.csv:2"]


# ---------------------------------------------------------------------------------- JSON Lines
def test_jsonl_nested_values_become_json_and_segment_names_map() -> None:
    got = validate(
        jsonl(
            json.dumps(
                {
                    "messageId": "m1",
                    "type": "identify",
                    "anonymousId": "a1",
                    "timestamp": "2025-01-01T00:00:00Z",
                    "traits": {"email": "a@b.co", "plan": {"tier": 2}},
                    "context": {"page": {"url": "/x"}},
                }
            ),
        ),
        table=EVENTS,
        fmt="jsonl",
        mapping={"name": "context.page.url"},
        now=NOW,
        source="web",
    )
    row = got.good.to_pylist()[0]
    assert row["message_id"] == "m1" and row["name"] == "/x"
    assert json.loads(row["traits"]) == {"email": "a@b.co", "plan": {"tier": 2}}
    assert json.loads(row["context"]) == {"page": {"url": "/x"}}
    assert row["received_at"] == NOW and row["source"] == "web"
    assert row["anonymous_id"] == "a1"
    assert "user_id" not in got.good.column_names  # no line had it: not provided


def test_jsonl_problems_are_located_by_line_and_json_pointer() -> None:
    got = validate(
        jsonl(
            '{"customer_id": "c1", "contact": {"email": "nope"}}',
            "{not json",
            b"\xc3\x28 bad utf-8",
            "[1, 2]",
            "   ",
            '{"contact": {"email": "x@y.io"}}',
        ),
        table=CUSTOMERS,
        fmt="jsonl",
        mapping={"email": "contact.email"},
        label="crm.jsonl",
        now=NOW,
    )
    assert got.read == 5
    assert bad(got) == [
        (
            1,
            "invalid_email",
            'crm.jsonl:1: column "email" (/contact/email): "nope" is not an email address',
        ),
        (2, "malformed_json", "crm.jsonl:2: the line is not valid JSON"),
        (3, "malformed_json", "crm.jsonl:3: the line is not UTF-8 text"),
        (4, "malformed_json", "crm.jsonl:4: the line is JSON but not an object"),
        (6, "missing_required", 'crm.jsonl:6: column "customer_id" is required but missing'),
    ]
    assert got.bad.column("payload").to_pylist()[1] == "{not json"


def test_jsonl_scalars_cast_from_json_values() -> None:
    got = validate(
        jsonl('{"product_id": 7, "name": "Hat", "price": 12.50, "stock": 3, "created_at": null}'),
        table=PRODUCTS,
        fmt="jsonl",
        now=NOW,
    )
    row = got.good.to_pylist()[0]
    assert (row["product_id"], row["price"], row["stock"]) == ("7", 12.5, 3)
    assert "created_at" not in row  # null on every line of the batch: left as stored


# ------------------------------------------------------------------------------------- Parquet
def test_parquet_structs_become_json_and_rows_are_numbered() -> None:
    table = pa.table(
        {
            "customer_id": ["c1", None],
            "since": pa.array([date(2024, 1, 1), date(2024, 1, 2)], pa.date32()),
            "prefs": pa.array([["shoes", "hats"], []]),
        }
    )
    got = validate(
        table,
        table=CUSTOMERS,
        fmt="parquet",
        mapping={"created_at": "since", "preferred_categories": "prefs"},
        label="c.parquet",
        now=NOW,
    )
    assert got.good.to_pylist()[0]["created_at"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert json.loads(got.good.to_pylist()[0]["preferred_categories"]) == ["shoes", "hats"]
    assert bad(got) == [
        (2, "missing_required", 'c.parquet: row 2: column "customer_id" is required but missing')
    ]
    assert json.loads(got.bad.column("payload")[0].as_py())["since"] == "2024-01-02"


# ------------------------------------------------------------------------------ mapping errors
def test_mapping_mistakes_raise_naming_the_file() -> None:
    data = csv_rows(["id"], ["c1"])
    with pytest.raises(FileImportError, match="f.csv: the mapping names 'nope'"):
        validate(data, table=CUSTOMERS, mapping={"nope": "id"}, label="f.csv")
    with pytest.raises(FileImportError, match="reads 'email' from 'mail', which the file"):
        validate(
            data, table=CUSTOMERS, mapping={"customer_id": "id", "email": "mail"}, label="f.csv"
        )
    with pytest.raises(FileImportError, match="has no column for 'customer_id'"):
        validate(data, table=CUSTOMERS, label="f.csv")


def test_blank_values_are_missing_and_leading_blanks_are_kept() -> None:
    got = check_csv(
        CUSTOMERS,
        ["customer_id", "first_name", "order_count", "preferred_categories"],
        ["a", "  ", " 3", '  ["x"]'],
        ["b", " Ann", "", "   "],
        ["c", "", "4 ", ""],
    )
    assert got.bad.num_rows == 0
    assert got.good.column("first_name").to_pylist() == [None, " Ann", None]
    assert got.good.column("order_count").to_pylist() == [3, None, 4]
    assert got.good.column("preferred_categories").to_pylist() == ['  ["x"]', None, None]


def test_jsonl_lines_of_blanks_are_not_rows() -> None:
    event = json.dumps(
        {"messageId": "m1", "type": "page", "anonymousId": "a", "timestamp": "2025-01-01"}
    )
    got = validate(jsonl(event, "", " \t ", "\t", "\r", f"  {event}"), table=EVENTS, fmt="jsonl")
    assert got.read == 2
    assert bad(got) == [(6, "duplicate_key_in_file", bad(got)[0][2])]


# ------------------------------------------------------------------- values passed through
_TEXT = st.sampled_from(["", " ", "\t", " x", "y ", "m1", "m2", "é", '{"a":1}', "[1", "null"])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), _TEXT),
            st.one_of(st.none(), _TEXT),
            st.one_of(st.none(), _TEXT, st.just("2025-01-01"), st.just("soon")),
            st.one_of(st.none(), _TEXT),
        ),
        max_size=12,
    ),
    large=st.booleans(),
    fmt=st.sampled_from(["csv", "parquet"]),
)
def test_text_passed_through_from_the_batch_equals_the_engines_output(
    rows: list[tuple[str | None, ...]], large: bool, fmt: str
) -> None:
    """Text and JSON text columns are taken from the batch itself (blank values made missing)
    instead of copied out of the engine: the result is the engine's own, row for row, whatever
    rows fail (the batch's rows are then taken) and whatever the text type."""
    kind = pa.large_string() if large else pa.string()
    names = ["messageId", "anonymousId", "timestamp", "properties"]
    data = pa.table({n: pa.array([r[i] for r in rows], kind) for i, n in enumerate(names)})
    data = data.append_column("event", pa.array(["Viewed"] * len(rows), kind))
    lines = pa.array(list(range(2, len(rows) + 2)), pa.int64())

    def run(passed: bool) -> Checked:
        with Validator(
            EVENTS,
            fmt=fmt,
            fields={f.name: f.type for f in data.schema},
            label="e",
            source="s",
            now=NOW,
        ) as v:
            named = {v.fields[i].name for i in v.passed}
            assert named == {"message_id", "anonymous_id", "properties", "event"}
            if not passed:
                v.passed = {}
                v._compile()
            return v.check(data, lines)

    fast, plain = run(True), run(False)
    assert fast.good.equals(plain.good)
    assert fast.good.schema == plain.good.schema
    assert fast.bad.equals(plain.bad)


# ------------------------------------------------------- events: the tracking API's own rules
def test_events_from_files_meet_the_rules_the_tracking_api_applies() -> None:
    stamp = '"userId": "u", "timestamp": "2025-01-01"'
    got = validate(
        jsonl(
            f'{{"messageId": "f1", "type": "track", "event": "E", {stamp}}}',
            f'{{"messageId": "f5", "type": "bogus", "event": "E", {stamp}}}',
            f'{{"messageId": "f6", "type": "track", {stamp}}}',
            f'{{"messageId": "f7", "event": "E", "properties": "notobj", {stamp}}}',
            f'{{"messageId": "f8", "event": "E\\u0000", {stamp}}}',
            f'{{"messageId": "g1", "type": "group", {stamp}}}',
            f'{{"messageId": "a1", "type": "alias", {stamp}}}',
            f'{{"messageId": "c1", "type": "page", "context": [1], {stamp}}}',
            f'{{"messageId": "t1", "type": "identify", "traits": " {{}}", {stamp}}}',
            f'{{"messageId": "p1", "type": "page", "properties": null, {stamp}}}',
            '{"messageId": "a2", "type": "alias", "userId": "u", "previousId": "a", '
            '"timestamp": "2025-01-01"}',
        ),
        table=EVENTS,
        fmt="jsonl",
        mapping={"traits": "traits"},
        label="ev.jsonl",
        now=NOW,
    )
    assert got.good.column("message_id").to_pylist() == ["f1", "p1", "a2"]
    assert bad(got) == [
        (
            2,
            "invalid_type",
            'ev.jsonl:2: column "type": "bogus" is not a message type (one of track, identify, '
            "page, screen, group, alias)",
        ),
        (
            3,
            "missing_required",
            'ev.jsonl:3: column "event" is required but missing (a track call needs event)',
        ),
        (4, "invalid_type", 'ev.jsonl:4: column "properties": "notobj" is not a JSON object'),
        (
            5,
            "invalid_value",
            'ev.jsonl:5: column "event": text may not contain NUL characters (\\u0000)',
        ),
        (
            6,
            "missing_required",
            'ev.jsonl:6: column "group_id" is required but missing (a group call needs groupId)',
        ),
        (
            7,
            "missing_required",
            'ev.jsonl:7: column "previous_id" is required but missing '
            "(an alias call needs previousId)",
        ),
        (8, "invalid_type", 'ev.jsonl:8: column "context": [1] is not a JSON object'),
        (
            9,
            "invalid_type",
            'ev.jsonl:9: column "traits" (/traits): " {}" is not a JSON object',
        ),
    ]


@pytest.mark.parametrize(
    ("kind", "field"), [(k, f) for k, fields in REQUIRED.items() for f in fields]
)
def test_a_field_a_type_needs_is_required_by_files_as_by_the_tracking_api(
    kind: str, field: str
) -> None:
    body = {
        "messageId": "m1",
        "type": kind,
        "event": "E",
        "userId": "u",
        "groupId": "g",
        "previousId": "p",
        "timestamp": "2025-01-01T00:00:00Z",
    }
    del body[field]
    raw = json.dumps(body).encode()
    problem = normalize(raw, 0, Inputs(source="web", received_at=NOW))
    assert isinstance(problem, Problem)
    assert (problem.reason, problem.pointer) == ("missing_required", "/" + field)
    got = validate(jsonl(raw), table=EVENTS, fmt="jsonl", label="e.jsonl", now=NOW)
    assert [
        (r["reason"], r["detail"].endswith(f"({problem.message})")) for r in got.bad.to_pylist()
    ] == [("missing_required", True)]


def test_text_with_a_nul_is_invalid_value_in_every_format() -> None:
    got = check_csv(
        CUSTOMERS,
        ["customer_id", "email", "preferred_categories"],
        ["n1", "n1@exa\x00mple.com", "[]"],
        ["n2", "n2@example.com", '["a\\u0000"]'],
        ["n3", "n3@example.com", '["a\\\\u0000"]'],  # a backslash, then "u0000": no NUL
        ["n4", "n4@example.com", '["a\x00"]'],
    )
    nul = "text may not contain NUL characters (\\u0000)"
    assert bad(got) == [
        (2, "invalid_value", f'f.csv:2: column "email": {nul}'),
        (3, "invalid_value", f'f.csv:3: column "preferred_categories": {nul}'),
        (5, "invalid_value", f'f.csv:5: column "preferred_categories": {nul}'),
    ]
    assert got.good.column("customer_id").to_pylist() == ["n3"]
    lines = validate(
        jsonl(
            '{"customer_id": "j1", "first_name": "A\\u0000"}',
            '{"customer_id": "j2", "first_name": "A\\\\u0000"}',
            '{"customer_id": "j3", "preferred_categories": [{"\\u0000": 1}]}',
        ),
        table=CUSTOMERS,
        fmt="jsonl",
        label="c.jsonl",
        now=NOW,
    )
    assert [r[:2] for r in bad(lines)] == [(1, "invalid_value"), (3, "invalid_value")]
    assert lines.good.column("first_name").to_pylist() == ["A\\u0000"]
    nested = validate(
        pa.table({"customer_id": ["q1", "q2"], "tags": pa.array([["a"], ["b\x00"]])}),
        table=CUSTOMERS,
        fmt="parquet",
        mapping={"preferred_categories": "tags"},
        label="c.parquet",
        now=NOW,
    )
    assert [r[:2] for r in bad(nested)] == [(2, "invalid_value")]


def test_an_event_far_after_its_receipt_is_quarantined_as_by_the_tracking_api() -> None:
    """A file's event dated more than ``future_tolerance`` after it was received (its own
    ``received_at``, else the import's start) is ``future_timestamp``, as the tracking API
    quarantines it; within the tolerance it loads."""
    base = '"type": "track", "event": "E", "userId": "u"'
    lines = jsonl(
        f'{{"messageId": "ok", {base}, "timestamp": "2026-02-01T20:00:00Z"}}',  # 11 h ahead
        f'{{"messageId": "far", {base}, "timestamp": "2031-02-01T09:00:00Z"}}',
        f'{{"messageId": "old", {base}, "timestamp": "2031-02-01T09:00:00Z", '
        '"receivedAt": "2031-02-01T08:59:00Z"}',  # an export: received then, 1 min before
    )
    got = validate(lines, table=EVENTS, fmt="jsonl", label="ev.jsonl", now=NOW)
    assert got.good.column("message_id").to_pylist() == ["ok", "old"]
    [(line, reason, detail)] = bad(got)
    assert (line, reason) == (2, "future_timestamp")
    assert detail.startswith('ev.jsonl:2: column "timestamp": "2031-02-01 09:00:00+00" is more ')
    assert "than future_tolerance (1d) after the event was received" in detail
    narrow = Validator(
        EVENTS,
        fmt="jsonl",
        fields=None,
        label="ev.jsonl",
        source="f",
        now=NOW,
        future_tolerance=3600,
    )
    with narrow:
        checked = narrow.check(lines)
    assert checked.good.column("message_id").to_pylist() == ["old"]
    assert "future_tolerance (1h)" in bad(checked)[0][2]
    # the tracking API, given the same event, says the same reason
    raw = json.dumps(
        {
            "messageId": "far",
            "type": "track",
            "event": "E",
            "userId": "u",
            "timestamp": "2031-02-01T09:00:00Z",
        }
    ).encode()
    problem = normalize(raw, 0, Inputs(source="f", received_at=NOW))
    assert isinstance(problem, Problem) and problem.reason == "future_timestamp"
