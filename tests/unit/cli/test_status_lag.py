"""``personify status`` shows each source's lag in a unit a person reads at a glance."""

from __future__ import annotations

import pytest

from personify.cli.commands.project import lag_text


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "—"),
        (0.4, "0 s"),
        (17.2, "17 s"),
        (119.4, "119 s"),
        (120, "2 min"),
        (1_020, "17 min"),
        (7_200, "2.0 h"),
        (10_783, "3.0 h"),
        (172_800, "2.0 d"),
        (216_000, "2.5 d"),
        (-10_783, "3.0 h ahead"),  # data received after the report's instant
    ],
)
def test_lag_text(seconds: float | None, shown: str) -> None:
    assert lag_text(seconds) == shown


def test_a_source_ahead_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    from personify.cli.commands.project import _print_status

    def report(lag: float) -> dict[str, object]:
        source = {"name": "web", "kind": "tracking", "last_sync_at": None, "quarantined": 0}
        return {
            "project": "shop",
            "root": "/p",
            "warehouse": {"backend": "duckdb", "url": "duckdb:///w", "schema_version": 17},
            "sources": [{**source, "lag_seconds": lag}],
            "tables": {},
            "quarantine": {"total": 0, "by_reason": {}},
            "last_run": None,
        }

    _print_status(report(-10_783))
    assert "ahead: the source's newest data is stamped after" in " ".join(
        capsys.readouterr().out.split()
    )
    _print_status(report(10_783))
    assert "ahead" not in capsys.readouterr().out


def test_a_destinations_last_push_warning_is_shown(capsys: pytest.CaptureFixture[str]) -> None:
    from personify.cli.commands.project import _print_status
    from personify.destinations import push_warnings

    (warning,) = push_warnings("ads", {"rows_sent": 120, "api_invalid_entries": 3})
    destination = {"name": "ads", "records": {"sent": 117}, "on_remove": "ignore"}
    _print_status(
        {
            "project": "shop",
            "root": "/p",
            "warehouse": {"backend": "duckdb", "url": "duckdb:///w", "schema_version": 17},
            "sources": [],
            "destinations": [{**destination, "last_run_warnings": [warning]}],
            "tables": {},
            "quarantine": {"total": 0, "by_reason": {}},
            "last_run": None,
        }
    )
    shown = " ".join(capsys.readouterr().out.split())
    assert "last push: destination ads: Meta could not read 3 of the 120 rows sent" in shown
