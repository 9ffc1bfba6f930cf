"""Conflict report: profile fields on which sources disagree for one customer.

From the survivorship provenance (``profile_observations`` joined to the identity graph): per
customer, field and source, the source's current value (its latest observation); a *conflict*
is a customer and field whose sources hold different current values (the CRM and the shop hold
other names or phones for one person). Each comes with the value that won and the rule that
chose it — the same rule and SQL order as the profiles stage
(:func:`personify.profiles.survivorship.winners_sql`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from personify.config import SurvivorshipConfig
from personify.privacy.masking import mask_value
from personify.profiles.survivorship import rule_for, winners_sql
from personify.warehouse import Warehouse

_OBSERVED = (
    "SELECT n.customer_id, o.field, o.value, o.source, o.observed_at "
    "FROM profile_observations AS o JOIN identity_nodes AS n ON n.node_id = o.node_id "
    "WHERE n.customer_id IS NOT NULL"
)


@dataclasses.dataclass
class Conflict:
    customer_id: str
    field: str
    rule: str
    winner: str
    winner_source: str
    values: dict[str, str] = dataclasses.field(default_factory=dict)
    """Source → its current value."""


def conflicts(
    wh: Warehouse,
    config: SurvivorshipConfig,
    *,
    fields: Sequence[str] = (),
    customer: str | None = None,
    limit: int = 100,
    mask: bool = False,
) -> tuple[list[Conflict], dict[str, int]]:
    """Up to ``limit`` conflicts (customer, field order) and the count per field of all of
    them. ``mask``: personal values (emails, phones, names) masked."""
    names = list(fields) or [
        r[0] for r in wh.fetch("SELECT DISTINCT field FROM profile_observations")
    ]
    if not names:
        return [], {}
    marks = ", ".join("?" for _ in names)
    scope = f" AND o.field IN ({marks})"
    params: list[Any] = list(names)
    if customer is not None:
        scope += " AND n.customer_id = ?"
        params.append(customer)
    observed = _OBSERVED + scope
    current = (
        "SELECT customer_id, field, value, source FROM (SELECT b.*, row_number() OVER "
        "(PARTITION BY customer_id, field, source ORDER BY observed_at DESC, value) AS rn "
        f"FROM ({observed}) AS b) AS c WHERE rn = 1"
    )
    disputed = (
        f"SELECT customer_id, field FROM ({current}) AS d GROUP BY customer_id, field "
        "HAVING count(DISTINCT value) > 1"
    )
    per_field = dict(
        wh.fetch(f"SELECT field, count(*) FROM ({disputed}) AS x GROUP BY field", params)
    )
    if not per_field:
        return [], {}
    chosen = wh.fetch(
        f"SELECT customer_id, field FROM ({disputed}) AS x ORDER BY 1, 2 LIMIT {int(limit)}", params
    )
    keys = {(r[0], r[1]) for r in chosen}
    customers = sorted({k[0] for k in keys})
    cmarks = ", ".join("?" for _ in customers)
    values = wh.fetch(
        f"SELECT customer_id, field, source, value FROM ({current}) AS v "
        f"WHERE customer_id IN ({cmarks}) ORDER BY 1, 2, 3",
        [*params, *customers],
    )
    win_sql, win_params = winners_sql(config, names, observed)
    winners = {
        (r[0], r[1]): (r[2], r[3])
        for r in wh.fetch(
            f"SELECT * FROM ({win_sql}) AS w WHERE customer_id IN ({cmarks})",
            [*win_params, *params, *customers],
        )
    }
    out: dict[tuple[str, str], Conflict] = {}
    for cid, fname, source, value in values:
        if (cid, fname) not in keys:
            continue
        shown = mask_value(fname, value) if mask else value
        if (cid, fname) not in out:
            win_value, win_source = winners.get((cid, fname), (None, None))
            out[(cid, fname)] = Conflict(
                cid,
                fname,
                rule_for(config, fname).rule,
                mask_value(fname, win_value) if mask else win_value,
                win_source or "",
            )
        out[(cid, fname)].values[source] = shown
    return [out[k] for k in sorted(out)], {k: int(v) for k, v in per_field.items()}
