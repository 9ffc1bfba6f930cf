"""``personify demo``'s summary off a terminal (a pipe, a CI log): the main job's table keeps a
sane width — a stage's many counts wrap between counts — and loses none of them."""

from __future__ import annotations

import re

import pytest

from personify.cli.commands.demo import COUNTS_WIDTH, _print_run


def test_the_main_job_table_wraps_its_counts_off_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # (captured stdout is not a terminal)
    counts = {f"rows_of_stage_part_{i:02d}": 1000 * i for i in range(40)}
    summary = {
        "run": {
            "stages": [
                {"name": "sync", "seconds": 1.5, "counts": counts},
                {"name": "identity", "seconds": 0.25, "counts": {}},
            ]
        }
    }
    _print_run(summary)
    out = capsys.readouterr().out
    width = max(len(line) for line in out.splitlines())
    assert width <= COUNTS_WIDTH + 30, out  # (was one line of ~1,000 columns)
    flat = re.sub(r"[│┃|\s]+", " ", out)
    for key, value in counts.items():  # every count whole: wrapped between counts only
        assert f"{key}={value:,}" in flat, key
    assert "identity" in out and "—" in out
