"""Errors of the polite HTTP client — REST sources' and destinations' (all
:class:`~personify.errors.SourceError`, as they were when only sources used it).

::

    SourceError
    └── RestError                  a REST source failed
        ├── RestHttpError          the API answered 4xx (Terminal): the URL (secrets masked), the
        │                          status and what the API said
        ├── RestUnavailable        5xx, 429, timeouts or connection errors outlasted the retries
        │                          (Transient)
        └── RestResponseError      the body is not what the resource expects (Terminal)
"""

from __future__ import annotations

from typing import Any

from personify.errors import SourceError, Terminal, Transient


class RestError(SourceError):
    """A REST source failed."""


class RestHttpError(RestError, Terminal):
    """The API refused a request (4xx)."""

    def __init__(
        self, message: str, *, status: int, url: str, hint: str | None = None, body: Any = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.url = url
        self.body = body
        """The answer's JSON body (``None``: none, or not JSON)."""


class RestUnavailable(RestError, Transient):
    """The API kept failing (5xx, 429, timeouts) after every retry."""


class RestResponseError(RestError, Terminal):
    """The API's answer is not what the resource expects (not JSON, no records where said)."""
