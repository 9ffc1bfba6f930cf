"""The Typer application, the options every command shares, and error handling."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from typer.core import TyperGroup, TyperOption

from personify import clock
from personify.errors import (
    ConfigError,
    PersonifyError,
    Transient,
    UsageError,
    WarehouseBusy,
)

_ORDER = (
    "demo", "init", "status",
    "run", "sync", "push", "import", "quarantine", "reconcile", "quality",
    "profile", "identity", "consent", "privacy", "audit", "sql",
    "segments", "lists", "rules",
    "render", "send-test", "report",
    "serve", "console",
)  # fmt: skip
"""Commands in the order data moves, as ``personify --help`` lists them."""


def _flag_type_rich(self: TyperOption, ctx: Any) -> str | None:
    """No type column for a flag (``--json``, ``--help``): it takes no value. Typer 0.29 shows
    ``<bool>`` there, which reads as if ``--json true`` were the way to use it."""
    return None if self.is_flag else _option_type_rich(self, ctx)


_option_type_rich = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type_rich  # type: ignore[method-assign]


class _InDataFlowOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER))


app = typer.Typer(
    name="personify",
    cls=_InDataFlowOrder,
    help=(
        "Personify — a warehouse-native customer data platform and personalization engine "
        "for email.\n\n"
        "Start with `personify demo` (a synthetic shop, wired and run end to end) or "
        "`personify init DIR` (an empty project). Every command works on the project in "
        "--project DIR (default: the current folder, which holds personify.yml)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

ProjectOpt = Annotated[
    Path,
    typer.Option(
        "--project",
        "-p",
        help="Project folder (holds personify.yml).",
        envvar="PERSONIFY_PROJECT",
        show_default="current folder",
    ),
]
NewProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project",
        "-p",
        help="The project folder to create (the same as giving DIR).",
        show_default=False,
    ),
]
"""``--project`` of the commands that create a project (``init``, ``demo``): another way to
name their DIR, so that every command takes ``--project`` (:func:`new_project_folder`)."""


def new_project_folder(directory: Path | None, project: Path | None, default: Path | None) -> Path:
    """The folder ``init``/``demo`` create: DIR or ``--project`` (the same one if both)."""
    if directory is not None and project is not None and directory != project:
        raise typer.BadParameter(
            f"DIR {directory} and --project {project} name two folders: give one",
            param_hint="--project",
        )
    chosen = directory or project or default
    if chosen is None:
        raise typer.BadParameter(
            "name the folder for the new project: personify init DIR (or --project DIR)",
            param_hint="DIR",
        )
    return chosen


JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")
]
NowOpt = Annotated[
    str | None,
    typer.Option(
        "--now",
        help="Evaluate at this ISO 8601 instant instead of the clock (e.g. 2026-01-31T09:00:00Z).",
        metavar="ISO8601",
    ),
]


PIPED_WIDTH = 1_000
"""Columns a table may take when output is not a terminal (a pipe, a file, a forwarded
command): wide enough that no value is cut to ``8,7…``; a table is only as wide as its values."""


def _width(stream: Any) -> int | None:
    """None (Rich's own: the terminal's, or ``COLUMNS``) on a terminal or when ``COLUMNS`` is
    set; else :data:`PIPED_WIDTH` instead of Rich's 80."""
    isatty = getattr(stream, "isatty", None)
    if (callable(isatty) and isatty()) or os.environ.get("COLUMNS", "").strip():
        return None
    return PIPED_WIDTH


def console() -> Console:
    """Human output (stdout)."""
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=_width(sys.stdout))


def err_console() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True, width=_width(sys.stderr))


def pin_now(now: str | None) -> None:
    """Apply ``--now``; a bad value is a usage error."""
    if now is None:
        return
    try:
        clock.pin(clock.parse_instant(now))
    except ValueError:
        raise typer.BadParameter(
            f"{now!r} is not an ISO 8601 instant (e.g. 2026-01-31T09:00:00Z)", param_hint="--now"
        ) from None


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def make_folder(folder: Path, *, param_hint: str) -> None:
    """Create ``folder`` (and its parents) if needed; a path that cannot be one (a file, a place
    the user may not write) is a usage error naming it."""
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is a file, not a folder", param_hint=param_hint)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise typer.BadParameter(
            f"cannot create the folder {folder}: {_reason(e)}", param_hint=param_hint
        ) from None


def out_file(path: Path | None, *, param_hint: str = "--out") -> Path | None:
    """Check an output file option before the work starts: its folder is created when missing
    (as ``--out reports/x.html`` is meant), a folder in its place is a usage error."""
    if path is None:
        return None
    if path.is_dir():
        raise typer.BadParameter(
            f"{path} is a folder; give a file name in it, e.g. {path / 'out'}",
            param_hint=param_hint,
        )
    make_folder(path.parent, param_hint=param_hint)
    return path


def write_out(path: Path, data: str | bytes, *, param_hint: str = "--out") -> None:
    """Write an output file (its folder created when missing); an OS refusal is a usage error
    naming the file, not a traceback."""
    out_file(path, param_hint=param_hint)
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(
            f"cannot write {path}: {_reason(e)}", param_hint=param_hint
        ) from None


def print_counts(title: str, counts: dict[str, int], *, quarantine_source: str, order: str) -> None:
    """An import's (or upload's) counts as a table, then — when rows were quarantined — the
    query that shows them (``order``: the quarantine's ORDER BY)."""
    from rich.table import Table

    out = Table("count", "value", title=title)
    for key, value in counts.items():
        out.add_row(key, f"{value:,}")
    console().print(out)
    if counts.get("rows_quarantined"):
        console().print(
            f"{counts['rows_quarantined']:,} rows quarantined; see them with:\n"
            f'  personify sql "SELECT location, reason, detail FROM quarantine '
            f"WHERE source = '{quarantine_source}' ORDER BY {order} LIMIT 20\"",
            markup=False,
        )


def emit_json(document: Any) -> None:
    """Print one JSON document on stdout."""
    sys.stdout.write(msgspec.json.encode(document, enc_hook=_enc).decode() + "\n")
    sys.stdout.flush()


def _enc(obj: Any) -> Any:
    import datetime as dt
    import decimal

    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _register() -> None:
    from personify.cli import commands  # noqa: F401  (registers the commands)


def _project_arg(args: list[str]) -> Path:
    """The project folder ``args`` name (``--project``/``-p``, else the environment's, else
    the current folder), for locating a configuration error after the fact."""
    for i, arg in enumerate(args):
        if arg in ("--project", "-p") and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--project="):
            return Path(arg.split("=", 1)[1])
    return Path(os.environ.get("PERSONIFY_PROJECT") or ".")


def located(e: ConfigError, args: list[str]) -> ConfigError:
    """``e`` with the line of its key in the project file, when it names a key of it but no
    line (a check made after loading: a bus, a key ring, a cache). Unchanged when the file or
    the key cannot be found (:func:`personify.config.locate`)."""
    from personify.config import PROJECT_FILE, find_project_file, locate

    if not e.key or e.line is not None or (e.file and Path(e.file).name != PROJECT_FILE):
        return e
    try:
        file = Path(e.file) if e.file else find_project_file(_project_arg(args))
    except PersonifyError:
        return e
    return locate(e, file)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    from personify.cli.forward import forward_if_served

    forwarded = forward_if_served(args)
    if forwarded is not None:
        raise SystemExit(forwarded)
    try:
        result = app(args=args, prog_name="personify", standalone_mode=False)
    except PersonifyError as e:
        if isinstance(e, WarehouseBusy):
            from personify.cli.forward import busy_hint

            e.hint = busy_hint(args) or e.hint
        if isinstance(e, ConfigError):
            e = located(e, args)
        err_console().print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
        raise SystemExit(
            2
            if isinstance(e, ConfigError | UsageError)
            else (75 if isinstance(e, Transient) else 1)
        ) from None
    except typer.Abort:
        err_console().print("aborted")
        raise SystemExit(130) from None
    except Exception as e:  # click usage errors carry their own exit code
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            raise SystemExit(e.exit_code) from None
        if isinstance(e, click.exceptions.Exit):
            raise SystemExit(e.exit_code) from None
        if isinstance(e, typer.TyperException):  # Typer ≥ 0.24 vendors its own click
            show = getattr(e, "show", None)
            if callable(show):
                show()
            else:
                err_console().print(f"error: {e.format_message()}", markup=False)
            raise SystemExit(e.exit_code) from None
        raise
    if isinstance(result, int) and not isinstance(result, bool) and result:
        raise SystemExit(result)  # typer.Exit(code) comes back as a return value
