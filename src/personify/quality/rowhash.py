"""Row hashes two engines agree on: reconcile a remote table by pulling ``(key, hash)`` only.

Moving a million whole rows out of PostgreSQL costs seconds; a key and one 60-bit hash per row
is a fraction of that. Each engine computes, per row, the MD5 of a **canonical text** of the
compared columns and keeps its first 15 hex digits as a ``BIGINT``; the source's ``(key,
hash)`` come over ``COPY … TO STDOUT`` (CSV, parsed by Arrow) and are joined in the warehouse
engine with the stored rows' ``(key, hash)``, computed there the same way. Only the keys whose
hashes differ are fetched whole, and compared field by field by the ordinary comparison
(:func:`personify.quality.compare.compare`) — so a field-level report names the columns, and a
difference of *spelling* between engines (see below) can never be reported as a mismatch.

The canonical text, per column in order (``n;`` for NULL):

=============  =================================================================================
text           ``<characters>:<value>`` (length-prefixed: no separator can be forged)
integer        the decimal digits and ``;``
double         an integral value below 1e18 as an integer; NaN / ±Infinity spelled as
               PostgreSQL does; otherwise the engine's shortest round-trip text (identical in
               DuckDB and PostgreSQL except non-integral values in [1e15, 4.5e15), which then
               differ by hash and are settled by the field-level comparison); then ``;``
boolean        ``true`` / ``false`` and ``;``
timestamp      microseconds since the epoch (time zones do not matter: an instant is an
               instant) and ``;``
other          the engine's text of the value, length-prefixed (JSON columns are refused by
               :func:`compare_remote`: ``jsonb`` reorders and spaces keys)
=============  =================================================================================

Engine differences are data (:data:`CANONICAL`, :data:`HASH`), one entry per dialect.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
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
from personify.warehouse import Warehouse
from personify.warehouse.base import quote
from personify.warehouse.schema import Column, Table

HASH_COLUMN: Final = "_hash"
NULL_PIECE: Final = "'n;'"

_TEXT: Final = "{t}"
CANONICAL: Final[dict[str, dict[str, str]]] = {
    "duckdb": {
        "VARCHAR": _TEXT,
        "BIGINT": "CAST({c} AS VARCHAR)",
        "INTEGER": "CAST({c} AS VARCHAR)",
        "BOOLEAN": "CAST({c} AS VARCHAR)",
        "DOUBLE": (
            "CASE WHEN isnan({c}) THEN 'NaN' WHEN isinf({c}) THEN CASE WHEN {c} > 0 THEN "
            "'Infinity' ELSE '-Infinity' END WHEN {c} = trunc({c}) AND abs({c}) < 1e18 THEN "
            "CAST(CAST({c} AS BIGINT) AS VARCHAR) ELSE CAST({c} AS VARCHAR) END"
        ),
        "TIMESTAMPTZ": "CAST(epoch_us({c}) AS VARCHAR)",
        "TIMESTAMP": "CAST(epoch_us({c}) AS VARCHAR)",
        "*": "CAST({c} AS VARCHAR)",
    },
    "postgres": {
        "VARCHAR": _TEXT,
        "BIGINT": "({c})::text",
        "INTEGER": "({c})::text",
        "BOOLEAN": "({c})::text",
        "DOUBLE": (
            "CASE WHEN {c} = 'NaN'::float8 THEN 'NaN' WHEN {c} IN ('Infinity'::float8, "
            "'-Infinity'::float8) THEN ({c})::text WHEN {c} = trunc({c}) AND abs({c}) < 1e18 "
            "THEN (({c})::bigint)::text ELSE ({c})::text END"
        ),
        "TIMESTAMPTZ": "((extract(epoch FROM {c}) * 1000000)::bigint)::text",
        "TIMESTAMP": "((extract(epoch FROM {c}) * 1000000)::bigint)::text",
        "*": "({c})::text",
    },
}
"""Per dialect, neutral column type → the SQL of a value's canonical text (``{c}``: the
column). ``{t}`` marks text kept as it is; ``*``: any other type (length-prefixed)."""
_LENGTH_PREFIXED: Final = frozenset({"VARCHAR", "*"})
HASH: Final[dict[str, str]] = {
    "duckdb": "CAST(('0x' || substr(md5({t}), 1, 15)) AS BIGINT)",
    "postgres": "(('x' || substr(md5({t}), 1, 15))::bit(60))::bigint",
}
"""Per dialect: the first 60 bits of the MD5 of ``{t}`` as a non-negative ``BIGINT``."""
CONCAT: Final = {"duckdb": "||", "postgres": "||"}
TEXT_CAST: Final = {"duckdb": "CAST({c} AS VARCHAR)", "postgres": "({c})::text"}


def _dialect(name: str) -> str:
    dialect = "postgres" if name in {"postgres", "postgresql"} else name
    if dialect not in CANONICAL:
        raise ValueError(f"no canonical row text for the {name} dialect")
    return dialect


def _piece(dialect: str, column: Column, ref: str) -> str:
    templates = CANONICAL[dialect]
    kind = column.type if column.type in templates else "*"
    if kind in _LENGTH_PREFIXED:
        text = ref if kind == "VARCHAR" else templates["*"].format(c=ref)
        length = TEXT_CAST[dialect].format(c=f"length({text})")
        return f"coalesce({length} || ':' || {text}, {NULL_PIECE})"
    return f"coalesce({templates[kind].format(c=ref)} || ';', {NULL_PIECE})"


def canonical_sql(dialect: str, columns: Sequence[Column], alias: str = "") -> str:
    """SQL (in ``dialect``) of the canonical text of ``columns`` (see the module docstring);
    ``alias``: the relation the columns are read from."""
    d = _dialect(dialect)
    prefix = f"{alias}." if alias else ""
    pieces = [_piece(d, c, f"{prefix}{quote(c.name)}") for c in columns]
    return f" {CONCAT[d]} ".join(pieces) if pieces else "''"


def row_hash_sql(dialect: str, columns: Sequence[Column], alias: str = "") -> str:
    """SQL (in ``dialect``) of the 60-bit row hash of ``columns``."""
    d = _dialect(dialect)
    return HASH[d].format(t=canonical_sql(d, columns, alias))


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

    def _pull(self, query: str, names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
        """The rows of ``query`` as Arrow: through ADBC (PostgreSQL's binary ``COPY`` decoded
        to Arrow in C) when ``adbc-driver-postgresql`` is installed, else ``COPY … TO STDOUT``
        as CSV parsed by Arrow."""
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
            cur.execute(query)
            got = cur.fetch_arrow_table()
        schema = pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])
        table = pa.Table.from_arrays(list(got.columns), names=list(names)).cast(schema)
        self.stats.bytes += table.nbytes
        self.stats.queries += 1
        self.stats.rows += table.num_rows
        self.stats.seconds += time.perf_counter() - started
        return table

    def _copy_csv(self, query: str, names: Sequence[str], types: Sequence[pa.DataType]) -> pa.Table:
        import psycopg

        started = time.perf_counter()
        buf = io.BytesIO()
        with (
            psycopg.connect(self.conninfo) as pg,
            pg.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy,
        ):
            for chunk in copy:
                buf.write(chunk)
        data = buf.getvalue()
        self.stats.queries += 1
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
        self.stats.bytes += table.nbytes
        self.stats.rows += table.num_rows
        self.stats.seconds += time.perf_counter() - started
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
        """``(key…, _hash)`` of every row, hashed in PostgreSQL."""
        cols = ", ".join(f"r.{quote(k.name)}" for k in keys)
        row_hash = row_hash_sql("postgres", compared, "r")
        query = f"SELECT {cols}, {row_hash} FROM {self._typed([*keys, *compared])} AS r"
        names = [*(k.name for k in keys), HASH_COLUMN]
        return self._pull(query, names, [*(arrow_type(k) for k in keys), pa.int64()])

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
    mode: Literal["hash", "rows"] = "rows",
) -> RemoteComparison:
    """Compare the rows of ``remote`` (``columns`` besides the key, under the stored table's
    names) with what ``source`` stored in ``stored``.

    ``mode="rows"`` (default): the whole rows are pulled as Arrow and compared as
    :func:`~personify.quality.compare.compare` does — the fastest on a fast link (measured:
    ``benchmarks/reconcile.py``). ``mode="hash"``: by ``(key, hash)`` (module docstring) — a
    third of the bytes, for slow links; PostgreSQL then pays one ``md5()`` per row (~3 µs on
    PostgreSQL 15). The hash join needs an engine reading Arrow in place (DuckDB); other
    warehouses compare whole rows."""
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
    hashes = remote.key_hashes(key_cols, compared)
    name = f"_personify_rowhash_{next(_names)}_{id(hashes):x}"
    with register(name, hashes):
        out, candidates = _hash_join(wh, stored, source, name, keys, compared, hashes.num_rows)
    out.candidates = candidates.num_rows
    if candidates.num_rows:
        rows = remote.rows(key_cols, [*key_cols, *compared], candidates)
        detail = compare(wh, stored, source, rows, only_keys=True)
        confirmed = [d for d in detail.discrepancies if d.kind == "mismatch"]
        out.settled = candidates.num_rows - len(confirmed)
        out.discrepancies = sorted([*out.discrepancies, *confirmed], key=lambda d: d.key)
    out.pulled = remote.stats
    return out


def _hash_join(
    wh: Warehouse,
    stored: Table,
    source: str,
    staging: str,
    keys: Sequence[str],
    compared: Sequence[Column],
    source_rows: int,
) -> tuple[RemoteComparison, pa.Table]:
    """Missing keys (either side) as discrepancies, and the keys whose hashes differ."""
    stored_sql, marks = _stored_rows(stored, [*keys, *(c.name for c in compared)])
    key_list = ", ".join(f"x.{quote(k)}" for k in keys)
    row_hash = row_hash_sql(wh.dialect, compared, "x")
    on = " AND ".join(f"s.{quote(k)} = w.{quote(k)}" for k in keys)
    key_sql = " || '|' || ".join(
        f"CAST(coalesce(s.{quote(k)}, w.{quote(k)}) AS VARCHAR)" for k in keys
    )
    first = quote(keys[0])
    sql = (
        f"WITH w AS (SELECT {key_list}, {row_hash} AS _h, x._src FROM ({stored_sql}) AS x) "
        f"SELECT {key_sql} AS k, CASE WHEN s.{first} IS NULL THEN 'missing_at_source' "
        f"WHEN w.{first} IS NULL THEN 'missing_in_warehouse' ELSE 'mismatch' END AS kind"
        + "".join(f", s.{quote(k)} AS {quote(k)}" for k in keys)
        + f" FROM {quote(staging)} AS s FULL OUTER JOIN w ON {on} "
        f"WHERE (s.{first} IS NULL AND w._src = ?) OR (w.{first} IS NULL AND s.{first} IS "
        f"NOT NULL) OR (s.{first} IS NOT NULL AND w.{first} IS NOT NULL AND s.{HASH_COLUMN} "
        f"IS DISTINCT FROM w._h) ORDER BY 1"
    )
    found = wh.fetch_arrow(sql, [source] * marks + [source])
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
