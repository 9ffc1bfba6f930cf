"""PostgreSQL: many processes, one database; the schema named in the URL (``?schema=``).

One connection per thread (autocommit; explicit transactions), bulk loads through ``COPY … FROM
STDIN (FORMAT csv)`` fed from Arrow, upserts with ``ON CONFLICT``. Placeholders are rendered as
``%s`` and literal ``%`` escaped, so SQL authored for DuckDB runs unchanged.

After bulk loads the loaded tables are ``ANALYZE``d (:data:`ANALYZE_MIN_ROWS`): autovacuum gets
to a freshly loaded table only later, and until then the planner believes the table is as small
as it was — a join over 1 M customers freshly loaded took 146 s with the stale statistics and 2 s
after ``ANALYZE``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlglot import exp

from personify.errors import (
    PersonifyError,
    QueryTimeout,
    ServiceUnavailable,
    WarehouseError,
)
from personify.warehouse.arithmetic import EXACT
from personify.warehouse.base import Capabilities, OnConflict, Warehouse, quote, stamp
from personify.warehouse.division import catalog_typed, needs_catalog
from personify.warehouse.schema import Table

log = logging.getLogger(__name__)

_PH = "__personify_placeholder__"
_JSON_FUNCS = re.compile(r"\bJSON_EXTRACT_PATH(_TEXT)?\(")
_JSON_ARRAY_LENGTH = re.compile(r"\bJSON_ARRAY_LENGTH\(")
_names = itertools.count()
ANALYZE_MIN_ROWS: Final = 10_000
"""Rows a table must have received through :meth:`PostgresWarehouse.load` (committed, since its
last ``ANALYZE`` by this process) before it is analyzed again — and at least
:data:`ANALYZE_FRACTION` of the rows it had then, so a table fed in small steps (the tracking
API's group commits) is analyzed a few times as it grows tenfold, not after every step."""
ANALYZE_FRACTION: Final = 0.1


def _json_object(node: exp.Expr) -> exp.Expr:
    """PostgreSQL < 16 has no ``JSON_OBJECT(k: v)``: ``JSONB_BUILD_OBJECT(k, v, …)``."""
    pairs = [part for kv in node.expressions for part in (kv.this, kv.expression)]
    return exp.Anonymous(this="JSONB_BUILD_OBJECT", expressions=pairs)


def _ends_with(node: exp.Expr) -> exp.Expr:
    """PostgreSQL has no ``ENDS_WITH``: ``RIGHT(s, LENGTH(suffix)) = suffix``."""
    suffix = node.expression
    right = exp.func("RIGHT", node.this, exp.func("LENGTH", suffix.copy()))
    return exp.paren(exp.EQ(this=right, expression=suffix.copy()), copy=False)


def _round(node: exp.Expr) -> exp.Expr:
    """PostgreSQL rounds a DOUBLE PRECISION to a number of decimals only as NUMERIC (there is
    no ``round(double precision, integer)``): ``ROUND(engagement_score, 1)``, which DuckDB
    runs, is ``CAST(ROUND(CAST(x AS DECIMAL), n) AS DOUBLE PRECISION)``."""
    inner = node.this
    if (
        node.args.get("decimals") is None
        or node.meta.get(EXACT)  # (a DECIMAL's, left as written: a NUMERIC)
        or (isinstance(inner, exp.Cast) and inner.to.this == exp.DataType.Type.DECIMAL)
    ):
        return node
    decimal = exp.cast(node.this.copy(), exp.DataType.build("DECIMAL"))
    rounded = exp.Round(this=decimal, decimals=node.args["decimals"].copy())
    return exp.cast(rounded, exp.DataType.build("DOUBLE"))


_REWRITES: dict[type[exp.Expr], Callable[[exp.Expr], exp.Expr]] = {
    exp.JSONObject: _json_object,
    exp.EndsWith: _ends_with,
    exp.Round: _round,
}
"""Expressions sqlglot renders in a way this PostgreSQL cannot run, and their rewrites."""


def split_url(url: str) -> tuple[str, str]:
    """``(conninfo without ?schema=, schema)``; the schema defaults to ``public``."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", "public")
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), "")), schema


_COLUMN_TYPES: Final = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE lower(table_schema) = %s AND lower(table_name) = %s ORDER BY ordinal_position"
)
"""The column types of one table (user SQL's divisions over a table of the team's own)."""


class PostgresWarehouse(Warehouse):
    scheme = "postgresql"
    capabilities = Capabilities(
        dialect="postgres",
        type_map={"JSON": "JSONB", "DOUBLE": "DOUBLE PRECISION"},
        advisory_lock=True,
        concurrent_indexes=True,
    )

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        super().__init__(url)
        self.conninfo, self.schema = split_url(url)
        self.connect_timeout = connect_timeout
        self._local = threading.local()
        self._all: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._analyzed: dict[str, float] = {}
        """Table → its row estimate after this process last analyzed it."""
        self.analyzes = 0
        """``ANALYZE`` statements run after loads (for tests and metrics)."""
        conn = self._conn()
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}")

    @classmethod
    def _generate(cls, expression: exp.Expr) -> str:
        def mark(node: exp.Expr) -> exp.Expr:
            rewrite = _REWRITES.get(type(node))
            if rewrite is not None:
                return rewrite(node)
            return exp.var(_PH) if isinstance(node, exp.Placeholder) else node

        sql = expression.transform(mark).sql(dialect="postgres")
        # Our JSON columns are JSONB: use the jsonb_ spellings of the path functions.
        sql = _JSON_FUNCS.sub(r"JSONB_EXTRACT_PATH\1(", sql)
        sql = _JSON_ARRAY_LENGTH.sub("JSONB_ARRAY_LENGTH(", sql)
        return sql.replace("%", "%%").replace(_PH, "%s")

    def render(self, sql: str | exp.Expr, *, read: str = "duckdb") -> str:
        if isinstance(sql, exp.Expr) and needs_catalog(sql):
            # (x / 2.0 of a relation's NUMERIC divides as DOUBLEs, as on DuckDB: see division)
            sql = catalog_typed(sql, self._column_types, default_db=self.schema, engine="postgres")
        if isinstance(sql, str) and read == "postgres":
            return sql.replace("%", "%%")
        return super().render(sql, read=read)

    def _column_types(
        self, tables: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """The column types of the tables ``(schema, table)`` the database has."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table in tables:
            rows = self._conn().execute(_COLUMN_TYPES, [schema, table]).fetchall()
            if rows:
                found[(schema, table)] = {name: kind for name, kind in rows}
        return found

    # -- connections
    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            if self._closed:
                raise WarehouseError("the warehouse connection is closed")
            try:
                conn = psycopg.connect(
                    self.conninfo, autocommit=True, connect_timeout=int(self.connect_timeout)
                )
            except psycopg.OperationalError as e:
                raise ServiceUnavailable(
                    f"cannot connect to PostgreSQL: {str(e).strip().splitlines()[0]}",
                    hint="is the server running, and does the URL in personify.yml name it?",
                ) from None
            conn.execute(f"SET search_path TO {quote(self.schema)}, public")
            conn.execute("SET TIME ZONE 'UTC'")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn()
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        committed = False
        try:
            with conn.transaction():
                yield
            committed = True
        except psycopg.Error as e:  # BEGIN or COMMIT on a connection that dropped, too
            raise _translate(e) from e
        finally:
            self._local.depth = depth
            if depth == 0:
                self._after_commit(committed)

    # -- statistics after bulk loads
    def _loaded(self, table: str, rows: int) -> None:
        """Count ``rows`` loaded into ``table``; analyze now unless a transaction is open."""
        pending: dict[str, int] = self._local.__dict__.setdefault("loaded", {})
        pending[table] = pending.get(table, 0) + max(rows, 0)
        if not getattr(self._local, "depth", 0):
            self._after_commit(True)

    def _after_commit(self, committed: bool) -> None:
        pending: dict[str, int] = self._local.__dict__.pop("loaded", {})
        if not committed:
            return
        carried: dict[str, int] = self._local.__dict__.setdefault("carried", {})
        for table, rows in pending.items():
            total = carried.pop(table, 0) + rows
            with self._lock:
                before = self._analyzed.get(table, 0.0)
            if total >= max(ANALYZE_MIN_ROWS, before * ANALYZE_FRACTION):
                self._analyze(table)
            elif total:
                carried[table] = total  # counted towards the next time

    def _analyze(self, table: str) -> None:
        """``ANALYZE`` one table (best effort: fresh statistics only help the planner)."""
        conn = self._conn()
        try:
            conn.execute(f"ANALYZE {quote(table)}")
            row = conn.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [f"{quote(self.schema)}.{quote(table)}"],
            ).fetchone()
        except psycopg.Error as e:
            log.warning("ANALYZE %s after a bulk load failed (%s)", table, type(e).__name__)
            return
        with self._lock:
            self._analyzed[table] = float(row[0]) if row and row[0] is not None else 0.0
            self.analyzes += 1

    def _run(self, sql: str | exp.Expr, params: Sequence[Any]) -> psycopg.Cursor[Any]:
        try:
            # Always a list: rendered SQL has "%" escaped, and only a parameter list unescapes it.
            return self._conn().execute(self.render(sql), list(params))
        except psycopg.Error as e:
            raise _translate(e) from e

    def execute(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> int:
        return self._run(sql, params).rowcount

    def execute_limited(
        self, sql: str | exp.Expr, params: Sequence[Any] = (), *, timeout_s: float
    ) -> int:
        with self.transaction():
            conn = self._conn()
            try:
                previous = conn.execute("SHOW statement_timeout").fetchone()
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [str(max(1, int(timeout_s * 1000)))],
                )
                count = conn.execute(self.render(sql), list(params)).rowcount
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [previous[0] if previous else "0"],
                )
            except psycopg.errors.QueryCanceled:
                raise QueryTimeout(
                    f"the statement ran longer than {timeout_s:g} s and was stopped",
                    hint="make the query cheaper, or raise the timeout",
                ) from None
            except psycopg.Error as e:
                raise _translate(e) from e
            return count

    def fetch(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._run(sql, params).fetchall()

    def fetch_arrow(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> pa.Table:
        cur = self._run(sql, params)
        names = [d.name for d in cur.description or []]
        rows = cur.fetchall()
        return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})

    def load(
        self,
        table: Table,
        data: pa.Table,
        *,
        on_conflict: OnConflict = "error",
        update_columns: Sequence[str] | None = None,
        valid_json: bool = False,  # (COPY parses JSON text whatever: nothing to skip)
        key_hashes: np.ndarray[Any, np.dtype[np.uint64]] | None = None,  # (keys kept by PG)
        only_newer: bool = False,
    ) -> int:
        if data.num_rows == 0:
            return 0
        cols = [c for c in data.column_names if c in table.column_names]
        data = data.select(cols)
        stage = f"__personify_stage_{next(_names)}"
        col_sql = ", ".join(quote(c) for c in cols)
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(
                    f"CREATE TEMP TABLE {stage} ON COMMIT DROP AS "
                    f"SELECT {col_sql} FROM {quote(table.name)} WITH NO DATA"
                )
                with cur.copy(f"COPY {stage} ({col_sql}) FROM STDIN (FORMAT csv)") as copy:
                    options = pacsv.WriteOptions(include_header=False, batch_size=8192)
                    for batch in data.to_batches(max_chunksize=50_000):
                        sink = pa.BufferOutputStream()
                        pacsv.write_csv(pa.Table.from_batches([batch]), sink, options)
                        copy.write(sink.getvalue().to_pybytes())
                # the stamp (Table.stamped) a parameter of the statement: not a column in the CSV
                at = stamp(table, cols)
                into, values, params = col_sql, col_sql, list[Any]()
                if at is not None and table.stamped is not None:
                    into, values = f"{col_sql}, {quote(table.stamped)}", f"{col_sql}, %s"
                    params = [at]
                cur.execute(
                    f"INSERT INTO {quote(table.name)} ({into}) SELECT {values} FROM {stage}"
                    + self._conflict_sql(
                        table, cols, on_conflict, update_columns, only_newer, stamped=bool(params)
                    ),
                    params,
                )
                count = cur.rowcount
        except psycopg.Error as e:
            raise _translate(e) from e
        self._loaded(table.name, count)
        return count

    def relations(self) -> set[str]:
        query = (
            exp.select("table_name")
            .from_("information_schema.tables")
            .where(exp.column("table_schema").eq(exp.Literal.string(self.schema)))
        )
        rows = self.fetch(query)
        return {r[0] for r in rows}

    def query_user(
        self, sql: str, *, timeout_s: float, max_rows: int
    ) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}")
                cur.execute(sql, [])  # rendered SQL has % escaped: empty params unescape it
                columns = [d.name for d in cur.description or []]
                rows = cur.fetchmany(max_rows + 1)
        except psycopg.errors.QueryCanceled:
            raise QueryTimeout(
                f"the query ran longer than {timeout_s:g} s and was stopped",
                hint="add a WHERE clause or a LIMIT",
            ) from None
        except psycopg.Error as e:
            raise _translate(e) from e
        return columns, rows[:max_rows], len(rows) > max_rows

    def drop_schema(self) -> None:
        """Drop this warehouse's schema and everything in it (tests use one schema per run)."""
        self._conn().execute(f"DROP SCHEMA IF EXISTS {quote(self.schema)} CASCADE")

    def release_thread(self) -> None:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not getattr(self._local, "depth", 0):
            self._local.conn = None
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for conn in self._all:
                with contextlib.suppress(Exception):
                    conn.close()
            self._all.clear()


def _translate(e: psycopg.Error) -> PersonifyError:
    if isinstance(e, psycopg.OperationalError):
        return ServiceUnavailable(f"PostgreSQL: {str(e).strip().splitlines()[0]}")
    return WarehouseError(f"PostgreSQL: {str(e).strip().splitlines()[0]}")
