"""Masking: emails, phones and IPs out of log records and shown values; ordinary numbers kept."""

from __future__ import annotations

import io
import json
import logging

from personify.privacy.masking import PiiFilter, mask_text, mask_value


def test_mask_text() -> None:
    got = mask_text("sent to Ann.Lee+x@example.org and +33 6 12 34 56 78 from 192.0.2.44")
    assert "Ann" not in got and "Lee" not in got and "12 34" not in got and "0.2.44" not in got
    assert "***@example.org" in got and "+***78" in got and "192.x.x.x" in got
    kept = "2026-01-31T09:00:00Z: 1000000 rows in 12.5 s, run 42, port 8787"
    assert mask_text(kept) == kept
    assert mask_text("call 0612345678 now") == "call ***78 now"
    served = "serving project shop on http://127.0.0.1:38861 and http://0.0.0.0:8787"
    assert mask_text(served) == served
    assert mask_text("client 10.1.2.3, 1127.0.0.1") == "client 10.x.x.x, 1127.0.0.1"
    # percent-encoded in a URL's path (a destination removing records one by one)
    url = "DELETE http://127.0.0.1:5/c/ann.lee%2Bx%40example.org?id=%2B33612345678 answered 400"
    assert (
        mask_text(url) == "DELETE http://127.0.0.1:5/c/***%40example.org?id=%2B***78 answered 400"
    )
    assert mask_text("GET /p%2F1%40 and 100%40") == "GET /p%2F1%40 and 100%40"


def test_mask_value() -> None:
    assert mask_value("email", "ann@example.org") == "***@example.org"
    assert mask_value("phone", "+33 6 12 34 56 78") == "***78"
    assert mask_value("first_name", "Ann") == "A***"
    assert mask_value("ip", "192.0.2.1") == "192.x.x.x"
    assert mask_value("order_count", 3) == 3
    assert mask_value("email", None) is None


def test_filter_masks_messages_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PiiFilter())
    log = logging.getLogger("personify.test_masking")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        log.debug("row for %s (%s)", "bob@example.org", "+1 415 555 0100")
        try:
            raise ValueError("duplicate key carol@example.org")
        except ValueError:
            log.exception("load failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "bob@" not in text and "555 0100" not in text and "carol@" not in text
    assert "***@example.org" in text and "ValueError" in text


def test_serve_logging_masks() -> None:
    """``personify serve``'s logging configuration puts the filter on its handler."""
    import importlib

    from personify.server.runner import logging_config

    config = logging_config("debug")
    assert config["handlers"]["stderr"]["filters"] == ["pii"]
    module, _, name = config["filters"]["pii"]["()"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is PiiFilter


def test_mask_rows_by_name_alias_and_content() -> None:
    from personify.privacy.masking import mask_rows

    columns = ["customer_id", "email", "c_phone", "first_name", "note", "traits", "total"]
    rows = [
        (
            "cus_1",
            "ann@example.org",
            "+33612345678",
            "Ann",
            "contact: bob@example.org",
            {"email": "ann@example.org", "tags": ["x", "call +1 415 555 0100"]},
            12.5,
        )
    ]
    (masked,) = mask_rows(columns, rows)
    assert masked[0] == "cus_1" and masked[6] == 12.5
    assert masked[1] == "***@example.org" and masked[2] == "***78" and masked[3] == "A***"
    assert "bob@" not in masked[4]
    assert masked[5] == {"email": "***@example.org", "tags": ["x", "call +***00"]}


def test_mask_document_masks_values_not_structure() -> None:
    from personify.privacy.masking import mask_document

    doc = {
        "customer_id": "c-123",
        "profile": {"email": "ann@example.org", "first_name": "Ann", "order_count": 3},
        "identifiers": [
            {"kind": "email", "value": "ann@example.org"},
            {"kind": "phone", "value": "+33612345678"},
            {"kind": "user_id", "value": "u-77"},
        ],
        "tables": {"events": [{"context": {"ip": "192.0.2.7", "note": "mail ann@example.org"}}]},
        "counts": {"events": 1},
    }
    masked = mask_document(doc)
    assert masked["customer_id"] == "c-123" and masked["counts"] == {"events": 1}
    assert masked["profile"] == {"email": "***@example.org", "first_name": "A***", "order_count": 3}
    assert masked["identifiers"] == [
        {"kind": "email", "value": "***@example.org"},
        {"kind": "phone", "value": "***78"},
        {"kind": "user_id", "value": "u-77"},
    ]
    context = masked["tables"]["events"][0]["context"]
    assert context == {"ip": "192.x.x.x", "note": "mail ***@example.org"}
    assert "ann@" not in str(masked)


def test_mask_rows_traces_aliases_and_masks_json_text() -> None:
    from personify.privacy.masking import mask_rows

    sql = (
        "WITH a AS (SELECT email AS m, first_name AS f FROM customers) "
        "SELECT m AS z, f, concat(f, ' x') AS g, count(m) OVER () AS n, traits, field, value "
        "FROM a, events, profile_observations"
    )
    columns = ["z", "f", "g", "n", "traits", "field", "value"]
    traits = '{"firstName": "James", "lastName": "Chen", "device": {"isMobile": true}, "n": 3}'
    rows = [
        ("james@example.org", "James", "James x", 7, traits, "last_name", "Chen"),
        ("james@example.org", "James", "James x", 7, None, "order_count", "12"),
    ]
    one, two = mask_rows(columns, rows, sql=sql, dialect="duckdb")
    assert one[:4] == ("***@example.org", "J***", "J***", 7)
    assert json.loads(one[4]) == {
        "firstName": "J***",
        "lastName": "C***",
        "device": {"isMobile": True},
        "n": 3,
    }
    assert one[5:] == ("last_name", "C***") and two[5:] == ("order_count", "12")
    # without the query, by name only (an alias hides nothing that is named)
    assert mask_rows(["fn"], [("James",)]) == [("James",)]


def test_mask_document_masks_camel_case_names_and_observations() -> None:
    from personify.privacy.masking import mask_document

    doc = {
        "events": [{"traits": {"firstName": "James", "lastName": "Chen", "phoneNumber": "+15"}}],
        "profile_observations": [
            {"field": "first_name", "value": "James", "source": "crm"},
            {"field": "order_count", "value": "3", "source": "shop"},
        ],
    }
    masked = mask_document(doc)
    assert masked["events"][0]["traits"] == {
        "firstName": "J***",
        "lastName": "C***",
        "phoneNumber": "***15",
    }
    assert [o["value"] for o in masked["profile_observations"]] == ["J***", "3"]
    assert "James" not in str(masked) and "Chen" not in str(masked)


def _one(sql: str, value: object, column: str = "x") -> object:
    from personify.privacy.masking import mask_rows

    ((masked,),) = mask_rows([column], [(value,)], sql=sql, dialect="duckdb")
    return masked


def test_mask_rows_fails_closed_on_json_subqueries_and_observations() -> None:
    """Text that derives from a column that may hold personal data is masked, whatever it is
    called: JSON keys, a scalar subquery, an observation's value without its field."""
    for sql in (
        "SELECT traits->>'firstName' AS x FROM events",
        "SELECT json_extract_string(traits,'$.first_name') AS x FROM events",
        "SELECT (SELECT first_name FROM customers LIMIT 1) AS x",
        "SELECT value AS x FROM profile_observations WHERE field='first_name'",
        "SELECT value AS x FROM identities WHERE kind='user_id'",
        "SELECT traits->>'nickname' AS x FROM events",
        "WITH t AS (SELECT properties AS p FROM events) SELECT p->>'note' AS x FROM t",
        "SELECT subject AS x FROM tickets",
    ):
        assert _one(sql, "Ann") == "A***", sql
    # an unnamed expression: the engine names it after its text
    assert _one("SELECT traits->>'nickname' FROM events", "Ann", "(traits ->> 'nickname')") == (
        "A***"
    )
    # by content where the value is an address or a number
    assert _one("SELECT traits->>'contact' AS x FROM events", "ann@example.org") == (
        "***@example.org"
    )
    assert _one("SELECT value AS x FROM identities", "+33612345678") == "***78"
    # a JSON document: all its text but under keys that are not personal
    doc = '{"nickname": "Annie", "plan": "pro", "order_id": "o-1", "n": 3, "email": "a@b.co"}'
    assert json.loads(_one("SELECT traits AS x FROM events", doc)) == {
        "nickname": "A***",
        "plan": "pro",
        "order_id": "o-1",
        "n": 3,
        "email": "***@b.co",
    }
    # a list of names, masked one by one
    assert _one("SELECT list(first_name) AS x FROM customers", ["Ann", "Bob"]) == ["A***", "B***"]


def test_mask_rows_fails_closed_when_lineage_cannot_be_traced() -> None:
    """An unknown function, a table outside the data model, a query sqlglot cannot read: text is
    masked unless the column's name says it is not personal."""
    assert _one("SELECT my_udf(customer_id) AS x FROM customers", "Ann") == "A***"
    assert _one(
        "SELECT my_udf(customer_id) AS customer_id FROM customers", "c-1", "customer_id"
    ) == ("c-1")
    assert _one("SELECT name AS x FROM people", "Ann") == "A***"
    assert _one("SELECT ???", "Ann") == "A***"
    assert _one("SELECT ???", "c-1", "customer_id") == "c-1"
    # two result columns of one name: each traced by its position
    from personify.privacy.masking import mask_rows

    sql = "SELECT customer_id AS x, first_name AS x FROM customers"
    assert mask_rows(["x", "x"], [("c-1", "Ann")], sql=sql, dialect="duckdb") == [("c-1", "A***")]


def test_mask_rows_keeps_what_an_analyst_needs() -> None:
    from personify.privacy.masking import mask_rows

    sql = (
        "SELECT c.customer_id, count(email) AS n, m.segment, total_spent, created_at AS d, "
        "properties->>'order_id' AS o, properties->>'category' AS category, e.event "
        "FROM customers AS c JOIN segment_memberships AS m USING (customer_id) "
        "JOIN events AS e USING (customer_id) GROUP BY ALL ORDER BY n DESC"
    )
    columns = ["customer_id", "n", "segment", "total_spent", "d", "o", "category", "event"]
    row = ("c-1", 3, "vip", 12.5, "2026-01-31", "o-1", "shoes", "Order Completed")
    assert mask_rows(columns, [row], sql=sql, dialect="duckdb") == [row]
    # an observation's value by its field, an identifier's by its kind, read from the same row
    sql = "SELECT * FROM profile_observations"
    columns = ["node_id", "field", "value", "source", "origin", "observed_at", "received_at"]
    rows = [(1, "order_count", "12", "shop", None, None, None)]
    rows.append((1, "nickname", "Annie", "shop", None, None, None))
    masked = mask_rows(columns, rows, sql=sql, dialect="duckdb")
    assert [r[2] for r in masked] == ["12", "A***"]
    sql = "SELECT kind, value FROM identities"
    rows = [("user_id", "u-77"), ("email", "ann@example.org"), ("anonymous_id", "a-1")]
    masked = mask_rows(["kind", "value"], rows, sql=sql, dialect="duckdb")
    assert [r[1] for r in masked] == ["u-77", "***@example.org", "a-1"]
    # a label the query made up is not the row's: the value stays masked
    sql = "SELECT 'order_count' AS field, value FROM profile_observations"
    assert mask_rows(["field", "value"], [("order_count", "Ann")], sql=sql, dialect="duckdb") == [
        ("order_count", "A***")
    ]


def test_filter_keeps_what_a_record_says_is_not_personal() -> None:
    """The server's own listen address (a private network one the IPv4 rule would mask) stays;
    a person's address in the same record does not."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PiiFilter())
    log = logging.getLogger("personify.test_masking_keep")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.info(
            "serving on http://%s from %s",
            "10.0.0.5:8787",
            "10.9.8.7",
            extra={"not_personal": ("10.0.0.5:8787",)},
        )
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "http://10.0.0.5:8787" in text and "10.9.8.7" not in text


def test_mask_engine_message_hides_the_values_a_database_quotes() -> None:
    from personify.privacy.masking import mask_engine_message

    duck = "Conversion Error: Could not convert string 'Ann O''Neil' to INT32"
    assert mask_engine_message(duck) == "Conversion Error: Could not convert string '…' to INT32"
    pg = 'invalid input syntax for type integer: "Ann"\nLINE 1: ... WHERE x = 1'
    assert mask_engine_message(pg).startswith('invalid input syntax for type integer: "…"')
    kept = 'Binder Error: Referenced column "ordr_count" not found; column "emial" does not exist'
    assert mask_engine_message(kept) == kept  # identifiers say what to fix
    assert mask_engine_message("contact ann@example.org") == "contact ***@example.org"
    # double-quoted values (DuckDB's parse errors, PostgreSQL's formats) are hidden; a list
    # of identifiers after one that names them, and a qualified name, stay
    assert (
        mask_engine_message('invalid date field format: "Ann", expected format is (YYYY-MM-DD)')
        == 'invalid date field format: "…", expected format is (YYYY-MM-DD)'
    )
    assert (
        mask_engine_message('Could not parse string "Ann" according to format specifier "%Y"')
        == 'Could not parse string "…" according to format specifier "%Y"'
    )
    assert mask_engine_message('invalid value "Ann" for "YYYY"') == 'invalid value "…" for "…"'
    assert mask_engine_message('malformed array literal: "Ann"') == 'malformed array literal: "…"'
    listed = 'Candidate bindings: "order_count", "customers.id"; relation "public"."foo"'
    assert mask_engine_message(listed) == listed
    assert mask_engine_message('Input: "Ann" when casting') == 'Input: "…" when casting'
