"""The warehouse interface every backend implements, its capabilities, and SQL rendering.

Internal SQL is authored once, in DuckDB's dialect with ``?`` placeholders and no user values in
the text; :meth:`Warehouse.render` transpiles it (with sqlglot, cached) to the backend's dialect.
User SQL (segments, ``personify sql``) goes through :mod:`personify.warehouse.safety` first.
Bulk data moves as Arrow tables (:meth:`Warehouse.load`), never row by row.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Final, Literal

import numpy as np
import pyarrow as pa
import sqlglot
from sqlglot import exp

from personify import clock
from personify.warehouse.schema import Table

AUTHORING_DIALECT = "duckdb"
"""The dialect Personify's own SQL is written in; backends transpile from it."""

UNNEST = "unnest(CAST(? AS VARCHAR[]))"
"""One array parameter of strings unnested into rows (pass a ``list`` as the parameter): runs on
DuckDB and PostgreSQL alike, so one statement serves any number of keys."""

OnConflict = Literal["error", "ignore", "update"]


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do, as data (instead of ``isinstance`` checks)."""

    dialect: str
    """sqlglot dialect name of the engine."""
    type_map: dict[str, str] = field(default_factory=dict)
    """Neutral column type → engine type, where they differ."""
    single_process: bool = False
    """Only one OS process may open the warehouse at a time (DuckDB files). Other commands on the
    project then go through the running ``personify serve``."""
    secondary_indexes: bool = True
    """Create the schema's secondary indexes (DuckDB relies on zone maps instead)."""
    advisory_lock: bool = False
    """Processes can serialize on ``pg_advisory_xact_lock`` (migrations)."""
    concurrent_indexes: bool = False
    """``CREATE INDEX CONCURRENTLY`` (outside a transaction; an interrupted build leaves an
    ``INVALID`` index): migrations index big tables without blocking their writers."""
    cheap_keys: bool = True
    """Enforcing a primary key costs little on bulk writes. When false (DuckDB's ART index makes
    inserting millions of rows several times dearer), tables whose writer keeps the key unique
    itself (``Table.key_by_construction``) are created without the constraint."""
    bulky_text: str = ""
    """What follows the type of a ``Column.bulky`` column in ``CREATE TABLE`` (DuckDB: zstd
    instead of dictionary + FSST: appending 1 M demo web events cost 31 % less CPU, the file
    46 % smaller, and reading the context back no dearer; benchmarks/RESULTS.md, session 12)."""
    rewritten_text: str = ""
    """What follows the type of a ``Column.rewritten`` column in ``CREATE TABLE`` (DuckDB:
    uncompressed. Setting 10M events' customer ids then committing cost 0.55 CPU-s for the
    commit instead of 3.1–3.3 — the checkpoint analysed and compressed the whole column again —
    and events of one customer are found 4× faster; +17 bytes per event on disk;
    benchmarks/RESULTS.md, session 14)."""


class Warehouse(abc.ABC):
    """One connection to one warehouse. Thread-safe: each thread gets its own cursor."""

    scheme: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, url: str) -> None:
        self.url = url

    # -- SQL rendering (the only place sqlglot turns expressions into engine SQL)
    @property
    def dialect(self) -> str:
        return self.capabilities.dialect

    def render(self, sql: str | exp.Expr, *, read: str = AUTHORING_DIALECT) -> str:
        """Engine SQL for ``sql`` (authored in ``read``'s dialect, or an expression)."""
        if isinstance(sql, exp.Expr):
            return self._generate(sql)
        if read == self.dialect:
            return sql
        return _transpile(type(self), sql, read)

    @classmethod
    def _generate(cls, expression: exp.Expr) -> str:
        """Engine SQL for one expression (backends may post-process, e.g. placeholders)."""
        return expression.sql(dialect=cls.capabilities.dialect)

    def column_type(self, neutral: str) -> str:
        return self.capabilities.type_map.get(neutral, neutral)

    # -- statements
    @abc.abstractmethod
    def execute(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> int:
        """Run one statement; returns the affected row count when the engine reports it."""

    def execute_limited(
        self, sql: str | exp.Expr, params: Sequence[Any] = (), *, timeout_s: float
    ) -> int:
        """Like :meth:`execute`, but stop the statement after ``timeout_s`` seconds and raise
        :class:`~personify.errors.UnsafeQueryError` (for statements that wrap user SQL, e.g. a
        segment materialized into a temporary table). Backends that cannot stop a statement run
        it without a limit."""
        return self.execute(sql, params)

    @abc.abstractmethod
    def fetch(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""

    @abc.abstractmethod
    def fetch_arrow(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> pa.Table:
        """Run a query and return an Arrow table."""

    def scalar(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> Any:
        rows = self.fetch(sql, params)
        return rows[0][0] if rows else None

    @abc.abstractmethod
    def load(
        self,
        table: Table,
        data: pa.Table,
        *,
        on_conflict: OnConflict = "error",
        update_columns: Sequence[str] | None = None,
        valid_json: bool = False,
        key_hashes: np.ndarray[Any, np.dtype[np.uint64]] | None = None,
        only_newer: bool = False,
    ) -> int:
        """Bulk-insert ``data`` (columns named as ``table``'s; a subset is fine) through Arrow.

        ``on_conflict`` on the primary key: ``error`` raises, ``ignore`` keeps the stored row,
        ``update`` overwrites ``update_columns`` (default: every loaded non-key column).
        ``valid_json``: the caller vouches that the text of ``table``'s JSON columns is valid
        JSON (validation checked it, or an encoder wrote it), so an engine that would parse it
        again to store it may skip that. ``key_hashes``: per row, DuckDB's ``hash()`` of its
        (one-column) key, no two equal — the file importer's validation computed them — so an
        engine that keeps the key itself by those hashes need not compute and compare them
        again; others ignore them. ``only_newer`` (``update``, a table with ``updated_at``): a
        stored row whose ``updated_at`` is later than the incoming one's is kept — decided by
        the statement itself, so a writer in another process committing in between cannot be
        overwritten by an older version (engines that serialize their writers, DuckDB's keyless
        tables, leave that to the caller's check before). Returns the number of rows inserted or
        updated.
        """

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction on this thread's cursor; nested use joins the outer one."""

    def hold(self, *tables: str) -> None:
        """Inside a transaction, before its first statement: serialize with every other writer
        of ``tables`` until it ends. Engines that keep keys themselves (DuckDB, tables keyed by
        construction) need it before writing such tables with plain SQL; others rely on their
        constraints (a no-op)."""
        return None

    def limit_memory(self, limit: int | None = None) -> None:
        """This process runs long (``personify serve``): keep the engine's own caches under
        ``limit`` bytes (default: the backend's choice for a server) where the engine lives in
        the process (DuckDB); a no-op elsewhere."""
        return None

    def limit_threads(self, threads: int | None = None) -> None:
        """This process serves requests (``personify serve``): statements of an in-process
        engine (DuckDB) use at most ``threads`` threads (default: the backend's choice for a
        server) outside :meth:`all_threads` blocks; a no-op elsewhere."""
        return None

    def all_threads(self) -> contextlib.AbstractContextManager[None]:
        """A block whose statements may use every core again (a command forwarded to the
        server, a scheduled rebuild), whatever :meth:`limit_threads` said."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def relations(self) -> set[str]:
        """Names of the tables and views that exist."""

    @abc.abstractmethod
    def query_user(
        self, sql: str, *, timeout_s: float, max_rows: int
    ) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        """Run a user SELECT already checked by :mod:`~personify.warehouse.safety`, read-only,
        with a timeout; returns ``(columns, rows, truncated)``."""

    @abc.abstractmethod
    def release_thread(self) -> None:
        """Close the calling thread's own connection, if it opened one: a worker thread that
        is about to end calls it, so a long-running process doesn't keep one per thread it
        ever ran (the next statement on this thread opens a new one)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers shared by backends
    def _conflict_sql(
        self,
        table: Table,
        columns: Sequence[str],
        on_conflict: OnConflict,
        update_columns: Sequence[str] | None,
        only_newer: bool = False,
        stamped: bool = False,
    ) -> str:
        """``stamped``: the insert carries the table's :attr:`~Table.stamped` column — a row
        updated because it changed takes the new stamp (:func:`restamped`)."""
        if on_conflict == "error" or not table.primary_key:
            return ""
        key = ", ".join(_q(c) for c in table.primary_key)
        if on_conflict == "ignore":
            return f" ON CONFLICT ({key}) DO NOTHING"
        cols = [
            c
            for c in (update_columns or columns)
            if c not in table.primary_key and c != table.stamped
        ]
        if not cols:
            return f" ON CONFLICT ({key}) DO NOTHING"
        changed = changed_sql(table, cols, _q(table.name), "EXCLUDED")
        if changed is None:
            return f" ON CONFLICT ({key}) DO NOTHING"
        sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in restamped(table, cols, stamped))
        if only_newer and "updated_at" in columns and "updated_at" in table.column_names:
            stored = f"{_q(table.name)}.updated_at"
            changed += (
                f" AND (EXCLUDED.updated_at IS NULL OR {stored} IS NULL "
                f"OR EXCLUDED.updated_at >= {stored})"
            )
        return f" ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE {changed}"


def stamp(table: Table, columns: Sequence[str]) -> datetime | None:
    """The instant a load of ``columns`` into ``table`` sets its :attr:`~Table.stamped` column
    to — the real clock (:func:`personify.clock.wall`: a ``--now`` says what time it is for the
    data, not when a row was stored) — or ``None``: the table has none, or the data carries it.
    One constant per load (a column of one value, or a parameter): nothing per row in Python."""
    if table.stamped is None or table.stamped in columns:
        return None
    return clock.wall()


def unstamped(table: Table, columns: Sequence[str]) -> list[str]:
    """``columns`` an update of a stamped load compares: all but the stamp (a row arriving
    again unchanged keeps when it was stored)."""
    return [c for c in columns if c != table.stamped]


def restamped(table: Table, columns: Sequence[str], stamped: bool) -> list[str]:
    """``columns`` an update of a stamped load writes: the compared ones and — when the load
    carries the stamp (``stamped``) — the stamp too. A row whose data changed (a file imported
    again with ``on_conflict: update``, a reconciliation's repair) is *stored again*: event
    forwarding reads by the stamp, so the changed event reaches its destinations once more. An
    update that changes nothing updates no row (:func:`changed_sql`): the stamp stays."""
    out = unstamped(table, columns)
    return [*out, table.stamped] if stamped and table.stamped is not None else out


UNCOMPARED: Final = frozenset({"received_at"})
"""Columns an update writes but does not compare: when a row arrives again, the instant it was
received is not a change of its data. (``updated_at`` is compared: on ``consents`` it is when
consent was given, and a source's own ``updated_at`` of an order or ticket dates its values.)"""


def changed_sql(table: Table, columns: Sequence[str], stored: str, incoming: str) -> str | None:
    """SQL: the ``incoming`` row differs from the ``stored`` one in ``columns`` (but
    :data:`UNCOMPARED`): an upsert updates — and counts as loaded — only rows that changed; a
    source sending the same record again stores nothing (``rows_duplicate``). ``None`` when no
    column is compared. JSON is compared as text."""
    terms = []
    for c in columns:
        if c in UNCOMPARED:
            continue
        json = c in table.column_names and table.column(c).type == "JSON"
        old, new = f"{stored}.{_q(c)}", f"{incoming}.{_q(c)}"
        if json:
            old, new = f"CAST({old} AS TEXT)", f"CAST({new} AS TEXT)"
        terms.append(f"{old} IS DISTINCT FROM {new}")
    return "(" + " OR ".join(terms) + ")" if terms else None


def _q(name: str) -> str:
    """Quote an identifier (identifiers come from the schema, never from users)."""
    return '"' + name.replace('"', '""') + '"'


quote = _q


@functools.lru_cache(maxsize=4096)
def _transpile(backend: type[Warehouse], sql: str, read: str) -> str:
    statements = sqlglot.parse(sql, read=read)
    return ";\n".join(backend._generate(s) for s in statements if s is not None)


# -- registry by URL scheme
_REGISTRY: dict[str, str] = {
    "duckdb": "personify.warehouse.duckdb.backend:DuckDBWarehouse",
    "postgresql": "personify.warehouse.postgres.backend:PostgresWarehouse",
    "postgres": "personify.warehouse.postgres.backend:PostgresWarehouse",
}


def backend_for(url: str) -> type[Warehouse]:
    """The backend class registered for ``url``'s scheme (its driver imported lazily)."""
    import importlib

    scheme = url.split(":", 1)[0].lower()
    try:
        target = _REGISTRY[scheme]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unsupported warehouse URL scheme {scheme!r} (known: {known})") from None
    module, _, name = target.partition(":")
    cls: type[Warehouse] = getattr(importlib.import_module(module), name)
    return cls


def iter_batches(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, rows):
        yield table.slice(offset, rows)
