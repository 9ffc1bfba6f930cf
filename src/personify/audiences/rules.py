"""Rule files: ordered rules that turn thresholds over the profile into personalization tags.

A rule file (``rules/*.yml``)::

    dialect: duckdb            # optional: the SQL dialect of the expressions below
    rules:
      - id: re_engagement
        description: Last purchase over 60 days ago
        when: last_purchase_at < NOW() - INTERVAL 60 DAY
        tag: re_engagement     # default: the id
        variables:             # content variables: name → expression over the profile
          categories: preferred_categories
        priority: 10           # higher first (default 0); ties keep file order
        group: lifecycle       # exclusive group: at most one rule of a group applies
        ttl: 14d               # held at least this long once assigned, then while it matches
        expires_at: 2027-01-01T00:00:00Z   # the rule stops applying at this instant
        enabled: true

Files are read in name order and rules in file order, then sorted by ``priority`` (stable). For
each customer, rules are taken in that order; a rule whose ``when`` is TRUE assigns its tag
unless an earlier rule of the same ``group`` matched, or an earlier rule already assigned the
same tag. Mistakes raise :class:`~personify.errors.DefinitionError` (or
:class:`~personify.errors.ConfigError` for the YAML) naming the file, line, key and column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlglot

from personify import clock
from personify._yamlmarks import MarkedDocument, parse_marked
from personify.audiences.expressions import (
    Expression,
    ExpressionError,
    Kind,
    check_expression,
    profile_columns,
)
from personify.audiences.schedule import parse_duration
from personify.config import Name, _dotted, _translate
from personify.errors import DefinitionError

_VARIABLE_KINDS = (Kind.NUM, Kind.TEXT, Kind.BOOL, Kind.JSON, Kind.NULL)


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: Name
    when: str
    tag: Name | None = None
    description: str = ""
    variables: dict[Name, str] = {}
    priority: int = 0
    group: Name | None = None
    ttl: str | None = None
    expires_at: str | None = None
    enabled: bool = True


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dialect: str | None = None
    rules: tuple[_Spec, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One checked rule."""

    id: str
    tag: str
    description: str
    when: Expression
    variables: tuple[tuple[str, Expression], ...]
    priority: int
    group: str | None
    ttl: timedelta | None
    expires_at: datetime | None
    enabled: bool
    file: str
    line: int

    def active(self, now: datetime) -> bool:
        """Whether the rule applies at ``now`` (enabled and not expired)."""
        return self.enabled and (self.expires_at is None or now < self.expires_at)

    @property
    def columns(self) -> tuple[str, ...]:
        """Profile columns the rule reads (condition first, then variables)."""
        names = list(self.when.columns)
        for _, expression in self.variables:
            names.extend(expression.columns)
        return tuple(dict.fromkeys(names))


def load_rules(folder: Path, *, default_dialect: str, root: Path | None = None) -> list[Rule]:
    """Every rule in ``folder``'s ``*.yml`` / ``*.yaml`` files, in evaluation order."""
    if not folder.is_dir():
        return []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    files = sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")])
    for path in files:
        shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        for rule in parse_rules(
            path.read_text(encoding="utf-8"), file=shown, dialect=default_dialect
        ):
            if rule.id in seen:
                raise DefinitionError(
                    f"rule id {rule.id!r} is also used in {seen[rule.id]}",
                    file=shown,
                    line=rule.line,
                    key="id",
                )
            seen[rule.id] = shown
            rules.append(rule)
    return sorted(rules, key=lambda r: -r.priority)  # stable: file order within a priority


def parse_rules(text: str, *, file: str, dialect: str) -> list[Rule]:
    """The rules of one file's text, in file order."""
    doc = parse_marked(text, file=file)
    if doc.data is None:
        return []
    try:
        spec = msgspec.convert(_plain(doc.data), _File, strict=False)
    except msgspec.ValidationError as e:
        raise _translate(e, doc, file) from None
    read = (spec.dialect or dialect).lower()
    try:
        sqlglot.Dialect.get_or_raise(read)
    except ValueError:
        raise DefinitionError(
            f"unknown SQL dialect {read!r}", file=file, line=doc.line(("dialect",)), key="dialect"
        ) from None
    lines = text.splitlines()
    return [_rule(s, i, doc, lines, file, read) for i, s in enumerate(spec.rules)]


def _rule(
    spec: _Spec, index: int, doc: MarkedDocument, lines: list[str], file: str, dialect: str
) -> Rule:
    where = ("rules", index)
    when = _expression(spec.when, (*where, "when"), doc, lines, file, dialect)
    if when.kind not in (Kind.BOOL, Kind.NULL):
        raise DefinitionError(
            f"`when` must be a condition (true or false), not a {when.kind.value}",
            file=file,
            line=doc.line((*where, "when")),
            key=_dotted((*where, "when")),
        )
    variables = []
    for name, source in spec.variables.items():
        path = (*where, "variables", name)
        expression = _expression(source, path, doc, lines, file, dialect)
        if expression.kind not in _VARIABLE_KINDS:
            raise DefinitionError(
                f"variable {name!r} is a {expression.kind.value}; variables are numbers, text, "
                "booleans or JSON",
                file=file,
                line=doc.line(path),
                key=_dotted(path),
            )
        variables.append((name, expression))
    ttl = None
    if spec.ttl is not None:
        try:
            ttl = parse_duration(spec.ttl)
        except ValueError as e:
            raise DefinitionError(
                str(e), file=file, line=doc.line((*where, "ttl")), key=_dotted((*where, "ttl"))
            ) from None
    return Rule(
        id=spec.id,
        tag=spec.tag or spec.id,
        description=spec.description,
        when=when,
        variables=tuple(variables),
        priority=spec.priority,
        group=spec.group,
        ttl=ttl,
        expires_at=_instant(spec.expires_at, (*where, "expires_at"), doc, file),
        enabled=spec.enabled,
        file=file,
        line=doc.line(where) or 1,
    )


def _plain(node: Any, key: str | int | None = None) -> Any:
    """YAML timestamps (``2027-01-01``) back to the ISO strings they were written as; a YAML
    boolean or number in an expression (``when: true``) back to its SQL text."""
    if isinstance(node, dict):
        return {k: _plain(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, date):
        return node.isoformat()
    if isinstance(node, bool) and key not in {"enabled"}:
        return "TRUE" if node else "FALSE"
    if isinstance(node, int | float) and key not in {"priority"}:
        return repr(node)
    return node


def _instant(
    value: str | None, where: tuple[str | int, ...], doc: MarkedDocument, file: str
) -> datetime | None:
    if value is None:
        return None
    try:
        return clock.parse_instant(value)
    except ValueError:
        raise DefinitionError(
            f"{value!r} is not an ISO 8601 instant (e.g. 2027-01-01T00:00:00Z)",
            file=file,
            line=doc.line(where),
            key=_dotted(where),
        ) from None


def _expression(
    source: str,
    path: tuple[str | int, ...],
    doc: MarkedDocument,
    lines: list[str],
    file: str,
    dialect: str,
) -> Expression:
    try:
        return check_expression(source, dialect=dialect, columns=profile_columns())
    except ExpressionError as e:
        key_line = doc.line(path) or 1
        line, col = _locate(lines, key_line, e.line, e.col)
        raise DefinitionError(
            e.message, file=file, line=line, col=col, key=_dotted(path), hint=e.hint
        ) from None


def _locate(
    lines: list[str], key_line: int, line: int | None, col: int | None
) -> tuple[int, int | None]:
    """File line and column of a position inside a YAML scalar that starts at ``key_line``."""
    raw = lines[key_line - 1] if 0 < key_line <= len(lines) else ""
    after = raw.split(":", 1)[1] if ":" in raw else ""
    block = after.strip()[:1] in {"|", ">"}
    if line is None:
        return key_line, None
    if block:
        target = key_line + line
        text = lines[target - 1] if 0 < target <= len(lines) else ""
        indent = len(text) - len(text.lstrip())
        return target, None if col is None else indent + col
    if line == 1 and col is not None:
        start = len(raw) - len(after) + (len(after) - len(after.lstrip()))
        quoted = after.strip()[:1] in {"'", '"'}
        return key_line, start + col + (1 if quoted else 0)
    return key_line + line - 1, col
