"""Destinations (reverse ETL): warehouse rows pushed to other tools' APIs, only what changed.

A destination (``destinations:`` in ``personify.yml``, ``kind: rest``) is a SQL model — one row
per record, e.g. each customer's engagement score and lifecycle stage from ``customer_data`` —
and an API endpoint that upserts records by a key. A push:

1. runs the model in the warehouse (checked like any user query: one read-only SELECT, ``NOW()``
   pinned to ``--now``) into a temporary table, with a keyed hash of each row's key and an MD5 of
   the whole row, and compares them there with ``destination_state`` — the hash each record had
   when the API last took it. Only new or changed rows reach Python (a push of an unchanged
   model reads none);
2. sends the changed rows in batches (``batch_size``) through the REST sources' polite client
   (request budget, retries with backoff on 429/5xx/timeouts, ``Retry-After``); records go out
   in plain text (encrypted ``customers`` columns decrypted), dotted column names nested;
3. records each batch in ``destination_state`` once the API answered 2xx — acknowledged rows
   only: a push that stops (the API down, a crash) sends the rest next time, and a record sent
   twice is an upsert of the same values. A batch the API refuses (4xx) is split in halves until
   the refused records stand alone; each is kept as ``rejected`` with the API's answer (masked)
   and sent again only when its row changes. A 2xx answer that lists refused records
   (``errors_path``; HubSpot's 207 Multi-Status ``errors``) rejects those, the rest are sent;
   an error naming no record of the batch splits it like a 4xx. A refusal of the credentials
   or the endpoint (401, 403, 404) stops the push;
4. with ``on_remove: delete``, removes at the API the records that left the model (no longer
   selected, or deleted) — after the upserts, so a record whose key changed is upserted under
   the new key before the old one goes. A removal is acknowledged like an upsert: the record's
   state goes once the API took it (a 404 from a ``{key}`` path too: gone already); one the
   API refuses is kept as ``remove_rejected`` and tried again at the next push.

The key is stored as a keyed hash (the customer-id key, from ``signing_key``): the state holds no
email or name in the clear. A destination that removes records must name them, so it keeps each
record's key too, encrypted under ``privacy.encryption_keys`` (:data:`RECORD_KEY`); a key read
back is used only if its keyed hash is its row's. Records pushed before ``on_remove: delete``
was set are sent once more to learn their key. Every push is recorded like a source's run
(``source_state``, as ``destination:NAME``), so ``personify status`` shows it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from personify import clock
from personify.config import Project, RestDestination
from personify.errors import (
    ConfigError,
    PersonifyError,
    UnsafeQueryError,
    WarehouseBusy,
    WarehouseError,
)
from personify.identity.ids import id_key_of
from personify.privacy.crypto import DecryptionError, KeyRing, project_ring
from personify.privacy.fields import decrypt_rows
from personify.privacy.masking import mask_text
from personify.session import Session
from personify.sources.rest.client import HttpClient
from personify.sources.rest.errors import RestError, RestHttpError
from personify.sources.schedule import exclusive, record_run
from personify.warehouse.base import AUTHORING_DIALECT, UNNEST, Warehouse
from personify.warehouse.query import pin_time
from personify.warehouse.safety import check_select

log = logging.getLogger(__name__)

_ROWS: Final = "_push_rows"
_KEY, _HASH = "__personify_key", "__personify_row"
_READ: Final = 10_000
"""Changed rows read from the warehouse at a time (keyset pages)."""
_STOPPING: Final = frozenset({401, 403, 404, 405})
"""Refusals that are not about a record: the push stops (the state keeps what was taken)."""
_HUBSPOT: Final = ("/crm/v3/objects/contacts/batch/upsert", "inputs", 100)
_WHOSE: Final = "customer_id"
"""The model's column naming whose row it is (the consent check reads it)."""
_HUBSPOT_ARCHIVE: Final = "/crm/v3/objects/contacts/batch/archive"
RECORD_KEY: Final = "destination_state.record_key"
"""The field (associated data) of the encrypted keys kept for removals; ``personify privacy
rotate-keys`` re-encrypts them (:data:`personify.privacy.crypto.ENCRYPTED_FIELDS`)."""


def run_name(name: str) -> str:
    """The ``source_state`` name of a destination's runs (never a source's: the prefix)."""
    return f"destination:{name}"


@dataclass
class PushResult:
    """What one push did."""

    destination: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    """``--dry-run``: the first records it would send (personal values masked)."""
    removals: list[str] = field(default_factory=list)
    """``--dry-run``: the keys of the first records it would remove (masked)."""


def destination(project: Project, name: str) -> RestDestination:
    for d in project.config.destinations:
        if d.name == name:
            return d
    known = ", ".join(d.name for d in project.config.destinations) or "none"
    raise ConfigError(
        f"no destination named {name!r} (destinations: {known})", file=str(project.file)
    )


def push_destinations(
    session: Session,
    names: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    trigger: str = "manual",
) -> list[PushResult]:
    """Push the named destinations (default: all), each holding its lock, each recorded. A
    destination that fails is recorded and reported; the others still run."""
    project = session.project
    wanted = (
        [destination(project, n) for n in names] if names else list(project.config.destinations)
    )
    return [_push_one(session, d, dry_run=dry_run, trigger=trigger) for d in wanted]


def destinations_stage(session: Session) -> dict[str, int]:
    """The pipeline stage: push every destination; counts summed (``push_failed``: how many
    destinations stopped on an error — recorded for ``personify status``)."""
    totals: dict[str, int] = {}
    for result in push_destinations(session):
        for key, value in result.counts.items():
            totals[key] = totals.get(key, 0) + value
        if result.error:
            totals["push_failed"] = totals.get("push_failed", 0) + 1
    return totals


def _push_one(session: Session, d: RestDestination, *, dry_run: bool, trigger: str) -> PushResult:
    from personify.sources.rest.sync import local_api

    wh = session.warehouse
    result = PushResult(d.name)
    with exclusive(run_name(d.name), warehouse=wh), contextlib.ExitStack() as stack:
        started, t0 = clock.now(), time.perf_counter()
        try:
            ring = _ring(session.project, d)
            result.counts = _stage_rows(wh, session.project, d)
            work = result.counts["rows_changed"] + result.counts.get("rows_to_remove", 0)
            if work and not dry_run:  # (a local API: served now)
                d = local_api(stack, session, d)
            if dry_run:
                result.sample = [_masked(r) for r in _shaped(d, _changed(wh, d, limit=3))]
                if ring is not None:
                    keys = [k for _, _, k in _opened(wh, d, ring, _leaving(wh, d, limit=3))]
                    result.removals = [mask_text(k) for k in keys if k is not None]
            elif work:
                _send(wh, d, result, ring)
        except (RestError, WarehouseError, ConfigError) as e:  # (recorded, shown: not raised)
            said = e.message if isinstance(e, PersonifyError) else str(e)
            hint = getattr(e, "hint", None)
            result.error = mask_text(said + (f" — {hint}" if hint else ""))
        finally:
            with contextlib.suppress(Exception):
                wh.execute(f"DROP TABLE IF EXISTS {_ROWS}")
            result.seconds = time.perf_counter() - t0
        if not dry_run:
            record_run(
                wh,
                run_name(d.name),
                started_at=started,
                seconds=result.seconds,
                counts={"rows_loaded": result.counts.get("rows_sent", 0), **result.counts},
                error=result.error,
                trigger=trigger,
            )
    if result.error:  # (the caller shows it: the CLI's table, serve's scheduler log, status)
        log.info("destination %s: push stopped (%s)", d.name, result.error)
    return result


def _prefix(wh: Warehouse, name: str) -> str:
    """What a destination's key hashes start with (its name and the id key)."""
    return f"destination:{name}:{id_key_of(wh)}:"


def _of(wh: Warehouse, name: str, keys: Sequence[str]) -> tuple[str, list[object]]:
    """SQL condition and parameters: the state rows of ``name`` whose key is one of ``keys``
    (they are not in the state: their keyed hashes are)."""
    prefix = _prefix(wh, name)
    hashes = sorted({hashlib.md5((prefix + k).encode()).hexdigest() for k in keys})  # noqa: S324
    marks = ", ".join("?" for _ in hashes) or "NULL"
    return f"destination = ? AND key_hash IN ({marks})", [name, *hashes]


def pushed(wh: Warehouse, project: Project, keys: Sequence[str]) -> list[dict[str, Any]]:
    """The records keyed by one of ``keys`` (a person's identifiers) that destinations took or
    refused: where their data went (an export lists them)."""
    out: list[dict[str, Any]] = []
    for d in project.config.destinations:
        where, params = _of(wh, d.name, keys)
        rows = wh.fetch(
            f"SELECT status, pushed_at, error FROM destination_state WHERE {where} "
            "ORDER BY pushed_at",
            params,
        )
        out += [
            {"destination": d.name, "status": s, "pushed_at": at, "error": e} for s, at, e in rows
        ]
    return out


def forget(wh: Warehouse, name: str, keys: Sequence[str]) -> int:
    """Drop the state of the records of ``name`` keyed by one of ``keys`` (an erased person's
    identifiers); returns how many records that was. Their next appearance in the model is then
    pushed as new."""
    where, params = _of(wh, name, keys)
    return max(wh.execute(f"DELETE FROM destination_state WHERE {where}", params), 0)


def _ring(project: Project, d: RestDestination) -> KeyRing | None:
    """The key ring the keys of ``d``'s records are kept under (``on_remove: delete`` only)."""
    if d.on_remove != "delete":
        return None
    ring = project_ring(project)
    if ring is None:  # (the project file's check says so first; a project built in code too)
        raise ConfigError(
            f"destination {d.name!r} removes records (on_remove: delete), which needs "
            "privacy.encryption_keys: their keys are kept encrypted",
            file=str(project.file),
            key=f"destinations.{d.name}.on_remove",
            hint="set privacy.encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS} (make a key with "
            "`personify privacy keygen`)",
        )
    return ring


def _model(wh: Warehouse, project: Project, d: RestDestination) -> str:
    where = f"destinations.{d.name}.model"
    try:
        query = check_select(
            d.model,
            dialect=wh.dialect,
            allowed=wh.relations(),
            what=f"destination {d.name!r} model",
        )
    except UnsafeQueryError as e:
        raise UnsafeQueryError(f"{where}: {e.message}", hint=e.hint) from None
    columns = [s.alias_or_name for s in query.selects]
    if d.consent_rule is not None and _WHOSE not in columns:
        raise ConfigError(
            f"the model of destination {d.name!r} has no column {_WHOSE!r}: the push cannot "
            "leave out the people who did not consent to it",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=f"select customer_id too (it is not sent unless it is the key), or set "
            f"destinations.{d.name}.consent: none for a model that is no person's data",
        )
    if d.key not in columns:
        raise ConfigError(
            f"the model of destination {d.name!r} has no column {d.key!r} (its key)",
            file=str(project.file),
            key=f"destinations.{d.name}.key",
            hint=f"select the key column, or set key to one of: {', '.join(columns)}",
        )
    return pin_time(query).sql(dialect=AUTHORING_DIALECT)


def _stage_rows(wh: Warehouse, project: Project, d: RestDestination) -> dict[str, int]:
    """The model's rows in :data:`_ROWS`, with their key's keyed hash and the row's MD5; the
    counts of rows, rows without a key and changed rows."""
    sql = _model(wh, project, d)
    wh.execute(f"DROP TABLE IF EXISTS {_ROWS}")
    try:
        wh.execute(
            f'CREATE TEMP TABLE {_ROWS} AS SELECT md5(? || CAST(m."{d.key}" AS VARCHAR)) '
            f"AS {_KEY}, md5(CAST(to_json(m) AS VARCHAR)) AS {_HASH}, m.* FROM ({sql}) m",
            [_prefix(wh, d.name)],
        )
    except WarehouseBusy:
        raise
    except WarehouseError as e:  # (a division by zero, a type mismatch: found when it runs)
        raise WarehouseError(
            f"destinations.{d.name}.model: the warehouse refused the model: {e.message}",
            hint="run the SELECT with `personify sql` to see where, and fix it",
        ) from None
    total, keyless, keys = wh.fetch(
        f'SELECT count(*), count(*) - count(m."{d.key}"), count(DISTINCT m."{d.key}") '
        f"FROM {_ROWS} m"
    )[0]
    if keys != total - keyless:
        raise ConfigError(
            f"the model of destination {d.name!r} returns {total - keyless - keys} rows whose "
            f"{d.key!r} another row has too",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=f"make {d.key!r} unique (one row per record: GROUP BY it, or pick one row)",
        )
    wh.execute(f'DELETE FROM {_ROWS} WHERE "{d.key}" IS NULL')
    refused = _without_consent(wh, d)
    changed = wh.scalar(
        f"SELECT count(*) FROM {_ROWS} r LEFT JOIN destination_state s "
        f"ON s.destination = ? AND s.key_hash = r.{_KEY} WHERE {_changes(d)}",
        [d.name],
    )
    counts = {
        "rows_model": int(total),
        "rows_without_key": int(keyless),
        "rows_without_consent": refused,
        "rows_changed": int(changed or 0),
    }
    if d.on_remove == "delete":
        counts["rows_to_remove"] = int(
            wh.scalar(
                f"SELECT count(*) FROM destination_state s WHERE s.destination = ? "
                f"AND s.record_key IS NOT NULL AND {_gone()}",
                [d.name],
            )
            or 0
        )
    return counts


def _changes(d: RestDestination) -> str:
    """The condition on a model row ``r`` and its state ``s`` (outer-joined) that sends it: new
    or changed, back in the model after the API refused its removal — or, for a destination
    that removes records, pushed before it kept their keys (sent once more to learn the key: a
    removal must name the record)."""
    cond = f"s.row_hash IS NULL OR s.row_hash <> r.{_HASH} OR s.status = 'remove_rejected'"
    return cond + (" OR s.record_key IS NULL" if d.on_remove == "delete" else "")


def _gone() -> str:
    """The condition on a state row ``s`` whose record is no longer in the model."""
    return f"NOT EXISTS (SELECT 1 FROM {_ROWS} r WHERE r.{_KEY} = s.key_hash)"


def _leaving(
    wh: Warehouse, d: RestDestination, *, limit: int, after: str = ""
) -> list[tuple[str, str, str]]:
    """Up to ``limit`` records that left the model (key hash, row hash, encrypted key), after
    the key hash ``after``."""
    rows = wh.fetch(
        f"SELECT s.key_hash, s.row_hash, s.record_key FROM destination_state s "
        f"WHERE s.destination = ? AND s.record_key IS NOT NULL AND s.key_hash > ? AND {_gone()} "
        f"ORDER BY s.key_hash LIMIT {int(limit)}",
        [d.name, after],
    )
    return [(str(h), str(r), str(k)) for h, r, k in rows]


def _opened(
    wh: Warehouse, d: RestDestination, ring: KeyRing, rows: list[tuple[str, str, str]]
) -> list[tuple[str, str, str | None]]:
    """``rows`` with their keys decrypted — ``None`` for a key that does not decrypt or whose
    keyed hash is not its row's (a token moved to another row names another record)."""
    prefix = _prefix(wh, d.name)
    out: list[tuple[str, str, str | None]] = []
    for key_hash, row_hash, token in rows:
        try:
            key: str | None = ring.decrypt(token, field=RECORD_KEY)
        except DecryptionError:
            key = None
        if key is not None and hashlib.md5((prefix + key).encode()).hexdigest() != key_hash:  # noqa: S324
            key = None
        out.append((key_hash, row_hash, key))
    return out


def _without_consent(wh: Warehouse, d: RestDestination) -> int:
    """Drop from :data:`_ROWS` the rows of people the destination may not receive (and rows of
    no one, unless ``consent: none``), in the warehouse; returns how many. Fail closed, by the
    rules of the send-time gate (:mod:`personify.privacy.consent`)."""
    from personify.privacy.consent import DATA_SHARING, consented_sql, opted_out_sql

    rule = d.consent_rule
    if rule is None:
        return 0
    ids = f"SELECT CAST({_WHOSE} AS VARCHAR) AS id FROM {_ROWS}"
    if rule.purpose == DATA_SHARING:  # an opt-out: everyone but those who opted out
        sql, params = opted_out_sql(ids)
        test = "IN"
    else:  # an opt-in: only those who granted it
        sql, params = consented_sql(ids, purpose=rule.purpose, channel=rule.channel)
        test = "NOT IN"
    wh.execute(f"CREATE TEMP TABLE _push_consent AS {sql}", params)
    try:
        return max(
            wh.execute(
                f"DELETE FROM {_ROWS} WHERE {_WHOSE} IS NULL OR CAST({_WHOSE} AS VARCHAR) "
                f"{test} (SELECT id FROM _push_consent)"
            ),
            0,
        )
    finally:
        wh.execute("DROP TABLE IF EXISTS _push_consent")


def _changed(
    wh: Warehouse, d: RestDestination, *, limit: int, after: str = ""
) -> list[dict[str, Any]]:
    """Up to ``limit`` changed rows after the key hash ``after`` (keyset order), in plain text."""
    # (the destination's rows filtered in a subquery: with `ON s.destination = ? AND …`,
    # DuckDB 2.0.1 drops the LIMIT)
    table = wh.fetch_arrow(
        f"SELECT r.* FROM {_ROWS} r LEFT JOIN (SELECT key_hash, row_hash, status, record_key "
        f"FROM destination_state "
        f"WHERE destination = ?) s ON s.key_hash = r.{_KEY} "
        f"WHERE ({_changes(d)}) "
        f"AND r.{_KEY} > ? ORDER BY r.{_KEY} LIMIT {int(limit)}",
        [d.name, after],
    )
    return decrypt_rows(wh, table.to_pylist(), strict=False)


def _pages(wh: Warehouse, d: RestDestination) -> Iterator[list[dict[str, Any]]]:
    after = ""
    while rows := _changed(wh, d, limit=_READ, after=after):
        after = str(rows[-1][_KEY])
        yield rows


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _record(row: dict[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A row as the record sent: ``a.b`` columns nested as ``{"a": {"b": …}}``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name in (_KEY, _HASH) or name in skip:
            continue
        *path, last = name.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"column {name!r} nests inside {part!r}, which is a value")
        node[last] = _plain(value)
    return out


def _hidden(d: RestDestination) -> frozenset[str]:
    """Model columns not sent: ``customer_id`` when it is there for the consent check only."""
    return frozenset({_WHOSE}) if d.consent_rule is not None and d.key != _WHOSE else frozenset()


def _shaped(d: RestDestination, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    hidden = _hidden(d)
    if d.preset == "hubspot_contacts":
        return [
            {
                "idProperty": d.key,
                "id": str(r[d.key]),
                "properties": {
                    k: v
                    for k, v in _record(r, frozenset({d.key}) | hidden).items()
                    if v is not None
                },
            }
            for r in rows
        ]
    return [_record(r, hidden) for r in rows]


def _masked(record: dict[str, Any]) -> dict[str, Any]:
    from personify.privacy.masking import mask_document

    masked: dict[str, Any] = mask_document(record)
    return masked


def _endpoint(d: RestDestination) -> tuple[str, str | None, int]:
    if d.preset == "hubspot_contacts":
        path, key, most = _HUBSPOT
        return d.path or path, d.records_key or key, min(d.batch_size, most)
    assert d.path is not None
    return d.path, d.records_key, d.batch_size


def _removal(d: RestDestination, keys: list[str]) -> Any:
    """The body of a batch removal naming ``keys``."""
    if d.preset == "hubspot_contacts":
        return {d.records_key or "inputs": [{"idProperty": d.key, "id": k} for k in keys]}
    records = [{d.key: k} for k in keys]
    return {d.records_key: records} if d.records_key else records


def _errors_path(d: RestDestination) -> str | None:
    return d.errors_path or ("errors" if d.preset == "hubspot_contacts" else None)


def refused_inside(
    d: RestDestination, body: Any, keys: Sequence[str]
) -> tuple[dict[int, str], str | None]:
    """The records of a batch (``keys``, in order) a 2xx answer's ``errors_path`` list says the
    API refused (a HubSpot 207 Multi-Status): their positions → the API's message; and the
    message of an error naming no record of the batch (then which record is unknown)."""
    path = _errors_path(d)
    if path is None or body is None:
        return {}, None
    node = body
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, list):
        return {}, None
    where = {k: i for i, k in enumerate(keys)}
    refused: dict[int, str] = {}
    unnamed: str | None = None
    for item in node:
        said = _said(item)
        named: set[int] = set()
        if isinstance(item, dict):
            index = item.get("index")
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(keys):
                named.add(index)
            context = item.get("context")
            candidates = [item.get(d.key), item.get("id")]
            if isinstance(context, dict):
                candidates += [context.get("ids"), context.get("id"), context.get(d.key)]
            for value in candidates:
                for one in value if isinstance(value, list) else [value]:
                    if one is not None and str(one) in where:
                        named.add(where[str(one)])
        for i in named:
            refused.setdefault(i, said)
        if not named:
            unnamed = unnamed or said
    return refused, unnamed


def _said(item: Any) -> str:
    if isinstance(item, dict):
        for key in ("message", "error", "detail"):
            if isinstance(item.get(key), str) and item[key]:
                return str(item[key])
    return json.dumps(item, default=str)[:300]


def _json(response: Any) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class _Acks:
    """What the API answered, recorded in ``destination_state`` by the thousand records or the
    second (one commit per batch cost more than the request: 40 ms against 5), and whatever is
    left when the push ends or stops. A crash loses at most that: those records go again (an
    upsert or a removal twice changes nothing more)."""

    EVERY_RECORDS: Final = 1_000
    EVERY_SECONDS: Final = 1.0

    def __init__(self, wh: Warehouse, d: RestDestination, ring: KeyRing | None) -> None:
        self.wh, self.d, self.ring = wh, d, ring
        self.rows: list[tuple[str, str, str, str | None, str | None]] = []
        self.removed: list[str] = []
        self.flushed = time.monotonic()

    def add(self, rows: list[dict[str, Any]], status: str, error: str | None = None) -> None:
        """Model rows the API took (``sent``) or refused (``rejected``); with their key
        encrypted when the destination removes records."""
        ring = self.ring
        for r in rows:
            token = None if ring is None else ring.encrypt(str(r[self.d.key]), field=RECORD_KEY)
            self.rows.append((str(r[_KEY]), str(r[_HASH]), status, error, token))
        self._maybe_flush()

    def keep(self, rows: list[tuple[str, str, str]], error: str) -> None:
        """State rows (key hash, row hash, encrypted key) whose removal was refused."""
        self.rows += [(h, r, "remove_rejected", error, k) for h, r, k in rows]
        self._maybe_flush()

    def remove(self, key_hashes: list[str]) -> None:
        """Records the API removed: their state goes (encrypted key included)."""
        self.removed += key_hashes
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        if (
            len(self.rows) + len(self.removed) >= self.EVERY_RECORDS
            or time.monotonic() - self.flushed >= self.EVERY_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        from personify.warehouse.schema import DESTINATION_STATE

        self.flushed = time.monotonic()
        if not self.rows and not self.removed:
            return
        with self.wh.transaction():
            if self.rows:
                keys, hashes, statuses, errors, tokens = zip(*self.rows, strict=True)
                n = len(keys)
                table = pa.table(
                    {
                        "destination": pa.array([self.d.name] * n),
                        "key_hash": pa.array(keys),
                        "row_hash": pa.array(hashes),
                        "status": pa.array(statuses),
                        "error": pa.array(errors, pa.string()),
                        "pushed_at": pa.array([clock.now()] * n, pa.timestamp("us", tz="UTC")),
                        "record_key": pa.array(tokens, pa.string()),
                    }
                )
                self.wh.load(DESTINATION_STATE, table, on_conflict="update")
            if self.removed:
                self.wh.execute(
                    f"DELETE FROM destination_state WHERE destination = ? "
                    f"AND key_hash IN (SELECT {UNNEST})",
                    [self.d.name, self.removed],
                )
        self.rows, self.removed = [], []


def _send(wh: Warehouse, d: RestDestination, result: PushResult, ring: KeyRing | None) -> None:
    path, records_key, size = _endpoint(d)
    counts = result.counts
    counts |= {"rows_sent": 0, "rows_rejected": 0, "requests": 0}
    acks = _Acks(wh, d, ring)
    with HttpClient(d.client, source=f"destination {d.name}") as client:

        def post(rows: list[dict[str, Any]]) -> None:
            records = _shaped(d, rows)
            body: Any = {records_key: records} if records_key else records
            counts["requests"] += 1
            try:
                response = client.send(d.method, path, json=body)
            except RestHttpError as e:
                if e.status in _STOPPING or e.status < 400 or e.status >= 500:
                    raise
                split(rows, mask_text(e.message)[:500])
                return
            refused, unnamed = refused_inside(d, _json(response), [str(r[d.key]) for r in rows])
            if unnamed is not None:  # some record was refused, which one is unsaid: halves
                split(rows, mask_text(f"the API refused it: {unnamed}")[:500])
                return
            for i, said in refused.items():
                acks.add([rows[i]], "rejected", mask_text(f"the API refused it: {said}")[:500])
            taken = [r for i, r in enumerate(rows) if i not in refused]
            acks.add(taken, "sent")
            counts["rows_sent"] += len(taken)
            counts["rows_rejected"] += len(refused)

        def split(rows: list[dict[str, Any]], error: str) -> None:
            if len(rows) > 1:  # which record? halves until the refused ones stand alone
                half = len(rows) // 2
                post(rows[:half])
                post(rows[half:])
                return
            acks.add(rows, "rejected", error)
            counts["rows_rejected"] += 1

        try:
            for page in _pages(wh, d):
                for i in range(0, len(page), size):
                    post(page[i : i + size])
            if ring is not None:
                _remove(wh, d, ring, client, acks, counts)
        finally:  # what the API took before a stop is recorded too
            acks.flush()
            counts["retries"] = client.stats.retries


def _remove(
    wh: Warehouse,
    d: RestDestination,
    ring: KeyRing,
    client: HttpClient,
    acks: _Acks,
    counts: dict[str, int],
) -> None:
    """Remove at the API the records that left the model (``on_remove: delete``), after the
    upserts (a record whose key changed: the new one first). A removal the API took drops the
    record's state; one it refused is kept as ``remove_rejected`` and tried again next push."""
    counts |= {"rows_removed": 0, "rows_remove_rejected": 0}
    path = d.delete_path or _HUBSPOT_ARCHIVE
    one_by_one = "{key}" in path
    size = 1 if one_by_one else _endpoint(d)[2]

    def refuse(rows: list[tuple[str, str, str | None]], error: str) -> None:
        acks.keep([(h, r, tokens[h]) for h, r, _ in rows], mask_text(error)[:500])
        counts["rows_remove_rejected"] += len(rows)

    def delete(rows: list[tuple[str, str, str | None]]) -> None:
        keys = [k for _, _, k in rows if k is not None]
        assert len(keys) == len(rows)
        counts["requests"] += 1
        try:
            if one_by_one:
                where = path.replace("{key}", urllib.parse.quote(keys[0], safe=""))
                response = client.send(d.delete_method, where)
            else:
                response = client.send(d.delete_method, path, json=_removal(d, keys))
        except RestHttpError as e:
            if one_by_one and e.status in (404, 410):  # gone already: what a removal wants
                acks.remove([rows[0][0]])
                counts["rows_removed"] += 1
                return
            if e.status in _STOPPING or e.status < 400 or e.status >= 500:
                raise
            if len(rows) > 1:
                half = len(rows) // 2
                delete(rows[:half])
                delete(rows[half:])
                return
            refuse(rows, e.message)
            return
        refused, unnamed = refused_inside(d, _json(response), keys)
        if unnamed is not None and len(rows) > 1:
            half = len(rows) // 2
            delete(rows[:half])
            delete(rows[half:])
            return
        if unnamed is not None:
            refused = {0: unnamed}
        for i, said in refused.items():
            refuse([rows[i]], f"the API refused its removal: {said}")
        acks.remove([h for i, (h, _, _) in enumerate(rows) if i not in refused])
        counts["rows_removed"] += len(rows) - len(refused)

    after = ""
    tokens: dict[str, str] = {}
    while leaving := _leaving(wh, d, limit=_READ, after=after):
        after = leaving[-1][0]
        tokens = {h: k for h, _, k in leaving}
        opened = _opened(wh, d, ring, leaving)
        readable = [row for row in opened if row[2] is not None]
        unreadable = [row for row in opened if row[2] is None]
        if unreadable:  # (a key under a key no longer in the ring, or altered: named, kept)
            refuse(
                unreadable,
                "its kept key cannot be read for this record (altered, or "
                "privacy.encryption_keys lost the key it was encrypted under)",
            )
        for i in range(0, len(readable), size):
            delete(readable[i : i + size])
