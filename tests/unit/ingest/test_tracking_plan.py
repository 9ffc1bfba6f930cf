"""The tracking plan: compiling, errors with JSON pointers, reserved files, reloading."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personify.ingest.tracking.plan import PlanCache, Schema, load_plan, plan_problems
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


def test_a_broken_file_is_unreadable_and_the_rest_of_the_plan_works(tmp_path: Path) -> None:
    write(tmp_path, "Bad", {"type": "objekt"})
    write(tmp_path, "Good", {"required": ["plan"]})
    (tmp_path / "identify.json").write_text('{\n  "type": "object",\n  oops\n}')
    plan = load_plan(tmp_path)  # no error: one file takes down nothing but its own events
    assert plan.check("track", "Good", {}, None)[0].pointer == "/properties/plan"
    bad = plan.unreadable_for("track", "Bad")
    assert bad is not None and bad.name == f"{tmp_path.name}/Bad.json"
    assert bad.problem.startswith("not a valid JSON Schema at /type:")
    traits = plan.unreadable_for("identify", None)
    assert traits is not None
    assert traits.problem.startswith("not JSON at line 3, column 3: Expecting property name")
    assert plan.unreadable_for("track", "Good") is None
    assert plan.schema_for("track", "Bad") is None
    assert [str(u) for u in plan.problems] == [str(bad), str(traits)]
    assert [str(u) for u in plan_problems(tmp_path)] == [str(bad), str(traits)]
    (tmp_path / "Bad.json").write_text("[1]")
    (tmp_path / "Odd.json").write_text('{"$schema": []}')  # the validators choke on it
    problems = {u.file.name: u.problem for u in load_plan(tmp_path).problems}
    assert problems["Bad.json"] == "a tracking-plan schema must be a JSON object"
    assert problems["Odd.json"].startswith("not a usable JSON Schema (TypeError")
    assert {u.file.name for u in plan_problems(tmp_path)} == set(problems)


def test_a_file_broken_at_start_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "Signed Up.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="personify.ingest.tracking"):
        cache = PlanCache(tmp_path, recheck=0.0)
    assert "Signed Up.json: not JSON at line 1, column 2" in caplog.text
    assert "quarantined" in caplog.text
    assert [u.kept for u in cache.problems()] == [False]
    assert cache.get().unreadable_for("track", "Signed Up") is not None
    assert cache.key() == (str(tmp_path), cache.key()[1])  # helpers read the same plan


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


def test_a_live_edit_breaking_a_file_keeps_its_last_good_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "Signed Up", {"required": ["plan"]})
    write(tmp_path, "Other", {"required": ["a"]})
    cache = PlanCache(tmp_path, recheck=0.0)
    assert cache.key() is not None
    with caplog.at_level(logging.WARNING, logger="personify.ingest.tracking"):
        (tmp_path / "Signed Up.json").write_text("{broken")
        write(tmp_path, "Other", {"required": []})  # a good edit beside it applies
        _touch(tmp_path / "Other.json")
        plan = cache.get()
    assert plan.check("track", "Signed Up", {}, None)  # the last good version
    assert plan.unreadable_for("track", "Signed Up") is None
    assert plan.check("track", "Other", {}, None) == []
    assert [(u.file.name, u.kept) for u in cache.problems()] == [("Signed Up.json", True)]
    assert "Signed Up.json: not JSON at line 1, column 2" in caplog.text
    assert "last good version stays in use" in caplog.text
    assert cache.key() is None  # no helper process could read that plan again
    write(tmp_path, "Signed Up", {"required": []})  # fixed
    _touch(tmp_path / "Signed Up.json")
    assert cache.get().check("track", "Signed Up", {}, None) == []
    assert cache.problems() == []
    assert cache.key() is not None


def _touch(file: Path) -> None:
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


# -- the typed fast path: it may only accept what the compiled validator accepts
_TYPED_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "product_id": {"type": "string", "minLength": 1},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "price": {"type": "number", "minimum": 0},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 99},
        "gift": {"type": "boolean"},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
    },
    "required": ["product_id"],
}


def _schema(tmp_path: Path, document: dict[str, object]) -> Schema:
    return Schema(tmp_path / "s.json", "properties", document)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ({"product_id": "p1", "price": 12.5, "quantity": 2, "currency": "EUR"}, True),
        ({"product_id": "p1", "price": 3, "gift": False, "extra": {"any": [1]}}, True),
        ({"product_id": "p1", "ratio": 0.5}, True),
        ({"product_id": ""}, False),  # minLength
        ({"price": 1}, False),  # required
        ({"product_id": "p1", "currency": "EUR\n"}, False),  # $ is the end of the text
        ({"product_id": "p1", "currency": "eur"}, False),
        ({"product_id": "p1", "price": -1}, False),
        ({"product_id": "p1", "price": True}, False),  # a boolean is not a number
        ({"product_id": "p1", "quantity": 0}, False),
        ({"product_id": "p1", "quantity": 100}, False),
        ({"product_id": "p1", "ratio": 1}, False),
        ({"product_id": "p1", "price": None}, False),
        ({"product_id": 7}, False),
        ({"product_id": "p1", "quantity": 2.0}, False),  # valid, but only the full way says so
    ],
)
def test_the_typed_path_accepts_only_conforming_parts(
    tmp_path: Path, value: dict[str, object], accepted: bool
) -> None:
    schema = _schema(tmp_path, _TYPED_SCHEMA)
    assert schema.typed is not None
    raw = json.dumps(value).encode()
    assert schema.accepts(raw) is accepted
    if accepted:
        assert schema.check(value) == []


def test_the_typed_path_honours_additional_properties_and_duplicates(tmp_path: Path) -> None:
    closed = _schema(tmp_path, {**_TYPED_SCHEMA, "additionalProperties": False})
    assert closed.accepts(b'{"product_id": "p1"}')
    assert not closed.accepts(b'{"product_id": "p1", "other": 1}')
    assert closed.check({"product_id": "p1", "other": 1})
    schema = _schema(tmp_path, _TYPED_SCHEMA)
    # a repeated key: the decoded dict keeps the last value; the typed path checks every one
    assert not schema.accepts(b'{"product_id": "p1", "price": 1, "price": -1}')
    assert not schema.accepts(b'{"product_id": "p1", "price": -1, "price": 1}')


@pytest.mark.parametrize(
    "document",
    [
        {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
        {"type": "object", "properties": {"tags": {"type": "array"}}},
        {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}},
        {"type": "object", "properties": {"n": {"type": "integer"}}, "minProperties": 1},
        {"type": "object", "required": ["undeclared"]},
        {"type": "object", "properties": {"n": {"enum": [1, 2]}}},
    ],
)
def test_other_schemas_take_the_full_way(tmp_path: Path, document: dict[str, object]) -> None:
    assert _schema(tmp_path, document).typed is None


def test_the_scaffold_events_take_the_typed_path(tmp_path: Path) -> None:
    init_project(tmp_path / "p")
    plan = load_plan(tmp_path / "p" / "tracking-plan")
    typed = {event for (kind, event), s in plan.schemas.items() if s.typed is not None}
    assert "Product Viewed" in typed


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 200) | st.floats(-2, 2) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["product_id", "currency", "price", "quantity", "gift", "ratio", "x"]),
        _json_values | st.sampled_from(["EUR", "EUR\n", "", "p1", 0.5, 1, 2.0]),
    )
)
def test_the_typed_path_never_accepts_what_the_validator_refuses(value: dict[str, object]) -> None:
    schema = Schema(Path("s.json"), "properties", _TYPED_SCHEMA)
    if schema.accepts(json.dumps(value).encode()):
        assert schema.check(value) == []
