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
