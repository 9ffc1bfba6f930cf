"""The console's sign-in: an admin token typed once into a form becomes a session cookie.

A browser cannot send ``Authorization: Bearer …`` when it follows a link, so ``POST
/console/login`` checks the token like the API does (:class:`~personify.privacy.access.AdminTokens`,
constant time, and the same limits on wrong tokens, per address and per presented token prefix,
counted together with the API's: :mod:`personify.server.auth_limits`) and answers with a cookie:

* its value is a :mod:`personify.signed` token for the domain ``console-session`` under the
  project's ``signing_key``, carrying the token's *name*, an HMAC fingerprint of the token (never
  the token) and an expiry (:data:`SESSION_SECONDS`);
* ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it),
  ``Path=/console``, ``Secure`` when the request came over HTTPS.

The cookie also carries a random session id, recorded (as its SHA-256) in the warehouse's
``console_sessions`` table: every page checks that the session is there and not ended, so
"Sign out" ends it server-side — a copy of the cookie stops working at once, in every ``serve``
process sharing the warehouse — and :func:`end_sessions` (``personify console sign-out``) ends
all the sessions of a token, e.g. when it leaks or its holder leaves.

Every page re-checks the cookie against the tokens the server has loaded too: a token removed,
changed (rotated) or stripped of its ``console`` scope (and the server restarted to read the file)
ends its sessions; sessions outlive a restart otherwise (same ``signing_key``). Form posts
(sign-in, sign-out) are refused unless ``Sec-Fetch-Site`` (or ``Origin``) says they come from the
console itself (CSRF); pages are GETs that change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from personify.config import ProjectConfig
from personify.errors import ConfigError
from personify.privacy.access import AdminTokens, Grant
from personify.privacy.hashing import project_key
from personify.server import auth_limits
from personify.server.state import ServerState
from personify.signed import b64, seal, unseal
from personify.warehouse.base import Warehouse

COOKIE = "personify_console"
DOMAIN = "console-session"
SCOPE = "console"
SESSION_SECONDS = 8 * 3600
"""How long a sign-in lasts (a working day)."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the token's grant, and whether it may see personal data."""

    grant: Grant

    @property
    def name(self) -> str:
        return self.grant.name

    @property
    def actor(self) -> str:
        """The audit log's actor for this viewer."""
        return f"console:{self.grant.name}"

    @property
    def sees_pii(self) -> bool:
        """Personal data in plain text needs ``profiles:read`` (``admin`` has it)."""
        return self.grant.allows("profiles:read")

    @property
    def finds_by_identifier(self) -> bool:
        """Whether the viewer may name a person by email or ``kind:value`` (else by customer id
        only): the API's rule, :attr:`Grant.finds_by_identifier` (``profiles:read``, ``privacy``
        or ``admin``) — a ``console`` + ``privacy`` token finds people by email here as its
        ``/v1/privacy/export`` does, and is shown them masked (no ``profiles:read``)."""
        return self.grant.finds_by_identifier


def _configured(config: ProjectConfig) -> list[tuple[str, str, tuple[str, ...]]]:
    out: list[tuple[str, str, tuple[str, ...]]] = [
        ("admin", config.admin_token.reveal() if config.admin_token else "", ("admin",))
    ]
    out += [(t.name, t.token.reveal(), tuple(t.scopes)) for t in config.admin_tokens]
    return [(name, secret, scopes) for name, secret, scopes in out if secret]


def _fingerprint(key: bytes, name: str, secret: str) -> str:
    message = f"console-token\0{name}\0{secret}".encode()
    return b64(hmac.digest(key, message, hashlib.sha256)[:16])


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class SignInError(Exception):
    """Why a sign-in was refused (shown on the form) and its HTTP status."""

    def __init__(self, message: str, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def sign_in(state: ServerState, request: Request, given: str) -> tuple[Viewer, str]:
    """Check ``given`` (a token typed into the form); the viewer and the cookie's value.
    Raises :class:`SignInError`."""
    client = client_of(request)
    wait = auth_limits.retry_after(state, client, given)
    if wait:
        raise SignInError("too many failed attempts: try again in a minute", 429, int(wait) + 1)
    config = state.session.project.config
    try:
        key = project_key(state.session.project)
    except ConfigError:
        raise SignInError(
            "the console needs a signing_key in personify.yml to sign its sessions", 503
        ) from None
    tokens = _configured(config)
    if not tokens:
        raise SignInError("this project has no admin token (admin_token in personify.yml)")
    grant = AdminTokens(tokens).check(given.strip())
    if grant is None:
        auth_limits.failed(state, client, given)
        raise SignInError("wrong token")
    if not grant.allows(SCOPE):
        raise SignInError(f"this token lacks the {SCOPE} scope", 403)
    secret = next(s for n, s, _ in tokens if n == grant.name and s == given.strip())
    expires = int(time.time()) + SESSION_SECONDS
    doc = {
        "n": grant.name,
        "f": _fingerprint(key, grant.name, secret),
        "e": expires,
        "s": _start(state.session.warehouse, grant.name, expires),
    }
    return Viewer(grant), seal(key, DOMAIN, doc)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)  # wall time: a session's life is not the pipeline's --now


def _start(wh: Warehouse, name: str, expires: int) -> str:
    """A new session of the token ``name`` until ``expires``; its id (the cookie's ``s``).
    Sessions past their expiry are deleted on the way (the table stays small)."""
    session_id = secrets.token_urlsafe(24)
    now = _now()
    with wh.transaction():
        wh.execute("DELETE FROM console_sessions WHERE expires_at < ?", [now])
        wh.execute(
            "INSERT INTO console_sessions (session_hash, token_name, started_at, expires_at, "
            "ended_at) VALUES (?, ?, ?, ?, NULL)",
            [_hash(session_id), name, now, datetime.fromtimestamp(expires, UTC)],
        )
    return session_id


def _live(wh: Warehouse, session_id: str, name: str) -> bool:
    """Whether the session ``session_id`` of the token ``name`` has not been ended."""
    row = wh.fetch(
        "SELECT token_name FROM console_sessions WHERE session_hash = ? AND ended_at IS NULL",
        [_hash(session_id)],
    )
    return bool(row) and row[0][0] == name


def _sealed(state: ServerState, request: Request) -> dict[str, Any] | None:
    """The cookie's document when it is signed by this project (expired or not)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        key = project_key(state.session.project)
    except ConfigError:
        return None
    return unseal(key, DOMAIN, cookie)


def sign_out(state: ServerState, request: Request) -> None:
    """End the session of ``request``'s cookie server-side (a copy of it no longer signs in);
    nothing when there is none. Idempotent."""
    doc = _sealed(state, request)
    session_id = doc.get("s") if doc is not None else None
    if isinstance(session_id, str):
        state.session.warehouse.execute(
            "UPDATE console_sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL",
            [_now(), _hash(session_id)],
        )


def end_sessions(wh: Warehouse, name: str) -> int:
    """End every live session of the token ``name`` (``personify console sign-out``); how many.
    Takes effect at the next page of each, in every ``serve`` process sharing ``wh``."""
    with wh.transaction():
        live = int(
            wh.scalar(
                "SELECT count(*) FROM console_sessions WHERE token_name = ? "
                "AND ended_at IS NULL AND expires_at > ?",
                [name, _now()],
            )
            or 0
        )
        wh.execute(
            "UPDATE console_sessions SET ended_at = ? WHERE token_name = ? AND ended_at IS NULL",
            [_now(), name],
        )
    return live


def viewer_of(state: ServerState, request: Request) -> Viewer | None:
    """The signed-in viewer of ``request``'s cookie; ``None`` when there is none, it is forged,
    expired, signed out (its session ended), or its token is no longer configured with the
    ``console`` scope. Reads the warehouse: call it from a worker thread."""
    doc = _sealed(state, request)
    if doc is None or not isinstance(doc.get("e"), int) or doc["e"] <= time.time():
        return None
    name, fingerprint, session_id = doc.get("n"), doc.get("f"), doc.get("s")
    if not isinstance(name, str) or not isinstance(fingerprint, str):
        return None
    if not isinstance(session_id, str):  # a cookie from before sessions were recorded
        return None
    key = project_key(state.session.project)
    found: Grant | None = None
    for token_name, secret, scopes in _configured(state.session.project.config):
        same = hmac.compare_digest(fingerprint, _fingerprint(key, token_name, secret))
        if same and token_name == name and found is None:
            found = Grant(token_name, frozenset(scopes))
    if found is None or not found.allows(SCOPE):
        return None
    if not _live(state.session.warehouse, session_id, name):
        return None
    return Viewer(found)


def cookie_header(request: Request, value: str, max_age: int = SESSION_SECONDS) -> str:
    """The ``Set-Cookie`` value: HttpOnly, SameSite=Strict, Path=/console, Secure over HTTPS."""
    secure = "; Secure" if _https(request) else ""
    return f"{COOKIE}={value}; Max-Age={max_age}; Path=/console; HttpOnly; SameSite=Strict{secure}"


def _https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def same_origin(request: Request) -> bool:
    """Whether a form post comes from this site: the browser's ``Sec-Fetch-Site`` says
    ``same-origin``, or (older browsers) its ``Origin`` (else ``Referer``) names this host. A post
    saying neither is refused (browsers send them on every form post)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc.lower() == host.lower() and parts.scheme in ("http", "https")
