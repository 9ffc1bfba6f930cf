"""Segment memberships: materialize a segment, then apply the difference in SQL.

A refresh at ``now`` runs the segment's query once, under the statement timeout, into a temporary
table of ``customer_id``s (refused above the member cap, memberships untouched). Then, in the same
transaction and entirely in the warehouse:

- members who are no longer in it get ``exited_at = now`` (their row is kept: history);
- customers who are in it without an open membership get a new row ``entered_at = now``;
- each of those changes is appended to ``audience_changes`` (``kind = 'segment'``,
  ``change = 'entered' | 'exited'``, ``changed_at = now``): the events journeys trigger on.

Refreshing twice at the same instant changes nothing the second time.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import sqlglot
from sqlglot import exp

from personify import clock
from personify.audiences.segments import Segment
from personify.errors import UnsafeQueryError
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.schema import SEGMENT_STATE

_CHANGE_COLUMNS = "(kind, name, customer_id, change, changed_at, recorded_at)"


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did."""

    segment: str
    members: int
    entered: int
    exited: int
    seconds: float
    sql: str
    """The segment's SQL as run on the warehouse."""


def refresh_segment(
    wh: Warehouse, segment: Segment, *, now: datetime, timeout_s: float, max_members: int
) -> RefreshResult:
    """Recompute ``segment`` at ``now`` and apply entries and exits (see the module doc)."""
    started = time.perf_counter()
    key = uuid.uuid4().hex[:12]
    members, exits, entries = (f"_personify_{k}_{key}" for k in ("members", "exits", "entries"))
    with clock.frozen(now):
        query = segment.members_query()
    members_sql = wh.render(query)
    with wh.transaction():
        wh.execute(f"CREATE TEMP TABLE {quote(members)} (customer_id VARCHAR NOT NULL)")
        size = wh.execute_limited(exp.insert(query, quote(members)), timeout_s=timeout_s)
        if size < 0:  # an engine that does not report counts
            size = int(wh.scalar(f"SELECT count(*) FROM {quote(members)}") or 0)
        if size > max_members:
            raise UnsafeQueryError(
                f"segment {segment.name!r} returned {size:,} customers, more than the cap "
                f"({max_members:,}); its memberships were left as they were",
                hint="narrow the query, or raise audiences.max_members in personify.yml",
            )
        exited = _diff(wh, exits, _EXITS.format(members=quote(members)), segment.name)
        entered = _diff(wh, entries, _ENTRIES.format(members=quote(members)), segment.name)
        _apply(wh, segment.name, quote(exits), quote(entries), now, (exited, entered))
        for name in (members, exits, entries):
            wh.execute(f"DROP TABLE {quote(name)}")
        seconds = time.perf_counter() - started
        result = RefreshResult(segment.name, size, entered, exited, seconds, members_sql)
        _save_state(wh, result, now)
    return result


_EXITS = (
    "SELECT m.customer_id FROM segment_memberships AS m "
    "WHERE m.segment = ? AND m.exited_at IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM {members} AS t WHERE t.customer_id = m.customer_id)"
)
_ENTRIES = (
    "SELECT t.customer_id FROM {members} AS t WHERE NOT EXISTS (SELECT 1 FROM "
    "segment_memberships AS m WHERE m.segment = ? AND m.exited_at IS NULL "
    "AND m.customer_id = t.customer_id)"
)


def _diff(wh: Warehouse, name: str, select: str, segment: str) -> int:
    """Materialize one side of the difference (``customer_id``s) and count it."""
    wh.execute(f"CREATE TEMP TABLE {quote(name)} (customer_id VARCHAR NOT NULL)")
    count = wh.execute(f"INSERT INTO {quote(name)} {select}", [segment])
    if count < 0:  # an engine that does not report counts
        count = int(wh.scalar(f"SELECT count(*) FROM {quote(name)}") or 0)
    return count


def _apply(
    wh: Warehouse,
    segment: str,
    exits: str,
    entries: str,
    now: datetime,
    counts: tuple[int, int],
) -> None:
    wall = datetime.now(UTC)
    if counts[0]:
        wh.execute(
            f"INSERT INTO audience_changes {_CHANGE_COLUMNS} "
            f"SELECT 'segment', ?, customer_id, 'exited', ?, ? FROM {exits}",
            [segment, now, wall],
        )
        wh.execute(
            "UPDATE segment_memberships SET exited_at = ? WHERE segment = ? "
            f"AND exited_at IS NULL AND customer_id IN (SELECT customer_id FROM {exits})",
            [now, segment],
        )
    if counts[1]:
        wh.execute(
            f"INSERT INTO audience_changes {_CHANGE_COLUMNS} "
            f"SELECT 'segment', ?, customer_id, 'entered', ?, ? FROM {entries}",
            [segment, now, wall],
        )
        # Left and re-entered at the same instant (two refreshes at one --now): no gap.
        wh.execute(
            "DELETE FROM segment_memberships WHERE segment = ? AND entered_at = ? "
            f"AND customer_id IN (SELECT customer_id FROM {entries})",
            [segment, now],
        )
        wh.execute(
            "INSERT INTO segment_memberships (segment, customer_id, entered_at, exited_at) "
            f"SELECT ?, customer_id, ?, NULL FROM {entries}",
            [segment, now],
        )


def create_temp_as(name: str, query: exp.Query) -> exp.Create:
    """``CREATE TEMP TABLE name AS query`` as an expression (rendered once, for the engine)."""
    create = sqlglot.parse_one(f"CREATE TEMP TABLE {quote(name)} AS SELECT 1", read="duckdb")
    create.set("expression", query)
    assert isinstance(create, exp.Create)
    return create


def _save_state(wh: Warehouse, result: RefreshResult, now: datetime) -> None:
    ts = pa.timestamp("us", tz="UTC")
    row = pa.table(
        {
            "segment": [result.segment],
            "refreshed_at": pa.array([now], ts),
            "finished_at": pa.array([datetime.now(UTC)], ts),
            "seconds": pa.array([result.seconds], pa.float64()),
            "members": pa.array([result.members], pa.int64()),
            "entered": pa.array([result.entered], pa.int64()),
            "exited": pa.array([result.exited], pa.int64()),
            "sql": [result.sql],
        }
    )
    wh.load(SEGMENT_STATE, row, on_conflict="update")


def retire_segments(wh: Warehouse, keep: set[str], *, now: datetime) -> int:
    """Close the open memberships of segments that are no longer defined; returns how many."""
    rows = wh.fetch("SELECT DISTINCT segment FROM segment_memberships WHERE exited_at IS NULL")
    closed = 0
    for (name,) in rows:
        if name in keep:
            continue
        closed += int(
            wh.scalar(
                "SELECT count(*) FROM segment_memberships WHERE segment = ? AND exited_at IS NULL",
                [name],
            )
            or 0
        )
        with wh.transaction():
            wh.execute(
                f"INSERT INTO audience_changes {_CHANGE_COLUMNS} "
                "SELECT 'segment', segment, customer_id, 'exited', ?, ? FROM segment_memberships "
                "WHERE segment = ? AND exited_at IS NULL",
                [now, datetime.now(UTC), name],
            )
            wh.execute(
                "UPDATE segment_memberships SET exited_at = ? "
                "WHERE segment = ? AND exited_at IS NULL",
                [now, name],
            )
            wh.execute("DELETE FROM segment_state WHERE segment = ?", [name])
    return closed


@dataclass(frozen=True)
class SegmentStatus:
    """A segment's stored state: current size, sendable size, last refresh."""

    members: int
    sendable: int
    refreshed_at: datetime | None
    seconds: float | None
    entered: int | None
    exited: int | None


def segment_status(wh: Warehouse, names: list[str], *, purpose: str) -> dict[str, SegmentStatus]:
    """The stored state of each named segment (zeros for one never refreshed)."""
    sizes = dict(
        wh.fetch(
            "SELECT segment, count(*) FROM segment_memberships WHERE exited_at IS NULL "
            "GROUP BY segment"
        )
    )
    sendable = dict(
        wh.fetch(
            "SELECT segment, count(DISTINCT customer_id) FROM sendable WHERE purpose = ? "
            "GROUP BY segment",
            [purpose],
        )
    )
    state = {
        r[0]: r[1:]
        for r in wh.fetch(
            "SELECT segment, refreshed_at, seconds, entered, exited FROM segment_state"
        )
    }
    out: dict[str, SegmentStatus] = {}
    for name in names:
        refreshed_at, seconds, entered, exited = state.get(name, (None, None, None, None))
        out[name] = SegmentStatus(
            int(sizes.get(name, 0)),
            int(sendable.get(name, 0)),
            refreshed_at,
            seconds,
            entered,
            exited,
        )
    return out


def last_refreshed(wh: Warehouse) -> dict[str, datetime]:
    """When each segment was last refreshed (the ``--now`` of that refresh)."""
    return {r[0]: r[1] for r in wh.fetch("SELECT segment, refreshed_at FROM segment_state")}
