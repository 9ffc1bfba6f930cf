"""The Prometheus registry: exposition format, escaping, histograms."""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from personify.server.metrics import Registry, format_value


def test_exposition_round_trips_through_the_reference_parser() -> None:
    r = Registry()
    c = r.counter("x_requests_total", "Requests.\nSecond line \\ backslash", ("route",))
    c.inc(route='/a "quoted"\n')
    c.inc(2, route="/b")
    g = r.gauge("x_rows", "Rows.", ("table",))
    g.replace({("customers",): 10, ("orders",): 2.5})
    h = r.histogram("x_seconds", "Latency.", buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 3.0):
        h.observe(v)
    text = r.render()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    counts = {s.labels["route"]: s.value for s in families["x_requests"].samples}
    assert counts == {'/a "quoted"\n': 1.0, "/b": 2.0}
    assert families["x_requests"].documentation == "Requests.\nSecond line \\ backslash"
    assert {s.labels["table"]: s.value for s in families["x_rows"].samples} == {
        "customers": 10,
        "orders": 2.5,
    }
    buckets = {
        s.labels["le"]: s.value for s in families["x_seconds"].samples if s.name.endswith("_bucket")
    }
    assert buckets == {"0.1": 1, "1": 2, "+Inf": 3}
    assert h.count() == 3


def test_labels_must_match() -> None:
    r = Registry()
    c = r.counter("a_total", "A.", ("x",))
    with pytest.raises(ValueError):
        c.inc(y="1")
    with pytest.raises(ValueError):
        c.inc(-1, x="1")
    with pytest.raises(ValueError):
        r.counter("a_total", "again")


def test_format_value() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(math.inf) == "+Inf"
    assert format_value(math.nan) == "NaN"


@pytest.mark.parametrize(
    "values",
    [
        (0.005, 0.0049, 0.0051, 0.01, 10.0, 10.5, 0.0, -1.0),  # on, just under and over bounds
        (math.nan, math.inf, 0.3),
    ],
)
def test_bound_series_count_as_the_labelled_calls(values: tuple[float, ...]) -> None:
    """A bound child (the hot path's) and ``observe``/``inc`` with labels render the same
    exposition: cumulative buckets, ``le`` meaning at or below, NaN only in ``+Inf``."""
    renders = []
    for bound in (False, True):
        r = Registry()
        c = r.counter("x_total", "X.", ("route", "status"))
        h = r.histogram("x_seconds", "X.", ("route",))
        child_c, child_h = c.child(route="/o", status="200"), h.child(route="/o")
        for v in values:
            if bound:
                child_c.inc()
                child_h.observe(v)
            else:
                c.inc(route="/o", status="200")
                h.observe(v, route="/o")
        assert c.value(route="/o", status="200") == len(values)
        assert h.count(route="/o") == len(values)
        renders.append(r.render())
    assert renders[0] == renders[1]
    samples = {
        (s.name, s.labels.get("le")): s.value
        for f in text_string_to_metric_families(renders[0])
        for s in f.samples
        if s.name.startswith("x_seconds")
    }
    for bound in (0.005, 0.01, 10.0):
        expected = sum(1 for v in values if v <= bound)  # NaN compares false: never counted
        assert samples[("x_seconds_bucket", format_value(bound))] == expected
    assert samples[("x_seconds_bucket", "+Inf")] == len(values)


def test_a_bound_child_checks_its_labels_once() -> None:
    r = Registry()
    c = r.counter("a_total", "A.", ("x",))
    with pytest.raises(ValueError):
        c.child(y="1")
    with pytest.raises(ValueError):
        c.child(x="1").inc(-1)
    with pytest.raises(ValueError):
        r.histogram("b_seconds", "B.", ("x",)).child()
