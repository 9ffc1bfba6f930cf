"""Identifier normalization: Python rules, and the SQL twins give the same answers."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.config import EmailRules, IdentityConfig
from personify.identity.normalize import (
    email_sql,
    id_sql,
    is_blocked,
    normalize,
    normalize_email,
    normalize_phone,
    phone_sql,
)

RULES = EmailRules(strip_plus_tags=True, gmail_dots=True)


def test_email_is_trimmed_lowercased_and_checked() -> None:
    assert normalize_email("  Ann@Example.ORG \t") == "ann@example.org"
    assert normalize_email("not-an-email") is None
    assert normalize_email("a@b.com@c") is None
    assert normalize_email("   ") is None


def test_provider_rules_are_off_by_default() -> None:
    assert normalize_email("a.nn+shop@gmail.com") == "a.nn+shop@gmail.com"
    assert normalize_email("a.nn+shop@gmail.com", RULES) == "ann@gmail.com"
    assert normalize_email("a.nn+shop@x.org", RULES) == "a.nn@x.org"


def test_phones_become_e164() -> None:
    assert normalize_phone("+33 6 12 34 56 78") == "+33612345678"
    assert normalize_phone("06 12 34 56 78") is None
    assert normalize_phone("06 12 34 56 78", "FR") == "+33612345678"
    assert normalize_phone("(202) 555-0143", "US") == "+12025550143"
    assert normalize_phone("call me") is None


def test_a_leading_00_is_the_international_prefix_without_a_region() -> None:
    assert normalize_phone("0049 151 12345678") == "+4915112345678"
    assert normalize_phone("0049 151 12345678", "DE") == "+4915112345678"
    assert normalize_phone("00") is None
    # a region with another international prefix reads its own (the US dials 011)
    assert normalize_phone("011 49 151 12345678", "US") == "+4915112345678"


def test_generic_ids_keep_case() -> None:
    assert normalize("user_id", " U-1 ", IdentityConfig()) == "U-1"
    assert normalize("user_id", "", IdentityConfig()) is None


def test_blocked_values() -> None:
    config = IdentityConfig()
    assert is_blocked("email", "test@example.com", config)
    assert is_blocked("anonymous_id", "NULL".lower(), config)
    assert not is_blocked("email", "ann@example.org", config)


# every white-space character the rules trim, and some they do not (no-break space, é, a
# combining accent), at either end or inside
_text = st.text(
    alphabet=st.sampled_from(list("aAbB.+@-_ 0123456789()\t\n\r\x0b\x0c\xa0\xe9\u0301")),
    max_size=20,
)


@settings(max_examples=150, deadline=None)
@given(_text)
def test_sql_equals_python(raw: str) -> None:
    con = duckdb.connect()
    row = con.execute(
        f"SELECT {email_sql('v')}, {email_sql('v', RULES)}, {id_sql('v')}, {phone_sql('v')} "
        "FROM (SELECT CAST(? AS VARCHAR) AS v)",
        [raw],
    ).fetchone()
    assert row is not None
    phone = normalize_phone(raw)
    assert row[0] == normalize_email(raw)
    assert row[1] == normalize_email(raw, RULES)
    assert row[2] == normalize("user_id", raw, IdentityConfig())
    assert row[3] in (None, phone)


def test_phone_region_reads_iso_codes_in_any_case_and_falls_back() -> None:
    from personify.identity.normalize import phone_region

    assert phone_region("fr") == "FR"
    assert phone_region(" DE ", "US") == "DE"
    assert phone_region("UK") == "GB"  # the common non-ISO code
    assert phone_region("France", "US") == "US"  # names are not read
    assert phone_region("ZZ", "US") == "US"
    assert phone_region(None, "US") == "US"
    assert phone_region("", None) is None
    assert normalize_phone("06 12 34 56 78", phone_region("fr")) == "+33612345678"


def test_a_00_prefix_reads_as_plus_where_the_region_dials_another() -> None:
    """The US dials ``011`` abroad, yet people write ``001 …``: when the region's reading is
    no number, the ``00`` is read as ``+``; a region that dials ``00`` reads it itself."""
    assert normalize_phone("001 2818628726", "US") == "+12818628726"
    assert normalize_phone("011 49 151 12345678", "US") == "+4915112345678"
    assert normalize_phone("0049 15112345678", "FR") == "+4915112345678"
    assert normalize_phone("0049 15112345678") == "+4915112345678"
