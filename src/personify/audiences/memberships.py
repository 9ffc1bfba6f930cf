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

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import sqlglot
from sqlglot import exp

from personify import clock
from personify.audiences.segments import Segment
from personify.errors import QueryTimeout, Transient, UnsafeQueryError, WarehouseError
from personify.warehouse.base import Warehouse, quote

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
    wh: Warehouse,
    segment: Segment,
    *,
    now: datetime,
    timeout_s: float,
    max_members: int,
    wait: bool = True,
) -> RefreshResult:
    """Recompute ``segment`` at ``now`` and apply entries and exits (see the module doc).
    ``wait=False``: :class:`SegmentBusy` instead of waiting for another whole refresh of it."""
    started = time.perf_counter()
    key = uuid.uuid4().hex[:12]
    members, diff = quote(f"_personify_members_{key}"), quote(f"_personify_diff_{key}")
    with clock.frozen(now):
        query = segment.members_query()
    members_sql = wh.render(query)
    with wh.transaction(), segment.running():
        _one_refresh_at_a_time(wh, segment.name, wait=wait)
        first = not wh.fetch(
            "SELECT 1 FROM segment_memberships WHERE segment = ? AND exited_at IS NULL LIMIT 1",
            [segment.name],
        )
        again = (
            wh.scalar("SELECT refreshed_at FROM segment_state WHERE segment = ?", [segment.name])
            == now
        )
        if first and not again:
            # no open membership (a first population): every member enters — the query's
            # rows go straight into the memberships and the changes, one statement, no copy;
            # above the cap the transaction rolls back, leaving the memberships as they were
            size = wh.execute_limited(
                reading(_POPULATE, "_personify_members", query, "m"),
                [segment.name, now, segment.name, now, datetime.now(UTC)],
                timeout_s=timeout_s,
            )
            if size < 0:  # an engine that does not report counts
                size = int(
                    wh.scalar(
                        "SELECT count(*) FROM segment_memberships WHERE segment = ? "
                        "AND exited_at IS NULL",
                        [segment.name],
                    )
                    or 0
                )
            _check_cap(segment, size, max_members)
            entered, exited = size, 0
        else:
            wh.execute(f"CREATE TEMP TABLE {members} (customer_id VARCHAR NOT NULL)")
            size = wh.execute_limited(exp.insert(query, members), timeout_s=timeout_s)
            if size < 0:  # an engine that does not report counts
                size = int(wh.scalar(f"SELECT count(*) FROM {members}") or 0)
            _check_cap(segment, size, max_members)
            source = members
            if first:
                # no open membership, but refreshed at this very instant: every member
                # enters, and _apply closes the gap with an earlier exit at ``now``
                source = f"(SELECT customer_id, 'entered' AS change FROM {members}) AS d"
                entered, exited = size, 0
            else:
                wh.execute(
                    f"CREATE TEMP TABLE {diff} (customer_id VARCHAR NOT NULL, change VARCHAR)"
                )
                wh.execute(f"INSERT INTO {diff} " + _DIFF.format(members=members), [segment.name])
                counts = dict(wh.fetch(f"SELECT change, count(*) FROM {diff} GROUP BY change"))
                source = diff
                entered, exited = int(counts.get("entered", 0)), int(counts.get("exited", 0))
            if entered or exited:
                _apply(wh, segment.name, source, now, entered=entered, exited=exited, again=again)
            wh.execute(f"DROP TABLE {members}")
            if not first:
                wh.execute(f"DROP TABLE {diff}")
        seconds = time.perf_counter() - started
        result = RefreshResult(segment.name, size, entered, exited, seconds, members_sql)
        _save_state(wh, result, now)
    return result


class SegmentBusy(Exception):
    """Another process's whole refresh of the segment holds its lock (:func:`refresh_segment`
    asked not to wait: the real-time path, which a ``personify run``'s refresh — held to the
    end of its whole audiences transaction — would otherwise stall for minutes)."""

    def __init__(self, segment: str) -> None:
        super().__init__(f"segment {segment} is being refreshed whole by another process")
        self.segment = segment


def _one_refresh_at_a_time(wh: Warehouse, segment: str, *, wait: bool = True) -> None:
    """Wait, in the refresh's transaction, for any other whole refresh of ``segment`` to end
    (PostgreSQL: a transaction-level advisory lock keyed by the schema and the segment). Two of
    them at once — real-time workers (``serve --role worker`` × M) each refresh a ranking
    segment whole at every pass, a ``personify run`` meanwhile — would each take the difference
    against the memberships as they were before the other committed (READ COMMITTED), and make
    the other's entries a second time: a customer with two open memberships, told ``entered``
    twice. Waiting, the later one's statements read what the first committed and find nothing
    left to change. Held to the commit, so refreshes of several segments take them in one
    order, their names' (:func:`refresh_segments`, :func:`refresh_isolated`; the project's
    too) — however they were asked (``personify segments refresh b a``) — and cannot wait on
    each other. DuckDB (one process) needs none:
    its write conflicts abort the later transaction, which is retried."""
    if not wh.capabilities.advisory_lock:
        return
    schema = wh.scalar("SELECT current_schema()")
    digest = hashlib.sha256(f"personify:segment:{schema}:{segment}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    if wait:
        wh.scalar("SELECT pg_advisory_xact_lock(?)", [key])
    elif not wh.scalar("SELECT pg_try_advisory_xact_lock(?)", [key]):
        raise SegmentBusy(segment)


def refresh_segments(
    wh: Warehouse, segments: list[Segment], *, now: datetime, timeout_s: float, max_members: int
) -> list[RefreshResult]:
    """:func:`refresh_segment` for each of ``segments``, by name (:func:`by_name`), in one
    transaction (the results in the order asked): all of them are applied, or — a segment over
    its cap or its timeout, any error — none.

    One COMMIT instead of one per segment: DuckDB then writes the memberships and changes of
    every segment as whole compressed row groups, where a segment committed alone below a row
    group (122,880 rows) goes through the write-ahead log and is compressed again by the
    checkpoints it triggers — at 1M customers, 20 segments: ~3.5 of ~18 CPU-s of a first pass
    (session 5, benchmarks/RESULTS.md)."""
    with wh.transaction():
        done = [
            refresh_segment(wh, s, now=now, timeout_s=timeout_s, max_members=max_members)
            for s in by_name(segments)
        ]
    return _as_asked(done, segments)


def by_name(segments: list[Segment]) -> list[Segment]:
    """``segments`` in the order their refreshes take their locks
    (:func:`_one_refresh_at_a_time`), whatever order they were asked in: by name, as the
    project lists them."""
    return sorted(segments, key=lambda s: s.name)


def _as_asked(results: list[RefreshResult], segments: list[Segment]) -> list[RefreshResult]:
    """``results`` in the order of ``segments`` (as they were asked for)."""
    order = {s.name: i for i, s in reversed(list(enumerate(segments)))}
    return sorted(results, key=lambda r: order.get(r.segment, len(order)))


FailureKind = Literal["sql", "cap", "timeout", "real-time-timeout"]
"""What failed in a segment's refresh (``segment_errors.kind``): ``sql`` — the warehouse refused
its query (a column that does not exist, a failed cast …); ``cap`` — a whole refresh returned
more than ``max_members``; ``timeout`` — a whole refresh ran longer than its timeout;
``real-time-timeout`` — a real-time refresh (of a few customers) did."""

WHOLE_REFRESH_ONLY: Final[frozenset[FailureKind]] = frozenset({"cap", "timeout"})
"""The kinds only a whole refresh can judge — recorded by a whole refresh, over the cap or the
timeout: a real-time refresh, of a few customers and without the cap, succeeding says nothing
about them. A real-time refresh's own timeout (``real-time-timeout``) it judged itself: its
next success clears it."""


class OverMemberCap(UnsafeQueryError):
    """A segment's whole refresh returned more customers than ``audiences.max_members``."""


def failure_kind(error: WarehouseError, *, real_time: bool = False) -> FailureKind:
    """The kind of ``error`` (:data:`FailureKind`), from its class — never from its words, so a
    reworded message behaves the same."""
    if isinstance(error, OverMemberCap):
        return "cap"
    if isinstance(error, QueryTimeout):
        return "real-time-timeout" if real_time else "timeout"
    return "sql"


@dataclass(frozen=True)
class SegmentFailure:
    """A segment whose refresh failed: its memberships were left as they were."""

    segment: str
    file: str
    """The segment's file as errors show it (relative to the project)."""
    error: WarehouseError
    """What the warehouse said (naming the file), with a hint."""
    kind: FailureKind = "sql"
    """What failed (:func:`failure_kind`)."""


def refresh_isolated(
    wh: Warehouse,
    segments: list[Segment],
    *,
    now: datetime,
    timeout_s: float,
    max_members: int,
    busy: list[str] | None = None,
) -> tuple[list[RefreshResult], list[SegmentFailure]]:
    """:func:`refresh_segments`, but a segment the warehouse refuses — an error in its SQL found
    when it runs, over its cap or its timeout — does not stop the others: it is left out (its
    memberships as they were: never emptied) and the rest are refreshed again in one
    transaction, by name (:func:`by_name`). Returns the refreshes (in the order asked) and the
    failures; each failure is recorded in ``segment_errors`` (its refresh clears it:
    :func:`failing_segments`). Transient errors (a busy warehouse) still raise: nothing is
    applied. With ``busy`` (a list), a segment whose whole refresh another process holds
    (PostgreSQL) is not waited for: it is left out, its name added to ``busy``, the others
    refreshed again — no failure is recorded (that refresh does it)."""
    todo = by_name(segments)
    failed: list[SegmentFailure] = []
    while True:
        failure: SegmentFailure | None = None
        try:
            with wh.transaction():
                results = []
                for segment in todo:
                    try:
                        results.append(
                            refresh_segment(
                                wh,
                                segment,
                                now=now,
                                timeout_s=timeout_s,
                                max_members=max_members,
                                wait=busy is None,
                            )
                        )
                    except WarehouseError as e:
                        if not isinstance(e, Transient):
                            failure = SegmentFailure(
                                segment.name,
                                segment.shown or str(segment.file),
                                e,
                                failure_kind(e),
                            )
                        raise
                record_failures(wh, failed, now)  # (with the others: one commit)
            return _as_asked(results, list(segments)), failed
        except SegmentBusy as e:
            assert busy is not None  # (raised only when not waiting)
            busy.append(e.segment)
            todo = [s for s in todo if s.name != e.segment]
        except WarehouseError:
            if failure is None:  # (not a segment's own: the commit, a busy warehouse)
                raise
            failed.append(failure)
            todo = [s for s in todo if s.name != failure.segment]


def record_failures(
    wh: Warehouse, failed: list[SegmentFailure], now: datetime, *, real_time: bool = False
) -> None:
    """Keep each failure in ``segment_errors`` (the engine's words masked, as the segment's
    error already holds them: :meth:`Segment.running`) with its ``kind``; the segment's next
    whole refresh clears it, and so does a real-time one unless the kind is a whole refresh's
    (:func:`cleared_by_real_time`). A ``real_time`` failure never replaces a whole refresh's
    cap or timeout (:data:`WHOLE_REFRESH_ONLY`): written over it, its kind would let the next
    real-time success clear a verdict only the next whole refresh can give (checked by the
    upsert itself, against a whole refresh recording meanwhile)."""
    from personify.privacy.masking import mask_text

    kinds = sorted(WHOLE_REFRESH_ONLY)
    keep = (
        f" WHERE segment_errors.kind NOT IN ({', '.join(repr(k) for k in kinds)})"
        if real_time
        else ""
    )
    for f in failed:
        wh.execute(
            "INSERT INTO segment_errors (segment, file, error, failed_at, recorded_at, kind) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (segment) DO UPDATE SET file = excluded.file, "
            "error = excluded.error, failed_at = excluded.failed_at, "
            f"recorded_at = excluded.recorded_at, kind = excluded.kind{keep}",
            [f.segment, f.file, mask_text(str(f.error)), now, datetime.now(UTC), f.kind],
        )


@dataclass(frozen=True)
class FailingSegment:
    """A segment whose last refresh failed (``segment_errors``): it kept its memberships."""

    segment: str
    file: str
    error: str
    """What the warehouse said, masked, with the hint."""
    failed_at: datetime
    kind: str
    """What failed (:data:`FailureKind`)."""


def failing_segments(wh: Warehouse) -> list[FailingSegment]:
    """The segments whose last refresh failed on the warehouse, by name (none once they
    refresh, or are removed from the project)."""
    return [
        FailingSegment(str(s), str(f), str(e), t, str(k))
        for s, f, e, t, k in wh.fetch(
            "SELECT segment, file, error, failed_at, kind FROM segment_errors ORDER BY segment"
        )
    ]


def cleared_by_real_time(wh: Warehouse) -> set[str]:
    """The segments in ``segment_errors`` whose failure a successful real-time refresh clears:
    it ran the segment's query as it is now, so the error the warehouse found in it — or the
    real-time path's own timeout — is gone (one read per pass). Not a whole refresh over the
    cap or the timeout (:data:`WHOLE_REFRESH_ONLY`): the next whole refresh
    (:func:`refresh_isolated`, ``personify run``) tells. Decided by the recorded ``kind``, never
    by the error's words."""
    return {
        str(segment)
        for segment, kind in wh.fetch("SELECT segment, kind FROM segment_errors")
        if kind not in WHOLE_REFRESH_ONLY
    }


def clear_failure(wh: Warehouse, segment: str) -> None:
    """Forget ``segment``'s recorded failure (``personify status`` stops showing it)."""
    wh.execute("DELETE FROM segment_errors WHERE segment = ?", [segment])


def clear_real_time_failure(wh: Warehouse, segment: str) -> None:
    """Forget ``segment``'s recorded failure after its real-time refresh succeeded — unless the
    row says, by now, one only a full refresh can judge (:data:`WHOLE_REFRESH_ONLY`): another
    process's full refresh may have recorded it since :func:`cleared_by_real_time` was read, and
    the condition is checked by the ``DELETE`` itself (PostgreSQL re-checks a row it waited for)."""
    kinds = sorted(WHOLE_REFRESH_ONLY)
    wh.execute(
        "DELETE FROM segment_errors WHERE segment = ? AND kind NOT IN "
        f"({', '.join('?' for _ in kinds)})",
        [segment, *kinds],
    )


def _check_cap(segment: Segment, size: int, max_members: int) -> None:
    if size > max_members:
        raise OverMemberCap(
            f"segment {segment.name!r} returned {size:,} customers, more than the cap "
            f"({max_members:,}); its memberships were left as they were",
            hint="narrow the query, or raise audiences.max_members in personify.yml",
        )


_POPULATE = (
    "WITH added AS (INSERT INTO segment_memberships (segment, customer_id, entered_at, "
    "exited_at) SELECT ?, customer_id, ?, NULL FROM _personify_members AS m "
    f"RETURNING customer_id) INSERT INTO audience_changes {_CHANGE_COLUMNS} "
    "SELECT 'segment', ?, customer_id, 'entered', ?, ? FROM added"
)
"""A first population: the segment's members straight into ``segment_memberships`` and their
``entered`` changes into ``audience_changes`` (parameters: segment, now, segment, now, recorded
at). Against a copy into a temporary table first, then this statement from it: the members are
neither written nor read twice."""


def refresh_for_isolated(
    wh: Warehouse, segment: Segment, only: str, *, now: datetime, timeout_s: float
) -> tuple[int, int] | SegmentFailure:
    """:func:`refresh_for`, but a segment the warehouse refuses (an error in its SQL found when
    it runs, its timeout) is rolled back — its memberships for these customers as they were —
    recorded in ``segment_errors`` as a batch refresh records it (:func:`refresh_isolated`) —
    but not over a whole refresh's cap or timeout (:func:`record_failures`) — and returned
    instead of raised, so the real-time path goes on with the other segments.
    Transient errors (a busy warehouse, a write conflict) still raise: the pass is retried."""
    try:
        return refresh_for(wh, segment, only, now=now, timeout_s=timeout_s)
    except WarehouseError as e:
        if isinstance(e, Transient):
            raise
        where = segment.shown or str(segment.file)
        failure = SegmentFailure(segment.name, where, e, failure_kind(e, real_time=True))
    record_failures(wh, [failure], now, real_time=True)
    return failure


def refresh_for(
    wh: Warehouse, segment: Segment, only: str, *, now: datetime, timeout_s: float
) -> tuple[int, int]:
    """The real-time refresh: recompute ``segment`` at ``now`` for the customers listed in the
    (temporary) table ``only`` and apply their entries and exits as :func:`refresh_segment` does
    (same query, same difference, same ``audience_changes``); other customers and the
    segment's refresh state are left alone. Returns ``(entered, exited)``."""
    key = uuid.uuid4().hex[:12]
    members, diff = quote(f"_personify_members_{key}"), quote(f"_personify_diff_{key}")
    listed = exp.select("customer_id").from_(exp.to_table(only))
    with clock.frozen(now):
        query = (
            exp.select("customer_id")
            .from_(segment.members_query().subquery("m"))
            .where(exp.column("customer_id").isin(query=listed))
        )
    with wh.transaction():
        wh.execute(f"CREATE TEMP TABLE {members} (customer_id VARCHAR NOT NULL)")
        with segment.running():
            wh.execute_limited(exp.insert(query, members), timeout_s=timeout_s)
        wh.execute(f"CREATE TEMP TABLE {diff} (customer_id VARCHAR NOT NULL, change VARCHAR)")
        sql = _DIFF.replace(
            "WHERE segment = ? AND exited_at IS NULL",
            "WHERE segment = ? AND exited_at IS NULL "
            f"AND customer_id IN (SELECT customer_id FROM {quote(only)})",
        )
        wh.execute(f"INSERT INTO {diff} " + sql.format(members=members), [segment.name])
        counts = dict(wh.fetch(f"SELECT change, count(*) FROM {diff} GROUP BY change"))
        entered, exited = int(counts.get("entered", 0)), int(counts.get("exited", 0))
        if entered or exited:
            _apply(wh, segment.name, diff, now, entered=entered, exited=exited, again=True)
        wh.execute(f"DROP TABLE {members}")
        wh.execute(f"DROP TABLE {diff}")
    return entered, exited


_DIFF = (
    "SELECT coalesce(t.customer_id, m.customer_id), "
    "CASE WHEN t.customer_id IS NULL THEN 'exited' ELSE 'entered' END "
    "FROM {members} AS t FULL OUTER JOIN (SELECT customer_id FROM segment_memberships "
    "WHERE segment = ? AND exited_at IS NULL) AS m ON m.customer_id = t.customer_id "
    "WHERE t.customer_id IS NULL OR m.customer_id IS NULL"
)
"""Both sides of the difference in one join: members without an open membership enter, open
memberships without a member exit."""


def _apply(
    wh: Warehouse,
    segment: str,
    diff: str,
    now: datetime,
    *,
    entered: int,
    exited: int,
    again: bool,
) -> None:
    """Record the changes, close the exits, open the entries (``again``: refreshed before at
    this very instant, so an exit and a re-entry may meet). ``diff``: a table or a
    parenthesized query of ``(customer_id, change)``."""
    if entered and not exited and not again:
        # only entries (a first population): each membership and its change row are
        # written by one statement, reading the difference once
        wh.execute(
            "WITH added AS (INSERT INTO segment_memberships (segment, customer_id, entered_at, "
            f"exited_at) SELECT ?, customer_id, ?, NULL FROM {diff} RETURNING customer_id) "
            f"INSERT INTO audience_changes {_CHANGE_COLUMNS} "
            "SELECT 'segment', ?, customer_id, 'entered', ?, ? FROM added",
            [segment, now, segment, now, datetime.now(UTC)],
        )
        return
    wh.execute(
        f"INSERT INTO audience_changes {_CHANGE_COLUMNS} "
        f"SELECT 'segment', ?, customer_id, change, ?, ? FROM {diff}",
        [segment, now, datetime.now(UTC)],
    )
    if exited:
        wh.execute(
            "UPDATE segment_memberships SET exited_at = ? WHERE segment = ? "
            f"AND exited_at IS NULL AND customer_id IN (SELECT customer_id FROM {diff} "
            "WHERE change = 'exited')",
            [now, segment],
        )
    if entered and again:
        # Left and re-entered at the same instant (two refreshes at one --now): no gap.
        wh.execute(
            "DELETE FROM segment_memberships WHERE segment = ? AND entered_at = ? "
            f"AND customer_id IN (SELECT customer_id FROM {diff} WHERE change = 'entered')",
            [segment, now],
        )
    if entered:
        wh.execute(
            "INSERT INTO segment_memberships (segment, customer_id, entered_at, exited_at) "
            f"SELECT ?, customer_id, ?, NULL FROM {diff} WHERE change = 'entered'",
            [segment, now],
        )


def reading(template: str, placeholder: str, query: exp.Query, alias: str) -> exp.Expr:
    """The statement ``template`` (DuckDB SQL) with each reference to the table ``placeholder``
    replaced by ``query`` as a subquery named ``alias``: one statement that reads a query
    directly, where a copy into a temporary table would write and read its rows twice."""
    statement = sqlglot.parse_one(template, read="duckdb")
    for table in statement.find_all(exp.Table):
        if table.name == placeholder:
            table.replace(query.subquery(alias))
    return statement


def create_temp_as(name: str, query: exp.Query) -> exp.Create:
    """``CREATE TEMP TABLE name AS query`` as an expression (rendered once, for the engine)."""
    create = sqlglot.parse_one(f"CREATE TEMP TABLE {quote(name)} AS SELECT 1", read="duckdb")
    create.set("expression", query)
    assert isinstance(create, exp.Create)
    return create


_STATE_COLUMNS = ("refreshed_at", "finished_at", "seconds", "members", "entered", "exited", "sql")
_SAVE_STATE = (
    f"INSERT INTO segment_state (segment, {', '.join(_STATE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_STATE_COLUMNS) + 1))}) ON CONFLICT (segment) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS)
)


def _save_state(wh: Warehouse, result: RefreshResult, now: datetime) -> None:
    clear_failure(wh, result.segment)
    wh.execute(
        _SAVE_STATE,
        [
            result.segment,
            now,
            datetime.now(UTC),
            result.seconds,
            result.members,
            result.entered,
            result.exited,
            result.sql,
        ],
    )


def retire_segments(wh: Warehouse, keep: set[str], *, now: datetime) -> int:
    """Close the open memberships of segments that are no longer defined, and forget their
    failures; returns how many memberships."""
    for (name,) in wh.fetch("SELECT segment FROM segment_errors"):
        if name not in keep:
            wh.execute("DELETE FROM segment_errors WHERE segment = ?", [name])
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
