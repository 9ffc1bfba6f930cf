"""Validation rules (``quality.rules`` in ``personify.yml``), run as SQL in the warehouse.

Each rule is one query counting the rows of a table that break it and one taking a sample of
their keys (the table's primary key: ids, never other values). Checks:

==================  ===========================================================================
``not_null``        the column is null
``unique``          the value (or the ``a,b`` combination) is held by more than one row
``format``          ``email``, ``phone`` (``+``, digits, spaces, ``().-``; 6–20 characters) or
                    ``currency`` (three capital letters, ISO 4217) — nulls are not checked
``range``           below ``min`` or above ``max``
``accepted_values`` not one of ``values``
``references``      a non-null value not found in ``to`` (``table.column``): referential
                    integrity, e.g. ``orders.source_customer_id`` → ``customer_records.record_id``
==================  ===========================================================================

Per rule, ``action``: ``warn`` (recorded and logged), ``flag`` (recorded and shown for review by
``personify status``) or ``quarantine`` (recorded, and the violating rows are moved to the
quarantine with reason ``rule_violation``, so later stages never see them). ``freshness`` per
source: a source whose last sync (or event, or delivery) is older than its limit is a
``freshness`` violation (flag). Every check writes one ``quality_violations`` row per rule that
found something.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
import pyarrow as pa

from personify import clock
from personify.config import QualityRule, duration_seconds
from personify.errors import ConfigError
from personify.ingest.validate import EMAIL_PATTERN
from personify.quality.drift import observe_after_load
from personify.session import Session
from personify.warehouse import Warehouse
from personify.warehouse.base import quote
from personify.warehouse.schema import QUALITY_VIOLATIONS, QUARANTINE, TABLES_BY_NAME, Table

log = logging.getLogger(__name__)

FORMATS: Final = {
    "email": EMAIL_PATTERN,
    "phone": r"^\+?[0-9 ().-]{6,20}$",
    "currency": r"^[A-Z]{3}$",
}
"""Regular expressions of ``check: format``."""


@dataclass
class Violation:
    """What one rule found."""

    table: str
    rule: str
    check: str
    action: str
    violations: int
    checked_rows: int
    sample: list[str] = field(default_factory=list)
    quarantined: int = 0


def rule_name(table: str, rule: QualityRule) -> str:
    if rule.name:
        return rule.name
    detail = f".{rule.format}" if rule.format else ""
    return f"{table}.{rule.column}.{rule.check}{detail}"


def _table(name: str, label: str) -> Table:
    found = TABLES_BY_NAME.get(name)
    if found is None:
        raise ConfigError(f"{label}: unknown table {name!r}", hint="name a table of the warehouse")
    return found


def _columns(table: Table, spec: str, label: str) -> list[str]:
    columns = [c.strip() for c in spec.split(",") if c.strip()]
    for c in columns:
        if c not in table.column_names:
            raise ConfigError(
                f"{label}: {table.name} has no column {c!r}",
                hint=f"columns: {', '.join(table.column_names)}",
            )
    return columns


def _condition(table: Table, rule: QualityRule, label: str) -> tuple[str, list[Any]]:
    """SQL (over alias ``t``) true for a violating row, and its parameters."""
    cols = _columns(table, rule.column, label)
    col = f"t.{quote(cols[0])}"
    if rule.check == "not_null":
        return " OR ".join(f"t.{quote(c)} IS NULL" for c in cols), []
    if rule.check == "unique":
        match = " AND ".join(f"u.{quote(c)} = t.{quote(c)}" for c in cols)
        notnull = " AND ".join(f"t.{quote(c)} IS NOT NULL" for c in cols)
        group = ", ".join(quote(c) for c in cols)
        return (
            f"{notnull} AND EXISTS (SELECT 1 FROM (SELECT {group} FROM {quote(table.name)} "
            f"GROUP BY {group} HAVING count(*) > 1) AS u WHERE {match})"
        ), []
    if rule.check == "format":
        assert rule.format is not None
        return (
            f"{col} IS NOT NULL AND NOT regexp_matches(CAST({col} AS VARCHAR), ?)",
            [FORMATS[rule.format]],
        )
    if rule.check == "range":
        parts, params = [], []
        if rule.min is not None:
            parts.append(f"{col} < ?")
            params.append(rule.min)
        if rule.max is not None:
            parts.append(f"{col} > ?")
            params.append(rule.max)
        return "(" + " OR ".join(parts) + ")", params
    if rule.check == "accepted_values":
        marks = ", ".join("?" for _ in rule.values)
        return f"{col} IS NOT NULL AND CAST({col} AS VARCHAR) NOT IN ({marks})", list(rule.values)
    assert rule.to is not None
    other_name, _, other_col = rule.to.partition(".")
    other = _table(other_name, label)
    _columns(other, other_col, label)
    return (
        f"{col} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {quote(other.name)} AS r "
        f"WHERE CAST(r.{quote(other_col)} AS VARCHAR) = CAST({col} AS VARCHAR))"
    ), []


def _key_sql(table: Table) -> str:
    keys = [k for k in table.primary_key] or [table.columns[0].name]
    return " || '|' || ".join(f"CAST(t.{quote(k)} AS VARCHAR)" for k in keys)


def check_rules(session: Session, *, trigger: str = "manual") -> list[Violation]:
    """Run every rule and freshness limit; record what they find; quarantine where asked."""
    config = session.project.config.quality
    wh = session.warehouse
    now = clock.now()
    found: list[Violation] = []
    for table_name, rules in config.rules.items():
        table = _table(table_name, f"quality.rules.{table_name}")
        seen: dict[str, int] = {}
        for i, rule in enumerate(rules):
            name = rule_name(table_name, rule)
            seen[name] = seen.get(name, 0) + 1
            if seen[name] > 1:
                name = f"{name}#{seen[name]}"
            label = f"quality.rules.{table_name}[{i}]"
            v = _check(wh, table, rule, name, label, config.sample_size)
            if v.violations and rule.action == "quarantine":
                v.quarantined = _quarantine(wh, table, rule, name, label, now)
            found.append(v)
    found.extend(_freshness(session, now))
    _record(wh, [v for v in found if v.violations], now, trigger)
    for v in found:
        if v.violations:
            level = logging.INFO if v.action == "warn" else logging.WARNING
            log.log(level, "quality rule %s (%s): %d row(s)", v.rule, v.action, v.violations)
    return found


def _check(
    wh: Warehouse, table: Table, rule: QualityRule, name: str, label: str, sample: int
) -> Violation:
    cond, params = _condition(table, rule, label)
    total_sql = f"SELECT count(*), count(CASE WHEN {cond} THEN 1 END) FROM {quote(table.name)} AS t"
    row = wh.fetch(total_sql, params)[0]
    checked, bad = int(row[0] or 0), int(row[1] or 0)
    keys: list[str] = []
    if bad and sample:
        rows = wh.fetch(
            f"SELECT {_key_sql(table)} FROM {quote(table.name)} AS t WHERE {cond} "
            f"ORDER BY 1 LIMIT {int(sample)}",
            params,
        )
        keys = [str(r[0]) for r in rows]
    return Violation(table.name, name, rule.check, rule.action, bad, checked, keys)


def _quarantine(
    wh: Warehouse, table: Table, rule: QualityRule, name: str, label: str, now: datetime
) -> int:
    """Move the violating rows to the quarantine (reason ``rule_violation``), in one
    transaction."""
    cond, params = _condition(table, rule, label)
    with wh.transaction():
        rows = wh.fetch_arrow(
            f"SELECT {_key_sql(table)} AS __key, t.* FROM {quote(table.name)} AS t WHERE {cond}",
            params,
        )
        if not rows.num_rows:
            return 0
        keys = [str(k) for k in rows.column("__key").to_pylist()]
        data = rows.drop_columns(["__key"]).to_pylist()
        sources = [str(r.get("source") or "quality") for r in data]
        encode = msgspec.json.Encoder(enc_hook=str).encode
        quarantine = pa.table(
            {
                "id": [
                    hashlib.sha256(f"quality:{name}:{k}".encode()).hexdigest()[:32] for k in keys
                ],
                "source": sources,
                "received_at": pa.array([now] * len(keys), pa.timestamp("us", tz="UTC")),
                "reason": ["rule_violation"] * len(keys),
                "detail": [f"{table.name} {k}: breaks quality rule {name}" for k in keys],
                "payload": [encode(r).decode() for r in data],
                "location": [f"{table.name}:{k}" for k in keys],
            }
        )
        wh.load(QUARANTINE, quarantine, on_conflict="ignore")
        wh.execute(f"DELETE FROM {quote(table.name)} AS t WHERE {cond}", params)
    return len(keys)


def _freshness(session: Session, now: datetime) -> list[Violation]:
    limits = session.project.config.quality.freshness
    if not limits:
        return []
    from personify.status import status_report

    by_name = {s["name"]: s for s in status_report(session)["sources"]}
    out: list[Violation] = []
    for source, limit in limits.items():
        entry = by_name.get(source)
        if entry is None:
            raise ConfigError(
                f"quality.freshness: no source named {source!r}",
                hint=f"sources: {', '.join(by_name) or 'none'}",
            )
        lag = entry.get("lag_seconds")
        stale = lag is None or lag > duration_seconds(limit)
        shown = "never" if lag is None else f"{lag:.0f} s ago"
        out.append(
            Violation(
                "sources",
                f"freshness.{source}",
                "freshness",
                "flag",
                1 if stale else 0,
                1,
                [f"{source}: last data {shown}, limit {limit}"] if stale else [],
            )
        )
    return out


def _record(wh: Warehouse, found: list[Violation], now: datetime, trigger: str) -> None:
    if not found:
        return
    n = len(found)
    data = pa.table(
        {
            "checked_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
            "table_name": [v.table for v in found],
            "rule": [v.rule for v in found],
            "action": [v.action for v in found],
            "violations": pa.array([v.violations for v in found], pa.int64()),
            "checked_rows": pa.array([v.checked_rows for v in found], pa.int64()),
            "sample": [msgspec.json.encode(v.sample).decode() for v in found],
            "trigger": [trigger] * n,
        }
    )
    wh.load(QUALITY_VIOLATIONS, data, on_conflict="update")


def latest_violations(wh: Warehouse) -> list[dict[str, Any]]:
    """The violations of the last check, per rule (what ``personify status`` shows)."""
    rows = wh.fetch(
        "SELECT table_name, rule, action, violations, sample FROM quality_violations "
        "WHERE checked_at = (SELECT max(checked_at) FROM quality_violations) ORDER BY rule"
    )
    return [
        {
            "table": r[0],
            "rule": r[1],
            "action": r[2],
            "violations": int(r[3]),
            "sample": msgspec.json.decode(r[4]) if isinstance(r[4], str | bytes) else r[4],
        }
        for r in rows
    ]


def quality_stage(session: Session) -> dict[str, int]:
    """The pipeline's ``quality`` stage (after ``sync``): schema drift of what was loaded, and
    the rules when ``quality.run_after_sync``; counts of schema changes, rules broken, flagged
    and rows quarantined."""
    changed = len(observe_after_load(session))
    drift = {"schema_changes": changed} if changed else {}
    config = session.project.config.quality
    if not config.run_after_sync or not (config.rules or config.freshness):
        return drift
    found = check_rules(session, trigger="run")
    broken = [v for v in found if v.violations]
    return {
        **drift,
        "rules_checked": len(found),
        "rules_broken": len(broken),
        "rules_flagged": sum(1 for v in broken if v.action == "flag"),
        "rows_quarantined": sum(v.quarantined for v in found),
    }


def after_load(session: Session, trigger: str) -> list[Violation]:
    """The checks after a load — ``personify sync`` (``trigger="sync"``) or ``personify
    import`` (``"import"``): schema drift of the files and events loaded
    (:mod:`~personify.quality.drift`), then the rules when ``quality.run_after_sync`` (and rules
    or freshness limits are configured)."""
    observe_after_load(session)
    config = session.project.config.quality
    if not config.run_after_sync or not (config.rules or config.freshness):
        return []
    return check_rules(session, trigger=trigger)


def after_sync(session: Session) -> list[Violation]:
    """Run the rules after ``personify sync`` (see :func:`after_load`)."""
    return after_load(session, "sync")
