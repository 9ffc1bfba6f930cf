"""Volume anomalies: a source (and event) whose last day looks unlike its previous week.

Per source and event name (``events``, by arrival) and per source (``orders``, by creation):
the rows of the last 24 hours before ``now`` against the median of the seven 24-hour windows
before them. *Low*: fewer than ``LOW`` × the median; *spike*: more than ``SPIKE`` × the median.
Series whose median is under ``MIN_MEDIAN`` rows a day are too small to judge and are skipped.
``personify status`` lists them as warnings.
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
    """``low`` or ``spike``."""
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
