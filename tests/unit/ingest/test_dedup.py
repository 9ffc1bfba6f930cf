from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from personify.ingest.dedup import KeySet


def _rows(keys: list[str], start: int = 0) -> pa.Table:
    return pa.table({"k": keys, "__pos": pa.array(range(start, start + len(keys)), pa.int64())})


def test_kept_hashes_are_the_kept_keys_hashes_in_order() -> None:
    con = duckdb.connect()
    keys = KeySet(con, ["k"])
    first = keys.duplicates(_rows(["a", "b", "a"]))
    assert first.duplicate.tolist() == [False, False, True]
    second = keys.duplicates(_rows(["c", "b", "d"], 3))
    assert second.duplicate.tolist() == [False, True, False]
    expected = [h for (h,) in con.execute("SELECT hash(x) FROM unnest(['c', 'd']) t(x)").fetchall()]
    assert second.kept_hashes is not None
    assert second.kept_hashes.dtype == np.uint64
    assert second.kept_hashes.tolist() == expected


def test_kept_hashes_are_unknown_for_keys_of_several_columns() -> None:
    keys = KeySet(duckdb.connect(), ["k", "j"])
    rows = pa.table({"k": ["a", "a"], "j": ["1", "2"], "__pos": pa.array([0, 1], pa.int64())})
    seen = keys.duplicates(rows)
    assert seen.duplicate.tolist() == [False, False]
    assert seen.kept_hashes is None
