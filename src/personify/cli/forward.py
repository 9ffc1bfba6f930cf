"""Run a command through the project's running ``personify serve``.

An embedded DuckDB warehouse can be opened by one process at a time, and ``personify serve`` holds
it for as long as it runs. So, before running a command, :func:`forward_if_served` looks for a
server on the command's project (``.personify/server.json``: pid alive, server lock held,
``/healthz`` answering with the same instance id; a stale file is removed) and, when there is one,
sends the command there instead: ``POST /_personify/cli`` with the file's bearer token and
``{argv, cwd}``. The server runs it in-process on its open warehouse, one command at a time, and
answers ``{exit_code, stdout, stderr}``, which are replayed here.

Paths keep the meaning they have in the client's folder: :func:`rewrite_argv` makes every path
argument absolute against the client's working folder and writes out options the client's
environment sets (``PERSONIFY_PROJECT``), since the server has its own folder and environment.

Never forwarded: ``init``, ``demo``, ``serve``, ``--help`` and no command at all, arguments that do
not parse (the local run reports the mistake), and projects whose warehouse is not single-process
(their server writes no ``server.json``; PostgreSQL takes any number of processes).
``PERSONIFY_NO_FORWARD=1`` turns forwarding off.

Limits: the command runs with the *server's* environment (``${VAR}`` in ``personify.yml``,
``PERSONIFY_*``); its output comes back when it ends (no live progress bars, no colours); it cannot
prompt; interrupting the client does not stop a command the server already started.
"""

from __future__ import annotations

import os
import sys
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from personify.server.lockfile import ServerInfo

NEVER_FORWARD: Final = frozenset({"init", "demo", "serve"})
"""Commands that always run in their own process."""
NO_FORWARD_ENV: Final = "PERSONIFY_NO_FORWARD"
"""Set to ``1`` to run every command locally even while a server runs."""
PROJECT_PARAM: Final = "project"


# ----------------------------------------------------------------------------- argv scanning
@dataclass
class Slot:
    """One value in argv: ``argv[index] == prefix + value`` belongs to parameter ``param``."""

    index: int
    prefix: str
    param: Any


@dataclass
class Scan:
    """What argv means for the command tree, without running anything."""

    names: list[str]
    """The command path, e.g. ``["segments", "show"]``; empty when no command is given."""
    command: Any
    """The (leaf) command object."""
    slots: list[Slot] = field(default_factory=list)
    given: set[str] = field(default_factory=set)
    """Names of the parameters argv sets."""
    insert_at: int = 0
    """Index just after the command path: where options can be added."""
    help: bool = False


def _root_command() -> Any:
    import typer.main

    from personify.cli.app import _register, app

    _register()
    return typer.main.get_command(app)


def _is_option(param: Any) -> bool:
    return getattr(param, "param_type_name", "option") == "option"


def _takes_value(param: Any) -> bool:
    return not (getattr(param, "is_flag", False) or getattr(param, "count", False))


def _is_path(param: Any) -> bool:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    candidates = [annotation, *typing.get_args(annotation)]
    if any(isinstance(c, type) and issubclass(c, os.PathLike) for c in candidates):
        return True
    return type(getattr(param, "type", None)).__name__ == "Path"


def _help_names(command: Any) -> set[str]:
    settings = getattr(command, "context_settings", None) or {}
    return set(settings.get("help_option_names", ["--help"]))


def _options(command: Any) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for param in getattr(command, "params", []):
        if _is_option(param):
            for opt in [*param.opts, *getattr(param, "secondary_opts", [])]:
                table[opt] = param
    return table


def _take_option(argv: Sequence[str], i: int, options: dict[str, Any], scan: Scan) -> int | None:
    """Consume the option at ``argv[i]``; the index after it, or None if it is unknown."""
    token = argv[i]
    if token.startswith("--"):
        name, eq, _ = token.partition("=")
        param = options.get(name)
        if param is None:
            return None
        scan.given.add(param.name)
        if _takes_value(param):
            if eq:
                scan.slots.append(Slot(i, name + "=", param))
            else:
                for _ in range(max(param.nargs, 1)):
                    i += 1
                    if i >= len(argv):
                        return None
                    scan.slots.append(Slot(i, "", param))
        return i + 1
    for j in range(1, len(token)):  # -p VALUE, -pVALUE, clustered flags -abc
        param = options.get("-" + token[j])
        if param is None:
            return None
        scan.given.add(param.name)
        if _takes_value(param):
            if j + 1 < len(token):
                scan.slots.append(Slot(i, token[: j + 1], param))
                return i + 1
            if i + 1 >= len(argv):
                return None
            scan.slots.append(Slot(i + 1, "", param))
            return i + 2
    return i + 1


def scan_argv(argv: Sequence[str], root: Any = None) -> Scan | None:
    """Walk ``argv`` as click would for the ``personify`` command tree. ``None``: it does not
    parse (unknown command or option, missing option value)."""
    command = root if root is not None else _root_command()
    scan = Scan(names=[], command=command)
    i, n = 0, len(argv)
    while hasattr(command, "commands"):  # a group: its options, then a subcommand name
        options = _options(command)
        while i < n and argv[i].startswith("-") and argv[i] != "-":
            if argv[i] in _help_names(command):
                scan.help = True
                return scan
            nxt = _take_option(argv, i, options, scan)
            if nxt is None:
                return None
            i = nxt
        if i >= n:
            return scan  # no command
        sub = command.commands.get(argv[i])
        if sub is None:
            return None
        scan.names.append(argv[i])
        command = scan.command = sub
        i += 1
    scan.insert_at = i
    scan.slots, scan.given = [], set()
    options, positionals, only_args = _options(command), [], False
    while i < n:
        arg = argv[i]
        if not only_args and arg == "--":
            only_args = True
        elif not only_args and arg.startswith("-") and arg != "-":
            if arg in _help_names(command):
                scan.help = True
                return scan
            nxt = _take_option(argv, i, options, scan)
            if nxt is None:
                return None
            i = nxt
            continue
        else:
            positionals.append(i)
        i += 1
    arguments = [p for p in getattr(command, "params", []) if not _is_option(p)]
    k = 0
    for pos, arg in enumerate(arguments):
        if arg.nargs == -1:
            later = sum(max(a.nargs, 0) for a in arguments[pos + 1 :])
            take = max(0, len(positionals) - k - later)
        else:
            take = arg.nargs
        for index in positionals[k : k + take]:
            scan.slots.append(Slot(index, "", arg))
            scan.given.add(arg.name)
        k += take
    return scan


def _absolute(value: str, cwd: Path) -> str:
    if not value or value == "-" or value.startswith("~") or os.path.isabs(value):
        return value
    return str(cwd / value)


def rewrite_argv(
    argv: Sequence[str],
    cwd: Path,
    *,
    environ: Mapping[str, str] | None = None,
    scan: Scan | None = None,
    root: Any = None,
) -> list[str] | None:
    """``argv`` with every path argument absolute against ``cwd``, and options that are not
    given written out: from ``environ`` when it sets their environment variable, else (for paths)
    their relative default, made absolute. ``None`` when argv does not parse."""
    scan = scan or scan_argv(argv, root)
    if scan is None:
        return None
    out = list(argv)
    for slot in scan.slots:
        if _is_path(slot.param):
            written = out[slot.index][len(slot.prefix) :]
            out[slot.index] = slot.prefix + _absolute(written, cwd)
    added: list[str] = []
    for param in getattr(scan.command, "params", []):
        if not _is_option(param) or param.name in scan.given or not _takes_value(param):
            continue
        envvar = param.envvar if isinstance(param.envvar, str) else None
        value: str | None = None
        if environ is not None and envvar and environ.get(envvar):
            value = environ[envvar]
        elif _is_path(param) and isinstance(param.default, str | os.PathLike):
            value = str(os.fspath(param.default))
        if value is not None and param.nargs == 1 and not param.multiple:
            added += [param.opts[0], _absolute(value, cwd) if _is_path(param) else value]
    return out[: scan.insert_at] + added + out[scan.insert_at :]


@dataclass(frozen=True)
class Plan:
    """A command ready to forward."""

    argv: list[str]
    """The arguments to send (paths absolute, environment-set options written out)."""
    command: str
    """The command path (``sql``, ``segments show``): no arguments, so safe to log."""
    project: Path
    """The project folder, resolved."""


def plan_forward(
    argv: Sequence[str], cwd: Path, environ: Mapping[str, str], root: Any = None
) -> Plan | None:
    """The forwardable form of ``argv`` run in ``cwd``, or ``None`` if it must run locally."""
    scan = scan_argv(argv, root)
    if scan is None or scan.help or not scan.names or scan.names[0] in NEVER_FORWARD:
        return None
    if not any(getattr(p, "name", None) == PROJECT_PARAM for p in scan.command.params):
        return None
    rewritten = rewrite_argv(argv, cwd, environ=environ, scan=scan, root=root)
    if rewritten is None:
        return None
    final = scan_argv(rewritten, root)
    if final is None:
        return None
    project = next(
        (rewritten[s.index][len(s.prefix) :] for s in final.slots if s.param.name == PROJECT_PARAM),
        str(cwd),
    )
    try:
        root_dir = Path(project).expanduser().resolve()  # as load_project resolves it
    except (OSError, RuntimeError):
        return None
    return Plan(rewritten, " ".join(scan.names), root_dir)


# ---------------------------------------------------------------------------------- forwarding
def _disabled(environ: Mapping[str, str]) -> bool:
    return environ.get(NO_FORWARD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def _inside_server() -> bool:
    # a server has imported personify.session (and set its serving context); a fresh start has
    # not, and importing it (the warehouse layer: pyarrow, sqlglot) would cost ~0.7 s of every
    # start, ``--help`` included, just to learn that
    session = sys.modules.get("personify.session")
    return session is not None and session.serving_session() is not None


def forward_if_served(args: list[str]) -> int | None:
    """If a server owns this project's single-process warehouse, run ``args`` there and return the
    exit code; otherwise ``None`` (run locally)."""
    if _disabled(os.environ) or _inside_server():
        return None  # turned off, or already inside the server
    try:
        cwd = Path.cwd()
    except OSError:
        return None
    plan = plan_forward(args, cwd, os.environ)
    if plan is None:
        return None
    from personify.server.lockfile import live_server
    from personify.session import default_lock_timeout

    try:
        wait = default_lock_timeout()
    except Exception:
        wait = 10.0
    info = live_server(plan.project / ".personify", wait=wait)  # Project.state_dir
    if info is None:
        return None
    return _send(info, plan, cwd)


def busy_hint(args: list[str]) -> str | None:
    """What to do about a busy warehouse when forwarding was turned off while a server runs on
    the project (it holds the warehouse); ``None`` when that is not why."""
    if not _disabled(os.environ) or _inside_server():
        return None
    try:
        plan = plan_forward(args, Path.cwd(), os.environ)
    except OSError:
        return None
    if plan is None:
        return None
    from personify.server.lockfile import live_server

    info = live_server(plan.project / ".personify")  # Project.state_dir
    if info is None:
        return None
    return (
        f"`personify serve` runs on this project ({info.describe()}) and {NO_FORWARD_ENV}=1 "
        "keeps this command from running through it: unset it, or stop the server"
    )


def _say(message: str) -> None:
    sys.stderr.write(f"personify: {message}\n")
    sys.stderr.flush()


def _send(info: ServerInfo, plan: Plan, cwd: Path) -> int | None:
    import httpx
    import msgspec

    from personify.server.protocol import CONTROL_PATH, INSTANCE_HEADER, CliRequest, CliResult

    timeout = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=5.0)
    with httpx.Client(base_url=info.url, trust_env=False, timeout=timeout) as client:
        deadline = time.monotonic() + 5.0
        while True:
            try:
                health = client.get("/healthz", timeout=5.0)
                break
            except httpx.TransportError:
                if time.monotonic() >= deadline:
                    _say(f"the server ({info.describe()}) does not answer; running here")
                    return None
                time.sleep(0.1)
        if health.headers.get(INSTANCE_HEADER) != info.instance:
            _say(f"{info.url} is not this project's server; running here")
            return None
        body = msgspec.json.encode(CliRequest(argv=plan.argv, cwd=str(cwd)))
        headers = {"authorization": f"Bearer {info.token}", "content-type": "application/json"}
        try:
            response = client.post(CONTROL_PATH, content=body, headers=headers)
        except httpx.ConnectError:
            return None  # gone before it took the command: nothing ran there
        except httpx.TransportError as e:
            _say(f"lost the server while it ran the command ({type(e).__name__})")
            return 75
        except KeyboardInterrupt:
            _say("interrupted; the server finishes the command it started")
            return 130
    if response.status_code != 200:
        try:
            message = msgspec.json.decode(response.content)["error"]["message"]
        except Exception:
            message = f"HTTP {response.status_code}"
        _say(f"the server refused the command: {message}")
        return 1
    result = msgspec.json.decode(response.content, type=CliResult)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    return result.exit_code
