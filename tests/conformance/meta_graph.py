"""A fake of Meta's Graph API Custom Audience users endpoint, served for real on loopback: it
checks each request as Meta does (path and version, bearer token, a form ``payload`` of a known
``schema`` and ``data`` rows of that width, hashed fields SHA-256 hex, at most 10,000 rows) and
answers in Meta's shapes, errors included; the audience it keeps is the set of rows added and not
removed — and, given Meta's users (``Graph.users``), who is in it as Meta matches: a row adds
(or removes) every user who has any one of its identifiers."""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.loopback import QuietHandler, serve

TOKEN = "meta-test-token"  # noqa: S105
AUDIENCE = "23850000000000001"
VERSION = "v24.0"
HASHED = {"EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "GEN", "DOBY", "DOBM", "DOBD"}
UNHASHED = {"EXTERN_ID", "MADID"}
SHA256 = re.compile("[0-9a-f]{64}")


@dataclass
class Graph:
    """What the fake holds and how it misbehaves."""

    members: dict[str, set[str]] = field(default_factory=dict)
    """Per schema key, the values of the rows in the audience (added, not removed)."""
    requests: list[tuple[str, list[str], int]] = field(default_factory=list)
    """(method, schema, rows) of each request taken."""
    refused: list[dict[str, Any]] = field(default_factory=list)
    """The error bodies answered."""
    rate_limit_next: int = 0
    """Answer this many requests with Meta's custom-audience rate limit (400, code 80003)."""
    transient_next: int = 0
    """Answer this many with a transient error (400, code 2, is_transient)."""
    invalid_rows: int = 0
    """Report this many rows of the next add as invalid entries."""
    unreadable: set[str] = field(default_factory=set)
    """Hashed values Meta cannot read: an added row holding one is an invalid entry (counted,
    not added) — each request that carries it."""
    users: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """Meta's users (a name → their identifiers as (schema key, hashed value)) to match rows
    against."""
    audience: set[str] = field(default_factory=set)
    """The users in the audience: matched by a row added, until one removed matches them."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def emails(self) -> set[str]:
        return self.members.get("EMAIL", set())

    def taken(self, method: str) -> int:
        return sum(n for m, _, n in self.requests if m == method)


def _error(message: str, code: int, subcode: int | None = None, **more: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": {**error, **more, "fbtrace_id": "AbCdEfGh123"}}


class _Handler(QuietHandler):
    graph: Graph

    def do_POST(self) -> None:
        self._users("POST")

    def do_DELETE(self) -> None:
        self._users("DELETE")

    def _refuse(self, status: int, body: dict[str, Any]) -> None:
        with self.graph.lock:
            self.graph.refused.append(body)
        self.answer(status, body)

    def _users(self, method: str) -> None:
        g = self.graph
        raw = self.body()
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._refuse(400, _error("Error validating access token", 190, 463))
        if "access_token" in self.path:
            return self._refuse(400, _error("the token travels in the URL", 100))
        match = re.fullmatch(r"/(v\d+\.\d+)/(\d+)/users", self.path)
        if match is None or match.group(1) != VERSION:
            return self._refuse(400, _error("Unknown path components", 2500))
        if match.group(2) != AUDIENCE:
            return self._refuse(
                400,
                _error(
                    f"Unsupported post request. Object with ID '{match.group(2)}' does not exist",
                    100,
                    33,
                ),
            )
        with g.lock:
            limited, transient = g.rate_limit_next > 0, g.transient_next > 0
            if limited:
                g.rate_limit_next -= 1
            elif transient:
                g.transient_next -= 1
        if limited:
            limit = _error("There have been too many calls to this ad-account.", 80003)
            return self._refuse(400, limit)
        if transient:
            return self._refuse(
                400, _error("An unexpected error has occurred.", 2, is_transient=True)
            )
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self._refuse(400, _error("(#100) payload must be a form field", 100))
        form = urllib.parse.parse_qs(raw, strict_parsing=True)
        try:
            (text,) = form["payload"]
            payload = json.loads(text)
            schema, data = payload["schema"], payload["data"]
        except (KeyError, ValueError, TypeError):
            return self._refuse(400, _error("(#100) The parameter payload is required", 100))
        if not isinstance(schema, list) or not set(schema) <= HASHED | UNHASHED or not schema:
            return self._refuse(400, _error(f"(#100) Invalid schema {schema}", 100))
        if len(data) > 10_000:
            return self._refuse(400, _error("(#100) Too many users in the request", 100, 1870145))
        for row in data:
            if len(row) != len(schema):
                return self._refuse(400, _error("(#100) row width is not the schema's", 100))
            for key, value in zip(schema, row, strict=True):
                if key in HASHED and value and not SHA256.fullmatch(value):
                    return self._refuse(400, _error(f"(#100) {key} is not hashed", 100))
        with g.lock:
            g.requests.append((method, list(schema), len(data)))
            unread = [row for row in data if method == "POST" and set(row) & g.unreadable]
            data = [row for row in data if row not in unread]
            for row in data:
                given = {(k, v) for k, v in zip(schema, row, strict=True) if v}
                matched = {name for name, ids in g.users.items() if ids & given}
                if method == "POST":
                    g.audience |= matched
                else:
                    g.audience -= matched
                for key, value in zip(schema, row, strict=True):
                    if not value:
                        continue
                    held = g.members.setdefault(key, set())
                    if method == "POST":
                        held.add(value)
                    else:
                        held.discard(value)
            invalid, g.invalid_rows = (
                (g.invalid_rows, 0) if method == "POST" else (0, g.invalid_rows)
            )
            invalid += len(unread)
        self.answer(
            200,
            {
                "audience_id": AUDIENCE,
                "session_id": "8154623911",
                "num_received": len(data) + len(unread),
                "num_invalid_entries": invalid,
                "invalid_entry_samples": {},
            },
        )


@contextmanager
def serve_graph(graph: Graph) -> Iterator[str]:
    """The fake, on a free loopback port, until the block ends; yields its base URL."""
    with serve(type("Handler", (_Handler,), {"graph": graph})) as url:
        yield url
