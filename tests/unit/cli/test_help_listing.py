"""``personify --help`` and each group's ``--help`` list every command on a line or two: the
listing shows a command's first help paragraph, so that paragraph stays a short summary and the
details go after it (``personify COMMAND --help`` shows them all)."""

from __future__ import annotations

import inspect

import click
import typer

import personify.cli.commands  # noqa: F401  (registers every command on the app)
from personify.cli.app import app

LISTING_LIMIT = 160
"""Characters of a command's first help paragraph: two lines of the listing at 100 columns."""


def _commands(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, sub in getattr(group, "commands", {}).items():
        found.append((" ".join((*path, name)), sub))
        found += _commands(sub, (*path, name))
    return found


def test_every_command_is_listed_with_a_short_summary() -> None:
    commands = _commands(typer.main.get_command(app))
    assert len(commands) > 40  # every group walked, not only the top level
    too_long = {}
    for name, command in commands:
        text = command.short_help or command.help or ""
        first = inspect.cleandoc(text).split("\n\n")[0].replace("\n", " ").strip()
        assert first, f"personify {name} has no help"
        if len(first) > LISTING_LIMIT:
            too_long[name] = len(first)
    assert not too_long, f"first help paragraph over {LISTING_LIMIT} characters: {too_long}"


def test_the_details_stay_in_the_command_help() -> None:
    status = dict(_commands(typer.main.get_command(app)))["status"]
    assert status.help and "Health at a glance" in status.help
    assert "max_complaint_rate" in status.help  # the details follow the summary
