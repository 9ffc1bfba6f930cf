"""Loads into tables keyed by construction: the key kept without an engine index.

On DuckDB a ``VARCHAR`` primary key costs ~3–7 µs per inserted row (the ART index, on insert and
at commit) against ~0.5 µs without; so tables whose writers keep the key unique
(``Table.key_by_construction``: ``events``, ``order_items``, ``customer_records``, memberships,
tags) are created without the constraint, and :func:`load` honours ``on_conflict`` itself:

* ``ignore`` — keep the first row per key of the batch, then insert those whose key is not stored
  (``NOT EXISTS``: DuckDB runs it as a right-anti hash join built on the batch, probing the stored
  key column once — no hash table over the whole table);
* ``update`` — the same first rows; update the stored rows they match, then insert the rest;
* ``error`` — raise :class:`~personify.errors.WarehouseError` naming a key that is repeated in the
  batch or already stored, before writing anything.

Tables of :data:`~personify.warehouse.duckdb.keyfilter.FILTERED` also keep their keys in a
Bloom filter (:mod:`~personify.warehouse.duckdb.keyfilter`): rows whose key it rules out are
appended without the probe, which then reads the stored keys only for the few it cannot rule out.

Check-then-insert is only safe when no other writer slips in between, so writers of one table
serialize (:class:`TableLocks`): a load takes the table's lock and holds it until its transaction
ends (DuckDB is single-process, so an in-process lock covers every writer). DuckDB takes a
transaction's snapshot at its first statement, so a lock taken before it sees every earlier
writer's rows. A transaction that had already read or written before taking the lock, while
another committed into the table, could miss those rows: it fails with a retryable
:class:`~personify.errors.WarehouseError` instead of storing a key twice.

One exception, for bulk imports (:meth:`TableLocks.sharing`): a *group* holds a table's lock for
a block, and the threads it admits load into the table side by side, each in a transaction of its
own — DuckDB appends from concurrent transactions without conflict, so two files' inserts (one
core's work each) run at once. The group's caller promises that no two transactions in flight
together carry a common key (the file importer checks the files' key hashes first): each
transaction's probe, at its own snapshot, then misses only rows whose keys it cannot have. The
filter stays shared (its answers are only ever "certainly not stored" for keys no one added); it
is built only by the group's first screen, and a filter that would need a rebuild later (read at
one member's snapshot, it could miss another's keys) is dropped instead: the members then probe
every row, and the next load after the group builds it afresh.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify.errors import WarehouseError
from personify.warehouse.base import OnConflict, changed_sql, quote, restamped
from personify.warehouse.duckdb import keyfilter
from personify.warehouse.schema import Table

if TYPE_CHECKING:
    from personify.warehouse.duckdb.backend import DuckDBWarehouse

LOCK_TIMEOUT_S: Final = 600.0
"""How long a load waits for another transaction writing the same table (a file import holds it
for one file)."""
_names = itertools.count()
_FRESH: Final = "__personify_fresh"


@dataclass
class Txn:
    """One thread's open transaction, as the locks see it."""

    held: list[str] = field(default_factory=list)
    """Tables whose lock it holds (released at COMMIT or ROLLBACK)."""
    snapshot: int | None = None
    """The commit sequence number when its first statement ran (``None``: none yet)."""

    def touch(self, locks: TableLocks) -> None:
        if self.snapshot is None:
            self.snapshot = locks.sequence


@dataclass
class Group:
    """Transactions loading into one table side by side (:meth:`TableLocks.sharing`)."""

    table: str
    members: set[int] = field(default_factory=set)
    """Threads admitted (their transactions skip the table's lock: the group holds it)."""
    screened: bool = False
    """A member has screened keys against the filter (no member builds it from then on)."""
    filterless: bool = False
    """The filter was dropped during the group: members probe every row."""

    @contextlib.contextmanager
    def member(self) -> Iterator[None]:
        """Admit the calling thread for the block."""
        me = threading.get_ident()
        self.members.add(me)
        try:
            yield
        finally:
            self.members.discard(me)


class TableLocks:
    """One lock per keyless table, and the commit sequence of each table's last writer."""

    def __init__(self) -> None:
        self.screening = threading.Lock()
        """Guards the filters (side-by-side members of a group screen keys at the same time)."""
        self.groups: dict[str, Group] = {}
        """Tables a :meth:`sharing` block holds → its group."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._written: dict[str, int] = {}
        self.sequence = 0
        self.filters: dict[str, keyfilter.KeyFilter] = {}
        """Tables of :data:`~.keyfilter.FILTERED` → their stored keys' filter (under the lock)."""
        self.expected: dict[str, int] = {}
        """Tables → rows a bulk load announced (:meth:`DuckDBWarehouse.expecting`): the filter is
        sized for them once, instead of growing (re-reading every stored key) as they arrive."""

    def acquire(self, name: str, txn: Txn) -> None:
        """Hold ``name``'s lock until ``txn`` ends (a no-op if it holds it already, or if the
        calling thread is a member of the group holding it)."""
        if name in txn.held or self.group_of(name) is not None:
            return
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        if not lock.acquire(timeout=LOCK_TIMEOUT_S):
            raise WarehouseError(
                f"another transaction has been writing {name} for {LOCK_TIMEOUT_S:g} s; retry later"
            )
        txn.held.append(name)
        if txn.snapshot is not None and self._written.get(name, 0) > txn.snapshot:
            raise WarehouseError(  # the rows it committed are invisible to this snapshot
                f"{name} was written by another transaction after this one began; retry it"
            )

    def group_of(self, name: str) -> Group | None:
        """The group holding ``name`` if the calling thread is one of its members."""
        group = self.groups.get(name)
        return group if group is not None and threading.get_ident() in group.members else None

    @contextlib.contextmanager
    def sharing(self, name: str) -> Iterator[Group]:
        """Hold ``name``'s lock for the block (waiting for other writers, as a load does); the
        threads the group admits (:meth:`Group.member`) then load into ``name`` side by side,
        each in its own transaction. The caller keeps their keys apart: no key may be loaded by
        two members whose transactions are in flight together. When the block ends, the table
        counts as written (a transaction begun before it that loads into ``name`` later is told
        to retry, as after any other writer)."""
        owner = Txn()
        self.acquire(name, owner)
        group = self.groups[name] = Group(name)
        try:
            yield group
        finally:
            del self.groups[name]
            self.release(owner, committed=True)

    def release(self, txn: Txn, *, committed: bool) -> None:
        if committed and txn.held:
            with self._guard:
                self.sequence += 1
                for name in txn.held:
                    self._written[name] = self.sequence
        for name in reversed(txn.held):
            self._locks[name].release()
        txn.held.clear()


def load(
    wh: DuckDBWarehouse,
    table: Table,
    data: pa.Table,
    on_conflict: OnConflict,
    update_columns: Sequence[str] | None,
    *,
    key_hashes: np.ndarray | None = None,
) -> int:
    """Insert (or update) ``data`` into ``table`` keeping its primary key unique; the caller
    holds the table's lock in an open transaction. Returns the rows inserted or updated.
    ``key_hashes``: the rows' :func:`~.keyfilter.hash_sql` hashes, no two equal (as the file
    importer's validation computed them): then neither computed nor compared again."""
    key = list(table.primary_key)
    cols = [c for c in data.column_names if c in table.column_names]
    missing = [k for k in key if k not in cols]
    if missing:
        raise WarehouseError(f"loading {table.name} needs its key column(s) {', '.join(missing)}")
    data = data.select(cols)
    filtered = table.name in keyfilter.FILTERED and len(key) == 1
    if not filtered:
        return _probed(wh, table, key, cols, data, on_conflict, update_columns)
    # registered once: its keys are hashed from it and, in the common case (every key new,
    # none repeated), it is inserted as it is — each registration and statement gives the
    # interpreter lock up and takes it back a few times, which a busy server makes slow
    whole = f"__personify_keyless_{next(_names)}"
    given = key_hashes is not None and len(key_hashes) == data.num_rows
    with wh.register(whole, data):
        hashes = key_hashes if key_hashes is not None and given else _hashes(wh, whole, key[0])
        if given or _distinct(hashes):
            first = data  # no two rows share a hash, so none shares a key: no grouping needed
        else:
            first = _first_per_key(data, key)
            if first.num_rows < data.num_rows:
                hashes = _table_hashes(wh, first, key[0])
        if on_conflict == "error" and first.num_rows < data.num_rows:
            raise WarehouseError(_duplicate(table, key, _repeated(data, key)))
        appended = 0
        maybe = _screen(wh, table, key[0], hashes, probe=on_conflict != "update")
        if maybe is not None:
            if not maybe.any():  # no key could be stored already: no probe
                return _append(wh, table, cols, first, view=whole if first is data else None)
            # the rows ruled out are appended through a mask (no copy of a million wide rows);
            # the few the filter cannot rule out go through the probe below
            appended = _append(wh, table, cols, first, fresh=~maybe)
            first = first.filter(pa.array(maybe))
        return appended + _probed(
            wh, table, key, cols, first, on_conflict, update_columns, grouped=True
        )


def _probed(
    wh: DuckDBWarehouse,
    table: Table,
    key: list[str],
    cols: list[str],
    data: pa.Table,
    on_conflict: OnConflict,
    update_columns: Sequence[str] | None,
    *,
    grouped: bool = False,
) -> int:
    """Load ``data`` by the anti-join (every row's key probed against the stored ones);
    ``grouped``: no two of its rows share a key already."""
    if not grouped:
        first = _first_per_key(data, key)
        if on_conflict == "error" and first.num_rows < data.num_rows:
            raise WarehouseError(_duplicate(table, key, _repeated(data, key)))
        data = first
    view = f"__personify_keyless_{next(_names)}"
    name, col_sql = quote(table.name), ", ".join(quote(c) for c in cols)
    match = " AND ".join(f"t.{quote(k)} = b.{quote(k)}" for k in key)
    with wh.register(view, data):
        if on_conflict == "error":
            found = wh.fetch(
                f"SELECT {', '.join('b.' + quote(k) for k in key)} FROM {view} b "
                f"WHERE EXISTS (SELECT 1 FROM {name} t WHERE {match}) LIMIT 1"
            )
            if found:
                raise WarehouseError(_duplicate(table, key, found[0]))
            return max(
                wh.execute(f"INSERT INTO {name} ({col_sql}) SELECT {col_sql} FROM {view}"), 0
            )
        updated = 0
        sets = [
            c for c in (update_columns or cols) if c in cols and c not in key and c != table.stamped
        ]
        changed = changed_sql(table, sets, name, "b")
        if on_conflict == "update" and sets and changed is not None:
            # (a changed row takes the load's stamp: stored again — base.restamped)
            writes = restamped(table, sets, table.stamped in cols)
            assign = ", ".join(f"{quote(c)} = b.{quote(c)}" for c in writes)
            on = " AND ".join(f"{name}.{quote(k)} = b.{quote(k)}" for k in key)
            updated = max(
                wh.execute(f"UPDATE {name} SET {assign} FROM {view} b WHERE {on} AND {changed}"),
                0,
            )
        inserted = wh.execute(
            f"INSERT INTO {name} ({col_sql}) SELECT {col_sql} FROM {view} b "
            f"WHERE NOT EXISTS (SELECT 1 FROM {name} t WHERE {match})"
        )
        return updated + max(inserted, 0)


def _screen(
    wh: DuckDBWarehouse, table: Table, key: str, hashes: np.ndarray, *, probe: bool
) -> np.ndarray | None:
    """Per key hash (:func:`_hashes` of the rows to load): may that key be stored already
    (``False``: certainly not), by the table's :class:`~.keyfilter.KeyFilter` (built on first
    use, rebuilt larger when full or too small for the rows a bulk load announced); ``None``
    when every row must be probed (not ``probe``, the filter rules none out, or a group's
    member finds it dropped). The keys are added to the filter (the table's lock, or its group,
    is held; the filters' guard serializes members screening at once)."""
    locks = wh._writers
    with locks.screening:
        return _screen_locked(wh, locks, table, key, hashes, probe=probe)


def _screen_locked(
    wh: DuckDBWarehouse,
    locks: TableLocks,
    table: Table,
    key: str,
    hashes: np.ndarray,
    *,
    probe: bool,
) -> np.ndarray | None:
    filters = locks.filters
    found = filters.get(table.name)
    coming = locks.expected.pop(table.name, 0)  # (one hint: its rows sized once)
    stale = found is None or found.full or found.count + coming > found.capacity
    group = locks.group_of(table.name)
    if group is not None:
        if group.filterless or (stale and group.screened):
            # built at this member's snapshot, it could miss keys another member stored since
            group.filterless = True
            filters.pop(table.name, None)
            return None
        group.screened = True
    if stale or found is None:
        stored = int(wh.scalar(f"SELECT count(*) FROM {quote(table.name)}"))
        grown = keyfilter.KeyFilter(
            int(keyfilter.GROWTH * (max(stored, found.count if found else 0) + coming))
        )
        column = wh._cursor().sql(keyfilter.hash_sql(key, quote(table.name)))
        read = getattr(column, "to_arrow_reader", None) or column.fetch_arrow_reader  # 2 / 1.x
        reader: pa.RecordBatchReader = read(keyfilter.CHUNK)  # streamed, never all in memory
        for batch in reader:
            grown.add(keyfilter.as_hashes(batch.column(0)))
        found = filters[table.name] = grown
    # added before the commit: a rollback only leaves needless bits
    if not probe:
        found.add(hashes)
        return None
    maybe = found.test_and_add(hashes)
    return None if maybe.all() else maybe


def _hashes(wh: DuckDBWarehouse, view: str, key: str) -> np.ndarray:
    """:func:`~.keyfilter.hash_sql` of the key column of the registered ``view``, computed by
    the warehouse's DuckDB (in the rows' order) — as the stored keys are hashed when the
    filter is built. A plain statement fetched as NumPy: DuckDB 2's relation API (``sql()``
    then Arrow) binds and submits separately, trading the interpreter lock ~3× as often."""
    cur = wh._cursor()
    cur.execute(keyfilter.hash_sql(key, view))
    column = cur.fetchnumpy()["h"]
    return np.asarray(column, dtype=np.uint64)


def _table_hashes(wh: DuckDBWarehouse, data: pa.Table, key: str) -> np.ndarray:
    """:func:`_hashes` of a table not registered yet."""
    view = f"__personify_keys_{next(_names)}"
    with wh.register(view, data.select([key])):
        return _hashes(wh, view, key)


def _distinct(hashes: np.ndarray) -> bool:
    """Whether no two of the hashes are equal (then no two of their keys are)."""
    ordered = np.sort(hashes)
    return not bool((ordered[1:] == ordered[:-1]).any())


def _append(
    wh: DuckDBWarehouse,
    table: Table,
    cols: Sequence[str],
    data: pa.Table,
    *,
    fresh: np.ndarray | None = None,
    view: str | None = None,
) -> int:
    """Insert ``data`` as it is — only its rows where ``fresh`` is true, if given (their keys
    are known not to be stored). ``view``: ``data`` is registered under that name already."""
    name, col_sql = quote(table.name), ", ".join(quote(c) for c in cols)
    if view is not None and fresh is None:
        return max(wh.execute(f"INSERT INTO {name} ({col_sql}) SELECT {col_sql} FROM {view}"), 0)
    view = f"__personify_keyless_{next(_names)}"
    where = ""
    if fresh is not None:
        data = data.append_column(_FRESH, pa.array(fresh))  # (the data's columns are not copied)
        where = f" WHERE {_FRESH}"
    with wh.register(view, data):
        return max(
            wh.execute(f"INSERT INTO {name} ({col_sql}) SELECT {col_sql} FROM {view}{where}"), 0
        )


def _first_per_key(data: pa.Table, key: list[str]) -> pa.Table:
    """``data`` without the rows whose key an earlier row of it has."""
    n = data.num_rows
    if n < 2:
        return data
    positions = data.select(key).append_column("__i", pa.array(np.arange(n, dtype=np.int64)))
    firsts = positions.group_by(key, use_threads=False).aggregate([("__i", "min")])
    if firsts.num_rows == n:
        return data
    keep = np.sort(firsts.column("__i_min").to_numpy())
    return data.take(pa.array(keep))


def _repeated(data: pa.Table, key: list[str]) -> tuple[object, ...]:
    counts = data.select(key).group_by(key, use_threads=False).aggregate([([], "count_all")])
    row = counts.filter(pc.greater(counts.column("count_all"), 1)).slice(0, 1)
    return tuple(row.column(k)[0].as_py() for k in key)


def _duplicate(table: Table, key: list[str], values: Sequence[object]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in zip(key, values, strict=True))
    return f"duplicate key in {table.name}: ({shown}) is already stored or repeated in the batch"
