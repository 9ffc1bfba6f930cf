"""A small Prometheus registry: counters, gauges and histograms, rendered as text exposition 0.0.4.

Why not ``prometheus_client``: its registry is process-global (awkward for one app per test and
for several apps in one process) and brings a multiprocess mode we do not need; the exposition
format is small and stable. Each :class:`Registry` belongs to one app. Metrics are thread-safe.

Label values must never hold personal data: use route templates (``/v1/profiles/{id}``), command
names and status codes, never raw paths, arguments or e-mail addresses.

On a hot path, bind the label values once (:meth:`Counter.child`, :meth:`Histogram.child`): the
bound series counts without checking labels again, and a histogram finds its bucket by bisection
(buckets are stored per bound and summed when rendered) instead of a loop over every bucket.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from typing import Final, TypeVar

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""Media type of :meth:`Registry.render`'s output."""

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets in seconds, suited to request latencies."""

LabelValues = tuple[str, ...]
_M = TypeVar("_M", bound="Metric")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value as the text format spells it (``+Inf``, ``NaN``, integers without ``.0``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Metric:
    """Base of every metric: a name, help text, label names, and samples per label values."""

    kind: str = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._label_set = frozenset(self.label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if labels.keys() != self._label_set:
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.label_names)

    def _labels(self, values: LabelValues, extra: Iterable[tuple[str, str]] = ()) -> str:
        pairs = [*zip(self.label_names, values, strict=True), *extra]
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"

    def samples(self) -> list[str]:
        """Sample lines of this metric."""
        raise NotImplementedError

    def render(self) -> str:
        head = f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"
        return head + "".join(line + "\n" for line in self.samples())


class Counter(Metric):
    """A value that only goes up. Name it ``…_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def child(self, **labels: str) -> CounterChild:
        """The series of these label values, bound (its :meth:`CounterChild.inc` checks nothing
        again); it shows in the exposition once counted."""
        return CounterChild(self, self._key(labels))

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._labels(k)} {format_value(v)}" for k, v in items]


class CounterChild:
    """One series of a :class:`Counter`, its label values bound (:meth:`Counter.child`)."""

    __slots__ = ("_key", "_lock", "_values")

    def __init__(self, counter: Counter, key: LabelValues) -> None:
        self._key = key
        self._lock = counter._lock
        self._values = counter._values

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(Metric):
    """A value that goes up and down; :meth:`replace` swaps every sample at once (a snapshot)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def replace(self, values: dict[LabelValues, float]) -> None:
        """Replace all samples with ``values`` (label values in label-name order)."""
        for key in values:
            if len(key) != len(self.label_names):
                raise ValueError(f"{self.name} takes labels {self.label_names}")
        with self._lock:
            self._values = {k: float(v) for k, v in values.items()}

    def value(self, **labels: str) -> float | None:
        with self._lock:
            return self._values.get(self._key(labels))

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{self._labels(k)} {format_value(v)}" for k, v in items]


class Histogram(Metric):
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        if "le" in self.label_names:
            raise ValueError("'le' is reserved for histogram buckets")
        self.buckets = tuple(sorted(float(b) for b in buckets if not math.isinf(b)))
        self._series: dict[LabelValues, HistogramSeries] = {}

    def _series_of(self, key: LabelValues) -> HistogramSeries:
        with self._lock:
            found = self._series.get(key)
            if found is None:
                found = self._series[key] = HistogramSeries(self.buckets, self._lock)
            return found

    def observe(self, value: float, **labels: str) -> None:
        self._series_of(self._key(labels)).observe(value)

    def child(self, **labels: str) -> HistogramSeries:
        """The series of these label values, bound (its :meth:`HistogramSeries.observe` checks
        nothing again)."""
        return self._series_of(self._key(labels))

    def count(self, **labels: str) -> int:
        with self._lock:
            series = self._series.get(self._key(labels))
            return series.total if series else 0

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted((k, s.cumulative()) for k, s in self._series.items())
        lines: list[str] = []
        bounds = [format_value(b) for b in self.buckets] + ["+Inf"]
        for key, (counts, total) in items:
            for bound, count in zip(bounds, counts, strict=True):
                lines.append(f"{self.name}_bucket{self._labels(key, [('le', bound)])} {count}")
            lines.append(f"{self.name}_sum{self._labels(key)} {format_value(total)}")
            lines.append(f"{self.name}_count{self._labels(key)} {counts[-1]}")
        return lines


class HistogramSeries:
    """One series of a :class:`Histogram`: observations per bucket (the first bound at or above
    them; the last slot for above every bound and NaN), their count and sum."""

    __slots__ = ("_bounds", "_lock", "counts", "sum", "total")

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock) -> None:
        self._bounds = bounds
        self._lock = lock
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.total = 0

    def observe(self, value: float) -> None:
        # NaN is below no bound: only the +Inf bucket counts it (as the exposition format says)
        slot = bisect_left(self._bounds, value) if value == value else len(self._bounds)
        with self._lock:
            self.counts[slot] += 1
            self.total += 1
            self.sum += value

    def cumulative(self) -> tuple[list[int], float]:
        """Counts at or below each bound, then all of them; and the sum (the lock held)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out, self.sum


class Registry:
    """The metrics of one app, rendered together."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def _add(self, metric: _M) -> _M:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))

    def get(self, name: str) -> Metric:
        return self._metrics[name]

    def render(self) -> str:
        """Every metric in the Prometheus text format, sorted by name."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda m: m.name)
        return "".join(m.render() for m in metrics)
