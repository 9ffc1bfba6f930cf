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
   and sent again only when its row changes. A refusal of the credentials or the endpoint (401,
   403, 404) stops the push.

The key is stored only as a keyed hash (the customer-id key, from ``signing_key``): the state
holds no email or name. Every push is recorded like a source's run (``source_state``, as
``destination:NAME``), so ``personify status`` shows it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import logging
import time
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
from personify.privacy.fields import decrypt_rows
from personify.privacy.masking import mask_text
from personify.session import Session
from personify.sources.rest.client import HttpClient
from personify.sources.rest.errors import RestError, RestHttpError
from personify.sources.schedule import exclusive, record_run
from personify.warehouse.base import AUTHORING_DIALECT, Warehouse
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
            result.counts = _stage_rows(wh, session.project, d)
            if result.counts["rows_changed"] and not dry_run:  # (a local API: served now)
                d = local_api(stack, session, d)
            if dry_run:
                result.sample = [_masked(r) for r in _shaped(d, _changed(wh, d, limit=3))]
            elif result.counts["rows_changed"]:
                _send(wh, d, result)
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
        f"ON s.destination = ? AND s.key_hash = r.{_KEY} "
        f"WHERE s.row_hash IS NULL OR s.row_hash <> r.{_HASH}",
        [d.name],
    )
    return {
        "rows_model": int(total),
        "rows_without_key": int(keyless),
        "rows_without_consent": refused,
        "rows_changed": int(changed or 0),
    }


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
        f"SELECT r.* FROM {_ROWS} r LEFT JOIN (SELECT key_hash, row_hash FROM destination_state "
        f"WHERE destination = ?) s ON s.key_hash = r.{_KEY} "
        f"WHERE (s.row_hash IS NULL OR s.row_hash <> r.{_HASH}) "
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


class _Acks:
    """What the API answered, recorded in ``destination_state`` by the thousand records or the
    second (one commit per batch cost more than the request: 40 ms against 5), and whatever is
    left when the push ends or stops. A crash loses at most that: those records go again."""

    EVERY_RECORDS: Final = 1_000
    EVERY_SECONDS: Final = 1.0

    def __init__(self, wh: Warehouse, d: RestDestination) -> None:
        self.wh, self.d = wh, d
        self.rows: list[tuple[str, str, str, str | None]] = []
        self.flushed = time.monotonic()

    def add(self, rows: list[dict[str, Any]], status: str, error: str | None = None) -> None:
        self.rows += [(str(r[_KEY]), str(r[_HASH]), status, error) for r in rows]
        if (
            len(self.rows) >= self.EVERY_RECORDS
            or time.monotonic() - self.flushed >= self.EVERY_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        from personify.warehouse.schema import DESTINATION_STATE

        self.flushed = time.monotonic()
        if not self.rows:
            return
        keys, hashes, statuses, errors = zip(*self.rows, strict=True)
        n = len(keys)
        table = pa.table(
            {
                "destination": pa.array([self.d.name] * n),
                "key_hash": pa.array(keys),
                "row_hash": pa.array(hashes),
                "status": pa.array(statuses),
                "error": pa.array(errors, pa.string()),
                "pushed_at": pa.array([clock.now()] * n, pa.timestamp("us", tz="UTC")),
            }
        )
        with self.wh.transaction():
            self.wh.load(DESTINATION_STATE, table, on_conflict="update")
        self.rows = []


def _send(wh: Warehouse, d: RestDestination, result: PushResult) -> None:
    path, records_key, size = _endpoint(d)
    counts = result.counts
    counts |= {"rows_sent": 0, "rows_rejected": 0, "requests": 0}
    acks = _Acks(wh, d)
    with HttpClient(d.client, source=f"destination {d.name}") as client:

        def post(rows: list[dict[str, Any]]) -> None:
            records = _shaped(d, rows)
            body: Any = {records_key: records} if records_key else records
            counts["requests"] += 1
            try:
                client.send(d.method, path, json=body)
            except RestHttpError as e:
                if e.status in _STOPPING or e.status < 400 or e.status >= 500:
                    raise
                if len(rows) > 1:  # which record? halves until the refused ones stand alone
                    half = len(rows) // 2
                    post(rows[:half])
                    post(rows[half:])
                    return
                acks.add(rows, "rejected", mask_text(e.message)[:500])
                counts["rows_rejected"] += 1
                return
            acks.add(rows, "sent")
            counts["rows_sent"] += len(rows)

        try:
            for page in _pages(wh, d):
                for i in range(0, len(page), size):
                    post(page[i : i + size])
        finally:  # what the API took before a stop is recorded too
            acks.flush()
            counts["retries"] = client.stats.retries
