"""What identity shares with the stages after it (profiles, privacy): the tables a pass holds,
and the phone numbers SQL could not normalize, parsed once in Python."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import scratch, temp_table

WRITES = ("customers", "identities", "identity_edges", "identity_nodes", "profile_observations")
"""Tables identity and profiles write with plain SQL, keeping their keys by construction: a
pass holds them all (:meth:`~personify.warehouse.base.Warehouse.hold`) from its start."""


PHONES = scratch("_phone_map", raw="VARCHAR", region="VARCHAR", e164="VARCHAR")
"""``(raw, region, e164)``: phone values SQL could not normalize, with the country written
beside them (``''`` when none), parsed in Python (:func:`phone_map`)."""


def phone_map(
    wh: Warehouse, values_sql: str, region: str | None, params: Sequence[object] = ()
) -> int:
    """(Re)create :data:`PHONES` from the distinct ``(raw, country)`` pairs ``values_sql``
    selects (``country`` ``''`` when none), each parsed once with ``phonenumbers`` — read in the
    country's region when it is an ISO code, else in ``region`` (``e164`` NULL when it is no
    number); returns how many are numbers."""
    from personify.identity.normalize import normalize_phone, phone_region

    rows = wh.fetch(values_sql, params)
    values, countries = [r[0] for r in rows], [r[1] for r in rows]
    parsed = [normalize_phone(v, phone_region(c or None, region)) for v, c in rows]
    schema = pa.schema([("raw", pa.string()), ("region", pa.string()), ("e164", pa.string())])
    data = pa.table({"raw": values, "region": countries, "e164": parsed}, schema=schema)
    temp_table(wh, PHONES, data)
    return sum(e is not None for e in parsed)
