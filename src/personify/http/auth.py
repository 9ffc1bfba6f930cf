"""Authentication of REST sources and destinations as ``httpx.Auth`` flows.

``bearer`` (``Authorization: Bearer``), ``api_key`` (a header or a query parameter),
``http_basic``, ``oauth2_client_credentials`` and ``oauth2_refresh_token`` (Google's APIs): the
token is fetched from the token endpoint on first use, kept
until shortly before it expires, and fetched again then — or at once when the API answers 401
(revoked early), after which the request is sent again, once.

:func:`secret_params` names the query parameters that hold secrets, so error messages can show
URLs without them (:func:`personify.http.mask_url`).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Generator

import httpx

from personify.config import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
)
from personify.http.deadline import Deadline, install
from personify.http.errors import RestHttpError, RestUnavailable

EXPIRY_MARGIN = 30.0
"""Seconds before its expiry a token is replaced (a request in flight must not carry a dead
one)."""


class _Header(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.name] = self.value
        yield request


class _Query(httpx.Auth):
    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.url = request.url.copy_set_param(self.name, self.value)
        yield request


class OAuth2ClientCredentialsFlow(httpx.Auth):
    """The client credentials grant, with the token cached and refreshed (thread-safe)."""

    requires_response_body = True

    def __init__(
        self,
        config: OAuth2ClientCredentials | OAuth2RefreshToken,
        *,
        timeout: float = 30.0,
        deadline: Deadline | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.deadline = deadline
        """The deadline of the request being authenticated, the token's fetch included."""
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()
        self.fetched = 0
        """How many tokens were fetched (for reports and tests)."""

    def _grant(self) -> tuple[dict[str, str], dict[str, str]]:
        """The token request's form and headers."""
        c = self.config
        assert isinstance(c, OAuth2ClientCredentials)
        data = {"grant_type": "client_credentials", **c.access_token_request_data}
        if c.scope:
            data["scope"] = c.scope
        pair = f"{c.client_id.reveal()}:{c.client_secret.reveal()}".encode()
        return data, {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    def _fetch(self) -> str:
        c = self.config
        data, headers = self._grant()
        try:
            with httpx.Client(timeout=self.timeout) as http:
                if self.deadline is not None:
                    install(http, self.deadline)
                r = http.post(c.access_token_url, data=data, headers=headers)
        except httpx.HTTPError as e:
            raise RestUnavailable(
                f"the token endpoint {c.access_token_url} cannot be reached ({type(e).__name__})"
            ) from None
        if r.status_code >= 400:
            raise RestHttpError(
                f"the token endpoint {c.access_token_url} answered {r.status_code}",
                status=r.status_code,
                url=c.access_token_url,
                hint="check client_id, client_secret and scope",
            )
        try:
            body = r.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise RestHttpError(
                f"the token endpoint {c.access_token_url} gave no access_token",
                status=r.status_code,
                url=c.access_token_url,
            ) from None
        lifetime = float(body.get("expires_in") or c.default_token_expiration)
        self._token, self._expires = token, time.monotonic() + lifetime
        self.fetched += 1
        return token

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() > self._expires - EXPIRY_MARGIN:
                return self._fetch()
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent = self.token()
        request.headers["Authorization"] = f"Bearer {sent}"
        response = yield request
        if response.status_code == 401:
            with self._lock:
                stale = self._token == sent
            renewed = self.token(renew=stale) if stale else self.token()
            request.headers["Authorization"] = f"Bearer {renewed}"
            yield request


class OAuth2RefreshTokenFlow(OAuth2ClientCredentialsFlow):
    """The refresh token grant (Google's token endpoint): the client's id and secret in the
    form, as Google's documentation shows; the token cached and refreshed as above."""

    def _grant(self) -> tuple[dict[str, str], dict[str, str]]:
        c = self.config
        assert isinstance(c, OAuth2RefreshToken)
        return {
            "grant_type": "refresh_token",
            "refresh_token": c.refresh_token.reveal(),
            "client_id": c.client_id.reveal(),
            "client_secret": c.client_secret.reveal(),
        }, {}


def make_auth(
    auth: Auth | None, *, timeout: float = 30.0, deadline: Deadline | None = None
) -> httpx.Auth | None:
    """The ``httpx.Auth`` for a source's ``auth:`` (``None``: no authentication)."""
    if auth is None:
        return None
    if isinstance(auth, BearerAuth):
        return _Header("Authorization", f"Bearer {auth.token.reveal()}")
    if isinstance(auth, ApiKeyAuth):
        if auth.location == "query":
            return _Query(auth.name, auth.api_key.reveal())
        return _Header(auth.name, auth.api_key.reveal())
    if isinstance(auth, BasicAuth):
        return httpx.BasicAuth(auth.username.reveal(), auth.password.reveal())
    if isinstance(auth, OAuth2RefreshToken):
        return OAuth2RefreshTokenFlow(auth, timeout=timeout, deadline=deadline)
    return OAuth2ClientCredentialsFlow(auth, timeout=timeout, deadline=deadline)


def secret_params(auth: Auth | None) -> frozenset[str]:
    """Query parameters holding a secret of ``auth`` (masked in messages)."""
    if isinstance(auth, ApiKeyAuth) and auth.location == "query":
        return frozenset({auth.name.lower()})
    return frozenset()
