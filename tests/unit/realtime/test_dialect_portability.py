"""What "portable to ClickHouse, Snowflake and BigQuery" rests on: the SQL Personify generates
for segments (the members query) and rules (the batch flags and tags queries) transpiles to
each of those dialects with sqlglot raising on anything it cannot express, and parses back in
that dialect. Transpilation only — no live run on those engines (see the README's scaling
guide)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from personify.audiences.compile import flags_query, plan, tags_query
from personify.audiences.rules import load_rules
from personify.audiences.segments import load_segments, parse_segment

SCAFFOLD = Path(__file__).parents[3] / "src" / "personify" / "scaffold"
GOLDEN = Path(__file__).parents[2] / "conformance" / "golden" / "segments"
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def generated() -> list[tuple[str, str]]:
    """(what, SQL in DuckDB's dialect) for every query the checks below transpile."""
    segments = load_segments(SCAFFOLD / "segments", default_dialect="duckdb")
    for file in sorted(GOLDEN.glob("*/*.sql")):  # one segment written in several dialects
        segments.append(parse_segment(file.read_text(), file=file, default_dialect="duckdb"))
    out = [(f"segment {s.file.name}", s.members_query().sql("duckdb")) for s in segments]
    rules = load_rules(SCAFFOLD / "rules", default_dialect="duckdb")
    compiled = plan(rules, NOW)
    out.append(("rules: flags", flags_query(compiled).sql("duckdb")))
    out.append(("rules: tags", tags_query(compiled, "_flags").sql("duckdb")))
    return out


@pytest.mark.parametrize("dialect", ["clickhouse", "snowflake", "bigquery"])
def test_segments_and_rules_transpile(dialect: str) -> None:
    queries = generated()
    assert len(queries) >= 5
    for what, sql in queries:
        (target,) = sqlglot.transpile(
            sql, read="duckdb", write=dialect, unsupported_level=ErrorLevel.RAISE
        )
        assert sqlglot.parse_one(target, read=dialect) is not None, what
        assert "customer_id" in target, what
