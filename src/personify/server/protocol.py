"""The control channel's wire format, shared by the server and the CLI client that forwards.

``POST /_personify/cli`` with ``Authorization: Bearer <token from server.json>`` and a
:class:`CliRequest` body; the answer is a :class:`CliResult`. Only msgspec is imported here, so
the client stays quick to start.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

CONTROL_PATH: Final = "/_personify/cli"
"""Where forwarded commands are posted."""
INSTANCE_HEADER: Final = "personify-instance"
"""Response header naming the serving process's random instance id (not a secret): a client
checks it against ``server.json`` so that it never forwards to some other program on the port."""
MAX_REQUEST_BYTES: Final = 1024 * 1024
"""Largest control request body accepted."""


class CliRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A command to run in the server, as typed in the client's shell."""

    argv: Annotated[list[str], msgspec.Meta(max_length=4096)]
    """The arguments after ``personify`` (``--project`` already made absolute by the client)."""
    cwd: str
    """The client's working folder, absolute: other relative paths are resolved against it."""


class CliResult(msgspec.Struct, frozen=True):
    """What the command did, for the client to replay."""

    exit_code: int
    """The command's exit status (0: success)."""
    stdout: str
    """Everything the command printed on standard output."""
    stderr: str
    """Everything the command printed on standard error."""
