"""Profiles on every backend: survivorship SQL = Python, traits, deterministic rebuilds, and the
real-time path equal to the batch path."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.test_identity import TS, events, records

from personify import clock
from personify.config import FieldRule, Project, SurvivorshipConfig, parse_config
from personify.errors import WarehouseError
from personify.identity import resolve_batch
from personify.identity.sightings import Scope
from personify.profiles import build_customers, profiles_stage, read_profile
from personify.profiles.realtime import apply
from personify.profiles.survivorship import Observation, fields_sql, rank, winners_sql
from personify.session import Session
from personify.warehouse import Warehouse, connect, table
from personify.warehouse.scratch import scratch, temp_table

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=40)

SURV = SurvivorshipConfig(
    fields={
        "first_name": FieldRule(rule="source_priority", sources=("shop", "crm")),
        "last_name": FieldRule(rule="most_frequent"),
        "city": FieldRule(rule="first_non_empty"),
    }
)
obs_lists = st.lists(
    st.tuples(
        st.sampled_from(["first_name", "last_name", "city", "email"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["crm", "shop", "web"]),
        st.integers(0, 3),
    ),
    min_size=1,
    max_size=15,
)


def _observations(warehouse: Warehouse, obs: list[tuple[str, str, str, int]]) -> None:
    """``_obs``: one customer's observations ``(field, value, source, days after T0)``."""
    t = scratch(
        "_obs",
        customer_id="VARCHAR",
        field="VARCHAR",
        value="VARCHAR",
        source="VARCHAR",
        observed_at="TIMESTAMPTZ",
    )
    temp_table(
        warehouse,
        t,
        pa.table(
            {
                "customer_id": ["c"] * len(obs),
                "field": [o[0] for o in obs],
                "value": [o[1] for o in obs],
                "source": [o[2] for o in obs],
                "observed_at": pa.array([T0 + timedelta(days=o[3]) for o in obs], TS),
            }
        ),
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obs_lists)
def test_survivorship_sql_equals_python(
    warehouse: Warehouse, obs: list[tuple[str, str, str, int]]
) -> None:
    _observations(warehouse, obs)
    sql, params = winners_sql(
        SURV, ["first_name", "last_name", "city", "email"], "SELECT * FROM _obs"
    )
    got = {r[1]: (r[2], r[3]) for r in warehouse.fetch(sql, params)}
    for field in got:
        best = rank(
            [Observation(o[1], o[2], T0 + timedelta(days=o[3])) for o in obs if o[0] == field],
            SURV.fields.get(field, SURV.default),
        )[0]
        assert got[field] == (best.value, best.source)
    # the pivoted form the build uses (arg_min over a row of the keys on DuckDB) agrees
    names = ["first_name", "last_name", "city", "email"]
    sql, params = fields_sql(SURV, names, "SELECT * FROM _obs", warehouse.dialect)
    (row,) = warehouse.fetch(sql, params)
    assert dict(zip(names, row[1:5], strict=True)) == {f: got.get(f, (None,))[0] for f in names}
    assert row[5] == got.get("email", (None, None))[1]


def test_survivorship_ties_in_byte_order_whatever_the_collation(warehouse: Warehouse) -> None:
    # tied observations go to the smaller value, then source, by their bytes (as in Python):
    # under en_US PostgreSQL put 'paris' before 'Zurich' and 'crm' before 'Shop'
    obs = [("city", "paris", "crm"), ("city", "Zurich", "crm"), ("email", "a@x.org", "crm")]
    obs += [("email", "a@x.org", "Shop")]
    _observations(warehouse, [(*o, 0) for o in obs])
    if warehouse.dialect == "postgres":
        if not warehouse.fetch("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'"):
            pytest.skip("this PostgreSQL has no ICU collation to sort like en_US")
        for column in ("value", "source"):
            warehouse.execute(
                f'ALTER TABLE _obs ALTER COLUMN {column} TYPE VARCHAR COLLATE "en-US-x-icu"'
            )
    expected = {"city": ("Zurich", "crm"), "email": ("a@x.org", "Shop")}
    for field, (value, source) in expected.items():
        best = rank([Observation(o[1], o[2], T0) for o in obs if o[0] == field], SURV.default)
        assert (best[0].value, best[0].source) == (value, source)
    sql, params = winners_sql(SURV, ["city", "email"], "SELECT * FROM _obs")
    assert {r[1]: (r[2], r[3]) for r in warehouse.fetch(sql, params)} == expected
    sql, params = fields_sql(SURV, ["city", "email"], "SELECT * FROM _obs", warehouse.dialect)
    (row,) = warehouse.fetch(sql, params)
    assert (row[1], row[2], row[3]) == ("Zurich", "a@x.org", "Shop")


def project(tmp: Path, url: str) -> Project:
    (tmp / "traits").mkdir(exist_ok=True)
    (tmp / "traits" / "lifetime_items.sql").write_text(
        "SELECT o.customer_id, sum(i.quantity) AS value FROM orders o "
        "JOIN order_items i ON i.order_id = o.order_id GROUP BY o.customer_id\n"
    )
    return Project(parse_config(f"warehouse: {url}\n"), tmp, tmp / "personify.yml")


def load_world(wh: Warehouse) -> None:
    wh.load(
        table("events"),
        events(
            [
                ("m1", "a1", None, 1, None),
                ("m2", "a1", "u1", 2, "ann@x.org"),
                ("m3", "a2", None, 3, None),
                ("m4", "a2", "u2", 4, "bob@x.org"),
            ]
        ),
    )
    wh.load(
        table("events"),
        pa.table(
            {
                "message_id": ["t1", "t2"],
                "type": ["track", "track"],
                "event": ["Product Viewed", "Email Opened"],
                "anonymous_id": ["a1", "a1"],
                "timestamp": pa.array([T0 + timedelta(days=30)] * 2, TS),
                "received_at": pa.array([T0 + timedelta(days=30)] * 2, TS),
                "source": ["web", "web"],
                "properties": ['{"category": "shoes"}', None],
            }
        ),
    )
    wh.load(
        table("customer_records"),
        records([("crm", "c1", "ann@x.org", 0), ("crm", "c2", "bob@x.org", 0)]),
    )
    wh.load(
        table("products"),
        pa.table({"product_id": ["p1"], "name": ["Hat"], "category": ["hats"], "source": ["shop"]}),
    )
    wh.load(
        table("orders"),
        pa.table(
            {
                "order_id": ["o1", "o2"],
                "customer_id": ["s1", None],
                "email": ["ann@x.org", "bob@x.org"],
                "total": [20.0, 7.5],
                "status": ["paid", "cancelled"],
                "created_at": pa.array([T0 + timedelta(days=35)] * 2, TS),
                "source": ["shop", "shop"],
            }
        ),
    )
    wh.load(
        table("order_items"),
        pa.table(
            {
                "order_id": ["o1"],
                "line_no": [1],
                "product_id": ["p1"],
                "quantity": [2],
                "price": [10.0],
                "source": ["shop"],
            }
        ),
    )


def snapshot(wh: Warehouse) -> list[dict[str, Any]]:
    rows = wh.fetch_arrow("SELECT * FROM customers ORDER BY customer_id").to_pylist()
    for r in rows:
        r.pop("updated_at")
    return rows


def session_on(wh: Warehouse, proj: Project) -> Session:
    s = Session(proj)
    s._warehouse = wh
    return s


def test_build_traits_and_determinism(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = project(tmp_path, warehouse.url)
    load_world(warehouse)
    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
        first = snapshot(warehouse)
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
        assert snapshot(warehouse) == first
        doc = read_profile(warehouse, "ANN@x.org", proj)
    p = doc["profile"]
    assert p["order_count"] == 1 and p["total_spent"] == 20.0
    assert p["days_since_last_purchase"] == 5 and p["lifecycle_stage"] == "new"
    assert 0 < p["engagement_score"] <= 100
    assert "shoes" in str(p["preferred_categories"]) and "hats" in str(p["preferred_categories"])
    assert "lifetime_items" in str(p["traits"])
    assert {i["kind"] for i in doc["identities"]} >= {"email", "user_id", "anonymous_id", "crm_id"}
    assert doc["fields"]["email"]["value"] == "ann@x.org"
    bob = read_profile(warehouse, "bob@x.org", proj)["profile"]
    assert bob["order_count"] == 0 and bob["lifecycle_stage"] == "prospect"


def test_realtime_equals_batch(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = project(tmp_path, warehouse.url)
    load_world(warehouse)
    session = session_on(warehouse, proj)
    with clock.frozen(NOW):
        for (rid,) in warehouse.fetch("SELECT record_id FROM customer_records ORDER BY 1"):
            apply(session, Scope(records=("record_id = ?", (rid,))))
        for (mid,) in warehouse.fetch(
            "SELECT message_id FROM events ORDER BY timestamp, message_id"
        ):
            apply(session, Scope(events=("message_id = ?", (mid,))))
        for (oid,) in warehouse.fetch("SELECT order_id FROM orders ORDER BY 1"):
            apply(session, Scope(orders=("order_id = ?", (oid,))))
        realtime = snapshot(warehouse)
        build_customers(warehouse, proj)
        assert snapshot(warehouse) == realtime
        # and the same customers as a batch pass over everything on a fresh warehouse
        with connect("duckdb:///:memory:") as fresh:
            load_world(fresh)
            resolve_batch(fresh, proj.config.identity)
            profiles_stage(session_on(fresh, proj))
            batch = snapshot(fresh)
    assert [r["customer_id"] for r in batch] == [r["customer_id"] for r in realtime]
    strip = ("preferred_categories", "traits", "created_at")
    assert [{k: v for k, v in r.items() if k not in strip} for r in batch] == [
        {k: v for k, v in r.items() if k not in strip} for r in realtime
    ]


def test_preferred_categories_ties_in_byte_order_whatever_the_collation(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # a PostgreSQL database created under en_US sorts 'hats' before 'Shoes', DuckDB after: a tie
    # (equal weights) is broken by the name's bytes, the same on every warehouse
    if warehouse.dialect == "postgres":
        if not warehouse.fetch("SELECT 1 FROM pg_collation WHERE collname = 'en-US-x-icu'"):
            pytest.skip("this PostgreSQL has no ICU collation to sort like en_US")
        warehouse.execute(
            'ALTER TABLE products ALTER COLUMN category TYPE VARCHAR COLLATE "en-US-x-icu"'
        )
    wh, proj = warehouse, project(tmp_path, warehouse.url)
    wh.load(table("customer_records"), records([("crm", "c1", "ann@x.org", 0)]))
    wh.load(
        table("products"),
        pa.table(
            {
                "product_id": ["p1", "p2", "p3"],
                "name": ["Hat", "Shoe", "Bag"],
                "category": ["hats", "Shoes", "bags"],
                "source": ["shop"] * 3,
            }
        ),
    )
    wh.load(
        table("orders"),
        pa.table(
            {
                "order_id": ["o1"],
                "email": ["ann@x.org"],
                "total": [30.0],
                "status": ["paid"],
                "created_at": pa.array([T0 + timedelta(days=35)], TS),
                "source": ["shop"],
            }
        ),
    )
    wh.load(
        table("order_items"),
        pa.table(
            {
                "order_id": ["o1"] * 3,
                "line_no": [1, 2, 3],
                "product_id": ["p1", "p2", "p3"],
                "quantity": [1, 1, 1],
                "price": [10.0] * 3,
                "source": ["shop"] * 3,
            }
        ),
    )
    proj = Project(
        parse_config(f"warehouse: {warehouse.url}\ntraits:\n  categories: {{top: 2}}\n"),
        tmp_path,
        tmp_path / "personify.yml",
    )
    with clock.frozen(NOW):
        resolve_batch(wh, proj.config.identity)
        profiles_stage(session_on(wh, proj))
    (value,) = wh.fetch("SELECT preferred_categories FROM customers")[0]
    assert (json.loads(value) if isinstance(value, str) else value) == ["Shoes", "bags"]


def test_a_user_trait_the_warehouse_refuses_is_named(warehouse: Warehouse, tmp_path: Path) -> None:
    proj = project(tmp_path, warehouse.url)
    (tmp_path / "traits" / "typo.sql").write_text("SELECT customer_id, nme AS value FROM customers")
    load_world(warehouse)
    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        with pytest.raises(WarehouseError, match=r"one of the user traits \(.*typo\.sql\).*nme"):
            build_customers(warehouse, proj)
    assert warehouse.scalar("SELECT count(*) FROM customers") == 0


def test_a_user_trait_over_the_profiles_sees_this_build(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    # it ran before the rows were rebuilt: nothing on a first build, then one build late
    proj = project(tmp_path, warehouse.url)
    (tmp_path / "traits" / "double_spent.sql").write_text(
        "SELECT customer_id, total_spent * 2 AS value FROM customer_data"
    )
    load_world(warehouse)

    def traits() -> dict[str, Any]:
        rows = warehouse.fetch("SELECT customer_id, CAST(traits AS VARCHAR) FROM customers")
        return {r[0]: json.loads(r[1]) if r[1] else None for r in rows}

    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        build_customers(warehouse, proj)
        first = traits()
        assert sorted(v["double_spent"] for v in first.values() if v) == [0, 40]
        assert {k: v for k, v in first.items() if v and "lifetime_items" in v} != {}
        build_customers(warehouse, proj)
        assert traits() == first
        # one more order reaches its customer by the real-time path: the trait follows it
        warehouse.load(
            table("orders"),
            pa.table(
                {
                    "order_id": ["o3"],
                    "email": ["ann@x.org"],
                    "total": [5.0],
                    "status": ["paid"],
                    "created_at": pa.array([NOW - timedelta(days=1)], TS),
                    "source": ["shop"],
                }
            ),
        )
        apply(session_on(warehouse, proj), Scope(orders=("order_id = ?", ("o3",))))
        assert sorted(v["double_spent"] for v in traits().values() if v) == [0, 50]


@pytest.mark.postgres
def test_an_en_us_postgres_database_builds_the_profiles_duckdb_builds(
    postgres_url: str, tmp_path: Path
) -> None:
    # text ties (categories, survivorship, a trait's several rows) under the collation of a
    # database created under en_US (ICU here), against DuckDB's, which compares bytes
    import psycopg
    from tests.conftest import PG_BASE

    base, _, _ = PG_BASE.partition("?")
    name = f"personify_en_us_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_BASE, autocommit=True) as admin:
        try:
            admin.execute(
                f"CREATE DATABASE {name} LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                "LOCALE 'C.UTF-8' TEMPLATE template0"
            )
        except psycopg.Error as e:
            pytest.skip(f"cannot create an ICU en-US database here: {e}")
    try:
        (tmp_path / "traits").mkdir()
        (tmp_path / "traits" / "cities.sql").write_text(
            "SELECT customer_id, 'paris' AS value FROM customers UNION ALL "
            "SELECT customer_id, 'Zurich' AS value FROM customers"
        )
        snapshots = []
        for url in (f"{base.rsplit('/', 1)[0]}/{name}", "duckdb:///:memory:"):
            with connect(url) as wh:
                proj = Project(parse_config(f"warehouse: '{url}'\n"), tmp_path, tmp_path / "p.yml")
                wh.load(
                    table("customer_records"),
                    records([("crm", "c1", "ann@x.org", 0), ("Shop", "s1", "ann@x.org", 0)]),
                )
                wh.execute(
                    "UPDATE customer_records SET first_name = CASE record_id WHEN 'c1' THEN "
                    "'ann' ELSE 'Ann' END"
                )
                wh.load(
                    table("products"),
                    pa.table(
                        {
                            "product_id": ["p1", "p2"],
                            "name": ["Hat", "Shoe"],
                            "category": ["hats", "Shoes"],
                            "source": ["shop"] * 2,
                        }
                    ),
                )
                wh.load(
                    table("orders"),
                    pa.table(
                        {
                            "order_id": ["o1"],
                            "email": ["ann@x.org"],
                            "total": [20.0],
                            "status": ["paid"],
                            "created_at": pa.array([T0 + timedelta(days=35)], TS),
                            "source": ["shop"],
                        }
                    ),
                )
                wh.load(
                    table("order_items"),
                    pa.table(
                        {
                            "order_id": ["o1", "o1"],
                            "line_no": [1, 2],
                            "product_id": ["p1", "p2"],
                            "quantity": [1, 1],
                            "price": [10.0, 10.0],
                            "source": ["shop"] * 2,
                        }
                    ),
                )
                with clock.frozen(NOW):
                    resolve_batch(wh, proj.config.identity)
                    profiles_stage(session_on(wh, proj))
                    build_customers(wh, proj)  # twice: the trait over customers is there
                rows = wh.fetch(
                    "SELECT first_name, CAST(preferred_categories AS VARCHAR), "
                    "CAST(traits AS VARCHAR) FROM customers"
                )
                snapshots.append([(r[0], json.loads(r[1]), json.loads(r[2])) for r in rows])
        assert snapshots[0] == snapshots[1]
        assert snapshots[1] == [("Ann", ["Shoes", "hats"], {"cities": "Zurich"})]
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_consent_recorded_under_a_source_id(warehouse: Warehouse, tmp_path: Path) -> None:
    """A consent log keyed by the CRM's ids shows on the profile of the customer holding it."""
    (tmp_path / "traits").mkdir(exist_ok=True)
    proj = Project(
        parse_config(
            f"warehouse: {warehouse.url}\nidentity:\n  source_kinds:\n    newsletter: crm_id\n"
        ),
        tmp_path,
        tmp_path / "personify.yml",
    )
    load_world(warehouse)
    warehouse.load(
        table("consents"),
        pa.table(
            {
                "customer_id": ["c1", "c2"],
                "purpose": ["email_marketing"] * 2,
                "channel": ["email"] * 2,
                "status": ["granted", "revoked"],
                "source": ["newsletter"] * 2,
                "updated_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
        ann = read_profile(warehouse, "ann@x.org", proj)["consent"]
        bob = read_profile(warehouse, "bob@x.org", proj)["consent"]
    assert [(c["status"], c["source"]) for c in ann] == [("granted", "newsletter")]
    assert [c["status"] for c in bob] == ["revoked"]


def test_the_profile_phone_is_e164_and_the_observation_as_the_source_wrote_it(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """A national number (``(202) 555-0143``) cannot be normalized in SQL: the profile's phone
    is parsed with ``identity.phone_region``, as the identity graph's is, in the batch build
    and on the real-time path alike; the observation keeps the source's text, and a value
    that is no number stays as written."""
    proj = Project(
        parse_config(f"warehouse: {warehouse.url}\nidentity:\n  phone_region: US\n"),
        tmp_path,
        tmp_path / "personify.yml",
    )
    crm = records([("crm", "c1", "ann@x.org", 1), ("crm", "c2", "bob@x.org", 1)])
    crm = crm.append_column("phone", pa.array(["(202) 555-0143", "ask at the desk"]))
    warehouse.load(table("customer_records"), crm)
    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
        batch = warehouse.fetch("SELECT email, phone FROM customers ORDER BY email")
        doc = read_profile(warehouse, "ann@x.org", proj)
        ann = doc["customer_id"]
        warehouse.execute("DELETE FROM customers")
        apply(session_on(warehouse, proj), Scope(), [ann])  # the real-time path's rebuild
        realtime = warehouse.fetch("SELECT phone FROM customers WHERE customer_id = ?", [ann])
    assert batch == [("ann@x.org", "+12025550143"), ("bob@x.org", "ask at the desk")]
    assert realtime == [("+12025550143",)]
    assert doc["profile"]["phone"] == "+12025550143"
    assert doc["fields"]["phone"]["value"] == "+12025550143"
    assert warehouse.fetch(
        "SELECT value FROM profile_observations WHERE field = 'phone' ORDER BY value"
    ) == [("(202) 555-0143",), ("ask at the desk",)]
    assert warehouse.scalar("SELECT value FROM identity_nodes WHERE kind = 'phone'") == (
        "+12025550143"
    )


def test_a_national_profile_phone_is_read_in_the_profiles_country(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """The profile's phone is read in the profile's chosen country (an ISO code) before
    ``identity.phone_region`` — batch, real time and the profile read alike — so a French
    customer's ``06 12 34 56 78`` is ``+33612345678`` in a project whose default region is
    the US."""
    proj = Project(
        parse_config(f"warehouse: {warehouse.url}\nidentity:\n  phone_region: US\n"),
        tmp_path,
        tmp_path / "personify.yml",
    )
    crm = records([("crm", "c1", "ann@x.org", 1), ("crm", "c2", "bob@x.org", 1)])
    crm = crm.append_column("phone", pa.array(["06 12 34 56 78", "(202) 555-0143"]))
    crm = crm.append_column("country", pa.array(["fr", "France"]))  # a name: the default
    warehouse.load(table("customer_records"), crm)
    with clock.frozen(NOW):
        resolve_batch(warehouse, proj.config.identity)
        profiles_stage(session_on(warehouse, proj))
        batch = warehouse.fetch("SELECT email, phone, country FROM customers ORDER BY email")
        doc = read_profile(warehouse, "ann@x.org", proj)
        ann = doc["customer_id"]
        warehouse.execute("DELETE FROM customers")
        apply(session_on(warehouse, proj), Scope(), [ann])  # the real-time path's rebuild
        realtime = warehouse.fetch("SELECT phone FROM customers WHERE customer_id = ?", [ann])
    assert batch == [("ann@x.org", "+33612345678", "fr"), ("bob@x.org", "+12025550143", "France")]
    assert realtime == [("+33612345678",)]
    assert doc["fields"]["phone"]["value"] == "+33612345678"
    assert warehouse.fetch(
        "SELECT value FROM identity_nodes WHERE kind = 'phone' ORDER BY value"
    ) == [("+12025550143",), ("+33612345678",)]


def test_a_customer_only_in_customers_is_found_by_its_id(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """Rows imported straight into ``customers`` (no identity graph yet) are still people that
    ``consent set``, ``profile``, export and erasure can name by customer id."""
    from personify.errors import NotFound
    from personify.profiles import resolve_customer

    proj = project(tmp_path, warehouse.url)
    warehouse.load(
        table("customers"),
        pa.table(
            {
                "customer_id": ["crm-42"],
                "email": ["ann@x.org"],
                "updated_at": pa.array([NOW], TS),
            }
        ),
    )
    assert resolve_customer(warehouse, " crm-42 ", proj) == "crm-42"
    with pytest.raises(NotFound):
        resolve_customer(warehouse, "crm-43", proj)
