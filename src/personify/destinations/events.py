"""Event forwarding (``kind: events``): the stored event stream posted to an API within seconds.

Every event in ``events`` — tracking calls, and events from files and webhooks — that the
destination's filters (``events``, ``types``, ``sources``) and its consent rule let through goes
out in Segment's shape (``messageId``, ``type``, ``event``, ``userId``, ``anonymousId``,
``timestamp``, ``properties``, ``traits``, ``context`` …), in batches of ``batch_size``.

**Where a forwarding starts, and nothing skipped.** Events are read in the order they were
*stored*: ``events.stored_at``, which every insert sets to the real clock (the warehouse's
load does it, whoever the writer — :attr:`~personify.warehouse.schema.Table.stamped`), or
``received_at`` for rows stored before that column existed (:data:`_STORED`). ``received_at``
alone would skip what is stored long after it (a webhook or bus replay, a NATS backlog worked
off later, an old file imported keep their old ``received_at``). A stamp taken before its
transaction commits can still be passed by a forwarding meanwhile (a file import's batches, a
second ``serve``), so each destination keeps a *floor* (``source_state``, as
``destination:NAME`` / :data:`POSITION`) and, per event, its outcome in ``event_forwards``
(``sent``, ``rejected``, ``without_consent``). A forwarding reads the events stored since the
floor that have no outcome yet, oldest first; only once it has handled all of them does the
floor move up to ``lookback`` before the forwarding's start, and outcomes below the floor are
pruned (rejected ones are kept). An event whose insert commits up to ``lookback`` after its
stamp is therefore still found — and is found once: its message id is recorded, with the
stored instant of the copy handled. An event whose data changed in place (a file imported again
with ``on_conflict: update``, a reconciliation's repair) takes a new stamp (the load's:
:func:`~personify.warehouse.base.restamped`) and is handled again, once, its outcome replaced;
one stitched to a customer (``customer_id``, which no payload carries) keeps its stamp. The first
forwarding's floor is ``start``: ``now`` (default: a new destination does not flood a tool with
history), ``all`` or an instant.

**At least once, never doubled by us.** An event's outcome is recorded once the API answered
2xx, by the thousand events or the second (:class:`_Outcomes`; a commit per batch of 100 cost
more than its request), and whatever is left when the forwarding ends or stops: a crash between
a 2xx and its record sends those events again — at most a second's —, with the same
``messageId`` each (the tool's idempotency key). A
batch the API refuses (4xx) is halved until the refused events stand alone, each kept as
``rejected`` with the answer (masked) and never sent again; 401, 403, 404 and 405 (and an
OAuth token endpoint's refusal) stop the forwarding; 5xx, 429 and timeouts are retried by the
polite client (:mod:`personify.http`) and, past its retries, stop the forwarding with its
position kept — the next one starts there.

**Consent, in the warehouse.** An event's person is its ``customer_id`` — or, not resolved yet,
the customer its ``userId`` or ``anonymousId`` is an identifier of. ``data_sharing`` (the
default) leaves out the events of people who opted out of data sharing (the rules of
:func:`personify.privacy.consent.do_not_sell`), and any event carrying a Global Privacy Control
signal (``context.gpc``); an opt-in purpose forwards only events of people who granted it. They
are recorded ``without_consent`` (decided once, as of the forwarding). An erased person's events
are deleted by the erasure: gone from ``events``, they are not forwarded — and each batch is
checked against ``events`` just before it is sent, and outcomes (sent, rejected or without
consent) are recorded only for events still stored, so an erasure running meanwhile wins too.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import pyarrow as pa

from personify import clock
from personify.config import EventsDestination, duration_seconds
from personify.destinations.state import run_name, still_pushing
from personify.http import HttpClient
from personify.http.errors import RestHttpError
from personify.ingest.tracking.normalize import EVENT_FIELDS
from personify.privacy.masking import mask_text
from personify.warehouse.base import UNNEST, Warehouse

POSITION: Final = "forwarding"
"""The ``source_state.resource`` (under ``destination:NAME``) holding a destination's floor and
its running totals."""
READ: Final = 5_000
"""Events read from the warehouse at a time."""
STOPPING: Final = frozenset({401, 403, 404, 405})
"""Refusals that are not about an event: the forwarding stops (what went is recorded)."""
PRUNED: Final = "before_floor_sent_or_left_out"
"""The export's count (per events destination) of a person's events handled below its floor,
whose outcome was pruned: sent or left out for consent (:func:`forwarded_to`)."""
TOTALS: Final = ("sent", "rejected", "without_consent")
"""The outcomes counted over a destination's life (``personify status``): each time an event
was handled — a corrected event sent again is two sends, its first outcome counted whether
pruned or replaced."""

_COLUMNS: Final = (*EVENT_FIELDS, "customer_id")
_STORED: Final = "coalesce(e.stored_at, e.received_at)"
"""When an event was stored — the forwarding's order, floor and pages: ``stored_at``, set by
every insert; ``received_at`` for the rows stored before ``stored_at`` existed."""
_JSON: Final = frozenset({"properties", "context", "traits"})
_SEGMENT_NAMES: Final = {
    "message_id": "messageId",
    "type": "type",
    "event": "event",
    "name": "name",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "timestamp": "timestamp",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
}


class Position(msgspec.Struct):
    """A destination's floor (events stored before it are done) and its totals."""

    floor: str
    totals: dict[str, int] = {}
    start: str | None = None
    """The first forwarding's floor (``start``; ``None`` in a position saved before it was
    kept): events stored before it were never forwarded."""


def position(wh: Warehouse, name: str) -> Position | None:
    """The destination's position, or ``None`` before its first forwarding."""
    raw = wh.scalar(
        "SELECT CAST(state AS VARCHAR) FROM source_state WHERE source = ? AND resource = ?",
        [run_name(name), POSITION],
    )
    if raw is None:
        return None
    try:
        return msgspec.json.decode(str(raw), type=Position)
    except msgspec.DecodeError:
        return None


def _save(wh: Warehouse, name: str, pos: Position) -> None:
    from personify.warehouse.schema import SOURCE_STATE

    ts = pa.timestamp("us", tz="UTC")
    wh.load(
        SOURCE_STATE,
        pa.table(
            {
                "source": [run_name(name)],
                "resource": [POSITION],
                "state": [msgspec.json.encode(pos).decode()],
                "last_sync_at": pa.array([None], ts),
                "updated_at": pa.array([clock.now()], ts),
            }
        ),
        on_conflict="update",
        update_columns=["state", "updated_at"],
    )


def _filters(d: EventsDestination) -> tuple[str, list[Any]]:
    """The destination's filters as a condition on ``events e`` and its parameters."""
    parts: list[str] = []
    params: list[Any] = []
    if d.types is not None:
        parts.append(f"e.type IN (SELECT {UNNEST})")
        params.append(list(d.types))
    if d.events is not None:
        parts.append(f"(e.type <> 'track' OR e.event IN (SELECT {UNNEST}))")
        params.append(list(d.events))
    if d.sources is not None:
        parts.append(f"e.source IN (SELECT {UNNEST})")
        params.append(list(d.sources))
    return " AND ".join(parts) or "TRUE", params


def _waiting(d: EventsDestination, floor: datetime) -> tuple[str, list[Any]]:
    """The condition on ``events e`` (and its parameters) of the events the destination has
    still to handle: stored since ``floor``, without an outcome for the event as stored now
    (an outcome keeps the stored instant of what was handled: an event stored again since — a
    changed copy updated in place, which takes a new ``stored_at`` — is handled again)."""
    where, params = _filters(d)
    # (the floor said twice: as the order's expression — PostgreSQL's index on it — and column by
    # column, which DuckDB's zone maps of stored_at and received_at prune by: 5 M stored events,
    # 75 k above the floor, counted in 1.3 ms instead of 20 with the expression alone)
    return (
        f"{_STORED} >= ? AND (e.stored_at >= ? OR (e.stored_at IS NULL AND e.received_at >= ?)) "
        f"AND {where} AND NOT EXISTS (SELECT 1 FROM event_forwards f "
        f"WHERE f.destination = ? AND f.message_id = e.message_id AND f.received_at >= {_STORED})",
        [floor, floor, floor, *params, d.name],
    )


def _page(
    wh: Warehouse,
    d: EventsDestination,
    floor: datetime,
    limit: int,
    upto: datetime | None = None,
    after: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` events waiting (stored at ``upto`` at the latest: a forwarding ends even
    while events keep arriving — the next one takes those), in the order they were stored, after
    the event ``after`` (stored at, message id: the last one of the page before — a backlog is
    read once, not again from the floor for every page; a row committed meanwhile before it is
    the next forwarding's). Each row carries its ``stored`` instant (:data:`_STORED`)."""
    where, params = _waiting(d, floor)
    if upto is not None:
        where += f" AND {_STORED} <= ?"
        params = [*params, upto]
    if after is not None:
        where += f" AND ({_STORED} > ? OR ({_STORED} = ? AND e.message_id > ?))"
        params = [*params, after[0], after[0], after[1]]
    cols = ", ".join(f"CAST(e.{c} AS VARCHAR) AS {c}" if c in _JSON else f"e.{c}" for c in _COLUMNS)
    rows = wh.fetch(
        f"SELECT {cols}, {_STORED} AS stored_position FROM events e WHERE {where} "
        f"ORDER BY {_STORED}, e.message_id LIMIT {int(limit)}",
        params,
    )
    out = []
    for row in rows:
        record = dict(zip((*_COLUMNS, "stored"), row, strict=True))
        for c in _JSON:
            text = record[c]
            try:
                record[c] = None if text is None else json.loads(text)
            except ValueError:
                record[c] = None
        out.append(record)
    return out


def payload(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the API receives it: Segment's names, ISO 8601 times, no empty fields."""
    out: dict[str, Any] = {}
    for column, name in _SEGMENT_NAMES.items():
        value = row.get(column)
        if value is None or (column in _JSON and value == {}):
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def _gpc(row: dict[str, Any]) -> bool:
    context = row.get("context")
    value = context.get("gpc") if isinstance(context, dict) else None
    return value is True or value == 1 or (isinstance(value, str) and value.strip() == "1")


def _people(wh: Warehouse, rows: Sequence[dict[str, Any]]) -> dict[str, str | None]:
    """Each event's person (message id → customer id): its own, else the customer its user id
    (then anonymous id) identifies — one query for the page."""
    wanted = sorted(
        {
            str(v)
            for r in rows
            if not r["customer_id"]
            for v in (r["user_id"], r["anonymous_id"])
            if v
        }
    )
    known: dict[tuple[str, str], str] = {}
    if wanted:
        for kind, value, cid in wh.fetch(
            "SELECT kind, value, min(customer_id) FROM identities "
            f"WHERE kind IN ('user_id', 'anonymous_id') AND value IN (SELECT {UNNEST}) "
            "GROUP BY kind, value",
            [wanted],
        ):
            known[(str(kind), str(value))] = str(cid)
    out: dict[str, str | None] = {}
    for r in rows:
        person = r["customer_id"]
        if not person and r["user_id"]:
            person = known.get(("user_id", str(r["user_id"])))
        if not person and r["anonymous_id"]:
            person = known.get(("anonymous_id", str(r["anonymous_id"])))
        out[str(r["message_id"])] = str(person) if person else None
    return out


def allowed(wh: Warehouse, d: EventsDestination, rows: Sequence[dict[str, Any]]) -> set[str]:
    """The message ids of ``rows`` the destination may receive (the consent check, set-wise in
    the warehouse; fail closed for an opt-in)."""
    from personify.privacy.consent import DATA_SHARING, consented, do_not_sell

    rule = d.consent_rule
    if rule is None:
        return {str(r["message_id"]) for r in rows}
    people = _people(wh, rows)
    ids = sorted({p for p in people.values() if p})
    if rule.purpose == DATA_SHARING:  # an opt-out: everyone but those who opted out
        out = do_not_sell(wh, ids)
        return {
            str(r["message_id"])
            for r in rows
            if not _gpc(r) and people[str(r["message_id"])] not in out
        }
    granted = consented(wh, ids, purpose=rule.purpose, channel=rule.channel)
    return {
        str(r["message_id"])
        for r in rows
        if not _gpc(r) and people[str(r["message_id"])] in granted
    }


def _record(
    wh: Warehouse,
    d: EventsDestination,
    rows: Sequence[dict[str, Any]],
    status: str,
    errors: Sequence[str | None] | None = None,
) -> None:
    """Record ``rows``' outcome (``errors``: each one's answer, for rejected ones), as of when
    each was stored — only those whose event is still stored, checked in the same transaction
    (checking the push's lock first): an erasure deletes an event's outcome and the event
    together, so an outcome recorded after it would outlive the event (on PostgreSQL the events
    are read ``FOR SHARE``: an erasure deleting one now is waited for — and :func:`~personify.
    privacy.erase` locks the person's events before it deletes their outcomes, so one that
    comes second waits for this commit and deletes what it recorded)."""
    from personify.warehouse.schema import EVENT_FORWARDS

    if not rows:
        return
    n = len(rows)
    ts = pa.timestamp("us", tz="UTC")
    ids = [str(r["message_id"]) for r in rows]
    table = pa.table(
        {
            "destination": [d.name] * n,
            "message_id": ids,
            "received_at": pa.array([r["stored"] for r in rows], ts),
            "status": [status] * n,
            "error": pa.array(errors if errors is not None else [None] * n, pa.string()),
            "forwarded_at": pa.array([clock.now()] * n, ts),
        }
    )
    lock = "" if wh.capabilities.single_process else " FOR SHARE"
    with wh.transaction():
        still_pushing(wh, d.name)  # (PostgreSQL: its lock, lost with a connection?)
        stored = {
            str(m)
            for (m,) in wh.fetch(
                f"SELECT message_id FROM events WHERE message_id IN (SELECT {UNNEST}) "
                f"ORDER BY message_id{lock}",  # (locked in this order: the erasure's too)
                [sorted(set(ids))],
            )
        }
        if len(stored) < len(set(ids)):  # (an erasure deleted some since their page was read)
            table = table.filter(pa.array([m in stored for m in ids], pa.bool_()))
        if table.num_rows:
            # an outcome of an earlier copy (the event changed since, stored again) is replaced
            # whole — its stored instant too, which an upsert leaves as a column it does not
            # compare (base.UNCOMPARED) —, and counted in the totals first, as pruning it
            # would have: the totals count each time an event was handled, the same whether
            # its earlier outcome was still recorded or not
            _count_replaced(wh, d.name, sorted(stored))
            wh.execute(
                "DELETE FROM event_forwards WHERE destination = ? "
                f"AND message_id IN (SELECT {UNNEST})",
                [d.name, sorted(stored)],
            )
            wh.load(EVENT_FORWARDS, table, on_conflict="update")


def _count_replaced(wh: Warehouse, name: str, ids: Sequence[str]) -> None:
    """Add the outcomes recorded for ``ids`` (about to be replaced) to the destination's
    totals — in the transaction replacing them."""
    replaced = wh.fetch(
        "SELECT status, count(*) FROM event_forwards WHERE destination = ? "
        f"AND message_id IN (SELECT {UNNEST}) GROUP BY status",
        [name, list(ids)],
    )
    pos = position(wh, name)
    if not replaced or pos is None:
        return
    for status, n in replaced:
        pos.totals[str(status)] = pos.totals.get(str(status), 0) + int(n)
    _save(wh, name, pos)


class _Outcomes:
    """Outcomes recorded by the thousand events or the second, as a push's acknowledgements
    are (:class:`~personify.destinations.state.Acks`): 10,000 events in batches of 100 spent
    45 ms a batch committing them one batch at a time, more than the requests. Only events
    still stored are recorded (an erasure that ran since their batch went deleted theirs:
    :func:`_record` checks, in the transaction recording them)."""

    EVERY_EVENTS: Final = 1_000
    EVERY_SECONDS: Final = 1.0

    def __init__(self, wh: Warehouse, d: EventsDestination) -> None:
        self.wh, self.d = wh, d
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.n = 0
        self.flushed = time.monotonic()

    def add(self, rows: Sequence[dict[str, Any]], status: str) -> None:
        if not rows:
            return
        self.rows.setdefault(status, []).extend(rows)
        self.n += len(rows)
        if self.n >= self.EVERY_EVENTS or time.monotonic() - self.flushed >= self.EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        rows, self.rows, self.n = self.rows, {}, 0
        self.flushed = time.monotonic()
        for status, some in rows.items():  # (those still stored: _record checks)
            _record(self.wh, self.d, some, status)


def _still_stored(wh: Warehouse, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` whose event is still in ``events`` (an erasure may have deleted some since the
    page was read)."""
    if not rows:
        return []
    ids = [str(r["message_id"]) for r in rows]
    kept = {
        str(m)
        for (m,) in wh.fetch(
            f"SELECT message_id FROM events WHERE message_id IN (SELECT {UNNEST})", [ids]
        )
    }
    return [r for r in rows if str(r["message_id"]) in kept]


def begin(wh: Warehouse, d: EventsDestination, now: datetime) -> Position:
    """The destination's position; at its first forwarding, :attr:`EventsDestination.start`
    (recorded at once, so a failed first forwarding does not move it)."""
    pos = position(wh, d.name)
    if pos is None:
        first = d.start_at(now).isoformat()
        pos = Position(floor=first, totals={}, start=first)
        _save(wh, d.name, pos)
    return pos


def waiting(wh: Warehouse, d: EventsDestination, now: datetime) -> dict[str, Any]:
    """What the destination has still to handle: ``events_pending`` and ``lag_seconds`` (the
    age of the oldest of them; 0 when none). The age is measured with the real clock
    (:func:`~personify.clock.wall`), as ``stored_at`` is stamped: a ``--now`` earlier than the
    storage (a demo world's, a test's) would read no lag at all, one later a made-up one. A
    stamp ahead of this host's clock (another host's, skewed) reads 0."""
    pos = position(wh, d.name)
    floor = clock.parse_instant(pos.floor) if pos else d.start_at(now)
    where, params = _waiting(d, floor)
    count, oldest = wh.fetch(
        f"SELECT count(*), min({_STORED}) FROM events e WHERE {where}", params
    )[0]
    lag = 0.0
    if oldest is not None:
        oldest = oldest if isinstance(oldest, datetime) else clock.parse_instant(str(oldest))
        lag = max((clock.wall() - oldest).total_seconds(), 0.0)
    return {"events_pending": int(count or 0), "lag_seconds": round(lag, 3)}


def sample(wh: Warehouse, d: EventsDestination, now: datetime, n: int = 3) -> list[dict[str, Any]]:
    """The first ``n`` events the next forwarding would send (``--dry-run``; unmasked)."""
    pos = position(wh, d.name)
    floor = clock.parse_instant(pos.floor) if pos else d.start_at(now)
    rows = _page(wh, d, floor, n * 10)
    ok = allowed(wh, d, rows)
    return [payload(r) for r in rows if str(r["message_id"]) in ok][:n]


def forward(wh: Warehouse, d: EventsDestination, counts: dict[str, int]) -> None:
    """One forwarding of ``d``: every event waiting, sent in batches, each recorded once the
    API took it; then the floor moves up and old outcomes are pruned. Raises
    :class:`~personify.http.errors.RestError` when the API stops it (``counts`` says how far it
    got; the position is kept)."""
    now = clock.now()
    pos = begin(wh, d, now)
    floor = clock.parse_instant(pos.floor)
    counts |= {
        "events_sent": 0,
        "events_rejected": 0,
        "events_without_consent": 0,
        "requests": 0,
    }
    body_key = d.records_key
    # an OAuth token endpoint's refusal (400 invalid_grant: a revoked refresh token) is about
    # the credentials, not an event: it stops the forwarding as a 401 does
    token_url = getattr(d.client.auth, "access_token_url", None)
    outcomes = _Outcomes(wh, d)
    guard = functools.partial(still_pushing, wh, d.name)  # (before each request)
    with HttpClient(d.client, source=f"destination {d.name}", before_send=guard) as client:

        def post(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], RestHttpError]]:
            """Send ``rows``; the events the API refused, each alone, with its answer."""
            events = [payload(r) for r in rows]
            body: Any = {body_key: events} if body_key else events
            counts["requests"] += 1
            try:
                client.send(d.method, d.path, json=body)
            except RestHttpError as e:
                if e.status in STOPPING or e.status < 400 or e.status >= 500 or e.status == 408:
                    raise
                if token_url is not None and e.url == token_url:
                    raise
                if len(rows) > 1:  # which event? halves until the refused ones stand alone
                    half = len(rows) // 2
                    return post(rows[:half]) + post(rows[half:])
                return [(rows[0], e)]
            outcomes.add(rows, "sent")
            counts["events_sent"] += len(rows)
            return []

        def send(batch: list[dict[str, Any]]) -> None:
            refused = post(batch)
            if len(batch) > 1 and len(refused) == len(batch):
                # every event of the batch refused alone: the request is wrong (records_key, a
                # field the API requires), not the events — stop, nothing recorded: they wait
                e = refused[0][1]
                raise RestHttpError(
                    f"the API refused each of a batch's {len(batch)} events alone: "
                    f"{mask_text(e.message)[:300]}",
                    status=e.status,
                    url=e.url,
                    hint="check the destination's path, records_key and what the API requires; "
                    "the events wait and go at the next forwarding",
                )
            if not refused:
                return
            # (only those still stored, as the others' outcomes: an erasure since wins)
            _record(
                wh,
                d,
                [r for r, _ in refused],
                "rejected",
                [mask_text(e.message)[:500] for _, e in refused],
            )
            counts["events_rejected"] += len(refused)

        try:
            # up to what was stored when the forwarding began (stored_at is the real clock's:
            # a --now in the past still sends what is stored)
            upto = max(now, clock.wall())
            after: tuple[datetime, str] | None = None
            while page := _page(wh, d, floor, READ, upto, after):
                after = (page[-1]["stored"], str(page[-1]["message_id"]))
                ok = allowed(wh, d, page)
                refused = [r for r in page if str(r["message_id"]) not in ok]
                outcomes.add(refused, "without_consent")
                counts["events_without_consent"] += len(refused)
                go = [r for r in page if str(r["message_id"]) in ok]
                for i in range(0, len(go), d.batch_size):
                    if batch := _still_stored(wh, go[i : i + d.batch_size]):
                        send(batch)
        except Exception:  # stopped (the API, the warehouse): what the API took is recorded
            outcomes.flush()
            raise
        else:
            outcomes.flush()
        finally:
            counts["retries"] = client.stats.retries
    # everything stored before the forwarding began is handled: the floor follows, a lookback
    # behind (a writer committing late is still seen), and outcomes below it go
    # (never past the real clock less the lookback: a --now in the future skips nothing)
    moved = min(now, clock.wall()) - timedelta(seconds=duration_seconds(d.lookback))
    if moved > floor:
        old = "destination = ? AND received_at < ? AND status <> 'rejected'"
        with wh.transaction():  # (what is pruned is added to the totals: status counts it)
            pos = position(wh, d.name) or pos  # (its totals as replaced outcomes left them)
            pos.floor = moved.isoformat()
            for status, n in wh.fetch(
                f"SELECT status, count(*) FROM event_forwards WHERE {old} GROUP BY status",
                [d.name, moved],
            ):
                pos.totals[str(status)] = pos.totals.get(str(status), 0) + int(n)
            still_pushing(wh, d.name)
            _save(wh, d.name, pos)
            wh.execute(f"DELETE FROM event_forwards WHERE {old}", [d.name, moved])


def totals(wh: Warehouse, name: str) -> dict[str, int]:
    """The destination's events by outcome since it began (``sent``, ``rejected``,
    ``without_consent``): those pruned or replaced (a corrected event handled again), and
    those still recorded — each handling once (:data:`TOTALS`)."""
    pos = position(wh, name)
    out = dict(pos.totals) if pos else {}
    for status, n in wh.fetch(
        "SELECT status, count(*) FROM event_forwards WHERE destination = ? GROUP BY status",
        [name],
    ):
        out[str(status)] = out.get(str(status), 0) + int(n)
    return out


def forwarded_to(
    wh: Warehouse, destinations: Sequence[EventsDestination], events_where: tuple[str, list[Any]]
) -> list[dict[str, Any]]:
    """Where the events ``events_where`` selects (a condition on ``events``: a person's, for
    an export or an erasure report) went: per events destination that handled one of them,
    the recorded outcomes — ``sent``, ``rejected`` (posted, refused), ``without_consent`` (never
    posted) — and ``before_floor_sent_or_left_out``: those its filters take, stored between its
    start and its floor, whose outcome was pruned. Each of those was handled — *either* sent
    *or* left out for consent: which one is what pruning forgets (keeping every outcome would
    keep a row per event forwarded), so the count is of both, and named so — not "sent", which
    it bounds from above. (A position saved before its start was kept counts every one below
    its floor, those stored before its first forwarding too.) Names and counts only, no
    payload; destinations that handled none are left out."""
    cond, params = events_where
    mine = f"SELECT message_id FROM events WHERE {cond}"
    out: list[dict[str, Any]] = []
    for d in destinations:
        counts = {"sent": 0, "rejected": 0, "without_consent": 0}
        for status, n in wh.fetch(
            "SELECT status, count(*) FROM event_forwards WHERE destination = ? "
            f"AND message_id IN ({mine}) GROUP BY status",
            [d.name, *params],
        ):
            counts[str(status)] = counts.get(str(status), 0) + int(n)
        earlier = 0
        pos = position(wh, d.name)
        if pos is not None:
            filters, fparams = _filters(d)
            since = f"{_STORED} >= ? AND " if pos.start else ""  # (the floor's measure)
            earlier = int(
                wh.scalar(
                    f"SELECT count(*) FROM events e WHERE {since}{_STORED} < ? AND {filters} "
                    f"AND e.message_id IN ({mine}) AND NOT EXISTS (SELECT 1 FROM event_forwards "
                    "f WHERE f.destination = ? AND f.message_id = e.message_id)",
                    [
                        *([clock.parse_instant(pos.start)] if pos.start else []),
                        clock.parse_instant(pos.floor),
                        *fparams,
                        *params,
                        d.name,
                    ],
                )
                or 0
            )
        if earlier or any(counts.values()):
            out.append({"destination": d.name, **counts, PRUNED: earlier})
    return out
