"""``personify run``, ``personify profile`` and ``personify identity explain`` as a user runs them,
on a small project whose data comes from Parquet files."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from personify.warehouse import connect, table
from tests.conformance.test_profiles import load_world
from tests.e2e.cli import personify, personify_json

NOW = "2026-02-10T00:00:00Z"


def make_project(root: Path) -> Path:
    root.mkdir()
    (root / "personify.yml").write_text(
        "name: e2e\nwarehouse: duckdb:///warehouse.duckdb\n"
        "survivorship:\n  fields:\n    email: {rule: source_priority, sources: [crm]}\n"
    )
    staging = root / "data"
    staging.mkdir()
    with connect("duckdb:///:memory:") as scratch:  # the world, written out as files
        load_world(scratch)
        names = ("events", "customer_records", "orders", "order_items", "products")
        for name in names:
            pq.write_table(
                scratch.fetch_arrow(f"SELECT * FROM {name}"), staging / f"{name}.parquet"
            )
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        for name in names:
            wh.load(table(name), pq.read_table(staging / f"{name}.parquet"))
    return root


def test_profile_and_explain(tmp_path: Path) -> None:
    root = make_project(tmp_path / "shop")
    first = personify_json("run", "--project", str(root), "--now", NOW)
    assert [s["name"] for s in first["stages"]][:3] == ["sync", "identity", "profiles"]
    query = "SELECT * EXCLUDE (updated_at) FROM customers ORDER BY customer_id"
    before = personify_json("sql", query, "--project", str(root))
    personify_json("run", "--project", str(root), "--now", NOW)
    assert personify_json("sql", query, "--project", str(root)) == before

    doc = personify_json("profile", " Ann@X.org", "--project", str(root), "--now", NOW)
    assert doc["profile"]["order_count"] == 1
    assert doc["fields"]["email"]["source"] == "crm"
    assert any(i["kind"] == "user_id" and i["value"] == "u1" for i in doc["identities"])
    human = personify("profile", "ann@x.org", "--project", str(root))
    assert human.returncode == 0 and "Identities" in human.stdout

    linked = personify_json(
        "identity", "explain", "user_id:u1", "crm_id:c1", "--project", str(root)
    )
    assert linked["linked"] and linked["chain"]
    assert all({"source", "first_seen", "evidence"} <= set(c) for c in linked["chain"])
    apart = personify_json("identity", "explain", "u1", "bob@x.org", "--project", str(root))
    assert not apart["linked"] and "no evidence" in apart["reason"]
    missing = personify("profile", "nobody@x.org", "--project", str(root))
    assert missing.returncode != 0 and "nobody" in missing.stderr
