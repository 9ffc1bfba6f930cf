"""Experiments: variants with weights and a holdout, assigned deterministically; uplift.

:func:`assign` puts a customer in one variant of an experiment — or in the holdout, which
receives nothing — from a hash of the experiment's name and the customer id alone: the same
answer on every run and every machine, with no state needed to stay stable (the choice is still
recorded, :func:`record_assignments` → ``experiment_assignments``, first assignment kept, so a
report can count the holdout). :func:`uplift` compares a variant's conversion rate with the
holdout's: the difference, its 95 % confidence interval (normal approximation, unpooled) and
whether the sample is big enough to say anything. :func:`guardrail` compares a rate that must
not rise (unsubscribes) the same way.

Journey send steps with ``variants`` / ``holdout`` (:mod:`personify.journeys.definitions`) call
:func:`assign_many` when they decide: a customer already recorded keeps the recorded variant (so
changing the weights mid-experiment never moves anyone), the others get :func:`assign` and are
recorded; the variant goes on the message (``messages.variant``; the holdout's message is
``skipped_holdout`` and is never sent) and from there on its open and click events.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa

from personify.warehouse.base import Warehouse
from personify.warehouse.schema import TABLES_BY_NAME

HOLDOUT = "holdout"
"""The variant name of the customers who receive nothing."""
Z95 = 1.959963984540054
MIN_SAMPLE = 30
"""Fewer recipients than this on either side: too small to conclude."""
MIN_CONVERSIONS = 5
"""Fewer conversions than this on either side: too small to conclude."""


def _unit(experiment: str, customer_id: str) -> float:
    digest = hashlib.sha256(f"{experiment}\0{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(
    experiment: str, customer_id: str, weights: Mapping[str, float], holdout: float = 0.0
) -> str:
    """The variant of ``customer_id`` (or :data:`HOLDOUT`): ``holdout`` is the share that
    receives nothing; the rest is split by ``weights`` (in their order). Raises ValueError on
    an empty or negative split."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be in [0, 1)")
    total = sum(weights.values())
    if not weights or total <= 0 or any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative and not all zero")
    u = _unit(experiment, customer_id)
    if u < holdout:
        return HOLDOUT
    point = (u - holdout) / (1.0 - holdout) * total
    running = 0.0
    for name, weight in weights.items():
        running += weight
        if point < running:
            return name
    return next(reversed(list(weights)))


def record_assignments(
    wh: Warehouse, experiment: str, assigned: Sequence[tuple[str, str]], at: datetime
) -> int:
    """Store ``(customer id, variant)`` pairs of ``experiment``; a customer's first assignment is
    kept. Returns how many were new."""
    if not assigned:
        return 0
    table = TABLES_BY_NAME["experiment_assignments"]
    data = pa.table(
        {
            "experiment": [experiment] * len(assigned),
            "customer_id": [c for c, _ in assigned],
            "variant": [v for _, v in assigned],
            "assigned_at": pa.array([at] * len(assigned), pa.timestamp("us", tz="UTC")),
        }
    )
    return wh.load(table, data, on_conflict="ignore")


_CHUNK = 5_000


def assign_many(
    wh: Warehouse,
    experiment: str,
    customer_ids: Sequence[str],
    weights: Mapping[str, float],
    holdout: float,
    at: datetime,
) -> dict[str, str]:
    """Each customer's variant of ``experiment`` (or :data:`HOLDOUT`): the recorded one when
    there is one and it is still a variant (or the holdout) of this experiment, else
    :func:`assign`, recorded now."""
    wanted = sorted(set(customer_ids))
    known: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = wh.fetch(
            "SELECT customer_id, variant FROM experiment_assignments WHERE experiment = ? "
            f"AND customer_id IN ({', '.join('?' for _ in chunk)})",
            [experiment, *chunk],
        )
        known.update({str(c): str(v) for c, v in rows})
    valid = set(weights) | ({HOLDOUT} if holdout > 0 else set())
    out: dict[str, str] = {}
    new: list[tuple[str, str]] = []
    for customer_id in wanted:
        recorded = known.get(customer_id)
        if recorded in valid:
            out[customer_id] = recorded
            continue
        out[customer_id] = assign(experiment, customer_id, weights, holdout)
        if recorded is None:
            new.append((customer_id, out[customer_id]))
    record_assignments(wh, experiment, new, at)
    return out


@dataclass(frozen=True)
class Uplift:
    """A variant against the holdout."""

    variant_rate: float
    holdout_rate: float
    difference: float
    """``variant_rate - holdout_rate`` (absolute, in conversion-rate points)."""
    low: float
    high: float
    """The 95 % confidence interval of the difference."""
    relative: float | None
    """``difference / holdout_rate``; ``None`` when the holdout never converted."""
    conclusive: bool
    """``False`` when the sample is too small (:data:`MIN_SAMPLE`, :data:`MIN_CONVERSIONS`) or
    the interval contains 0."""
    note: str


def uplift(variant_n: int, variant_conv: int, holdout_n: int, holdout_conv: int) -> Uplift:
    """The uplift of a variant (``variant_conv`` of ``variant_n`` converted) over the holdout."""
    if variant_n <= 0 or holdout_n <= 0:
        return Uplift(0.0, 0.0, 0.0, 0.0, 0.0, None, False, "no recipients on one side")
    p1, p0 = variant_conv / variant_n, holdout_conv / holdout_n
    se = math.sqrt(p1 * (1 - p1) / variant_n + p0 * (1 - p0) / holdout_n)
    diff = p1 - p0
    low, high = diff - Z95 * se, diff + Z95 * se
    relative = diff / p0 if p0 > 0 else None
    if min(variant_n, holdout_n) < MIN_SAMPLE or min(variant_conv, holdout_conv) < MIN_CONVERSIONS:
        return Uplift(p1, p0, diff, low, high, relative, False, "sample too small to conclude")
    if low <= 0.0 <= high:
        return Uplift(p1, p0, diff, low, high, relative, False, "no significant difference")
    return Uplift(p1, p0, diff, low, high, relative, True, "significant at 95 %")


def guardrail(variant_n: int, variant_x: int, holdout_n: int, holdout_x: int) -> Uplift:
    """A rate that must not rise — unsubscribes — of a variant (``variant_x`` of ``variant_n``)
    against the holdout's: the difference and its 95 % interval as :func:`uplift` computes them;
    ``conclusive`` when the interval excludes 0 with :data:`MIN_SAMPLE` on both sides (no
    minimum of events: they are rare, and a rise from none is the news). The note says which
    way (``more unsubscribes than the holdout``)."""
    lift = uplift(variant_n, variant_x, holdout_n, holdout_x)
    if variant_n <= 0 or holdout_n <= 0:
        return lift
    if min(variant_n, holdout_n) < MIN_SAMPLE:
        return dataclasses.replace(lift, conclusive=False, note="sample too small to conclude")
    if lift.low > 0.0:
        return dataclasses.replace(
            lift, conclusive=True, note="more unsubscribes than the holdout (95 %)"
        )
    if lift.high < 0.0:
        return dataclasses.replace(
            lift, conclusive=True, note="fewer unsubscribes than the holdout (95 %)"
        )
    return dataclasses.replace(lift, conclusive=False, note="no significant difference")
