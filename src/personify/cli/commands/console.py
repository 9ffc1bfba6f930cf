"""``personify console sign-out NAME``: end every marketer console session of one admin token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from personify.cli.app import JsonOpt, ProjectOpt, app, console, emit_json

console_app = typer.Typer(
    help="The marketer console (`personify serve`'s /console): end a token's sessions.",
    no_args_is_help=True,
)
app.add_typer(console_app, name="console", rich_help_panel="Operate")


@console_app.command("sign-out")
def sign_out_command(
    name: Annotated[str, typer.Argument(help="The admin token's name (admin_tokens[].name).")],
    project: ProjectOpt = Path("."),
    json: JsonOpt = False,
) -> None:
    """End every marketer console session signed in with the admin token NAME.

    In every `serve` process sharing the warehouse, at their next page: for a token that leaked
    or whose holder left — remove or change the token in personify.yml too, or it can sign in
    again."""
    from personify.errors import UsageError
    from personify.server.console.auth import end_sessions
    from personify.session import open_session

    with open_session(project) as session:
        config = session.project.config
        names = ["admin"] if config.admin_token else []
        names += [t.name for t in config.admin_tokens]
        ended = end_sessions(session.warehouse, name)
    if not ended and name not in names:
        raise UsageError(
            f"no admin token is named {name!r} and no console session was signed in with it",
            hint=f"token names: {', '.join(names) or 'none (admin_token in personify.yml)'}",
        )
    if json:
        emit_json({"token": name, "sessions_ended": ended})
        return
    console().print(f"{name}: {ended} console session(s) ended", markup=False)
