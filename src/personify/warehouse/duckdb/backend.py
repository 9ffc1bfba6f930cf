"""DuckDB, the embedded default: one file, one writing process.

Opened with external access disabled (no reading files or URLs from SQL: Personify reads files with
pyarrow and hands DuckDB Arrow tables), the session time zone pinned to UTC, and one cursor per
thread so the server's threads share the one connection. A file held by another process raises
:class:`~personify.errors.WarehouseBusy` after ``lock_timeout`` seconds of polite retrying.

Tables keyed by construction (``Table.key_by_construction``) have no primary-key index here
(DuckDB's ART index makes bulk inserts several times dearer), so :meth:`DuckDBWarehouse.load`
keeps their key itself (:mod:`personify.warehouse.duckdb.keyless`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from personify.errors import QueryTimeout, WarehouseBusy, WarehouseError
from personify.warehouse.base import (
    AUTHORING_DIALECT,
    Capabilities,
    OnConflict,
    Warehouse,
    quote,
    stamp,
    unstamped,
)
from personify.warehouse.division import catalog_typed, needs_catalog, runtime_typed
from personify.warehouse.duckdb import keyless
from personify.warehouse.schema import TABLES_BY_NAME, Table

_LOCK_PID = re.compile(r"PID (\d+)")
_names = itertools.count()
_APPEND_ONLY: Final = re.compile(
    r"\b(?:UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|INSERT\s+OR\s+REPLACE\s+INTO)\s+"
    r"(?:\w+\.)?\"?audit_log\b|\baudit_log\b.*\bDO\s+UPDATE\b",
    re.IGNORECASE | re.DOTALL,
)
"""Statements that would change or remove audit log entries (DuckDB has no triggers: the
warehouse layer refuses them; PostgreSQL has a trigger, migration 13)."""


def _checked(sql: str) -> str:
    if "audit_log" in sql.lower() and _APPEND_ONLY.search(sql):
        raise WarehouseError(
            "audit_log is append-only: UPDATE, DELETE, TRUNCATE and upserts are refused"
        )
    return sql


BULK_MEMORY_LIMIT: Final = 1536 << 20
"""Bytes DuckDB may hold while bulk loads run (:meth:`DuckDBWarehouse.bulk_memory`). By default it
keeps up to 80 % of RAM, so every block a long import writes or reads stays cached: 3.3 GB of a
1 M-customer world's 5.2 GB peak. Capped, it drops clean blocks instead (it can spill the rest):
measured on that world, peak 3.8 GB at the same CPU time (but 5.6–6.3 GB in later runs: most
of the rest was outside DuckDB's cap — the importer's Arrow pool and copies, and a checkpoint
rewriting multi-threaded appends, see :data:`BULK_THREADS`; benchmarks/RESULTS.md, sessions 4
and 5)."""
BULK_THREADS: Final = 1
"""Threads a DuckDB statement may use while bulk loads run. With several, one large ``INSERT``
writes its row groups from each thread, and the next checkpoint rewrites them (decompressed and
compressed again): 1.07 M web events appended three times, each commit checkpointed, cost
4.1–4.4 CPU-s per insert plus 4.4–7.2 per checkpoint, a 555 MB file; on one thread 4.2–4.7 plus
0.01, 368 MB. A checkpoint put off while another transaction is open then did all of it at once:
the 1 M world's load spent 254 s (wall) growing to 6.1 GB in the first checkpoint after the web
events. The importer's sources already run side by side (two lanes), so the cores stay busy.
DuckDB 2.0 rewrites far less after a multi-threaded insert (+0.6 CPU-s per 2 M events with
``preserve_insertion_order = false``), but two threads still cost the 1 M world's load time, and
that setting must stay on: the keyless loads read key hashes back in the rows' order
(benchmarks/RESULTS.md, ``world_load.py``, session 13)."""
SERVE_THREADS: Final = 1
"""Threads a DuckDB statement may use in ``personify serve`` (:meth:`~DuckDBWarehouse.
limit_threads`), except in forwarded commands and scheduled rebuilds (:meth:`~DuckDBWarehouse.
all_threads`). A statement's extra threads are DuckDB's own workers, shared by every thread of
the process: continuous mode's passes spread onto them and took the cores from the tracking
writer's commits. On one thread, a statement runs on the thread that issued it, and continuous
mode's share of the cores is the share of its thread's time it takes (at most half, see
:mod:`personify.realtime.continuous`; benchmarks/RESULTS.md, session 7)."""
SERVE_MEMORY_LIMIT: Final = 128 << 20
"""Bytes DuckDB may hold in a long-running process (:meth:`DuckDBWarehouse.limit_memory`,
``personify serve``): uncapped, each checkpoint of the tracking API's appends left ~115 MB more
cached (peak RSS of the tracking benchmark's server 548 MB; capped at 200 MB: 433 MB, same CPU).
With continuous mode on, 256 MiB still peaked at 554 MB and 128 MiB at 440 MB, same CPU per event
(session 4). Queries that need more spill to disk."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


_ZSTD_TEXT: Final = _version(duckdb.__version__) >= (1, 2)
"""DuckDB compresses text with zstd from 1.2 (``USING COMPRESSION zstd``)."""
_JSON_ARROW: Final = getattr(pa, "json_", None)
"""Arrow's JSON extension type (pyarrow ≥ 19): DuckDB stores such a column as it is, where it
parses plain text bound for a JSON column to check it."""


def _json_marked(table: Table, data: pa.Table) -> pa.Table:
    """``data`` with its text columns that ``table`` stores as JSON typed as Arrow's JSON
    extension (no copy): DuckDB then stores the text without parsing it again — 0.15 µs per
    value of an event's context, a tenth of appending the event. Only for text known valid."""
    if _JSON_ARROW is None:
        return data
    for i, name in enumerate(data.column_names):
        column = data.column(i)
        if column.type != pa.string() or name not in table.column_names:
            continue
        if table.column(name).type != "JSON":
            continue
        typ = _JSON_ARROW(pa.string())
        chunks = [pa.ExtensionArray.from_storage(typ, chunk) for chunk in column.chunks]
        data = data.set_column(i, name, pa.chunked_array(chunks, typ))
    return data


_COLUMN_TYPES: Final = (
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE lower(table_schema) = ? AND lower(table_name) = ? ORDER BY ordinal_position"
)
"""The column types of one table (user SQL's divisions over a table of the team's own)."""


class DuckDBWarehouse(Warehouse):
    scheme = "duckdb"
    capabilities = Capabilities(
        dialect="duckdb",
        single_process=True,
        secondary_indexes=False,
        cheap_keys=False,
        bulky_text=" USING COMPRESSION zstd" if _ZSTD_TEXT else "",
        rewritten_text=" USING COMPRESSION uncompressed",
    )

    @classmethod
    def _generate(cls, expression: exp.Expr) -> str:
        # (PostgreSQL's 3 / 2 of a relation's columns, types unknown: decided when it runs)
        if any(d.args.get("typed") for d in expression.find_all(exp.Div)):
            expression = expression.transform(runtime_typed)
        return expression.sql(dialect="duckdb")

    def render(self, sql: str | exp.Expr, *, read: str = AUTHORING_DIALECT) -> str:
        if isinstance(sql, exp.Expr) and needs_catalog(sql):
            # (PostgreSQL's 3 / 2 of a relation's BIGINTs: its types read from the catalog)
            sql = catalog_typed(sql, self._column_types, default_db="main", engine="duckdb")
        return super().render(sql, read=read)

    def _column_types(
        self, tables: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """The column types of the tables ``(schema, table)`` the warehouse file has."""
        found: dict[tuple[str, str], dict[str, str]] = {}
        for schema, table in tables:
            rows = self._cursor().execute(_COLUMN_TYPES, [schema, table]).fetchall()
            if rows:
                found[(schema, table)] = {name: kind for name, kind in rows}
        return found

    def __init__(self, url: str, *, path: str, lock_timeout: float = 10.0) -> None:
        super().__init__(url)
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, str | bool | int | float | list[str]] = {"enable_external_access": False}
        deadline = time.monotonic() + lock_timeout
        delay = 0.05
        while True:
            try:
                self._con = duckdb.connect(path, config=config)
                self._con.execute("SET GLOBAL TimeZone = 'UTC'")
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise WarehouseError(f"cannot open DuckDB file {path}: {e}") from e
                if time.monotonic() >= deadline:
                    pid = _LOCK_PID.search(str(e))
                    holder = f" (process {pid.group(1)})" if pid else ""
                    raise WarehouseBusy(
                        f"the warehouse {path} is in use by another process{holder}",
                        hint="wait for it to finish, or start `personify serve` on the project: "
                        "other commands then run through it",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        self._local = threading.local()
        self._closed = False
        self._con_lock = threading.Lock()
        """Serializes calls on the connection itself (a new cursor, closing): DuckDB refuses a
        call on a connection busy with another thread's ("connection is busy with another
        call") instead of waiting."""
        self._writers = keyless.TableLocks()
        self._bulk_guard = threading.Lock()
        self._bulk_depth = 0
        self._base_limit: int | None = None
        self._all_depth = 0
        self._base_threads: int | None = None

    @contextlib.contextmanager
    def bulk_memory(self) -> Iterator[None]:
        """Cap DuckDB's memory at :data:`BULK_MEMORY_LIMIT` (or its default, if lower) for the
        block — for bulk loads, which need little but would leave gigabytes of blocks cached —
        and run its statements on one thread each (:data:`BULK_THREADS`). The settings are the
        database's: nested or concurrent blocks share them, restored when the last one ends. An
        in-memory warehouse is left alone (its blocks are its data)."""
        if self.path == ":memory:":
            yield
            return
        with self._bulk_guard:
            if self._bulk_depth == 0:
                limit = min(BULK_MEMORY_LIMIT, int(_total_memory() * 0.8))
                self._setting(f"SET memory_limit = '{limit // (1 << 20)}MB'")
                self._setting(f"SET threads = {BULK_THREADS}")
            self._bulk_depth += 1
        try:
            yield
        finally:
            with self._bulk_guard:
                self._bulk_depth -= 1
                if self._bulk_depth == 0 and not self._closed:
                    with contextlib.suppress(duckdb.Error):
                        self._restore_limit()
                    with contextlib.suppress(duckdb.Error):
                        self._restore_threads()

    @contextlib.contextmanager
    def expecting(self, table_name: str, rows: int) -> Iterator[None]:
        """A hint for the block: about ``rows`` more rows are coming into ``table_name`` (a bulk
        load of several files). A table that keeps a Bloom filter of its keys
        (:mod:`~personify.warehouse.duckdb.keyfilter`) then sizes it for them at its next load,
        instead of rebuilding it larger each time it fills (each rebuild re-reads every stored
        key: ≈ 15 CPU-s over the 1 M world's 12 M events). A wrong hint costs only memory or a
        rebuild, never a key."""
        if rows > 0:
            self._writers.expected[table_name] = rows
        try:
            yield
        finally:
            self._writers.expected.pop(table_name, None)

    def limit_memory(self, limit: int | None = None) -> None:
        """Keep DuckDB's memory under ``limit`` bytes (default :data:`SERVE_MEMORY_LIMIT`) from
        now on — a long-running process: it would otherwise keep what it reads and writes cached,
        up to 80 % of RAM. Bulk loads (:meth:`bulk_memory`) raise it for their block and come
        back to it."""
        if self.path == ":memory:":
            return
        with self._bulk_guard:
            self._base_limit = int(limit if limit is not None else SERVE_MEMORY_LIMIT)
            if self._bulk_depth == 0:
                self._restore_limit()

    def limit_threads(self, threads: int | None = None) -> None:
        """At most ``threads`` (default :data:`SERVE_THREADS`; 0: every core) per statement
        from now on, outside bulk loads and :meth:`all_threads` blocks."""
        if self.path == ":memory:":
            return
        wanted = SERVE_THREADS if threads is None else int(threads)
        with self._bulk_guard:
            self._base_threads = wanted if wanted > 0 else None
            if self._bulk_depth == 0:
                self._restore_threads()

    @contextlib.contextmanager
    def all_threads(self) -> Iterator[None]:
        with self._bulk_guard:
            self._all_depth += 1
            if self._bulk_depth == 0 and self._base_threads is not None:
                self._setting("RESET threads")
        try:
            yield
        finally:
            with self._bulk_guard:
                self._all_depth -= 1
                if self._bulk_depth == 0 and not self._closed:
                    with contextlib.suppress(duckdb.Error):
                        self._restore_threads()

    def _restore_threads(self) -> None:
        """Back to the threads outside bulk loads (the guard is held)."""
        if self._base_threads is None or self._all_depth:
            self._setting("RESET threads")
        else:
            self._setting(f"SET threads = {max(int(self._base_threads), 1)}")

    def _restore_limit(self) -> None:
        if self._base_limit is None:
            self._setting("RESET memory_limit")
        else:
            self._setting(f"SET memory_limit = '{max(self._base_limit >> 20, 1)}MiB'")

    def _setting(self, sql: str) -> None:
        """Change a database-wide setting on a cursor of its own (outside any transaction)."""
        with contextlib.closing(self._new_cursor()) as cur:
            cur.execute(sql)

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own on the connection (see :attr:`_con_lock`)."""
        with self._con_lock:
            if self._closed:
                raise WarehouseError("the warehouse connection is closed")
            return self._con.cursor()

    # -- cursors and transactions
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor, for a statement (which, in a transaction, takes its snapshot)."""
        cur = self._raw_cursor()
        if self._local.txn is not None:
            self._local.txn.touch(self._writers)
        return cur

    def _raw_cursor(self) -> duckdb.DuckDBPyConnection:
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._new_cursor()
            self._local.cursor = cur
            self._local.depth = 0
            self._local.txn = None
        return cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        cur = self._raw_cursor()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        cur.execute("BEGIN TRANSACTION")
        self._local.depth = 1
        txn = self._local.txn = keyless.Txn()
        try:
            yield
        except BaseException:
            self._local.depth = 0
            self._local.txn = None
            try:
                cur.execute("ROLLBACK")
            finally:
                self._writers.release(txn, committed=False)
            raise
        self._local.depth = 0
        self._local.txn = None
        try:
            cur.execute("COMMIT")
        except BaseException:
            self._writers.release(txn, committed=False)
            raise
        self._writers.release(txn, committed=True)

    # -- statements
    def execute(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> int:
        cur = self._cursor()
        try:
            cur.execute(_checked(self.render(sql)), list(params) if params else None)
            if cur.description and cur.description[0][0] == "Count":
                row = cur.fetchone()
                return int(row[0]) if row else 0
        except duckdb.Error as e:
            raise _translate(e) from e
        return -1

    def execute_limited(
        self, sql: str | exp.Expr, params: Sequence[Any] = (), *, timeout_s: float
    ) -> int:
        cur = self._cursor()
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            cur.execute(_checked(self.render(sql)), list(params) if params else None)
            if cur.description and cur.description[0][0] == "Count":
                row = cur.fetchone()
                return int(row[0]) if row else 0
        except duckdb.InterruptException:
            raise QueryTimeout(
                f"the statement ran longer than {timeout_s:g} s and was stopped",
                hint="make the query cheaper, or raise the timeout",
            ) from None
        except duckdb.Error as e:
            raise _translate(e) from e
        finally:
            timer.cancel()
        return -1

    def fetch(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._cursor()
        try:
            cur.execute(_checked(self.render(sql)), list(params) if params else None)
            return cur.fetchall()
        except duckdb.Error as e:
            raise _translate(e) from e

    def fetch_arrow(self, sql: str | exp.Expr, params: Sequence[Any] = ()) -> pa.Table:
        cur = self._cursor()
        try:
            rel = cur.sql(_checked(self.render(sql)), params=list(params) if params else None)
            if rel is None:
                return pa.table({})
            fetch = getattr(rel, "to_arrow_table", None) or rel.arrow  # duckdb 2 / 1.x
            result: pa.Table = fetch()
            return result
        except duckdb.Error as e:
            raise _translate(e) from e

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
        if data.num_rows == 0:
            return 0
        if valid_json:
            data = _json_marked(table, data)
        at = stamp(table, data.column_names)
        if at is not None and table.stamped is not None:
            ts = pa.timestamp("us", tz="UTC")
            data = data.append_column(table.stamped, pa.repeat(pa.scalar(at, ts), data.num_rows))
            update_columns = update_columns or unstamped(table, data.column_names)
        if table.key_by_construction and table.primary_key and not self.capabilities.cheap_keys:
            with self.transaction():
                # the lock first: the transaction's snapshot then sees every earlier writer
                self._writers.acquire(table.name, self._local.txn)
                return keyless.load(
                    self, table, data, on_conflict, update_columns, key_hashes=key_hashes
                )
        cols = [c for c in data.column_names if c in table.column_names]
        view = f"__personify_load_{next(_names)}"
        col_sql = ", ".join(quote(c) for c in cols)
        sql = (
            f"INSERT INTO {quote(table.name)} ({col_sql}) SELECT {col_sql} FROM {view}"
            + self._conflict_sql(
                table,
                cols,
                on_conflict,
                update_columns,
                only_newer,
                stamped=at is not None and table.stamped in cols,
            )
        )
        cur = self._cursor()
        cur.register(view, data.select(cols))
        try:
            cur.execute(sql)
            row = cur.fetchone()
            return int(row[0]) if row else 0
        except duckdb.Error as e:
            raise _translate(e) from e
        finally:
            # In an aborted transaction DuckDB refuses even this; the original error matters more.
            with contextlib.suppress(duckdb.Error):
                cur.unregister(view)

    def hold(self, *tables: str) -> None:
        txn = self._local.txn if getattr(self._local, "depth", 0) else None
        if txn is None or self.capabilities.cheap_keys:
            return
        for name in sorted(tables):  # one order everywhere: no two holders wait on each other
            table = TABLES_BY_NAME.get(name)
            if table is not None and table.key_by_construction and table.primary_key:
                self._writers.acquire(name, txn)

    def register(self, name: str, data: pa.Table) -> contextlib.AbstractContextManager[None]:
        """``data`` as the view ``name`` on this thread's cursor, for the block."""
        return _registered(self._cursor(), name, data)

    def relations(self) -> set[str]:
        rows = self.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        )
        return {r[0] for r in rows}

    def query_user(
        self, sql: str, *, timeout_s: float, max_rows: int
    ) -> tuple[list[str], list[tuple[Any, ...]], bool]:
        cur = self._new_cursor()  # its own cursor: interrupting it touches nothing else
        timer = threading.Timer(timeout_s, cur.interrupt)
        timer.start()
        try:
            cur.execute(sql)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise QueryTimeout(
                f"the query ran longer than {timeout_s:g} s and was stopped",
                hint="add a WHERE clause or a LIMIT",
            ) from None
        except duckdb.Error as e:
            raise _translate(e) from e
        finally:
            timer.cancel()
            cur.close()
        return columns, rows[:max_rows], len(rows) > max_rows

    def release_thread(self) -> None:
        cur = getattr(self._local, "cursor", None)
        if cur is not None and not self._local.depth:
            self._local.cursor = None
            cur.close()

    def close(self) -> None:
        """Close the connection: no new cursor from now on; a statement another thread's cursor
        is running makes DuckDB refuse the close ("busy") — it is tried again until those end
        (at most :data:`CLOSE_WAIT` seconds)."""
        with self._con_lock:  # (not while another thread opens its cursor)
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + CLOSE_WAIT
        while True:
            try:
                with self._con_lock:
                    self._con.close()
                return
            except duckdb.Error as e:
                if "busy" not in str(e).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)


CLOSE_WAIT: Final = 10.0
"""Seconds :meth:`DuckDBWarehouse.close` waits for other threads' statements to end."""


@contextlib.contextmanager
def _registered(cur: duckdb.DuckDBPyConnection, name: str, data: pa.Table) -> Iterator[None]:
    cur.register(name, data)
    try:
        yield
    finally:
        with contextlib.suppress(duckdb.Error):  # refused in an aborted transaction
            cur.unregister(name)


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return BULK_MEMORY_LIMIT * 2


def _translate(e: duckdb.Error) -> WarehouseError:
    return WarehouseError(f"DuckDB: {str(e).splitlines()[0]}")
