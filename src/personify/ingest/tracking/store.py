"""One transaction: events and quarantine rows in, what became of each event out.

:func:`store` runs in the caller's transaction (or opens one): it loads the events with
``on_conflict="ignore"`` on ``message_id`` — the forever-dedup, kept by the warehouse: a primary
key where keys are cheap (PostgreSQL), an anti-join under the table's write lock where they are
not (DuckDB, see :mod:`personify.warehouse.duckdb.keyless`) — and the quarantine rows (their
ids are deterministic, so a retried request quarantines nothing twice). When fewer events were
inserted than given, some ``messageId`` was already stored: only then does it read those ids back
and sort each event into *duplicate* (a resend, nothing stored) or *conflict* (another event
reusing the id: the stored event is kept and this one is quarantined as ``conflicting_duplicate``).
Within one call, the first event with an id wins the same way.

Same payload hash: a resend. Another hash is not yet a conflict: the hash is of the bytes as sent
(canonicalizing every event would cost the hot path half again, see
:func:`~personify.ingest.tracking.normalize.payload_hash`), so a resend with its keys in another
order, other whitespace, or sent to ``/v1/track`` after ``/v1/batch`` hashes differently. Only
for those few ids is the stored event read back and compared by content (:func:`content`): equal,
it is a duplicate; different, a conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Final

import msgspec
import pyarrow as pa

from personify.errors import WarehouseError
from personify.ingest import quarantine as q
from personify.ingest.tracking.normalize import (
    CONFLICTING_DUPLICATE,
    EPOCH,
    EVENT_COLUMNS,
    Row,
    micros,
)
from personify.ingest.tracking.rows import CONFLICT, DUPLICATE, NEW, QuarantineRow, quarantine_row
from personify.warehouse import Warehouse
from personify.warehouse.schema import EVENTS, QUARANTINE

__all__ = [  # the statuses and quarantine rows live in .rows (light), re-exported here
    "CONFLICT",
    "DUPLICATE",
    "NEW",
    "QuarantineRow",
    "conflict_row",
    "content",
    "events_table",
    "quarantine_row",
    "quarantine_table",
    "row_payload",
    "store",
]

_TS = pa.timestamp("us", tz="UTC")
_S, _I = pa.string(), pa.int64()
_EVENT_TYPES: Final = (_S, _S, _S, _S, _S, _TS, _TS, _TS, _S, _S, _S, _S, _S, _S, _S, _I, _S)
_QUARANTINE_TYPES: Final = (_S, _S, _TS, _S, _S, _S, _S)
_LOOKUP_CHUNK: Final = 500
_HASH, _RECEIVED, _SOURCE = (
    EVENT_COLUMNS.index(c) for c in ("payload_hash", "received_at", "source")
)
_CONTENT_COLUMNS: Final = (
    "type",
    "event",
    "anonymous_id",
    "user_id",
    "name",
    "group_id",
    "previous_id",
    "timestamp",
    "received_at",
    "sent_at",
    "properties",
    "traits",
    "context",
)
"""The columns :func:`content` reads, in its order."""
_CONTENT: Final = tuple(EVENT_COLUMNS.index(c) for c in _CONTENT_COLUMNS)
_sorted = msgspec.json.Encoder(order="sorted").encode


def _table(rows: Sequence[tuple[Any, ...]], names: Sequence[str], types: Sequence[Any]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    arrays = []
    for values, kind in zip(columns, types, strict=True):
        if kind == _TS:  # µs since 1970: the same 8 bytes, viewed (no cast kernel)
            arrays.append(pa.array(values, type=_I).view(_TS))
        else:
            arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, names=list(names))


_EVENT_STRUCT: Final = pa.struct(
    [
        (name, _I if kind == _TS else kind)
        for name, kind in zip(EVENT_COLUMNS, _EVENT_TYPES, strict=True)
    ]
)


def events_table(rows: Sequence[Row]) -> pa.Table:
    """Rows (see :data:`~personify.ingest.tracking.normalize.EVENT_COLUMNS`) as Arrow: the
    tuples converted in one pass as a struct array (a third cheaper than a column at a time,
    which transposed them in Python first), times as µs viewed as timestamps."""
    if not rows:
        return _table(rows, EVENT_COLUMNS, _EVENT_TYPES)
    columns = pa.array(rows, type=_EVENT_STRUCT).flatten()
    return pa.Table.from_arrays(
        [c.view(_TS) if kind == _TS else c for c, kind in zip(columns, _EVENT_TYPES, strict=True)],
        names=list(EVENT_COLUMNS),
    )


def quarantine_table(rows: Sequence[QuarantineRow]) -> pa.Table:
    """Quarantine rows as Arrow, columns named as the ``quarantine`` table's."""
    return _table(rows, QUARANTINE.column_names, _QUARANTINE_TYPES)


def row_payload(row: Row) -> str:
    """An event row as a tracking event in Segment's names (for the quarantine's ``payload``):
    one that :func:`~personify.ingest.tracking.normalize.normalize`, given the row's
    ``received_at``, turns into the same row — so ``personify quarantine replay`` can store it.
    With a ``sentAt``, the timestamp is the sender's own (``timestamp + sentAt − receivedAt``,
    which the skew correction turns back into the stored one)."""
    r = dict(zip(EVENT_COLUMNS, row, strict=True))
    stamp, sent = r["timestamp"], r["sent_at"]
    doc: dict[str, Any] = {
        "type": r["type"],
        "messageId": r["message_id"],
        "userId": r["user_id"],
        "anonymousId": r["anonymous_id"],
        "event": r["event"],
        "name": r["name"],
        "groupId": r["group_id"],
        "previousId": r["previous_id"],
        "timestamp": _iso(stamp),
    }
    if sent is not None:
        try:
            doc["timestamp"], doc["sentAt"] = _iso(stamp + sent - r["received_at"]), _iso(sent)
        except OverflowError:  # a sender's time beyond any date: the stored time, as it is
            pass
    for key in ("properties", "context", "traits"):
        if r[key] is not None:
            doc[key] = msgspec.json.decode(r[key])
    return msgspec.json.encode({k: v for k, v in doc.items() if v is not None}).decode()


def _iso(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat()


def _canonical(part: Any, drop: str | None = None) -> bytes | None:
    """A JSON part (text as stored, or decoded by the driver) with its keys sorted; an empty
    object is an absent one."""
    if part is None:
        return None
    value = msgspec.json.decode(part) if isinstance(part, (str, bytes)) else part
    if drop is not None and isinstance(value, dict) and drop in value:
        value = {k: v for k, v in value.items() if k != drop}
    return _sorted(value) if value != {} else None


class _AnyTime:
    """A sender's time that cannot be recovered (:func:`content`): equal to any other."""

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY_TIME"


ANY_TIME: Final = _AnyTime()


def content(values: Sequence[Any]) -> tuple[Any, ...]:
    """What makes two stored events the same event, from :data:`_CONTENT_COLUMNS` (times as µs):
    ids, names and the JSON parts with their keys sorted; the time as the sender gave it
    (``timestamp`` before the clock-skew correction, ``None`` when there was none — then it is
    the receive time); ``context.ip`` left out (set from the connection when the event has none,
    and a retry may come from another network). ``sentAt`` and ``integrations`` are not stored:
    SDKs re-stamp the one on retries and the other routes the event, so neither counts either."""
    *ids, stamp, received, sent, properties, traits, context = values
    # timestamp = received − (sent − original) when there is a sentAt: the original, recovered;
    # stored at the receive time itself, it was either sentAt (sent at once) or later (capped at
    # the receive time): unknown, and then it does not tell two copies apart
    original: object = None
    if sent is not None:
        original = ANY_TIME if stamp == received else stamp - received + sent
    elif stamp != received:
        original = stamp
    return (
        *ids,
        original,
        _canonical(properties),
        _canonical(traits),
        _canonical(context, drop="ip"),
    )


def _row_content(row: Row) -> tuple[Any, ...]:
    return content([row[i] for i in _CONTENT])


def _stored_content(wh: Warehouse, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """``message_id`` → :func:`content` of the stored events among ``ids``."""
    found: dict[str, tuple[Any, ...]] = {}
    times = {_CONTENT_COLUMNS.index(c) for c in ("timestamp", "received_at", "sent_at")}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = (
            f"SELECT message_id, {', '.join(_CONTENT_COLUMNS)} FROM events "
            f"WHERE message_id IN ({marks})"
        )
        for mid, *values in wh.fetch(sql, list(chunk)):
            at = [micros(v) if i in times and v is not None else v for i, v in enumerate(values)]
            found[mid] = content(at)
    return found


def _stored(wh: Warehouse, ids: Sequence[str]) -> dict[str, tuple[int | None, int]]:
    """``message_id`` → (payload hash, received_at µs) of the stored events among ``ids``."""
    found: dict[str, tuple[int | None, int]] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = (
            "SELECT message_id, payload_hash, received_at FROM events "
            f"WHERE message_id IN ({marks})"
        )
        for mid, digest, received in wh.fetch(sql, list(chunk)):
            found[mid] = (digest, micros(received))
    return found


def _classify(
    wh: Warehouse, rows: Sequence[Row], keep: list[int], status: list[int], inserted: int
) -> None:
    """Mark the rows of ``keep`` that were stored before this load (``inserted`` of them are
    new). A stored row with our payload hash and ``received_at`` is ours — unless an earlier
    copy had the same receive instant (a pinned clock): then the count of new rows decides how
    many of those look-alikes were there already."""
    stored = _stored(wh, [rows[i][0] for i in keep])
    alike: list[int] = []
    for i in keep:
        row = rows[i]
        digest, received = stored.get(row[0], (None, -1))
        if digest == row[_HASH] and received == row[_RECEIVED]:
            alike.append(i)  # ours, inserted just now — or an identical earlier copy
            continue
        status[i] = DUPLICATE if digest is None or digest == row[_HASH] else CONFLICT
    for i in alike[: max(len(alike) - inserted, 0)]:
        status[i] = DUPLICATE
    suspects = [i for i in keep if status[i] == CONFLICT]
    if suspects:  # another hash: the same event sent as other bytes, or really another one
        stored_content = _stored_content(wh, [rows[i][0] for i in suspects])
        for i in suspects:
            if stored_content.get(rows[i][0]) == _row_content(rows[i]):
                status[i] = DUPLICATE


def store(
    wh: Warehouse,
    rows: Sequence[Row],
    quarantine: Sequence[QuarantineRow] = (),
    *,
    locations: Sequence[str] | None = None,
    optimistic: bool = True,
    owners: Sequence[str | None] | None = None,
    table: pa.Table | None = None,
) -> list[int]:
    """Store ``rows`` and ``quarantine`` in one transaction; the status of each row
    (:data:`NEW`, :data:`DUPLICATE`, :data:`CONFLICT`). ``locations``: where each row was in
    its request (for the quarantine rows of conflicts).

    ``optimistic``: where the engine enforces the key (``Capabilities.cheap_keys``) and there is
    nothing to quarantine, first try one plain ``INSERT`` statement (a third cheaper than
    ``ON CONFLICT``, and what nearly every group is: resends are mostly answered from the recent-id
    cache); if a key is already stored it fails whole and the careful way follows. Without engine
    keys both ways cost one anti-join, so the careful way runs at once. Pass ``False`` inside an
    open transaction (a failed statement would abort it). ``owners``: each row's
    ``customer_id`` when the caller knows it (set by the insert itself, so only new events get
    it: a stored one keeps its own). ``table``: ``rows`` as :func:`events_table` makes them, when
    the caller built it already (the group writer's requests do, on the event loop)."""
    status = [NEW] * len(rows)
    first: dict[str, int] = {}
    keep: list[int] = []
    for i, row in enumerate(rows):
        j = first.get(row[0])
        if j is None:
            first[row[0]] = i
            keep.append(i)
        else:
            same = rows[j][_HASH] == row[_HASH] or _row_content(rows[j]) == _row_content(row)
            status[i] = DUPLICATE if same else CONFLICT
    if not keep:
        table = None
    elif table is None:
        table = events_table([rows[i] for i in keep])
    elif len(keep) < len(rows):
        table = table.take(pa.array(keep, pa.int64()))
    if table is not None and owners is not None:
        table = table.append_column("customer_id", pa.array([owners[i] for i in keep], _S))
    optimistic = optimistic and wh.capabilities.cheap_keys
    if optimistic and table is not None and len(keep) == len(rows) and not quarantine:
        try:
            # one statement: its own transaction (the JSON parts were decoded: valid JSON)
            wh.load(EVENTS, table, on_conflict="error", valid_json=True)
            return status
        except WarehouseError:
            pass  # some messageId is stored already: redo with ON CONFLICT below
    held = list(quarantine)
    with wh.transaction():
        if table is not None:
            inserted = wh.load(EVENTS, table, on_conflict="ignore", valid_json=True)
            if inserted < len(keep):
                _classify(wh, rows, keep, status, inserted)
        for i, code in enumerate(status):
            if code == CONFLICT:
                held.append(conflict_row(rows[i], locations[i] if locations else ""))
        if held:
            q.write(wh, quarantine_table(held))
    return status


def conflict_row(row: Row, location: str) -> QuarantineRow:
    """The quarantine row recording ``row`` as a conflicting duplicate."""
    detail = (
        f"messageId {row[0]!r} is already stored with another payload; the stored event is kept"
    )
    return quarantine_row(
        source=row[_SOURCE],
        identity=f"{row[0]}:{row[_HASH]}",
        received_us=row[_RECEIVED],
        reason=CONFLICTING_DUPLICATE,
        detail=detail,
        payload=row_payload(row),
        location=location,
    )
