"""The console's sign-in: an admin token typed once into a form becomes a session cookie.

A browser cannot send ``Authorization: Bearer …`` when it follows a link, so ``POST
/console/login`` checks the token like the API does (:class:`~personify.privacy.access.AdminTokens`,
constant time, the same limit on failed attempts per address) and answers with a cookie:

* its value is a :mod:`personify.signed` token for the domain ``console-session`` under the
  project's ``signing_key``, carrying the token's *name*, an HMAC fingerprint of the token (never
  the token) and an expiry (:data:`SESSION_SECONDS`);
* ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends it),
  ``Path=/console``, ``Secure`` when the request came over HTTPS.

Every page re-checks the cookie against the tokens the server has loaded: a token removed,
changed or stripped of its ``console`` scope (and the server restarted to read the file) ends its
sessions; sessions outlive a restart otherwise (same ``signing_key``). Form posts (sign-in,
sign-out) are refused unless ``Sec-Fetch-Site`` (or ``Origin``) says they come from the console
itself (CSRF); pages are GETs that change nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request

from personify.config import ProjectConfig
from personify.errors import ConfigError
from personify.privacy.access import AdminTokens, FailureLimiter, Grant
from personify.privacy.hashing import project_key
from personify.server.state import ServerState
from personify.signed import b64, seal, unseal

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


def _configured(config: ProjectConfig) -> list[tuple[str, str, tuple[str, ...]]]:
    out: list[tuple[str, str, tuple[str, ...]]] = [
        ("admin", config.admin_token.reveal() if config.admin_token else "", ("admin",))
    ]
    out += [(t.name, t.token.reveal(), tuple(t.scopes)) for t in config.admin_tokens]
    return [(name, secret, scopes) for name, secret, scopes in out if secret]


def _fingerprint(key: bytes, name: str, secret: str) -> str:
    message = f"console-token\0{name}\0{secret}".encode()
    return b64(hmac.digest(key, message, hashlib.sha256)[:16])


def limiter(state: ServerState) -> FailureLimiter:
    """The failed-attempt limiter the API's admin routes use too (one budget per address)."""
    found: FailureLimiter = state.extras.setdefault("privacy.auth_failures", FailureLimiter())
    return found


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
    limits, client = limiter(state), client_of(request)
    wait = limits.retry_after(client)
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
        limits.failed(client)
        raise SignInError("wrong token")
    if not grant.allows(SCOPE):
        raise SignInError(f"this token lacks the {SCOPE} scope", 403)
    secret = next(s for n, s, _ in tokens if n == grant.name and s == given.strip())
    doc = {
        "n": grant.name,
        "f": _fingerprint(key, grant.name, secret),
        "e": int(time.time()) + SESSION_SECONDS,
    }
    return Viewer(grant), seal(key, DOMAIN, doc)


def viewer_of(state: ServerState, request: Request) -> Viewer | None:
    """The signed-in viewer of ``request``'s cookie; ``None`` when there is none, it is forged,
    expired, or its token is no longer configured with the ``console`` scope."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        key = project_key(state.session.project)
    except ConfigError:
        return None
    doc = unseal(key, DOMAIN, cookie)
    if doc is None or not isinstance(doc.get("e"), int) or doc["e"] <= time.time():
        return None
    name, fingerprint = doc.get("n"), doc.get("f")
    if not isinstance(name, str) or not isinstance(fingerprint, str):
        return None
    found: Grant | None = None
    for token_name, secret, scopes in _configured(state.session.project.config):
        same = hmac.compare_digest(fingerprint, _fingerprint(key, token_name, secret))
        if same and token_name == name and found is None:
            found = Grant(token_name, frozenset(scopes))
    if found is None or not found.allows(SCOPE):
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
