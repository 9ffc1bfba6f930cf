"""The polite HTTP client of REST sources, destinations and source checks (httpx underneath).

A kernel module: it knows a ``RestClient`` configuration (``client:`` in ``personify.yml``),
its authentication (:mod:`.auth`) and its errors (:mod:`.errors`), and no stage.

* **A request budget**: a token bucket of ``requests_per_second``, holding one second's worth, so
  a source never calls an API faster than it is allowed to.
* **429**: wait what ``Retry-After`` says (seconds or an HTTP date; without one, the backoff
  below), then try again. A wait longer than ``backoff_max`` is not slept through: the sync stops
  with :class:`RestUnavailable` (and resumes from its saved state next time).
* **A deadline per request** (``request_deadline``, 300 s): httpx's ``timeout`` bounds each
  read, so a server trickling a byte every few seconds never times out; past its deadline a try
  is a timeout like any other (:mod:`.deadline`).
* **5xx, timeouts, connection errors**: jittered exponential backoff ("full jitter": a random
  wait up to ``backoff_base · 2^try``, at most ``backoff_max``), up to ``max_retries`` tries — or,
  when a 5xx (a 503) says ``Retry-After``, that wait, as for a 429.
* **Another host**: a next link or redirect to a host other than ``base_url``'s is refused
  (:class:`RestResponseError`) — it would carry the source's credentials there.
* **Other 4xx**: no retry — :class:`RestHttpError` naming the method, the URL (query parameters
  holding secrets masked), the status and what the API said.

Every request and retry is counted in :class:`CallStats` (shown in sync reports).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
import msgspec

from personify.config import RestClient
from personify.http.auth import make_auth, secret_params
from personify.http.deadline import Deadline, install
from personify.http.errors import RestHttpError, RestResponseError, RestUnavailable

log = logging.getLogger(__name__)

SECRETISH: Final = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "secret", "password", "signature", "sig"}
)
"""Query parameters always masked in messages."""
_RETRIED: Final = frozenset({429, 500, 502, 503, 504})


@dataclass
class CallStats:
    """What the client did."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    waited_seconds: float = 0.0


class TokenBucket:
    """``rate`` requests per second, bursts of ``burst``; :meth:`take` sleeps when empty."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.sleep = sleep
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token, sleeping until there is one; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def mask_url(url: str | httpx.URL, secret: frozenset[str] = frozenset()) -> str:
    """``url`` with the values of secret query parameters and any password replaced by ``***``."""
    u = httpx.URL(str(url))
    hidden = secret | SECRETISH
    params = [(k, "***" if k.lower() in hidden else v) for k, v in u.params.multi_items()]
    if params:
        u = u.copy_with(params=params)
    if u.password:
        u = u.copy_with(password="***")  # noqa: S106  (a mask, not a password)
    return str(u)


_LOGGED_SECRETS: frozenset[str] = frozenset()
"""Secret query parameters of every client made in this process (:class:`_MaskedUrls`):
replaced whole under :data:`_SECRETS_LOCK`, so a filter reading it never sees it change."""
_SECRETS_LOCK = threading.Lock()


def _remember_secrets(names: frozenset[str]) -> None:
    global _LOGGED_SECRETS
    with _SECRETS_LOCK:
        _LOGGED_SECRETS = _LOGGED_SECRETS | names


class _MaskedUrls(logging.Filter):
    """On httpx's own logger: its request lines (``HTTP Request: GET https://…?api_key=…``, at
    INFO) with secret query parameters masked, whatever handler an embedding application gives
    that logger — a filter on the logger runs before any handler's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) for a in record.args):
            hidden = _LOGGED_SECRETS
            record.args = tuple(
                mask_url(a, hidden) if isinstance(a, httpx.URL) else a for a in record.args
            )
        return True


if not any(isinstance(f, _MaskedUrls) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_MaskedUrls())


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """One source's API connection: base URL, auth, headers, budget, retries."""

    def __init__(
        self,
        config: RestClient,
        *,
        source: str,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        retry_if: Callable[[httpx.Response], bool] | None = None,
        before_send: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.before_send = before_send
        """Called before each request is sent (each retry too): raises to send nothing — a
        destination's push that lost its lock
        (:func:`personify.destinations.state.still_pushing`)."""
        self.retry_if = retry_if
        """Whether a 4xx answer is worth retrying all the same (Meta's rate limits come as 400s
        with an error code): retried like a 429."""
        self.source = source
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311  (jitter, not cryptography)
        self.stats = CallStats()
        self.bucket = TokenBucket(config.requests_per_second, sleep=sleep)
        self._secret = secret_params(config.auth)
        if not self._secret <= _LOGGED_SECRETS:
            _remember_secrets(self._secret)
        self.deadline = Deadline()
        self.auth = make_auth(config.auth, timeout=config.timeout, deadline=self.deadline)
        self.origin = httpx.URL(config.base_url) if config.base_url else None
        self.http = httpx.Client(
            base_url=config.base_url or "",
            headers={"User-Agent": "personify", "Accept": "application/json", **config.headers},
            timeout=config.timeout,
            follow_redirects=True,
            event_hooks={"request": [self._same_host]},  # each redirect too
        )
        if not install(self.http, self.deadline) and config.request_deadline is not None:
            log.warning("%s: this httpx cannot bound a request's total time", source)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _same_host(self, request: httpx.Request) -> None:
        """Refuse a request (a next link, a redirect) to a host other than ``base_url``'s: it
        would carry the source's credentials there (httpx drops only ``Authorization`` on a
        redirect, and a next link is a new request, authenticated). http → https on the same
        host is fine."""
        url, origin = request.url, self.origin
        if origin is None:
            origin = self.origin = url.copy_with(path="/", query=None, fragment=None)
        same = url.host == origin.host and (
            url.scheme == "https" if url.scheme != origin.scheme else url.port == origin.port
        )
        if not same:
            raise RestResponseError(
                f"{self.source}: refused to send the source's credentials to "
                f"{self.shown(url.copy_with(query=None))}, not the host of client.base_url "
                f"({origin.host})",
                hint="a next link or a redirect leads to another host; if that host is the "
                "API's, make it the client's base_url",
            )

    def shown(self, url: str | httpx.URL) -> str:
        return mask_url(url, self._secret)

    def get_json(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
    ) -> tuple[httpx.Response, Any]:
        """Send one request politely; return the response and its decoded JSON body."""
        response = self.send(method, url, params=params, json=json)
        try:
            body = msgspec.json.decode(response.content) if response.content else None
        except msgspec.DecodeError:
            raise RestResponseError(
                f"{self.source}: {method} {self.shown(response.url)} did not answer JSON "
                f"(content-type {response.headers.get('content-type', 'none')!r})"
            ) from None
        return response, body

    def send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request politely (``json``: a JSON body; ``data``: a form body)."""
        c = self.config
        attempt = 0
        while True:
            self.stats.waited_seconds += self.bucket.take()
            if self.before_send is not None:
                self.before_send()
            self.stats.requests += 1
            wait: float | None
            try:
                with self.deadline.within(c.request_deadline):
                    response = self.http.request(
                        method, url, params=params, json=json, data=data, auth=self.auth
                    )
            except httpx.TimeoutException:
                self.stats.timeouts += 1
                problem, wait = "timed out", None
                if self.deadline.missed():
                    problem = f"took longer than its request_deadline ({c.request_deadline:g} s)"
            except httpx.TransportError as e:
                problem, wait = f"could not be reached ({type(e).__name__})", None
            else:
                status = response.status_code
                if status < 400:
                    return response
                limited = self.retry_if is not None and status < 500 and self.retry_if(response)
                if status not in _RETRIED and not limited:
                    raise self._refused(method, response)
                if status == 429 or limited:
                    self.stats.rate_limited += 1
                else:
                    self.stats.server_errors += 1
                # a 503 may say when to come back too (RFC 9110 §10.2.3): not sooner
                wait = retry_after(response.headers.get("retry-after"))
                if wait is not None and wait > c.backoff_max:
                    said = (
                        "is rate limited"
                        if status == 429 or limited
                        else f"answered {status}, unavailable"
                    )
                    raise RestUnavailable(
                        f"{self.source}: {method} {self.shown(response.url)} {said} "
                        f"for {wait:.0f} s (over backoff_max {c.backoff_max:g} s)",
                        hint="the next sync resumes where this one stopped",
                    )
                problem = f"answered {status}"
                if limited:  # (a 400 only its body says is a rate limit: say what it said)
                    problem += f" (a rate limit: {_what_api_said(response)})"
            if attempt >= c.max_retries:
                raise RestUnavailable(
                    f"{self.source}: {method} {self.shown(self._url(url, params))} {problem} "
                    f"{attempt + 1} times",
                    hint="the API is failing; the next sync resumes where this one stopped",
                )
            if wait is None:
                wait = self.rng.uniform(0, min(c.backoff_max, c.backoff_base * 2**attempt))
            log.info(
                "%s: %s %s %s; retrying in %.2f s",
                self.source,
                method,
                self.shown(self._url(url, params)),
                problem,
                wait,
            )
            attempt += 1
            self.stats.retries += 1
            self.stats.waited_seconds += wait
            if wait > 0:
                self.sleep(wait)

    def _url(self, url: str, params: dict[str, Any] | None) -> httpx.URL:
        full = self.http.base_url.join(url) if self.config.base_url else httpx.URL(url)
        return full.copy_merge_params(params) if params else full

    def _refused(self, method: str, response: httpx.Response) -> RestHttpError:
        said = _what_api_said(response)
        status = response.status_code
        hint = {
            401: "check the source's auth (the token or key may be wrong or expired)",
            403: "the credentials lack a permission this endpoint needs",
            404: "check the endpoint path and client.base_url",
        }.get(status, "check the endpoint's params")
        return RestHttpError(
            f"{self.source}: {method} {self.shown(response.url)} answered {status}"
            + (f": {said}" if said else ""),
            status=status,
            url=self.shown(response.url),
            hint=hint,
            body=_json_of(response),
        )


def _json_of(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _what_api_said(response: httpx.Response) -> str:
    """The API's own error message, briefly (``message``/``error`` of a JSON body); an error
    object's type, code and trace id too (Meta's ``{"error": {"message", "type", "code",
    "error_subcode", "fbtrace_id"}}``, Google's ``{"error": {"code", "message", "status"}}``)."""
    body = _json_of(response)
    if isinstance(body, dict):
        for key in ("message", "error_description", "error", "errors", "detail"):
            value = body.get(key)
            if isinstance(value, dict):
                value = str(value.get("message", value))[:200] + _error_fields(value)
            if value:
                return str(value)[:300]
    return ""


def _error_fields(error: dict[str, Any]) -> str:
    """`` (OAuthException, code 190, subcode 463, fbtrace_id …)`` for an error object that says
    them; ``""`` otherwise."""
    parts = [str(error[k]) for k in ("type", "status") if isinstance(error.get(k), str)]
    for key, label in (("code", "code"), ("error_subcode", "subcode")):
        if isinstance(error.get(key), int):
            parts.append(f"{label} {error[key]}")
    if isinstance(error.get("fbtrace_id"), str):
        parts.append(f"fbtrace_id {error['fbtrace_id']}")
    return f" ({', '.join(parts)})" if parts else ""
