"""The tracking plan: compiling, errors with JSON pointers, reserved files, reloading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from personify.errors import ConfigError
from personify.ingest.tracking.plan import PlanCache, load_plan
from personify.scaffold import init_project


def write(folder: Path, name: str, schema: object) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(schema))


def test_the_scaffold_plan_compiles_fast_and_checks_the_seed_fields(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    plan = load_plan(tmp_path / "p" / "tracking-plan")
    names = {event for kind, event in plan.schemas if kind == "track"}
    assert names == {
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
    }
    assert all(s.fast is not None for s in plan.schemas.values())
    bad = plan.check(
        "identify",
        None,
        None,
        {"engagementScore": 140, "purchaseHistory": [{"total": 5}], "email": "x"},
    )
    assert {v.pointer for v in bad} == {
        "/traits/engagementScore",
        "/traits/purchaseHistory/0/order_id",
        "/traits/email",
    }
    assert plan.check("identify", None, None, {"engagementScore": 40, "email": "a@b.co"}) == []
    order = {"order_id": "o1", "total": 10.5, "products": [{"product_id": "p", "quantity": 0}]}
    assert [v.pointer for v in plan.check("track", "Order Completed", order, None)] == [
        "/properties/products/0/quantity"
    ]


def test_2020_12_keywords_fall_back_to_jsonschema(tmp_path: Path) -> None:
    write(
        tmp_path,
        "Pair",
        {"type": "object", "properties": {"xy": {"prefixItems": [{"type": "number"}]}}},
    )
    plan = load_plan(tmp_path)
    assert plan.schemas[("track", "Pair")].fast is None
    assert plan.check("track", "Pair", {"xy": [1, "a"]}, None) == []
    assert plan.check("track", "Pair", {"xy": ["a"]}, None)[0].pointer == "/properties/xy/0"


def test_a_broken_schema_names_its_file(tmp_path: Path) -> None:
    write(tmp_path, "Bad", {"type": "objekt"})
    with pytest.raises(ConfigError) as e:
        load_plan(tmp_path)
    assert "Bad.json" in str(e.value)
    (tmp_path / "Bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        load_plan(tmp_path)


def test_remote_refs_are_not_fetched(tmp_path: Path) -> None:
    write(tmp_path, "Remote", {"$ref": "https://example.invalid/schema.json"})
    plan = load_plan(tmp_path)  # compiles (the reference is only resolved when used) …
    with pytest.raises(Exception):  # noqa: B017 - … and using it fails without any network
        plan.check("track", "Remote", {}, None)


def test_the_cache_reloads_a_changed_folder(tmp_path: Path) -> None:
    write(tmp_path, "Signed Up", {"required": ["plan"]})
    cache = PlanCache(tmp_path, recheck=0.0)
    assert cache.get().check("track", "Signed Up", {}, None)
    write(tmp_path, "Signed Up", {"required": []})
    stat = (tmp_path / "Signed Up.json").stat()
    os.utime(tmp_path / "Signed Up.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.get().check("track", "Signed Up", {}, None) == []
    (tmp_path / "Signed Up.json").write_text("{broken")  # a broken edit keeps the last plan
    assert cache.get().check("track", "Signed Up", {}, None) == []
