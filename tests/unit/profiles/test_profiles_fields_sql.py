"""The DuckDB survivorship aggregate (:func:`fields_sql`) picks, for every customer and field, the
observation :func:`rank` ranks first — over many customers at once, every rule, ties included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.config import FieldRule, SurvivorshipConfig
from personify.profiles.survivorship import Observation, fields_sql, rank, rule_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FIELDS = ("email", "first_name", "last_name", "city")
RULES = [
    FieldRule(),
    FieldRule(rule="first_non_empty"),
    FieldRule(rule="most_frequent"),
    FieldRule(rule="source_priority", sources=("shop", "crm")),
    FieldRule(rule="source_priority"),
]

observations = st.lists(
    st.tuples(
        st.integers(1, 4),  # the customer (an integer key, as the build's identity part)
        st.sampled_from(FIELDS),
        st.sampled_from(["a", "b", "B", "ä"]),
        st.sampled_from(["crm", "shop", "web"]),
        st.integers(0, 3).map(lambda d: T0 + timedelta(days=d, microseconds=d % 2)),
    ),
    min_size=1,
    max_size=30,
)
configs = st.builds(
    lambda default, per: SurvivorshipConfig(
        default=default, fields=dict(zip(FIELDS, per, strict=False))
    ),
    st.sampled_from(RULES),
    st.lists(st.sampled_from(RULES), max_size=len(FIELDS)),
)


@settings(max_examples=150, deadline=None)
@given(observations, configs)
def test_fields_sql_equals_rank(
    obs: list[tuple[int, str, str, str, datetime]], config: SurvivorshipConfig
) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = pa.table(
        {
            "part": [o[0] for o in obs],
            "field": [o[1] for o in obs],
            "value": [o[2] for o in obs],
            "source": [o[3] for o in obs],
            "observed_at": pa.array([o[4] for o in obs], pa.timestamp("us", tz="UTC")),
        }
    )
    con.register("obs", rows)
    sql, params = fields_sql(config, FIELDS, "SELECT * FROM obs", "duckdb", key="part")
    got = {r[0]: r[1:] for r in con.execute(sql, params).fetchall()}
    assert set(got) == {o[0] for o in obs}
    for part, row in got.items():
        expected: list[str | None] = []
        email_source = None
        for field in FIELDS:
            mine = [Observation(o[2], o[3], o[4]) for o in obs if o[0] == part and o[1] == field]
            best = rank(mine, rule_for(config, field))[0] if mine else None
            expected.append(best.value if best else None)
            if field == "email" and best:
                email_source = best.source
        assert list(row) == [*expected, email_source]
