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

from personify.warehouse.schema import CUSTOMER_RECORDS

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
