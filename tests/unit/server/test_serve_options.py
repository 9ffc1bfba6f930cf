"""``personify serve``'s options are checked before anything starts: a ``--drain`` that is not a
number of seconds (nan, inf, negative, or longer than the platform can wait: the drain's timer
would die and the drain never end) is a usage error naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from personify.cli.app import _register, app


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "-0.5", "1e10", "1e300"])
def test_a_drain_that_is_not_seconds_is_refused(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []

    def serve(project: Path, **kw: Any) -> None:  # (stands for the server: it must not start)
        started.append(kw)

    _register()
    monkeypatch.setattr("personify.server.runner.serve", serve)
    done = CliRunner().invoke(app, ["serve", "--port", "0", f"--drain={value}", "--project", "."])
    assert done.exit_code == 2, done.output
    assert "--drain" in done.output
    assert started == []


def test_a_drain_of_seconds_reaches_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[dict[str, Any]] = []

    def serve(project: Path, **kw: Any) -> None:
        started.append(kw)

    _register()
    monkeypatch.setattr("personify.server.runner.serve", serve)
    done = CliRunner().invoke(app, ["serve", "--port", "0", "--drain", "2.5", "--project", "."])
    assert done.exit_code == 0, done.output
    assert [kw["drain"] for kw in started] == [2.5]
