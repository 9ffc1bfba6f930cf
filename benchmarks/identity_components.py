"""Connected components in SQL on DuckDB: 1M identifiers / 1.5M edges, then the same plus one
2,000-node chain (ids shuffled, the worst case for label propagation).

Baselines in the same run: a union-find in Python (the oracle; labels checked equal) and
scipy.sparse.csgraph.connected_components when scipy is installed (``pip install
personify[bench]``). Goals: ≤ 2 s and ≤ 3 s (published: Splink ~0.8 s without the chain,
~19 s with it).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow as pa

from personify.identity.components import LABELS, connected_components
from personify.warehouse import connect
from personify.warehouse.scratch import scratch, temp_table


def graph(nodes: int, edges: int, chain: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, nodes, edges), rng.integers(0, nodes, edges)
    if chain:
        ids = rng.permutation(np.arange(nodes, nodes + chain))
        a = np.concatenate([a, ids[:-1], [0]])
        b = np.concatenate([b, ids[1:], [ids[0]]])
    return a, b


def union_find(a: np.ndarray, b: np.ndarray) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    return {x: find(x) for x in list(parent) if find(x) != x}


def scipy_seconds(a: np.ndarray, b: np.ndarray) -> tuple[float, float] | None:
    try:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components as cc
    except ImportError:
        return None
    n = int(max(a.max(), b.max())) + 1
    t, c = time.perf_counter(), time.process_time()
    cc(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    return time.perf_counter() - t, time.process_time() - c


Row = tuple[str, str, str, str, str]


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def one(name: str, a: np.ndarray, b: np.ndarray, goal: float) -> list[Row]:
    wh = connect("duckdb:///:memory:")
    temp_table(wh, scratch("_bench_edges", a="BIGINT", b="BIGINT"), pa.table({"a": a, "b": b}))
    t, c = time.perf_counter(), time.process_time()
    report = connected_components(wh, "SELECT a, b FROM _bench_edges")
    sql_s, sql_c = time.perf_counter() - t, time.process_time() - c
    got = dict(wh.fetch(f"SELECT node, label FROM {LABELS}"))
    t, c = time.perf_counter(), time.process_time()
    oracle = union_find(a, b)
    uf_s, uf_c = time.perf_counter() - t, time.process_time() - c
    assert got == oracle, "SQL components differ from the union-find oracle"
    sp = scipy_seconds(a, b)
    wh.close()
    rounds = f"{report.rounds} rounds, {report.jumps} jumps; edges/round {report.edges_per_round}"
    return [
        (f"{name}: SQL components (DuckDB)", _s(sql_s), _s(sql_c), f"≤ {goal:g} s", rounds),
        (f"{name}: union-find (Python)", _s(uf_s), _s(uf_c), "baseline", "labels equal"),
        (
            f"{name}: scipy csgraph",
            "—" if sp is None else _s(sp[0]),
            "—" if sp is None else _s(sp[1]),
            "baseline",
            "",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1_000_000)
    parser.add_argument("--edges", type=int, default=1_500_000)
    parser.add_argument("--chain", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = one("random", *graph(args.nodes, args.edges, 0, args.seed), goal=2.0)
    rows += one(f"+{args.chain}-chain", *graph(args.nodes, args.edges, args.chain, args.seed), 3.0)
    width = max(len(r[0]) for r in rows)
    print(f"load average {os.getloadavg()[0]:.1f} (CPU: user + system of every thread)")
    print(f"{'figure':<{width}}  {'wall':>8}  {'CPU':>8}  {'goal':>9}  notes")
    for label, value, cpu, goal, notes in rows:
        print(f"{label:<{width}}  {value:>8}  {cpu:>8}  {goal:>9}  {notes}")


if __name__ == "__main__":
    main()
