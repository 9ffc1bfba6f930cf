"""Person records from sources land in ``customer_records`` (every version kept), not in
``customers`` (which identity and profiles derive).

:func:`to_customer_records` reshapes rows mapped to the ``customers`` target (the file importer's
``table: customers``, CRM syncs …) into ``customer_records`` rows: ``customer_id`` — the source's
own id — becomes ``record_id``; the time the source observed the values is ``updated_at``, else
``created_at``, else arrival. Columns ``customer_records`` lacks go to ``attributes`` if given.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from personify.warehouse.base import Warehouse
from personify.warehouse.schema import CUSTOMER_RECORDS
from personify.warehouse.scratch import scratch, temp_table

_TS = pa.timestamp("us", tz="UTC")


def to_customer_records(rows: pa.Table, source: str, received_at: datetime) -> pa.Table:
    """``customers``-shaped Arrow rows → ``customer_records`` rows (the Arrow table to load)."""
    n = rows.num_rows
    arrival = pa.array([received_at] * n, _TS)
    observed = arrival
    for name in ("created_at", "updated_at"):
        if name in rows.column_names:
            observed = pc.coalesce(rows[name].cast(_TS), observed)
    out: dict[str, pa.Array | pa.ChunkedArray] = {
        "source": pa.array([source] * n, pa.string()),
        "record_id": rows["customer_id"].cast(pa.string()),
        "observed_at": observed,
        "received_at": arrival,
    }
    for name in CUSTOMER_RECORDS.column_names:
        if name not in out and name in rows.column_names:
            out[name] = rows[name]
    return pa.table(out)


def route(target: str) -> str:
    """The table rows for ``target`` are stored in (``customers`` → ``customer_records``)."""
    return CUSTOMER_RECORDS.name if target == "customers" else target


PLAIN_RECORDS = "_records_plain"
"""Temporary table: the records of one read, decrypted (see :func:`readable_records`)."""
_SEALABLE = ("email", "phone", "first_name", "last_name")


def readable_records(
    wh: Warehouse, where: tuple[str, tuple[object, ...]]
) -> tuple[str, tuple[str, tuple[object, ...]]]:
    """The table to read the records matching ``where`` from, and the condition over it.

    Without encrypted fields, or when none of those records is sealed yet (the privacy stage
    seals them after identity and the profile build read them), that is ``customer_records``
    itself; otherwise the matching records are copied into :data:`PLAIN_RECORDS` with their
    sealed columns decrypted (Arrow, once per distinct token), and read from there."""
    from personify.privacy.crypto import FIXED_PREFIX
    from personify.privacy.fields import cipher_of, open_array

    cipher = cipher_of(wh)
    columns = [c for c in (cipher.columns if cipher else ()) if c in _SEALABLE]
    if cipher is None or not columns:
        return CUSTOMER_RECORDS.name, where
    sealed = " OR ".join(f"{c} LIKE '{FIXED_PREFIX}%'" for c in columns)
    if not wh.fetch(
        f"SELECT 1 FROM customer_records WHERE ({where[0]}) AND ({sealed}) LIMIT 1", where[1]
    ):
        return CUSTOMER_RECORDS.name, where
    rows = wh.fetch_arrow(f"SELECT * FROM customer_records WHERE {where[0]}", where[1])
    for column in columns:
        i = rows.schema.get_field_index(column)
        rows = rows.set_column(i, column, open_array(cipher, column, rows[column]))
    temp_table(
        wh, scratch(PLAIN_RECORDS, **{c.name: c.type for c in CUSTOMER_RECORDS.columns}), rows
    )
    return PLAIN_RECORDS, ("TRUE", ())
