"""The audit log: an append-only, hash-chained record of privacy-relevant actions, without
personal data.

Each row says what was done (``profile_read``, ``export``, ``erase``, ``consent``,
``test_send``: one customer's email sent to staff by ``personify send-test``), by whom
(``cli``, ``api``, ``tracking`` …), to whom — as a keyed hash of the customer id, so the log
itself discloses nobody — and a small JSON ``detail`` of counts and settings. ``personify audit``
lists it. An erasure leaves its own entry and removes none: the log holds no personal data, so
nothing in it needs redacting.

**Append-only.** Nothing in Personify updates or deletes its rows, and the warehouse refuses to:
on PostgreSQL a trigger (migration 13) rejects ``UPDATE``, ``DELETE`` and ``TRUNCATE``; on DuckDB,
which has no triggers, the warehouse layer refuses such statements before they reach the engine.

**Tamper evidence.** Entries form a hash chain: entry ``seq`` *n* stores ``prev_hash`` (the
``entry_hash`` of entry *n − 1*; 64 zeros for the first) and ``entry_hash`` = SHA-256 over
``prev_hash`` and its own fields in canonical JSON. Appends are serialized (a transaction-scoped
advisory lock on PostgreSQL, a process lock on DuckDB — a single-process engine).
:func:`verify` (``personify audit --verify``) recomputes the chain: an altered field, a removed
or inserted entry, or a reordering breaks it at that entry. Someone able to rewrite the whole
table can rebuild a consistent chain — keep the head (:func:`verify` prints it) somewhere else
(a ticket, a log shipper) to detect that too. Entries written before migration 13 have no
``seq`` and are reported as unchained.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from personify.warehouse.base import Warehouse

ACTIONS: tuple[str, ...] = (
    "profile_read",
    "export",
    "erase",
    "consent",
    "test_send",
    "email_preview",  # the console's preview of one customer's email
    "segment_preview",  # the console's sample of a segment's members (no customer)
    "removals_forgotten",  # erasures' removals a destination could never send, settled
)
GENESIS = "0" * 64
"""``prev_hash`` of the first chained entry."""
_PG_LOCK_KEY = 7_316_525_043
_LOCK = threading.Lock()
_canonical = msgspec.json.Encoder(order="sorted")


def customer_hash(key: bytes | None, customer_id: str) -> str:
    """Keyed hash (hex, 32 chars) of a customer id; an unkeyed project gets a plain SHA-256."""
    data = f"customer_id\0{customer_id}".encode()
    if key:
        return hmac.new(key, data, hashlib.sha256).hexdigest()[:32]
    return hashlib.sha256(data).hexdigest()[:32]


def _instant(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    entry_id: str,
    occurred_at: datetime,
    action: str,
    actor: str,
    subject_hash: str | None,
    detail: Any,
) -> str:
    """SHA-256 (hex) of ``prev_hash`` and the entry's fields in canonical JSON."""
    doc = {
        "seq": seq,
        "id": entry_id,
        "occurred_at": _instant(occurred_at),
        "action": action,
        "actor": actor,
        "subject_hash": subject_hash,
        "detail": detail,
    }
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + _canonical.encode(doc)).hexdigest()


def log_action(
    wh: Warehouse,
    *,
    action: str,
    actor: str,
    customer_id: str | None,
    key: bytes | None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry to the chain (``detail`` must hold no personal data: counts, purposes,
    statuses)."""
    # wall-clock time, not --now: when it really happened
    occurred = (at or datetime.now(UTC)).astimezone(UTC)
    text = msgspec.json.encode(dict(detail or {})).decode()
    normal = msgspec.json.decode(text)  # what reading the JSON column back gives
    entry_id = uuid.uuid4().hex
    subject = None if customer_id is None else customer_hash(key, customer_id)
    # PostgreSQL: a transaction-scoped advisory lock (held to the end of an enclosing
    # transaction; a process lock as well could deadlock against it); DuckDB: the process lock
    serial = contextlib.nullcontext() if wh.capabilities.advisory_lock else _LOCK
    with serial, wh.transaction():
        if wh.capabilities.advisory_lock:
            wh.execute(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        last = wh.fetch(
            "SELECT seq, entry_hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        seq = int(last[0][0]) + 1 if last else 1
        prev = str(last[0][1]) if last else GENESIS
        digest = entry_hash(
            prev,
            seq=seq,
            entry_id=entry_id,
            occurred_at=occurred,
            action=action,
            actor=actor,
            subject_hash=subject,
            detail=normal,
        )
        wh.execute(
            "INSERT INTO audit_log (id, occurred_at, action, actor, subject_hash, detail, seq, "
            "prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, CAST(? AS JSON), ?, ?, ?)",
            [entry_id, occurred, action, actor, subject, text, seq, prev, digest],
        )


def read_log(wh: Warehouse, *, action: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest entries first (optionally of one action)."""
    where, params = ("WHERE action = ?", [action]) if action else ("", [])
    table = wh.fetch_arrow(
        "SELECT occurred_at, action, actor, subject_hash, CAST(detail AS VARCHAR) AS detail, seq "
        f"FROM audit_log {where} ORDER BY occurred_at DESC, id LIMIT {int(limit)}",
        params,
    )
    rows: list[dict[str, Any]] = table.to_pylist()
    for row in rows:
        row["detail"] = msgspec.json.decode(row["detail"]) if row["detail"] else {}
    return rows


@dataclass
class Verification:
    """What :func:`verify` found."""

    ok: bool
    entries: int
    """Chained entries checked."""
    unchained: int
    """Entries from before the chain (no ``seq``)."""
    head_seq: int | None
    head_hash: str | None
    """The last entry's hash: keep it elsewhere to detect a rewrite of the whole table."""
    broken_at: int | None = None
    """The ``seq`` (or the position, for a gap) of the first entry that does not verify."""
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Failure:
    checked: int
    unchained: int

    def __call__(self, problem: str, seq: int) -> Verification:
        return Verification(
            False, self.checked, self.unchained, None, None, broken_at=seq, problem=problem
        )


def verify(wh: Warehouse, *, batch: int = 10_000) -> Verification:
    """Recompute the hash chain (see the module doc), in batches of ``batch`` entries."""
    unchained = int(wh.scalar("SELECT count(*) FROM audit_log WHERE seq IS NULL") or 0)
    expected_seq, prev, checked = 1, GENESIS, 0
    while True:
        rows = wh.fetch(
            "SELECT seq, id, occurred_at, action, actor, subject_hash, "
            "CAST(detail AS VARCHAR), prev_hash, entry_hash FROM audit_log "
            f"WHERE seq >= ? ORDER BY seq, id LIMIT {int(batch)}",
            [expected_seq],
        )
        for seq, entry_id, at, action, actor, subject, detail, stored_prev, stored in rows:
            fail = _Failure(checked, unchained)
            seq = int(seq)
            if seq != expected_seq:
                if seq < expected_seq:
                    return fail(f"entry {seq} appears twice", seq)
                return fail(f"entry {expected_seq} is missing", expected_seq)
            if stored_prev != prev:
                return fail(f"entry {seq} does not follow entry {seq - 1} (prev_hash differs)", seq)
            try:
                parsed = msgspec.json.decode(detail) if detail else {}
            except msgspec.DecodeError:
                return fail(f"entry {seq}: detail is not JSON", seq)
            digest = entry_hash(
                prev,
                seq=seq,
                entry_id=str(entry_id),
                occurred_at=at,
                action=str(action),
                actor=str(actor),
                subject_hash=None if subject is None else str(subject),
                detail=parsed,
            )
            if digest != stored:
                return fail(f"entry {seq} was altered (its hash does not match its fields)", seq)
            prev, expected_seq, checked = digest, expected_seq + 1, checked + 1
        if len(rows) < batch:
            break
    head = expected_seq - 1
    return Verification(
        True, checked, unchained, head or None, prev if head else None, problem=None
    )
