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
