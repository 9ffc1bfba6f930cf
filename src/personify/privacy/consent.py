"""Consent: the current state per person, purpose and channel, its history, and the gate.

``consents`` (public) holds the current state, one row per ``(customer_id, purpose, channel)``;
``consent_history`` every change with its proof (IP, user agent, form, double-opt-in
confirmation). Rows may be keyed by a customer id or by an id a source knows the person by (a
consent log keyed by shop ids): ``identity.source_kinds`` names the kind of such a source's ids,
and the privacy stage copies it into ``consent_kinds`` so that SQL — the ``sendable`` view and
:func:`consented` — resolves such rows the same way without the project file.

The gate is **fail-closed**:

* no consent row for the purpose and channel ⇒ not allowed;
* any row that is not ``granted`` among the person's identifiers (their customer id, the ids
  merged into it, and every source id they hold) ⇒ not allowed: a merge never widens consent;
* a suppression (unsubscribe, bounce, complaint, erasure) ⇒ not allowed for marketing purposes
  (every purpose but ``transactional``); an erasure tombstone gives way to consent granted after
  it (the person came back and opted in again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import msgspec
import pyarrow as pa

from personify import clock
from personify.errors import PersonifyError
from personify.privacy.crypto import KeyRing
from personify.warehouse.base import UNNEST, Warehouse
from personify.warehouse.schema import CONSENT_HISTORY, CONSENT_KINDS, CONSENT_PAUSES, CONSENTS

Status = Literal["granted", "revoked"]
STATUSES: tuple[str, ...] = ("granted", "revoked")
NON_MARKETING_PURPOSES: frozenset[str] = frozenset({"transactional"})
"""Purposes a suppression does not stop (a receipt still goes to an unsubscribed buyer)."""
PROOF_FIELDS: tuple[str, ...] = ("ip", "user_agent", "form", "confirmed_at")
"""Proof keys stored in columns of ``consent_history``; other keys go to its ``proof`` JSON."""


class ConsentError(PersonifyError):
    """A consent change that cannot be recorded (unknown status, empty purpose …)."""


def is_marketing(purpose: str) -> bool:
    """Whether a suppression stops mail for ``purpose`` (all but ``transactional``)."""
    return purpose not in NON_MARKETING_PURPOSES


_KINDS_SQL = f"SELECT {UNNEST} AS source, {UNNEST} AS kind"

_STATE_SQL = f"""
WITH ids AS (SELECT DISTINCT {UNNEST} AS id),
sk AS ({{kinds}}),
cur AS (
  SELECT ids.id, coalesce(ci.merged_into, ids.id) AS cid
  FROM ids LEFT JOIN customer_ids AS ci ON ci.customer_id = ids.id
),
own AS (
  SELECT cur.id, cur.cid AS key FROM cur
  UNION
  SELECT cur.id, ci.customer_id AS key FROM cur JOIN customer_ids AS ci ON ci.merged_into = cur.cid
),
hits AS (
  SELECT own.id, k.status, k.updated_at
  FROM own JOIN consents AS k ON k.customer_id = own.key
  WHERE k.purpose = ? AND k.channel = ?
  UNION ALL
  SELECT cur.id, k.status, k.updated_at
  FROM cur
  JOIN identities AS i ON i.customer_id = cur.cid
  JOIN consents AS k ON k.customer_id = i.value
  LEFT JOIN sk ON sk.source = k.source
  WHERE i.kind = coalesce(sk.kind, k.source || '_id') AND k.purpose = ? AND k.channel = ?
),
agg AS (
  SELECT
    id,
    max(CASE WHEN status = 'granted' THEN updated_at END) AS granted_at,
    count(CASE WHEN status <> 'granted' THEN 1 END) AS refusals
  FROM hits GROUP BY id
)
"""
"""Per id asked: the latest grant (``granted_at``) and the count of other rows (``refusals``)
for one purpose and channel, over every identifier of the person."""

_CONSENTED_SQL = (
    _STATE_SQL
    + """SELECT agg.id FROM agg
WHERE agg.granted_at IS NOT NULL AND agg.refusals = 0
  AND NOT (? AND EXISTS (
    SELECT 1 FROM own JOIN suppressions AS s ON s.customer_id = own.key
    WHERE own.id = agg.id AND NOT (s.reason = 'erased' AND s.created_at < agg.granted_at)
  ))
"""
)

_UNPAUSED_SQL = """  AND NOT EXISTS (
    SELECT 1 FROM own JOIN consent_pauses AS p ON p.customer_id = own.key
    WHERE own.id = agg.id AND p.purpose = ? AND p.channel = ? AND p.paused_until > ?
  )
"""
"""A pause the person asked for (``consent_pauses``) and not over at the given instant."""


def _kinds(source_kinds: Mapping[str, str] | None) -> tuple[str, list[Any]]:
    """The ``sk`` relation (source → id kind): the stored copy, or ``source_kinds`` given."""
    if source_kinds is None:
        return f"SELECT source, kind FROM {CONSENT_KINDS.name}", []
    pairs = sorted(source_kinds.items())
    return _KINDS_SQL, [[p[0] for p in pairs], [p[1] for p in pairs]]


def consented(
    wh: Warehouse,
    customer_ids: Sequence[str],
    *,
    purpose: str,
    channel: str = "email",
    source_kinds: Mapping[str, str] | None = None,
    paused: bool = True,
) -> set[str]:
    """The ids among ``customer_ids`` that may be contacted for ``purpose`` on ``channel`` now.

    One query for the whole batch. Fail-closed (see the module docstring): no record, any
    revocation among the person's identifiers, or a suppression (marketing purposes) ⇒ left out;
    so is a pause not over yet (``consent_pauses``) unless ``paused=False`` (who has consent,
    paused or not: what the preference page shows as chosen).
    ``source_kinds`` (source → id kind, as ``identity.source_kinds``) defaults to the copy the
    privacy stage keeps in ``consent_kinds``.
    """
    ids = sorted({str(c) for c in customer_ids if c})
    if not ids:
        return set()
    kinds_sql, kind_params = _kinds(source_kinds)
    sql = _CONSENTED_SQL.format(kinds=kinds_sql)
    params: list[Any] = [
        ids,
        *kind_params,
        purpose,
        channel,
        purpose,
        channel,
        is_marketing(purpose),
    ]
    if paused:
        sql += _UNPAUSED_SQL
        params += [purpose, channel, clock.now()]
    return {str(r[0]) for r in wh.fetch(sql, params)}


def pause(
    wh: Warehouse,
    customer_id: str,
    purposes: Sequence[str],
    *,
    until: datetime,
    source: str,
    channel: str = "email",
    at: datetime | None = None,
) -> None:
    """Pause mail to ``customer_id`` for ``purposes`` until ``until`` (a row per purpose in
    ``consent_pauses``, replacing an earlier pause). Consent is untouched: when the pause is
    over, mail resumes by itself."""
    at = at or clock.now()
    if not purposes:
        return
    ts = pa.timestamp("us", tz="UTC")
    n = len(purposes)
    wh.load(
        CONSENT_PAUSES,
        pa.table(
            {
                "customer_id": [customer_id] * n,
                "purpose": list(purposes),
                "channel": [channel] * n,
                "paused_until": pa.array([until] * n, ts),
                "paused_at": pa.array([at] * n, ts),
                "source": [source] * n,
            }
        ),
        on_conflict="update",
    )


def resume(wh: Warehouse, customer_id: str, channel: str = "email") -> int:
    """End every pause of ``customer_id`` on ``channel`` now; how many there were."""
    return wh.execute(
        "DELETE FROM consent_pauses WHERE customer_id = ? AND channel = ?", [customer_id, channel]
    )


def paused_until(wh: Warehouse, customer_id: str, channel: str = "email") -> datetime | None:
    """When the latest pause of ``customer_id`` not over yet ends (``None``: not paused)."""
    value = wh.scalar(
        "SELECT max(paused_until) FROM consent_pauses WHERE customer_id = ? AND channel = ? "
        "AND paused_until > ?",
        [customer_id, channel, clock.now()],
    )
    return value if isinstance(value, datetime) else None


def standing_grants(
    wh: Warehouse,
    customer_ids: Sequence[str],
    *,
    purpose: str,
    channel: str = "email",
    source_kinds: Mapping[str, str] | None = None,
) -> dict[str, datetime]:
    """The ids among ``customer_ids`` whose consent for ``purpose`` on ``channel`` stands — a
    grant and no other row among their identifiers, as :func:`consented` resolves them,
    suppressions aside — each with its latest grant: the time an erasure tombstone must
    precede to give way (one query)."""
    ids = sorted({str(c) for c in customer_ids if c})
    if not ids:
        return {}
    kinds_sql, kind_params = _kinds(source_kinds)
    sql = _STATE_SQL.format(kinds=kinds_sql) + (
        "SELECT id, granted_at FROM agg WHERE granted_at IS NOT NULL AND refusals = 0"
    )
    rows = wh.fetch(sql, [ids, *kind_params, purpose, channel, purpose, channel])
    return {str(r[0]): r[1] for r in rows}


def sync_source_kinds(wh: Warehouse, source_kinds: Mapping[str, str]) -> int:
    """Make ``consent_kinds`` equal ``source_kinds`` (the project's ``identity.source_kinds``)."""
    pairs = sorted(source_kinds.items())
    stored = sorted((str(s), str(k)) for s, k in wh.fetch("SELECT source, kind FROM consent_kinds"))
    if stored == pairs:
        return 0
    with wh.transaction():
        wh.execute(f"DELETE FROM {CONSENT_KINDS.name}")
        if pairs:
            wh.load(
                CONSENT_KINDS,
                pa.table({"source": [p[0] for p in pairs], "kind": [p[1] for p in pairs]}),
            )
    return len(pairs)


def _proof_columns(proof: Mapping[str, Any] | None, cipher: KeyRing | None) -> dict[str, Any]:
    proof = dict(proof or {})
    out: dict[str, Any] = {}
    for key in ("ip", "user_agent", "form"):
        value = proof.pop(key, None)
        text = None if value is None else str(value)[:1000]
        if text is not None and cipher is not None:
            text = cipher.encrypt(text, field=f"consent_history.{key}")
        out[key] = text
    confirmed = proof.pop("confirmed_at", None)
    if isinstance(confirmed, str):
        try:
            confirmed = datetime.fromisoformat(confirmed.replace("Z", "+00:00"))
        except ValueError:
            proof["confirmed_at"] = confirmed
            confirmed = None
    out["confirmed_at"] = confirmed if isinstance(confirmed, datetime) else None
    out["proof"] = msgspec.json.encode(proof).decode() if proof else None
    return out


def record(
    wh: Warehouse,
    *,
    subject: str,
    purpose: str,
    channel: str = "email",
    status: str,
    source: str,
    at: datetime | None = None,
    proof: Mapping[str, Any] | None = None,
    cipher: KeyRing | None = None,
) -> bool:
    """Record a consent change of ``subject`` (a customer id, or a source's id as ``consents``
    keys it): a ``consent_history`` row always (once per change: replays are ignored), and the
    current state in ``consents`` unless a newer change is already there. ``proof`` keys ``ip``,
    ``user_agent``, ``form``, ``confirmed_at`` go to columns, the rest to the ``proof`` JSON;
    with a ``cipher`` (the project's key ring) ``ip``, ``user_agent`` and ``form`` are stored
    encrypted. Returns whether the current state changed."""
    if status not in STATUSES:
        raise ConsentError(f"unknown consent status {status!r}", hint="use granted or revoked")
    if not subject or not purpose or not channel or not source:
        raise ConsentError("a consent change needs a subject, a purpose, a channel and a source")
    at = at or clock.now()
    recorded = clock.now()
    row = {
        "customer_id": subject,
        "purpose": purpose,
        "channel": channel,
        "status": status,
        "source": source,
        "changed_at": at,
        "recorded_at": recorded,
        **_proof_columns(proof, cipher),
    }
    with wh.transaction():
        wh.load(
            CONSENT_HISTORY,
            pa.Table.from_pylist([row], schema=_HISTORY_SCHEMA),
            on_conflict="ignore",
        )
        current = wh.fetch(
            "SELECT status, updated_at FROM consents "
            "WHERE customer_id = ? AND purpose = ? AND channel = ?",
            [subject, purpose, channel],
        )
        if current and current[0][1] is not None and current[0][1] > at:
            return False
        if current and current[0][0] == status and current[0][1] == at:
            return False
        wh.load(
            CONSENTS,
            pa.table(
                {
                    "customer_id": [subject],
                    "purpose": [purpose],
                    "channel": [channel],
                    "status": [status],
                    "source": [source],
                    "updated_at": pa.array([at], pa.timestamp("us", tz="UTC")),
                }
            ),
            on_conflict="update",
        )
    return True


def record_pending(
    wh: Warehouse,
    *,
    subject: str,
    purpose: str,
    channel: str = "email",
    source: str,
    at: datetime | None = None,
    proof: Mapping[str, Any] | None = None,
    cipher: KeyRing | None = None,
) -> None:
    """A double-opt-in request awaiting confirmation: a ``pending`` history row with the
    sign-up's proof; the current state (``consents``) is untouched, so the gate stays closed."""
    at = at or clock.now()
    row = {
        "customer_id": subject,
        "purpose": purpose,
        "channel": channel,
        "status": "pending",
        "source": source,
        "changed_at": at,
        "recorded_at": clock.now(),
        **_proof_columns(proof, cipher),
    }
    wh.load(
        CONSENT_HISTORY, pa.Table.from_pylist([row], schema=_HISTORY_SCHEMA), on_conflict="ignore"
    )


_HISTORY_SCHEMA = pa.schema(
    [
        ("customer_id", pa.string()),
        ("purpose", pa.string()),
        ("channel", pa.string()),
        ("status", pa.string()),
        ("source", pa.string()),
        ("changed_at", pa.timestamp("us", tz="UTC")),
        ("recorded_at", pa.timestamp("us", tz="UTC")),
        ("ip", pa.string()),
        ("user_agent", pa.string()),
        ("form", pa.string()),
        ("confirmed_at", pa.timestamp("us", tz="UTC")),
        ("proof", pa.string()),
    ]
)


def set_consent(
    wh: Warehouse,
    customer_id: str,
    *,
    purpose: str,
    status: str,
    channel: str = "email",
    source: str = "cli",
    at: datetime | None = None,
    proof: Mapping[str, Any] | None = None,
    source_kinds: Mapping[str, str] | None = None,
    cipher: KeyRing | None = None,
) -> dict[str, Any]:
    """An explicit consent change for a whole person (``personify consent set``, the API).

    Recorded on the customer id. A grant is the person's own word for every identifier they
    hold, so it also supersedes *older* revocations recorded under their other keys (merged ids,
    source ids) — each superseding change in ``consent_history`` with proof ``superseded_by``;
    a revocation needs nothing more (a revocation anywhere wins). Returns what changed."""
    from personify.privacy.subjects import consent_rows  # profiles-level import, kept local

    at = at or clock.now()
    with wh.transaction():
        changed = record(
            wh,
            subject=customer_id,
            purpose=purpose,
            channel=channel,
            status=status,
            source=source,
            at=at,
            proof=proof,
            cipher=cipher,
        )
        superseded = 0
        if status == "granted":
            kinds = source_kinds if source_kinds is not None else _stored_kinds(wh)
            for row in consent_rows(wh, customer_id, kinds):
                if (
                    row.key != customer_id
                    and row.purpose == purpose
                    and row.channel == channel
                    and row.status != "granted"
                    and row.updated_at <= at
                ):
                    superseded += record(
                        wh,
                        subject=row.key,
                        purpose=purpose,
                        channel=channel,
                        status="granted",
                        source=row.source,
                        at=at,
                        proof={"superseded_by": source, "customer_id": customer_id},
                    )
    return {
        "customer_id": customer_id,
        "purpose": purpose,
        "channel": channel,
        "status": status,
        "changed": changed,
        "superseded": superseded,
        "allowed": customer_id
        in consented(
            wh, [customer_id], purpose=purpose, channel=channel, source_kinds=source_kinds
        ),
    }


def _stored_kinds(wh: Warehouse) -> dict[str, str]:
    return {str(s): str(k) for s, k in wh.fetch("SELECT source, kind FROM consent_kinds")}


def backfill_history(wh: Warehouse) -> int:
    """Consent states written without :func:`record` (a file or CRM import updates ``consents``
    directly) get their ``consent_history`` row, set-wise; returns how many."""
    return wh.execute(
        "INSERT INTO consent_history (customer_id, purpose, channel, status, source, changed_at, "
        "recorded_at) SELECT k.customer_id, k.purpose, k.channel, k.status, k.source, "
        "k.updated_at, ? FROM consents k WHERE NOT EXISTS (SELECT 1 FROM consent_history h "
        "WHERE h.customer_id = k.customer_id AND h.purpose = k.purpose "
        "AND h.channel = k.channel AND h.changed_at = k.updated_at AND h.source = k.source "
        "AND h.status = k.status)",
        [clock.now()],
    )


DATA_SHARING = "data_sharing"
"""The purpose whose revocation is a CCPA/CPRA "do not sell or share my personal information"
opt-out (``personify consent set X --purpose data_sharing --status revoked``; the tracking API's
``context.consent`` with ``{"data_sharing": false}``)."""


def do_not_sell(
    wh: Warehouse, customer_ids: Sequence[str], *, source_kinds: Mapping[str, str] | None = None
) -> set[str]:
    """The ids among ``customer_ids`` that opted out of data sharing: a ``data_sharing`` row that
    is not ``granted`` under any of their ids, on any channel (one query). A transport that hands
    data to a third party (an ESP's API with merge fields, an ad audience) sends such a person
    only what the email itself needs."""
    ids = sorted({str(c) for c in customer_ids if c})
    if not ids:
        return set()
    sql, params = opted_out_sql(None, source_kinds=source_kinds)
    return {str(r[0]) for r in wh.fetch(sql, [ids, *params])}


_IDS_CTE = f"ids AS (SELECT DISTINCT {UNNEST} AS id)"


def _over(sql: str, ids_sql: str | None) -> str:
    """``sql`` (one of the templates above) asking about the ids ``ids_sql`` selects (a query
    with an ``id`` column, in the warehouse) instead of a bound list."""
    if ids_sql is None:
        return sql
    return sql.replace(
        _IDS_CTE, f"ids AS (SELECT DISTINCT id FROM ({ids_sql}) q WHERE id IS NOT NULL)"
    )


def opted_out_sql(
    ids_sql: str | None, *, source_kinds: Mapping[str, str] | None = None
) -> tuple[str, list[Any]]:
    """SQL and parameters: the ids (of those ``ids_sql`` selects; ``None``: a bound list, the
    first parameter, left to the caller) that opted out of data sharing — :func:`do_not_sell`
    set-wise, in the warehouse."""
    kinds_sql, kind_params = _kinds(source_kinds)
    head = _STATE_SQL.split("agg AS (", 1)[0].rstrip().rstrip(",")
    sql = _over(head.replace(" AND k.channel = ?", "").format(kinds=kinds_sql), ids_sql)
    return sql + " SELECT DISTINCT id FROM hits WHERE status <> 'granted'", [
        *kind_params,
        DATA_SHARING,
        DATA_SHARING,
    ]


def consented_sql(
    ids_sql: str,
    *,
    purpose: str,
    channel: str = "email",
    source_kinds: Mapping[str, str] | None = None,
) -> tuple[str, list[Any]]:
    """SQL and parameters: the ids (of those ``ids_sql`` selects) that may be contacted for
    ``purpose`` on ``channel`` — :func:`consented` set-wise, in the warehouse (pauses too)."""
    kinds_sql, kind_params = _kinds(source_kinds)
    sql = _over(_CONSENTED_SQL.format(kinds=kinds_sql) + _UNPAUSED_SQL, ids_sql)
    params = [*kind_params, purpose, channel, purpose, channel, is_marketing(purpose)]
    return sql, [*params, purpose, channel, clock.now()]
