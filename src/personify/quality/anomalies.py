"""Anomalies: a source (and event) whose last day looks unlike its previous week.

**Volume** —
Per source and event name (``events``, by arrival) and per source (``orders``, by creation):
the rows of the last 24 hours before ``now`` against the median of the seven 24-hour windows
before them. *Low*: fewer than ``LOW`` × the median; *spike*: more than ``SPIKE`` × the median.
Series whose median is under ``MIN_MEDIAN`` rows a day are too small to judge and are skipped.
**Null rate** — per source and column of person records (``customer_records``, by arrival) and
orders (by creation): the share of nulls in the last 24 hours against the week before; a jump
of more than ``NULL_JUMP`` (e.g. emails suddenly missing from a CRM export) is an anomaly, when
both windows hold at least ``MIN_MEDIAN`` rows. ``personify status`` lists them as warnings.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from personify import clock
from personify.warehouse import Warehouse

LOW: Final = 0.5
SPIKE: Final = 3.0
MIN_MEDIAN: Final = 10
DAYS: Final = 7
NULL_JUMP: Final = 0.25

_NULLS: Final = (
    ("customer_records", "received_at", ("email", "phone", "first_name", "last_name", "country")),
    ("orders", "created_at", ("email", "currency", "total", "status")),
)

_SERIES: Final = (
    ("events", "received_at", "coalesce(event, type)"),
    ("orders", "created_at", "'orders'"),
)


@dataclass(frozen=True)
class Anomaly:
    table: str
    source: str
    name: str
    kind: str
    """``low`` or ``spike`` (volume), ``null_rate`` (``name`` is the column)."""
    last_day: int
    median: float


def volume_anomalies(wh: Warehouse, now: datetime | None = None) -> list[Anomaly]:
    """The volume anomalies at ``now`` (default: the clock)."""
    now = now or clock.now()
    since = now - timedelta(days=DAYS + 1)
    out: list[Anomaly] = []
    for table, column, name in _SERIES:
        rows = wh.fetch(
            f"SELECT source, {name} AS name, "
            f"CAST(floor((epoch(CAST(? AS TIMESTAMPTZ)) - epoch({column})) / 86400) AS BIGINT) "
            f"AS day, count(*) FROM {table} WHERE {column} > ? AND {column} <= ? "
            "GROUP BY 1, 2, 3",
            [now, since, now],
        )
        series: dict[tuple[str, str], dict[int, int]] = {}
        for source, label, day, count in rows:
            series.setdefault((str(source), str(label)), {})[int(day)] = int(count)
        for (source, label), days in sorted(series.items()):
            history = [days.get(d, 0) for d in range(1, DAYS + 1)]
            median = statistics.median(history)
            if median < MIN_MEDIAN:
                continue
            last = days.get(0, 0)
            kind = "low" if last < LOW * median else "spike" if last > SPIKE * median else None
            if kind is not None:
                out.append(Anomaly(table, source, label, kind, last, float(median)))
    return out


def null_rate_anomalies(wh: Warehouse, now: datetime | None = None) -> list[Anomaly]:
    """Columns whose share of nulls jumped in the last 24 hours (see the module docstring).
    ``last_day`` and ``median`` hold the null percentages of the last day and the week before."""
    now = now or clock.now()
    day = now - timedelta(days=1)
    since = now - timedelta(days=DAYS + 1)
    out: list[Anomaly] = []
    for table, column, columns in _NULLS:
        counts = ", ".join(f"count({c})" for c in columns)
        rows = wh.fetch(
            f"SELECT source, {column} > ? AS recent, count(*), {counts} FROM {table} "
            f"WHERE {column} > ? AND {column} <= ? GROUP BY 1, 2",
            [day, since, now],
        )
        windows: dict[str, dict[bool, tuple[int, ...]]] = {}
        for source, recent, total, *filled in rows:
            windows.setdefault(str(source), {})[bool(recent)] = (int(total), *map(int, filled))
        for source, w in sorted(windows.items()):
            if True not in w or False not in w:
                continue
            (n_new, *f_new), (n_old, *f_old) = w[True], w[False]
            if n_new < MIN_MEDIAN or n_old < MIN_MEDIAN:
                continue
            for c, a, b in zip(columns, f_new, f_old, strict=True):
                rate_new, rate_old = 1 - a / n_new, 1 - b / n_old
                if rate_new - rate_old > NULL_JUMP:
                    out.append(
                        Anomaly(
                            table, source, c, "null_rate", round(rate_new * 100), rate_old * 100
                        )
                    )
    return out
