"""Reconcile a PostgreSQL table by pulling ``(key, row hash)`` only, hashed by PostgreSQL itself.

Moving a million whole rows out of PostgreSQL costs seconds; a key and one 64-bit hash per row
is a fraction of that. PostgreSQL hashes each row with its own hash functions (the XOR of its
columns' ``hash…extended`` values: :mod:`personify.quality.pghash`, ~0.2 µs a column), and the
warehouse reproduces the same hash bit for bit from the stored rows (Arrow, numpy) *while*
PostgreSQL computes its side. The two ``(key, hash)`` sets are joined in the warehouse engine;
only the keys whose hashes differ are fetched whole and compared field by field by the ordinary
comparison (:func:`personify.quality.compare.compare`) — so a field-level report names the
columns, and a value the two engines hash differently although it is equal (a type hashed as
its text, spelled differently) is settled, never reported.

A changed field always changes its column's hash (bar a 2⁻⁶⁴ collision), hence the row's:
``tests/quality/test_rowhash_exact.py`` checks it with Hypothesis against a real PostgreSQL.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from personify.quality.compare import (
    Comparison,
    Discrepancy,
    _names,
    _stored_rows,
    compare,
    key_columns,
)
from personify.quality.pghash import SESSION, row_hash_arrow, row_hash_pg_sql
from personify.warehouse import Warehouse
from personify.warehouse.base import quote
from personify.warehouse.schema import Column, Table

HASH_COLUMN: Final = "_hash"


ARROW_TYPES: Final = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "DOUBLE": pa.float64(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "TIMESTAMP": pa.timestamp("us"),
}


PG_TYPES: Final = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "DOUBLE": "double precision",
    "TIMESTAMPTZ": "timestamptz",
    "TIMESTAMP": "timestamp",
    "JSON": "jsonb",
}


def arrow_type(column: Column) -> pa.DataType:
    return ARROW_TYPES.get(column.type, pa.string())


# ---------------------------------------------------------------------------------- PostgreSQL
@dataclass
class PullStats:
    """What a pull moved out of the source."""

    rows: int = 0
    bytes: int = 0
    """Size of what was pulled, as Arrow in memory."""
    seconds: float = 0.0
    queries: int = 0


@dataclass
class PostgresRelation:
    """A relation in a PostgreSQL database holding a source's rows under the stored table's
    column names (``sql``: a table name or a parenthesised ``SELECT``)."""

    conninfo: str
    sql: str
    driver: Literal["auto", "adbc", "psycopg"] = "auto"
    """How rows come out: ``adbc`` (binary ``COPY`` decoded to Arrow in C), ``psycopg`` (``COPY
    … TO STDOUT`` as CSV, parsed by Arrow); ``auto``: ADBC when installed."""
    stats: PullStats = field(default_factory=PullStats)

    def _count(self, table: pa.Table, started: float) -> None:
        self.stats.bytes += table.nbytes
        self.stats.queries += 1
        self.stats.rows += table.num_rows
        self.stats.seconds += time.perf_counter() - started

    def _pull(self, query: str, names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
        """The rows of ``query`` as Arrow: through ADBC (PostgreSQL's binary ``COPY`` decoded
        to Arrow in C) when ``adbc-driver-postgresql`` is installed, else ``COPY … TO STDOUT``
        as CSV parsed by Arrow. The session's ``TimeZone`` is UTC (:data:`~personify.quality.
        pghash.SESSION`)."""
        if self.driver == "psycopg":
            return self._copy_csv(query, names, types)
        try:
            import adbc_driver_postgresql.dbapi as adbc
        except ImportError:
            if self.driver == "adbc":
                raise
            return self._copy_csv(query, names, types)
        started = time.perf_counter()
        with adbc.connect(self.conninfo) as conn, conn.cursor() as cur:
            cur.execute(SESSION)
            cur.execute(query)
            got = cur.fetch_arrow_table()
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
        table = pa.Table.from_arrays(list(got.columns), names=list(names)).cast(schema)
        self._count(table, started)
        return table

    def _copy_csv(self, query: str, names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
        import psycopg

        started = time.perf_counter()
        buf = io.BytesIO()
        with psycopg.connect(self.conninfo) as pg:
            pg.execute(SESSION)
            with pg.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
                for chunk in copy:
                    buf.write(chunk)
        data = buf.getvalue()
        if not data:
            table = pa.table({n: pa.array([], t) for n, t in zip(names, types, strict=True)})
        else:
            table = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(column_names=list(names)),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict(zip(names, types, strict=True)),
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
        self._count(table, started)
        return table

    def _typed(self, columns: Sequence[Column]) -> str:
        """The relation with ``columns`` cast to the stored table's types (so that a
        ``numeric`` total is hashed as the stored ``DOUBLE`` is)."""
        cols = ", ".join(
            f"CAST(r.{quote(c.name)} AS {PG_TYPES.get(c.type, 'text')}) AS {quote(c.name)}"
            for c in columns
        )
        return f"(SELECT {cols} FROM {self.sql} AS r)"

    def key_hashes(self, keys: Sequence[Column], compared: Sequence[Column]) -> pa.Table:
        """``(key…, _hash)`` of every row, hashed in PostgreSQL (:func:`~personify.quality.
        pghash.row_hash_pg_sql`)."""
        cols = ", ".join(f"r.{quote(k.name)}" for k in keys)
        row_hash = row_hash_pg_sql(compared, "r")
        names = [*(k.name for k in keys), HASH_COLUMN]
        types = [*(arrow_type(k) for k in keys), pa.int64()]
        query = f"SELECT {cols}, {row_hash} FROM {self._typed([*keys, *compared])} AS r"
        return self._pull(query, names, types)

    def all_rows(self, columns: Sequence[Column]) -> pa.Table:
        """Every row, whole (``columns``)."""
        query = f"SELECT * FROM {self._typed(columns)} AS r"
        return self._pull(query, [c.name for c in columns], [arrow_type(c) for c in columns])

    def rows(self, keys: Sequence[Column], columns: Sequence[Column], wanted: pa.Table) -> pa.Table:
        """The whole rows (``columns``) of the keys in ``wanted`` (a table of the key columns)."""
        import psycopg

        started = time.perf_counter()
        names = [c.name for c in columns]
        cols = ", ".join(f"r.{quote(n)}" for n in names)
        relation = self._typed(columns)
        values = [wanted.column(k.name).to_pylist() for k in keys]
        if len(keys) == 1:
            where = f"r.{quote(keys[0].name)} = ANY(%s)"
        else:
            tuple_sql = ", ".join(f"r.{quote(k.name)}" for k in keys)
            unnest = ", ".join("%s" for _ in keys)
            where = f"({tuple_sql}) IN (SELECT * FROM unnest({unnest}))"
        with psycopg.connect(self.conninfo) as pg:
            got = pg.execute(f"SELECT {cols} FROM {relation} AS r WHERE {where}", values).fetchall()
        self.stats.queries += 1
        self.stats.rows += len(got)
        self.stats.seconds += time.perf_counter() - started
        return pa.table(
            {
                n: pa.array([r[i] for r in got], arrow_type(c))
                for i, (n, c) in enumerate(zip(names, columns, strict=True))
            }
        )


# --------------------------------------------------------------------------------- comparison
@dataclass
class RemoteComparison(Comparison):
    """A :class:`Comparison` made by hashes, with what it took."""

    candidates: int = 0
    """Keys whose hashes differed (fetched whole and compared field by field)."""
    settled: int = 0
    """Candidates equal field by field (the engines spell a value differently)."""
    pulled: PullStats = field(default_factory=PullStats)


def compare_remote(
    wh: Warehouse,
    stored: Table,
    source: str,
    remote: PostgresRelation,
    columns: Sequence[str],
    *,
    mode: Literal["hash", "rows"] = "hash",
) -> RemoteComparison:
    """Compare the rows of ``remote`` (``columns`` besides the key, under the stored table's
    names) with what ``source`` stored in ``stored``.

    ``mode="hash"`` (default): by ``(key, hash)`` (module docstring) — PostgreSQL hashes its
    rows while the warehouse hashes the stored ones, a third of the bytes move, and only the
    differing keys' rows are fetched whole. ``mode="rows"``: the whole rows are pulled as Arrow
    and compared as :func:`~personify.quality.compare.compare` does. Measured side by side in
    ``benchmarks/reconcile.py``. The hash join needs an engine reading Arrow in place (DuckDB);
    other warehouses compare whole rows."""
    keys = key_columns(stored)
    key_cols = [stored.column(k) for k in keys]
    compared = [stored.column(c) for c in columns if c not in keys]
    json = [c.name for c in compared if c.type == "JSON"]
    if json:
        raise ValueError(
            f"{stored.name}: {', '.join(json)} hold JSON, which the engines spell differently "
            "(PostgreSQL's jsonb reorders keys and spaces them): leave them out of columns"
        )
    register = getattr(wh, "register", None)
    if register is None or mode == "rows":
        rows = remote.all_rows([*key_cols, *compared])
        whole = compare(wh, stored, source, rows)
        return RemoteComparison(
            whole.source_rows, whole.warehouse_rows, whole.discrepancies, whole.compared,
            pulled=remote.stats,
        )  # fmt: skip
    theirs = _in_background(lambda: remote.key_hashes(key_cols, compared))
    ours = _stored_hashes(wh, stored, source, keys, compared)  # meanwhile, in the warehouse
    hashes = theirs()
    tag = f"{next(_names)}_{id(hashes):x}"
    s_name, w_name = f"_personify_rowhash_s_{tag}", f"_personify_rowhash_w_{tag}"
    with register(s_name, hashes), register(w_name, ours):
        out, candidates = _hash_join(wh, s_name, w_name, source, keys, compared, hashes.num_rows)
    out.candidates = candidates.num_rows
    if candidates.num_rows:
        rows = remote.rows(key_cols, [*key_cols, *compared], candidates)
        detail = compare(wh, stored, source, rows, only_keys=True)
        confirmed = [d for d in detail.discrepancies if d.kind == "mismatch"]
        out.settled = candidates.num_rows - len(confirmed)
        out.discrepancies = sorted([*out.discrepancies, *confirmed], key=lambda d: d.key)
    out.pulled = remote.stats
    return out


def _in_background(work: Callable[[], pa.Table]) -> Callable[[], pa.Table]:
    """Start ``work`` in a thread; the returned function waits for its result (or raises its
    error)."""
    done: list[pa.Table] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            done.append(work())
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)

    thread = threading.Thread(target=run, name="personify-rowhash-pull", daemon=True)
    thread.start()

    def result() -> pa.Table:
        thread.join()
        if errors:
            raise errors[0]
        return done[0]

    return result


def _stored_hashes(
    wh: Warehouse, stored: Table, source: str, keys: Sequence[str], compared: Sequence[Column]
) -> pa.Table:
    """``(key…, _src, _h)`` of the stored rows (:func:`~personify.quality.compare.
    _stored_rows`), hashed as PostgreSQL hashes the source's."""
    sql, marks = _stored_rows(stored, [*keys, *(c.name for c in compared)])
    rows = wh.fetch_arrow(sql, [source] * marks)
    return rows.select([*keys, "_src"]).append_column("_h", row_hash_arrow(compared, rows))


def _hash_join(
    wh: Warehouse,
    staging: str,
    stored_hashes: str,
    source: str,
    keys: Sequence[str],
    compared: Sequence[Column],
    source_rows: int,
) -> tuple[RemoteComparison, pa.Table]:
    """Missing keys (either side) as discrepancies, and the keys whose hashes differ."""
    on = " AND ".join(f"s.{quote(k)} = w.{quote(k)}" for k in keys)
    key_sql = " || '|' || ".join(
        f"CAST(coalesce(s.{quote(k)}, w.{quote(k)}) AS VARCHAR)" for k in keys
    )
    first = quote(keys[0])
    sql = (
        f"SELECT {key_sql} AS k, CASE WHEN s.{first} IS NULL THEN 'missing_at_source' "
        f"WHEN w.{first} IS NULL THEN 'missing_in_warehouse' ELSE 'mismatch' END AS kind"
        + "".join(f", s.{quote(k)} AS {quote(k)}" for k in keys)
        + f" FROM {quote(staging)} AS s FULL OUTER JOIN {quote(stored_hashes)} AS w ON {on} "
        f"WHERE (s.{first} IS NULL AND w._src = ?) OR (w.{first} IS NULL AND s.{first} IS "
        f"NOT NULL) OR (s.{first} IS NOT NULL AND w.{first} IS NOT NULL AND s.{HASH_COLUMN} "
        f"IS DISTINCT FROM w._h) ORDER BY 1"
    )
    found = wh.fetch_arrow(sql, [source])
    kinds = found.column("kind").to_pylist()
    out = RemoteComparison(source_rows=source_rows, compared=[c.name for c in compared])
    out.discrepancies = [
        Discrepancy(str(k), kind)
        for k, kind in zip(found.column("k").to_pylist(), kinds, strict=True)
        if kind != "mismatch"
    ]
    absent = sum(1 for kind in kinds if kind == "missing_in_warehouse")
    extra = sum(1 for kind in kinds if kind == "missing_at_source")
    out.warehouse_rows = source_rows - absent + extra
    mismatch = pa.array([kind == "mismatch" for kind in kinds], pa.bool_())
    return out, found.select(list(keys)).filter(mismatch)
