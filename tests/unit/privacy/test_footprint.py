"""Whole-token matching of a person's identifiers in free text and JSON
(:func:`personify.privacy.footprint.mention_pattern`): the same
expression runs in DuckDB, PostgreSQL and Python (the outbox), so Python's reading pins it; and
the tables that hold staff's data (admin token names), not customers'."""

from __future__ import annotations

import re

import pytest

from personify.privacy.footprint import (
    NOT_PERSONAL,
    STAFF,
    mention_pattern,
    personal_tables,
    unclassified,
)
from personify.warehouse.schema import TABLES_BY_NAME

TERMS = ["ann@ex.example", "100121", "a.b+c(d)|e"]


@pytest.mark.parametrize(
    "text",
    [
        "ann@ex.example",
        "to: <ann@ex.example>",
        '{"email": "ann@ex.example"}',
        "write to ann@ex.example. thanks",
        "mailto:ann@ex.example?subject=x",
        "'ann@ex.example' is not valid",
        "record 100121: bad phone",
        '{"id":100121}',
        "x a.b+c(d)|e y",
    ],
)
def test_whole_tokens_are_mentions(text: str) -> None:
    pattern = mention_pattern(TERMS)
    assert pattern is not None and re.search(pattern, text)


@pytest.mark.parametrize(
    "text",
    [
        "joann@ex.example",
        "jo.ann@ex.example",
        "x+ann@ex.example",
        "ann@ex.example.org",
        "ann@ex.example-shop.org",
        "sku-spo-100121",
        "1001212",
        "100121_b",
        "ab.b+c(d)|e",
        "a.b+c(d)|ex",
        "a-b+c(d)|e",  # punctuation in a term is literal, not a pattern
    ],
)
def test_continued_identifiers_are_not(text: str) -> None:
    pattern = mention_pattern(TERMS)
    assert pattern is not None and not re.search(pattern, text)


def test_no_terms_no_pattern() -> None:
    assert mention_pattern([]) is None


def test_token_names_are_staff_data_outside_customers_footprints() -> None:
    """``console_sessions.token_name`` and ``audit_log.actor`` hold admin token names, which may
    be an employee's (``alice``): classified as staff's data — not "no personal data", and not
    in any customer's export or erasure (they name no customer)."""
    assert {"console_sessions", "audit_log"} <= STAFF and not STAFF & NOT_PERSONAL
    assert "token_name" in TABLES_BY_NAME["console_sessions"].column_names
    assert not STAFF & {t.name for t in personal_tables()}
    assert unclassified() == []
