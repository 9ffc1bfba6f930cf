"""Segment files: a short header, then one SELECT in any SQL dialect.

A segment file (``segments/NAME.sql``)::

    -- name: high_value_recent
    -- description: Bought in the last 30 days and highly engaged.
    -- dialect: mysql
    -- refresh: every 1h
    SELECT customer_id, email FROM customer_data
    WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;

The header is the leading ``-- key: value`` lines (``name`` defaults to the file's stem,
``dialect`` to ``audiences.dialect`` in ``personify.yml``, ``refresh`` to ``real-time``); other
leading comment lines are free text (the description when there is no ``description:``). The
query is parsed with sqlglot in its dialect and checked by the read-only guard
(:func:`personify.warehouse.safety.check_select`): one SELECT, only the public tables and views,
no functions that read files, reach the network or have side effects. It must return a
``customer_id`` column. Mistakes raise :class:`~personify.errors.DefinitionError` naming the
file, line and column.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

from personify.audiences.relations import Relation, missing_in, qualify, used
from personify.audiences.schedule import REAL_TIME, Refresh, parse_refresh
from personify.errors import DefinitionError, UnsafeQueryError, WarehouseError
from personify.warehouse.query import pin_time
from personify.warehouse.safety import check_select
from personify.warehouse.schema import TABLES, VIEWS

HEADER_KEYS = ("name", "description", "dialect", "refresh")
"""The keys a segment file's header may hold."""
_HEADER = re.compile(r"^--\s*([a-z_]+)\s*:\s*(.*?)\s*$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")

SEGMENT_RELATIONS = frozenset(
    {t.name for t in TABLES if not t.internal} - {"quarantine", "suppressions"} | set(VIEWS)
)
"""Tables and views a segment may read: the public data model, without quarantined payloads and
suppression tombstones."""


@dataclass(frozen=True)
class Segment:
    """One checked segment definition."""

    name: str
    description: str
    dialect: str
    """The dialect the SQL is written in."""
    refresh: Refresh
    file: Path
    source: str
    """The file's text as written."""
    query: exp.Query
    """The checked query (comments dropped, ``NOW()`` not yet pinned)."""
    shown: str = ""
    """The file's name as errors show it (relative to the project); default ``file``."""
    relations: tuple[Relation, ...] = ()
    """The team's own tables (``relations:`` in ``personify.yml``) the query reads, already
    rewritten into their qualified names in :attr:`query`."""

    @property
    def ranks(self) -> str | None:
        """What in its query ranks customers against each other (:func:`ranking`), or ``None``:
        a ``real-time`` segment that ranks is refreshed whole by each real-time pass."""
        return ranking(self.query)

    @property
    def real_time(self) -> str | None:
        """How the real-time path refreshes it: ``per customer`` (the customers a pass reacts
        for), ``whole`` (it ranks: everyone, at each pass), or ``None`` (not ``refresh:
        real-time``: left to the batch run)."""
        if self.refresh.mode != "real-time":
            return None
        return "whole" if self.ranks else "per customer"

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Name this segment in the warehouse's refusal of its query: a column it reads that
        does not exist, a type mismatch, a division by zero … are found only when it runs, and
        the engine's message alone does not say which of the segments it is about. Busy,
        timed-out and refused queries pass through as they are."""
        try:
            yield
        except WarehouseError as e:
            if type(e) is not WarehouseError:
                raise
            missing = missing_in(e, {r.name: r for r in self.relations})
            if missing is not None:
                raise missing.missing(e.message.splitlines()[0][:200]) from e
            from personify.privacy.masking import mask_engine_message

            where = self.shown or str(self.file)
            said = mask_engine_message(e.message)  # (a failed cast quotes the value: a name?)
            raise WarehouseError(
                f"{where}: segment {self.name!r} failed on the warehouse: {said}",
                hint=f"fix the query in {where}; `personify segments preview {self.name}` runs "
                "it without changing any membership",
            ) from e

    def members_query(self) -> exp.Select:
        """``SELECT DISTINCT customer_id`` over the segment, with ``--now`` pinned (without the
        ``DISTINCT`` when the query already returns each customer at most once:
        :func:`one_row_per_customer`)."""
        customer_id = exp.column("customer_id")
        members = (
            exp.select(exp.cast(customer_id.copy(), "VARCHAR").as_("customer_id"))
            .from_(self.pinned_query().subquery("segment_rows"))
            .where(exp.not_(customer_id.is_(exp.null())))
        )
        return members if one_row_per_customer(self.query) else members.distinct()

    def pinned_query(self) -> exp.Query:
        """The segment's own query with ``--now`` pinned (for previews)."""
        pinned = pin_time(self.query.copy())
        assert isinstance(pinned, exp.Query)
        return pinned


def ranking(query: exp.Expr) -> str | None:
    """What makes ``query`` rank customers against each other — ``LIMIT`` (``TOP``, ``FETCH``,
    ``OFFSET``) or ``a window function (ROW_NUMBER)`` — or ``None``. Whether one customer is in
    such a segment depends on the others (a customer entering "the top 100" pushes another
    out), so the real-time path refreshes it whole rather than for the customers it reacts for
    (:attr:`Segment.ranks`). A ``LIMIT`` within ``EXISTS (…)`` ranks nothing and is not
    counted, nor what ranks one customer's rows among themselves: a window ``PARTITION BY
    customer_id`` (a customer's latest order), a ``LIMIT`` in a subquery correlated on
    ``customer_id`` (``(SELECT … WHERE o.customer_id = c.customer_id ORDER BY … LIMIT 1)``)."""
    for window in query.find_all(exp.Window):
        if any(_is_customer_id(p) for p in window.args.get("partition_by") or ()):
            continue
        func = window.this
        name = func.sql_name() if isinstance(func, exp.Func) else type(func).__name__.upper()
        return f"a window function ({name})"
    for node in query.find_all(exp.Limit, exp.Offset, exp.Fetch):
        select = node.parent
        if isinstance(select, exp.Query) and (
            isinstance(select.parent, exp.Exists) or _correlated_on_customer(select)
        ):
            continue
        return "OFFSET" if isinstance(node, exp.Offset) else "LIMIT"
    return None


def _is_customer_id(node: exp.Expr) -> bool:
    return isinstance(node, exp.Column) and node.name.lower() == "customer_id"


def _correlated_on_customer(query: exp.Query) -> bool:
    """Whether ``query`` (a subquery) keeps only the rows of the outer row's customer: its
    ``WHERE`` equates ``customer_id`` of its own tables with one of a table it does not read."""
    if not isinstance(query, exp.Select) or query is query.root():
        return False
    own = {t.alias_or_name.lower() for t in query.find_all(exp.Table)}
    where = query.args.get("where")
    for eq in where.find_all(exp.EQ) if where else ():
        left, right = eq.left, eq.right
        if _is_customer_id(left) and _is_customer_id(right):
            sides = {left.table.lower(), right.table.lower()}
            if len(sides) == 2 and sides & own and sides - own - {""}:
                return True
    return False


ONE_ROW_PER_CUSTOMER = frozenset({"customers", "customer_data"})
"""Relations holding one row per ``customer_id`` (the ``customers`` key and its view)."""


def one_row_per_customer(query: exp.Expr) -> bool:
    """Whether ``query`` returns each ``customer_id`` at most once, by its shape alone: one
    SELECT (no ``WITH``, no set operation, no ``GROUP BY``) from one relation of
    :data:`ONE_ROW_PER_CUSTOMER`, unjoined, whose projections are plain columns, literals or a
    bare ``*``, ``customer_id`` among them as the relation's own column. Such a query only
    filters that relation's rows (a subquery in ``WHERE`` filters, it does not multiply), so
    the segment's members need no ``DISTINCT`` — at 1M customers, 20 segments: ~0.4 CPU-s of
    hashing saved. Anything else (joins, ``UNNEST``, expressions, ``GROUP BY``…) keeps it."""
    if not isinstance(query, exp.Select) or any(
        query.args.get(k)
        for k in ("with_", "with", "joins", "laterals", "group", "kind", "exclude")
    ):
        return False
    source = query.args.get("from_") or query.args.get("from")
    table = source.this if isinstance(source, exp.From) else None
    if not (
        isinstance(table, exp.Table)
        and isinstance(table.this, exp.Identifier)
        and table.name.lower() in ONE_ROW_PER_CUSTOMER
        and not table.args.get("db")
        and not table.args.get("catalog")
        and not any(table.args.get(k) for k in ("joins", "laterals", "pivots", "when"))
        and not (table.args.get("alias") and table.args["alias"].args.get("columns"))
    ):
        return False
    found = False
    for projection in query.expressions:
        value = projection.this if isinstance(projection, exp.Alias) else projection
        if isinstance(value, exp.Star) or (
            isinstance(value, exp.Column) and isinstance(value.this, exp.Star)
        ):
            star = value if isinstance(value, exp.Star) else value.this
            if any(star.args.values()):  # * EXCLUDE / REPLACE / RENAME
                return False
            found = found or not isinstance(projection, exp.Alias)
        elif isinstance(value, exp.Column):
            if projection.alias_or_name.lower() == "customer_id":
                if value.name.lower() != "customer_id":
                    return False
                found = True
        elif isinstance(value, exp.Literal | exp.Null | exp.Boolean):
            if projection.alias_or_name.lower() == "customer_id":
                return False
        else:
            return False
    return found


@dataclass(frozen=True)
class _Header:
    values: dict[str, tuple[str, int]]
    notes: list[str]


def _read_header(text: str, file: str) -> _Header:
    values: dict[str, tuple[str, int]] = {}
    notes: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        match = _HEADER.match(line)
        if match is None:
            notes.append(line.lstrip("-").strip())
            continue
        key, value = match.group(1), match.group(2)
        if key not in HEADER_KEYS:
            raise DefinitionError(
                f"unknown header key {key!r}",
                file=file,
                line=lineno,
                key=key,
                hint=f"a segment header holds {', '.join(HEADER_KEYS)}; write other comments "
                "without `word:` at the start",
            )
        if key in values:
            raise DefinitionError(f"{key!r} is given twice", file=file, line=lineno, key=key)
        values[key] = (value, lineno)
    return _Header(values, notes)


def parse_segment(
    text: str,
    *,
    file: Path,
    default_dialect: str,
    shown: str | None = None,
    relations: tuple[Relation, ...] = (),
) -> Segment:
    """Parse and check one segment file's text. ``shown`` is the file name used in errors;
    ``relations`` the team's own tables the query may read by their local names
    (:mod:`~personify.audiences.relations`)."""
    where = shown or str(file)
    header = _read_header(text, where)
    name, name_line = header.values.get("name", (file.stem, 1))
    if not _NAME.match(name):
        raise DefinitionError(
            f"{name!r} is not a valid segment name: use letters, digits, '_' and '-'",
            file=where,
            line=name_line,
            key="name",
        )
    dialect, dialect_line = header.values.get("dialect", (default_dialect, 1))
    try:
        sqlglot.Dialect.get_or_raise(dialect.lower())
    except ValueError:
        raise DefinitionError(
            f"unknown SQL dialect {dialect!r}",
            file=where,
            line=dialect_line,
            key="dialect",
            hint="e.g. duckdb, mysql, postgres, bigquery, snowflake",
        ) from None
    refresh = REAL_TIME
    if "refresh" in header.values:
        value, line = header.values["refresh"]
        try:
            refresh = parse_refresh(value)
        except ValueError as e:
            raise DefinitionError(str(e), file=where, line=line, key="refresh") from None
    description = header.values.get("description", (" ".join(header.notes), 0))[0]
    query = _check(text, dialect.lower(), where, relations)
    qualify(query, relations)
    reads = used(query, relations)
    return Segment(name, description, dialect.lower(), refresh, file, text, query, where, reads)


def _check(text: str, dialect: str, file: str, relations: tuple[Relation, ...] = ()) -> exp.Query:
    allowed = SEGMENT_RELATIONS | {r.name.lower() for r in relations}
    try:
        query = check_select(text, dialect=dialect, allowed=allowed, what="segment")
        pin_time(query.copy())  # CURRENT_DATE('Nowhere/X') is refused here, not at a refresh
    except UnsafeQueryError as e:
        message = e.message.split(" (line ")[0] if e.line is not None else e.message
        hint = e.hint
        if hint and "--dialect" in hint:  # a file has no --dialect: its header names it
            hint = (
                f"check the syntax, or name the dialect it is written in (now {dialect}) in "
                "its header, e.g. `-- dialect: mysql`"
            )
        raise DefinitionError(message, file=file, line=e.line, col=e.col, hint=hint) from None
    _require_customer_id(query, file)
    return query


def _require_customer_id(query: exp.Query, file: str) -> None:
    select: exp.Expr = query
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    names = set()
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (
            isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star)
        ):
            return
        names.add(projection.alias_or_name.lower())
    if "customer_id" not in names:
        raise DefinitionError(
            "a segment must return a customer_id column",
            file=file,
            hint="select customer_id (e.g. SELECT customer_id, email FROM customer_data WHERE …)",
        )


def load_segments(
    folder: Path,
    *,
    default_dialect: str,
    root: Path | None = None,
    relations: tuple[Relation, ...] = (),
) -> list[Segment]:
    """Every ``*.sql`` file in ``folder`` (sorted by name), parsed and checked (``relations``:
    see :func:`parse_segment`).

    A missing folder holds no segments. Two files naming the same segment is an error."""
    if not folder.is_dir():
        return []
    segments: list[Segment] = []
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob("*.sql")):
        shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise DefinitionError(f"not UTF-8 text ({e.reason})", file=shown) from None
        segment = parse_segment(
            text, file=path, default_dialect=default_dialect, shown=shown, relations=relations
        )
        if segment.name in seen:
            raise DefinitionError(
                f"segment {segment.name!r} is also defined in {seen[segment.name].name}",
                file=shown,
                key="name",
            )
        seen[segment.name] = path
        segments.append(segment)
    return sorted(segments, key=lambda s: s.name)
