"""A source's recorded run: what ``personify status`` shows of it."""

from __future__ import annotations

from datetime import UTC, datetime

from personify.sources.schedule import last_runs, record_run
from personify.warehouse import connect


def test_a_failed_runs_error_is_kept_with_addresses_masked() -> None:
    """An API's answer may echo a record's address ("email 'ann@example.org' is invalid"): the
    error ``status`` shows keeps the domain, not the person."""
    with connect("duckdb:///:memory:") as wh:
        record_run(
            wh,
            "crm",
            started_at=datetime(2026, 6, 1, tzinfo=UTC),
            seconds=1.5,
            counts={"rows_loaded": 0},
            error="crm: POST /contacts answered 400: email 'ann.lee@example.org' is invalid",
        )
        run = last_runs(wh)["crm"]
    assert run.status == "failed" and run.error is not None
    assert "ann.lee" not in run.error and "***@example.org" in run.error
    assert run.error.startswith("crm: POST /contacts answered 400")
