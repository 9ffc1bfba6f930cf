"""Conflict report on every backend: a field is in conflict when the sources' current values for
one customer differ (a source's older value it has since corrected is no conflict); each comes
with the winner and rule the profiles stage uses; masking hides personal values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from personify.config import FieldRule, SurvivorshipConfig
from personify.quality.conflicts import conflicts
from personify.warehouse import Warehouse
from personify.warehouse.schema import IDENTITY_NODES, PROFILE_OBSERVATIONS

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def seed(wh: Warehouse) -> None:
    ts = pa.timestamp("us", tz="UTC")
    nodes = [(1, "crm_id", "c1", "crm", "cust-1"), (2, "shop_id", "s1", "shop", "cust-1")]
    nodes += [(3, "crm_id", "c2", "crm", "cust-2"), (4, "shop_id", "s2", "shop", "cust-2")]
    wh.load(
        IDENTITY_NODES,
        pa.table(
            {
                "node_id": [n[0] for n in nodes],
                "kind": [n[1] for n in nodes],
                "value": [n[2] for n in nodes],
                "source": [n[3] for n in nodes],
                "first_seen": pa.array([T0] * 4, ts),
                "last_seen": pa.array([T0] * 4, ts),
                "blocked": [False] * 4,
                "cluster": [1, 1, 3, 3],
                "part": [0, 0, 0, 0],
                "customer_id": [n[4] for n in nodes],
            }
        ),
    )
    h = timedelta(hours=1)
    obs = [
        # node, field, value, source, origin, observed_at
        (1, "phone", "+33600000001", "crm", "c1", T0),
        (2, "phone", "+33600000002", "shop", "s1", T0 + h),  # disagrees: shop is newer
        (1, "first_name", "Ann", "crm", "c1", T0),
        (2, "first_name", "Ann", "shop", "s1", T0),  # agrees
        (3, "last_name", "Smith", "crm", "c2", T0),
        (4, "last_name", "Smyth", "shop", "s2", T0),
        (4, "last_name", "Smith", "shop", "s2", T0 + h),  # the shop corrected it: no conflict
    ]
    wh.load(
        PROFILE_OBSERVATIONS,
        pa.table(
            {
                "node_id": [o[0] for o in obs],
                "field": [o[1] for o in obs],
                "value": [o[2] for o in obs],
                "source": [o[3] for o in obs],
                "origin": [o[4] for o in obs],
                "observed_at": pa.array([o[5] for o in obs], ts),
                "received_at": pa.array([T0] * len(obs), ts),
            }
        ),
    )


def test_conflicts_name_the_winner_and_the_rule(warehouse: Warehouse) -> None:
    seed(warehouse)
    found, per_field = conflicts(warehouse, SurvivorshipConfig())
    assert per_field == {"phone": 1}
    [c] = found
    assert (c.customer_id, c.field, c.rule) == ("cust-1", "phone", "last_write_wins")
    assert c.values == {"crm": "+33600000001", "shop": "+33600000002"}
    assert (c.winner, c.winner_source) == ("+33600000002", "shop")

    trust_crm = SurvivorshipConfig(
        fields={"phone": FieldRule(rule="source_priority", sources=("crm",))}
    )
    [c] = conflicts(warehouse, trust_crm, fields=["phone"])[0]
    assert (c.winner, c.winner_source, c.rule) == ("+33600000001", "crm", "source_priority")

    [masked] = conflicts(warehouse, SurvivorshipConfig(), mask=True)[0]
    assert "+33600000002" not in str(masked) and masked.winner.endswith("02")
    assert conflicts(warehouse, SurvivorshipConfig(), customer="cust-2") == ([], {})
