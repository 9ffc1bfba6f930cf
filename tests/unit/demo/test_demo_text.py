"""The vectorized text helpers the generators build strings with."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from personify.demo import _text as tx


@given(st.lists(st.integers(-(10**12), 4 * 10**12), min_size=1, max_size=50))
def test_iso_matches_the_standard_library(values: list[int]) -> None:
    ms = np.array(values, np.int64)
    expected = [
        datetime.fromtimestamp(v / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        for v in values
    ]
    assert tx.iso(ms).to_pylist() == expected
    seconds = [
        datetime.fromtimestamp(v // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for v in values
    ]
    assert tx.iso(ms, millis=False).to_pylist() == seconds


def test_uuids_are_unique_stable_and_version_4_shaped() -> None:
    ids = tx.uuids(np.arange(10_000), salt=5).to_pylist()
    assert len(set(ids)) == 10_000
    assert ids == tx.uuids(np.arange(10_000), salt=5).to_pylist()
    pattern = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(pattern.match(i) for i in ids)


def test_json_lines_are_json() -> None:
    table = pa.table(
        {
            "id": [1, None],
            "nested": pa.array([{"email": 'a"b\\c', "n": 1.5, "tags": ["x"]}, None]),
            "ok": [True, False],
        }
    )
    lines = tx.json_lines(table).to_pylist()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "nested": {"email": 'a"b\\c', "n": 1.5, "tags": ["x"]}, "ok": True},
        {"id": None, "nested": None, "ok": False},
    ]
    assert all(line.endswith("\n") for line in lines)


def test_json_lines_spell_out_objects_and_strings_as_json_dumps_does() -> None:
    rows = [
        {"id": f"c{i}", "p": {"email": email, "n": i, "tags": ["a", "b"]}, "ok": True}
        for i, email in enumerate(["plain", 'q"uote', "back\\slash", "ünï"])
    ]
    table = pa.Table.from_pylist(rows)
    for start in (0, 1, 3):  # slices: the escape check reads whole buffers
        lines = tx.json_lines(table.slice(start)).to_pylist()
        expected = [json.dumps(r, separators=(",", ":"), ensure_ascii=False) for r in rows[start:]]
        assert lines == [line + "\n" for line in expected]


def test_by_group_builds_each_row_its_own_way() -> None:
    group = np.array([1, 0, 1, 2, 0])
    out = tx.by_group(
        group,
        [
            lambda rows: tx.join("a", tx.ints(rows)),
            lambda rows: tx.join("b", tx.ints(rows)),
            lambda rows: pa.nulls(len(rows), pa.string()),
            lambda rows: tx.Lookup(pa.array(["x", None, "y"]), rows % 3),
        ],
    )
    assert out.to_pylist() == ["b0", "a1", "b2", None, "a4"]
    looked_up = tx.by_group(
        np.array([3, 0, 3, 3]),
        [lambda rows: tx.ints(rows)] * 3
        + [lambda rows: tx.Lookup(pa.array(["x", None, "y"]), rows % 3)],
    )
    assert looked_up.to_pylist() == ["x", "1", "y", "x"]


def test_dictionary_and_scatter() -> None:
    assert tx.dictionary(["x", "y"], np.array([1, -1, 0])).to_pylist() == ["y", None, "x"]
    assert tx.scatter(4, np.array([1, 3]), pa.array(["p", "q"])).to_pylist() == [
        None,
        "p",
        None,
        "q",
    ]


@given(
    st.lists(st.integers(-(2**40), 2**40), max_size=300),
    st.sampled_from([np.int64, np.int32, np.int16]),
)
def test_stable_argsort_is_numpys_stable_argsort(values: list[int], dtype: type) -> None:
    array = np.array([v % 50 if dtype is not np.int64 else v for v in values], dtype)
    array = np.concatenate([array, array[: len(array) // 2]])  # ties
    expected = np.argsort(array, kind="stable")
    assert np.array_equal(tx.stable_argsort(array), expected)


def test_stable_argsort_falls_back_when_the_key_would_not_fit() -> None:
    wide = np.array([2**62, -(2**62), 0, 2**62], np.int64)
    assert tx.stable_argsort(wide).tolist() == [1, 2, 0, 3]
    assert tx.stable_argsort(np.array([], np.int64)).tolist() == []
