"""The control channel: CLI commands forwarded by other processes, run on the server's warehouse.

``POST /_personify/cli`` (see :mod:`personify.server.protocol`). Only for loopback clients holding
the token from ``server.json``; anything else is 403/401. The server:

1. resolves every relative path argument against the client's ``cwd``
   (:func:`personify.cli.forward.plan_forward`) — the server never changes its own folder — and
   refuses commands that are never forwarded or that name another project;
2. waits for its turn: one forwarded command at a time (an async lock, so waiting costs no thread);
3. runs ``personify.cli.app.main(argv)`` in a worker thread, in a fresh :mod:`contextvars`
   context (``--now`` pins nothing beyond the command), inside
   :func:`personify.session.serving` (``open_session`` borrows the open warehouse) and
   :func:`personify.server.capture.capture` (stdout/stderr into per-command buffers);
4. answers ``{exit_code, stdout, stderr}``.

Logs name the command (``sql``, ``status``), never its arguments: those can hold e-mail addresses.
"""

from __future__ import annotations

import contextvars
import hmac
import io
import ipaddress
import logging
import sys
import time
import traceback
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.cli.forward import plan_forward, rewrite_argv
from personify.server.capture import capture
from personify.server.openapi import ERROR, Content, Operation, operation
from personify.server.protocol import (
    CONTROL_PATH,
    MAX_REQUEST_BYTES,
    CliRequest,
    CliResult,
)
from personify.server.responses import ApiError, JSONResponse, read_json
from personify.server.state import ServerState, state_of
from personify.session import Session, serving

log = logging.getLogger("personify.server.control")


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # SystemExit("message"): printed, status 1
    return 1


def run_forwarded(session: Session, argv: list[str], cwd: Path) -> CliResult:
    """Run ``personify <argv>`` in this process as if typed in ``cwd``, on ``session``'s open
    warehouse, and return what it printed and its exit code. Blocking: call from a worker."""
    from personify.cli.app import main

    rewritten = rewrite_argv(argv, cwd)
    args = rewritten if rewritten is not None else list(argv)  # unparsable: main reports it
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        # a batch command (`personify run` …) gets every core, as it would in its own process
        with serving(session), capture(out, err), session.warehouse.all_threads():
            try:
                main(args)
            except SystemExit as e:
                return _exit_code(e.code)
            except Exception:  # a bug in a command: report it as the local CLI would
                traceback.print_exc()
                return 1
            return 0

    code = contextvars.Context().run(call)
    return CliResult(exit_code=code, stdout=out.getvalue(), stderr=err.getvalue())


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def _check_auth(request: Request, state: ServerState) -> None:
    client = request.client.host if request.client else None
    if not _is_loopback(client):
        raise ApiError(403, "the control channel answers loopback clients only")
    expected = state.control_token
    if expected is None:
        raise ApiError(404, "this server has no control channel")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    challenge = {"www-authenticate": 'Bearer realm="personify-control"'}
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(401, "send Authorization: Bearer <token>", headers=challenge)
    if not hmac.compare_digest(given.strip().encode(), expected.reveal().encode()):
        raise ApiError(401, "wrong control token", headers=challenge)


@operation(
    Operation(
        summary="Run a CLI command in the server (used by the personify CLI)",
        description="Other `personify` processes on the same machine forward their commands "
        "here while the server owns a single-process warehouse (DuckDB). One command runs at a "
        "time; its output and exit code are returned when it ends.",
        tags=("control",),
        request=Content("The command line and the folder it was typed in.", CliRequest),
        responses={
            200: Content("The command ran (see exit_code).", CliResult),
            400: Content("Malformed request, or a command that is never forwarded.", ERROR),
            401: Content("Missing or wrong bearer token.", ERROR),
            403: Content("Not a loopback client.", ERROR),
            413: Content("Request body too large.", ERROR),
        },
        security=("controlToken",),
        internal=True,
    )
)
async def run_cli(request: Request) -> Response:
    """Run one forwarded command."""
    state = state_of(request)
    _check_auth(request, state)
    cli = await read_json(request, CliRequest, limit=MAX_REQUEST_BYTES)
    cwd = Path(cli.cwd)
    if not cwd.is_absolute():
        raise ApiError(400, "cwd must be an absolute path", code="invalid_request")
    plan = plan_forward(cli.argv, cwd, {})
    if plan is None:
        raise ApiError(
            400,
            "not a command the server runs (init, demo, serve, --help, no command, "
            "or arguments that do not parse): run it directly",
            code="not_forwardable",
        )
    served = state.session.project.root
    if plan.project != served:
        raise ApiError(
            400,
            f"this server serves {served}; run commands on {plan.project} directly",
            code="wrong_project",
        )
    label = plan.command
    async with state.command_lock:
        started = time.perf_counter()
        result = await anyio.to_thread.run_sync(run_forwarded, state.session, plan.argv, cwd)
        seconds = time.perf_counter() - started
    outcome = "ok" if result.exit_code == 0 else "error"
    state.forwarded.inc(command=label, outcome=outcome)
    state.forwarded_seconds.inc(seconds, command=label)
    log.info("forwarded command %s: exit %d in %.3f s", label, result.exit_code, seconds)
    return JSONResponse(result)


def routes() -> list[BaseRoute]:
    """The control channel's routes."""
    return [Route(CONTROL_PATH, run_cli, methods=["POST"])]
