"""Rule files, the expression allow-list, and the per-profile evaluator's semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from personify.audiences.expressions import ExpressionError, check_expression, profile_columns
from personify.audiences.interpreter import evaluate
from personify.audiences.realtime import evaluate_profile, explain_profile
from personify.audiences.rules import load_rules, parse_rules
from personify.errors import ConfigError, DefinitionError

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
SCAFFOLD = Path(__file__).parents[3] / "src/personify/scaffold/rules"


def rules(text: str):  # type: ignore[no-untyped-def]
    return parse_rules(text, file="rules/r.yml", dialect="duckdb")


def value(text: str, **profile: object) -> object:
    expression = check_expression(text, dialect="duckdb", columns=profile_columns())
    return evaluate(expression.tree, profile, NOW)


def test_the_scaffold_rule_is_the_seed_example() -> None:
    (rule,) = load_rules(SCAFFOLD, default_dialect="duckdb")
    assert (rule.id, rule.tag) == ("re_engagement", "re_engagement")
    lapsed = {
        "customer_id": "c",
        "last_purchase_at": NOW - timedelta(days=61),
        "preferred_categories": '["shoes", "hats"]',
    }
    (assigned,) = evaluate_profile([rule], lapsed, NOW)
    assert assigned.variables == {"categories": ["shoes", "hats"]}
    recent = {**lapsed, "last_purchase_at": NOW - timedelta(days=59)}
    assert evaluate_profile([rule], recent, NOW) == []
    assert evaluate_profile([rule], {**lapsed, "last_purchase_at": None}, NOW) == []


def test_order_priority_groups_and_tags() -> None:
    parsed = rules(
        """
rules:
  - {id: a, when: order_count > 0, group: g}
  - {id: b, when: order_count > 1, group: g, priority: 5}
  - {id: c, when: order_count > 2, tag: shared}
  - {id: d, when: order_count > 3, tag: shared}
  - {id: e, when: order_count > 0, enabled: false}
  - {id: f, when: order_count > 0, expires_at: 2026-03-01}
"""
    )
    assert [r.id for r in parsed] == ["a", "b", "c", "d", "e", "f"]
    ordered = sorted(parsed, key=lambda r: -r.priority)
    assert [r.id for r in ordered][:2] == ["b", "a"]
    outcomes = explain_profile(ordered, {"order_count": 5}, NOW)
    by_id = {o.rule.id: o for o in outcomes}
    assert by_id["b"].assigned and not by_id["a"].assigned
    assert "already took group 'g'" in by_id["a"].reason
    assert by_id["c"].assigned and not by_id["d"].assigned
    assert "already assigned tag 'shared'" in by_id["d"].reason
    assert "disabled" in by_id["e"].reason and "expired" in by_id["f"].reason
    assert [a.tag for a in evaluate_profile(ordered, {"order_count": 5}, NOW)] == ["b", "shared"]


def test_explanations_show_fields_and_comparisons() -> None:
    (rule,) = rules(
        "rules:\n  - id: r\n    when: engagement_score > 80 AND country IN ('FR', 'DE')\n"
    )
    (outcome,) = explain_profile([rule], {"engagement_score": 90.0, "country": None}, NOW)
    assert outcome.matched is None and not outcome.assigned
    assert "unknown" in outcome.reason
    assert outcome.fields == {"engagement_score": 90.0, "country": None}
    assert [(c.sql, c.result) for c in outcome.checks] == [
        ("engagement_score > 80", True),
        ("country IN ('FR', 'DE')", None),
    ]


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ("rules:\n  - id: r\n    when: order_count > \n", "cannot parse", 3, None),
        ("rules:\n  - id: r\n    when: ordr_count > 2\n", "unknown profile column", 3, 11),
        (
            "rules:\n  - id: r\n    when: |\n      order_count > 1 AND\n      x = 1\n",
            "unknown",
            5,
            7,
        ),
        ("rules:\n  - id: r\n    when: '(SELECT 1) = 1'\n", "subquery", 3, 20),
        ("rules:\n  - id: r\n    when: order_count + 1\n", "must be a condition", 3, None),
        ("rules:\n  - id: r\n    when: TRUE\n    ttl: forever\n", "not a duration", 4, None),
        ("rules:\n  - id: r\n    when: TRUE\n    variables: {at: NOW()}\n", "timestamp", 4, None),
        ("rules:\n  - id: r\n    when: TRUE\n    expires_at: soon\n", "ISO 8601", 4, None),
    ],
)
def test_mistakes_name_file_line_and_column(
    text: str, message: str, line: int, col: int | None
) -> None:
    with pytest.raises(DefinitionError, match=message) as info:
        rules(text)
    assert (info.value.file, info.value.line) == ("rules/r.yml", line)
    if col is not None:
        assert info.value.col == col


def test_yaml_and_key_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key 'whenn'") as info:
        rules("rules:\n  - id: r\n    whenn: TRUE\n")
    assert info.value.line == 3
    with pytest.raises(ConfigError, match="missing required key 'when'"):
        rules("rules:\n  - id: r\n")


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("rules:\n  - {id: r, when: TRUE}\n")
    (tmp_path / "b.yml").write_text("rules:\n  - {id: r, when: FALSE}\n")
    with pytest.raises(DefinitionError, match="also used in"):
        load_rules(tmp_path, default_dialect="duckdb")


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("email > 'a'", "cannot order text"),
        ("order_count = 'a'", "cannot mix"),
        ("order_count IN (SELECT 1)", "subquery"),
        ("EXISTS (SELECT 1 FROM orders)", "subquery"),
        ("upper(email) = 'A'", "UPPER"),
        ("read_csv('x') IS NULL", "READ_CSV"),
        ("c.email IS NULL", "qualified"),
        ("order_count % 2 = 1", "MOD"),
        ("email LIKE '%\\_%'", "backslash"),
        ("email ILIKE 'a%'", "ILIKE"),
        ("preferred_categories = '[]'", "cannot mix"),
        ("last_purchase_at > NOW() - INTERVAL '1 month 2 days'", "simple interval"),
        ("CAST(email AS BIGINT) = 1", "CAST"),
    ],
)
def test_the_allow_list_refuses(text: str, hint: str) -> None:
    with pytest.raises(ExpressionError, match=hint):
        check_expression(text, dialect="duckdb", columns=profile_columns())


def test_three_valued_logic() -> None:
    assert value("order_count > 1 AND engagement_score > 1", order_count=None) is None
    assert value("order_count > 1 AND FALSE", order_count=None) is False
    assert value("order_count > 1 OR TRUE", order_count=None) is True
    assert value("NOT (order_count > 1)", order_count=None) is None
    assert value("order_count IN (1, NULL)", order_count=2) is None
    assert value("order_count IN (2, NULL)", order_count=2) is True
    assert value("order_count BETWEEN 1 AND 3", order_count=None) is None
    assert value("order_count IS NULL", order_count=None) is True
    assert value("COALESCE(order_count, 7)", order_count=None) == 7


def test_arithmetic_dates_and_functions() -> None:
    assert value("order_count / 0", order_count=3) is None
    assert value("order_count / 2", order_count=3) == 1.5
    assert value("GREATEST(order_count, NULL, 2)", order_count=None) == 2
    assert value("CURRENT_DATE - INTERVAL 1 MONTH") == datetime(2026, 2, 28, tzinfo=UTC)
    assert value("NOW() + INTERVAL 1 YEAR") == datetime(2027, 3, 31, 12, tzinfo=UTC)
    assert value("last_purchase_at > '2026-01-01'", last_purchase_at=NOW) is True
    assert value("email LIKE 'a_c%'", email="abcd") is True
    assert value("email NOT LIKE '%@x.org'", email="a@x.org") is False
    assert value("JSON_ARRAY_LENGTH(preferred_categories)", preferred_categories=["a"]) == 1
    assert value("IFF(order_count > 1, 'many', 'few')", order_count=2) == "many"
    assert value("CASE WHEN order_count > 5 THEN 1 END", order_count=2) is None
