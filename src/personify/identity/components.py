"""Connected components in the warehouse, in SQL.

The algorithm (min-label propagation with contraction and pointer jumping)::

    E  ← distinct undirected edges (a < b) over BIGINT node ids
    repeat (at most ``max_rounds`` times) while E is not empty:
        H ← for every node b that has a smaller neighbour: b → min(a)     (label propagation)
        pointer-jump H until stable: p ← H(p)                            (long chains collapse)
        E ← distinct (H(a), H(b)) for (a, b) in E, dropping a = b        (settled clusters pruned)
    labels ← compose the rounds' hooks, latest round first               (one join per round)

Every hook points at a smaller id, so the hook forest has no cycles; every round hooks the larger
end of every remaining edge, so E shrinks every round; an edge whose two ends reached the same
label disappears, so clusters that are settled leave the working set at once. A random chain of
*n* nodes needs about log₃ *n* rounds (only local minima survive a round) and each round's jumps
need log₂ of its longest hook path. The result maps every node that is not its own label to the
smallest node id of its component.

All statements are plain DuckDB-dialect SQL over temporary tables; they run unchanged on every
backend (the warehouse transpiles them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from personify.errors import WarehouseError
from personify.warehouse.base import Warehouse

LABELS = "_cc_labels"
"""The result table: ``(node BIGINT, label BIGINT)`` for every node whose label is not itself."""

_E, _E2, _H, _H2 = "_cc_edges", "_cc_edges2", "_cc_hooks", "_cc_hooks2"


class ComponentsDidNotConverge(WarehouseError):
    """The iteration bound was reached before every edge was settled."""


@dataclass
class ComponentsReport:
    """How the computation went: rounds, pointer jumps and edges per round."""

    rounds: int = 0
    jumps: int = 0
    edges_per_round: list[int] = field(default_factory=list)


def _drop(wh: Warehouse, *names: str) -> None:
    for name in names:
        wh.execute(f"DROP TABLE IF EXISTS {name}")


def _count(wh: Warehouse, name: str) -> int:
    return int(wh.scalar(f"SELECT count(*) FROM {name}") or 0)


def _jump(wh: Warehouse, table: str) -> int:
    """Pointer-jump ``table`` (``x → p``) until every parent is a root; returns the jumps made."""
    jumps = 0
    while True:
        _drop(wh, _H2)
        wh.execute(
            f"CREATE TEMP TABLE {_H2} AS SELECT h.x AS x, coalesce(j.p, h.p) AS p, "
            f"j.p IS NOT NULL AS moved FROM {table} h LEFT JOIN {table} j ON h.p = j.x"
        )
        moved = int(wh.scalar(f"SELECT count(*) FROM {_H2} WHERE moved") or 0)
        _drop(wh, table)
        wh.execute(f"ALTER TABLE {_H2} RENAME TO {table}")
        if not moved:
            return jumps
        jumps += 1


def connected_components(
    wh: Warehouse, edges_sql: str, params: tuple[object, ...] = (), *, max_rounds: int = 64
) -> ComponentsReport:
    """Label the components of the graph whose edges ``edges_sql`` selects (columns ``a, b``).

    Leaves :data:`LABELS` (a temporary table) holding ``node → label`` for every node whose label
    is not itself, the label being the smallest node id of its component. Raises
    :class:`ComponentsDidNotConverge` past ``max_rounds`` rounds.
    """
    report = ComponentsReport()
    _drop(wh, _E, _E2, _H, _H2, LABELS)
    wh.execute(
        f"CREATE TEMP TABLE {_E} AS SELECT least(a, b) AS a, greatest(a, b) AS b "
        f"FROM ({edges_sql}) src WHERE a <> b",
        params,
    )
    remaining = _count(wh, _E)
    try:
        while remaining:
            if report.rounds >= max_rounds:
                raise ComponentsDidNotConverge(
                    f"connected components did not converge in {max_rounds} rounds "
                    f"({remaining} edges left)",
                    hint="raise identity.max_rounds in personify.yml",
                )
            report.rounds += 1
            report.edges_per_round.append(remaining)
            _round(wh, report)
            remaining = _count(wh, _E)
        _compose(wh, report.rounds)
    finally:
        _drop(wh, _E, *(f"{_H}_{r}" for r in range(1, report.rounds + 1)))
    return report


def _round(wh: Warehouse, report: ComponentsReport) -> None:
    """One round: hook to the smallest neighbour, jump, contract the edges, keep the hooks."""
    wh.execute(f"CREATE TEMP TABLE {_H} AS SELECT b AS x, min(a) AS p FROM {_E} GROUP BY b")
    report.jumps += _jump(wh, _H)
    wh.execute(
        f"CREATE TEMP TABLE {_E2} AS SELECT DISTINCT least(pa, pb) AS a, "
        "greatest(pa, pb) AS b FROM ("
        f"SELECT coalesce(h1.p, e.a) AS pa, coalesce(h2.p, e.b) AS pb FROM {_E} e "
        f"LEFT JOIN {_H} h1 ON e.a = h1.x LEFT JOIN {_H} h2 ON e.b = h2.x) c "
        "WHERE pa <> pb"
    )
    _drop(wh, _E)
    wh.execute(f"ALTER TABLE {_E2} RENAME TO {_E}")
    wh.execute(f"ALTER TABLE {_H} RENAME TO {_H}_{report.rounds}")


def _compose(wh: Warehouse, rounds: int) -> None:
    """Final labels: compose each round's hooks with the (already final) later rounds' ones.

    Round *r* hooks point at roots of round *r*; those hooked later are already in the result,
    so one join per round suffices (latest round first) instead of jumping over everything.
    """
    wh.execute(f"CREATE TEMP TABLE {LABELS} (node BIGINT, label BIGINT)")
    for r in range(rounds, 0, -1):
        wh.execute(
            f"INSERT INTO {LABELS} SELECT h.x, coalesce(l.label, h.p) FROM {_H}_{r} h "
            f"LEFT JOIN {LABELS} l ON h.p = l.node"
        )


def drop_labels(wh: Warehouse) -> None:
    """Drop the :data:`LABELS` table once its caller is done with it."""
    _drop(wh, LABELS)
