"""``personify status`` on every backend: per-source lag and the queues section; on PostgreSQL,
tables the planner estimates above 100,000 rows are reported from ``pg_class.reltuples``
(``tables_estimated``) instead of being scanned by ``count(*)``."""

from __future__ import annotations

from pathlib import Path

from tests.conformance.test_profiles import session_on
from tests.conformance.test_realtime_cache import project_with

from personify.status import ESTIMATE_ABOVE, status_report, table_rows
from personify.warehouse import Warehouse


def test_row_estimates_lag_and_queues(warehouse: Warehouse, tmp_path: Path) -> None:
    n = ESTIMATE_ABOVE + 20_000
    warehouse.execute(
        "INSERT INTO events (message_id, type, timestamp, received_at, source) "
        "SELECT 'm' || CAST(g AS VARCHAR), 'track', CAST(? AS TIMESTAMPTZ), "
        "CAST(? AS TIMESTAMPTZ), 'web' FROM generate_series(1, ?) AS t(g)",
        ["2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z", n],
    )
    if warehouse.scheme == "postgresql":
        warehouse.execute("ANALYZE events")
    rows, estimated = table_rows(warehouse)
    if warehouse.scheme == "postgresql":
        assert estimated == ["events"]  # the small tables are still counted
        assert abs(rows["events"] - n) <= n * 0.05, rows["events"]
    else:
        assert estimated == [] and rows["events"] == n
    assert rows["customers"] == 0

    proj = project_with(tmp_path, warehouse.url)
    report = status_report(session_on(warehouse, proj))
    assert report["tables_estimated"] == estimated
    assert "note" in report["queues"] and "bus_depth" not in report["queues"]  # no server here
