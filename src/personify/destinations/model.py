"""A destination's model, run in the warehouse: its rows staged with their key's keyed hash and
their MD5, compared with the state there — what changed, what left."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

from personify.config import Project, RestDestination
from personify.destinations.consent import check_columns, drop_without_consent
from personify.destinations.state import ERASED, HASH, KEY, key_prefix
from personify.errors import ConfigError, UnsafeQueryError, WarehouseBusy, WarehouseError
from personify.privacy.fields import decrypt_rows
from personify.warehouse.base import AUTHORING_DIALECT, Warehouse
from personify.warehouse.query import pin_time
from personify.warehouse.safety import check_select

ROWS: Final = "_push_rows"


READ: Final = 10_000
"""Changed rows read from the warehouse at a time (keyset pages)."""


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
    check_columns(project, d, columns)
    if d.ad_audience:
        _identifier_columns(project, d, columns)
    if d.key not in columns:
        raise ConfigError(
            f"the model of destination {d.name!r} has no column {d.key!r} (its key)",
            file=str(project.file),
            key=f"destinations.{d.name}.key",
            hint=f"select the key column, or set key to one of: {', '.join(columns)}",
        )
    return pin_time(query).sql(dialect=AUTHORING_DIALECT)


def _identifier_columns(project: Project, d: RestDestination, columns: list[str]) -> None:
    """An ad audience's model selects identifiers only (and ``customer_id``, its key), at least
    one that singles a person out."""
    from personify.destinations.audiences import (
        ADDRESS,
        ALIASES,
        MATCHING,
        address_columns,
        not_identifiers,
        schema_key,
    )

    names = ", ".join(sorted(ALIASES))
    google = d.preset == "google_ads_audience"
    if other := not_identifiers(d, columns):
        raise ConfigError(
            f"the model of destination {d.name!r} selects {', '.join(map(repr, other))}, which "
            "an ad audience cannot match people on (it sends identifiers only)",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=(
                "select only email, phone, and a postal address (first_name, last_name, country, "
                "postal_code; country alone is the phone's region), plus customer_id"
                if google
                else f"select only identifier columns, named {names} (or Meta's names: EMAIL, "
                "FN, DOBY …), plus customer_id"
            ),
        )
    address = address_columns(d, columns) if google else set()
    if address - {"COUNTRY"} and len(address) < len(ADDRESS):
        wanted = {"FN": "first_name", "LN": "last_name", "COUNTRY": "country", "ZIP": "postal_code"}
        missing = ", ".join(wanted[k] for k in ADDRESS if k not in address)
        raise ConfigError(
            f"the model of destination {d.name!r} selects part of a postal address: Google "
            f"matches on first name, last name, country and postal code together (missing: "
            f"{missing})",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=f"select {missing} too, or drop the address columns",
        )
    if not MATCHING & {schema_key(c, d) for c in columns} and len(address) < len(ADDRESS):
        raise ConfigError(
            f"the model of destination {d.name!r} selects no identifier that singles a person "
            "out: "
            + (
                "email, phone, or a postal address (first_name, last_name, country, postal_code)"
                if google
                else "email, phone, madid or extern_id"
            ),
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint="select email (and phone) next to customer_id",
        )


def stage_rows(wh: Warehouse, project: Project, d: RestDestination) -> dict[str, int]:
    """The model's rows in :data:`ROWS`, with their key's keyed hash and the row's MD5; the
    counts of rows, rows without a key and changed rows."""
    sql = _model(wh, project, d)
    wh.execute(f"DROP TABLE IF EXISTS {ROWS}")
    try:
        wh.execute(
            f'CREATE TEMP TABLE {ROWS} AS SELECT md5(? || CAST(m."{d.key}" AS VARCHAR)) '
            f"AS {KEY}, md5(CAST(to_json(m) AS VARCHAR)) AS {HASH}, m.* FROM ({sql}) m",
            [key_prefix(wh, d.name)],
        )
    except WarehouseBusy:
        raise
    except WarehouseError as e:  # (a division by zero, a type mismatch: found when it runs)
        raise WarehouseError(
            f"destinations.{d.name}.model: the warehouse refused the model: {e.message}",
            hint="run the SELECT with `personify sql` to see where, and fix it",
        ) from None
    total, keyless, keys = wh.fetch(
        f'SELECT count(*), count(*) - count(m."{d.key}"), count(DISTINCT m."{d.key}") FROM {ROWS} m'
    )[0]
    if keys != total - keyless:
        raise ConfigError(
            f"the model of destination {d.name!r} returns {total - keyless - keys} rows whose "
            f"{d.key!r} another row has too",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=f"make {d.key!r} unique (one row per record: GROUP BY it, or pick one row)",
        )
    wh.execute(f'DELETE FROM {ROWS} WHERE "{d.key}" IS NULL')
    refused = drop_without_consent(wh, d, ROWS)
    changed = wh.scalar(
        f"SELECT count(*) FROM {ROWS} r LEFT JOIN destination_state s "
        f"ON s.destination = ? AND s.key_hash = r.{KEY} WHERE {_changes(d)}",
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
                f"AND s.record_key IS NOT NULL AND s.status <> '{ERASED}' AND {_gone()}",
                [d.name],
            )
            or 0
        )
    if erased := erased_pending(wh, d.name):
        counts["rows_erased_to_remove"] = erased
    return counts


def erased_pending(wh: Warehouse, name: str) -> int:
    """How many records of destination ``name`` erasures left to remove at the API."""
    return int(
        wh.scalar(
            f"SELECT count(*) FROM destination_state WHERE destination = ? AND status = '{ERASED}'",
            [name],
        )
        or 0
    )


def _changes(d: RestDestination) -> str:
    """The condition on a model row ``r`` and its state ``s`` (outer-joined) that sends it: new
    or changed, back in the model after the API refused its removal — or, for a destination
    that removes records, pushed before it kept their keys (sent once more to learn the key: a
    removal must name the record)."""
    cond = f"s.row_hash IS NULL OR s.row_hash <> r.{HASH} OR s.status = 'remove_rejected'"
    cond += " OR s.record_key IS NULL" if d.on_remove == "delete" else ""
    # (a record an erasure left to remove goes first: upserted again only once it is removed)
    return f"({cond}) AND (s.status IS NULL OR s.status <> '{ERASED}')"


def _gone() -> str:
    """The condition on a state row ``s`` whose record is no longer in the model."""
    return f"NOT EXISTS (SELECT 1 FROM {ROWS} r WHERE r.{KEY} = s.key_hash)"


def leaving(
    wh: Warehouse, d: RestDestination, *, limit: int, after: str = "", erased: bool = False
) -> list[tuple[str, str, str]]:
    """Up to ``limit`` records that left the model (key hash, row hash, encrypted key), after
    the key hash ``after`` — or, ``erased``, those an erasure left to remove (whatever the
    model says)."""
    which = f"s.status = '{ERASED}'" if erased else f"s.status <> '{ERASED}' AND {_gone()}"
    rows = wh.fetch(
        f"SELECT s.key_hash, s.row_hash, s.record_key FROM destination_state s "
        f"WHERE s.destination = ? AND s.record_key IS NOT NULL AND s.key_hash > ? AND {which} "
        f"ORDER BY s.key_hash LIMIT {int(limit)}",
        [d.name, after],
    )
    return [(str(h), str(r), str(k)) for h, r, k in rows]


def staying(
    wh: Warehouse, d: RestDestination, *, limit: int, after: str = "", untagged: str = ""
) -> list[tuple[str, str, str]]:
    """Up to ``limit`` records still in the model that the API holds or held (key hash, row
    hash, encrypted key — an ad audience's: the identifiers sent), after the key hash
    ``after``: who remains once this push's removals are done (``untagged``: only those whose
    identifiers' hashes were not made under the key of that tag: :mod:`.shared`)."""
    tagged = "AND (s.identifiers_key IS NULL OR s.identifiers_key <> ?) " if untagged else ""
    rows = wh.fetch(
        f"SELECT s.key_hash, s.row_hash, s.record_key FROM destination_state s "
        f"WHERE s.destination = ? AND s.record_key IS NOT NULL AND s.key_hash > ? {tagged}"
        f"AND s.status <> '{ERASED}' AND NOT ({_gone()}) ORDER BY s.key_hash LIMIT {int(limit)}",
        [d.name, after, *([untagged] if untagged else [])],
    )
    return [(str(h), str(r), str(k)) for h, r, k in rows]


def changed_rows(
    wh: Warehouse, d: RestDestination, *, limit: int, after: str = ""
) -> list[dict[str, Any]]:
    """Up to ``limit`` changed rows after the key hash ``after`` (keyset order), in plain text."""
    # (the destination's rows filtered in a subquery: with `ON s.destination = ? AND …`,
    # DuckDB 2.0.1 drops the LIMIT)
    table = wh.fetch_arrow(
        f"SELECT r.* FROM {ROWS} r LEFT JOIN (SELECT key_hash, row_hash, status, record_key "
        f"FROM destination_state "
        f"WHERE destination = ?) s ON s.key_hash = r.{KEY} "
        f"WHERE ({_changes(d)}) "
        f"AND r.{KEY} > ? ORDER BY r.{KEY} LIMIT {int(limit)}",
        [d.name, after],
    )
    return decrypt_rows(wh, table.to_pylist(), strict=False)


def pages(wh: Warehouse, d: RestDestination) -> Iterator[list[dict[str, Any]]]:
    after = ""
    while rows := changed_rows(wh, d, limit=READ, after=after):
        after = str(rows[-1][KEY])
        yield rows
