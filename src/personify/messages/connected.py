"""Connected content: JSON fetched from an HTTP API at send time — timeout, cache, fallback.

A template names its sources in front matter, one mapping or a list::

    connected:
      - name: weather                       # the variable the template sees
        url: "https://api.example/w/{{ customer.city | url_encode }}"   # Liquid, not escaped
        timeout: 2s                         # per request (default 2s)
        ttl: 10m                            # how long an answer is reused (default 10m; 0: never)
        fallback: {}                        # used when the API fails

The URL is rendered with the email's context (strict: an undefined variable fails the message).
An answer is any JSON document from a 2xx response (at most 1 MB). A failure — timeout, refused
connection, non-2xx status, not JSON — gives ``fallback``; without one, the message fails with
the reason (never sent with a hole). Answers are cached by URL for ``ttl``; a failure is
remembered for at most a minute, so a dead API costs one timeout per URL, not one per email.
A batch fetches its distinct URLs concurrently before rendering. Logs name the source and the
host, never the URL (it may carry personal data).

A template author must not be able to make the sender reach its own network (SSRF): every host,
and every redirect hop (followed by hand, at most :data:`MAX_REDIRECTS`), must resolve only to
public addresses — loopback, private, link-local (cloud metadata), multicast and reserved ones
are refused unless ``email.connected_allow`` lists the network (``127.0.0.1/32``) or the host
name (:class:`AddressPolicy`). A host that resolves differently between the check and the
connection (DNS rebinding) is not covered; keep internal services off names a template can
reach.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError

from personify.config import duration_seconds
from personify.messages.errors import RenderError
from personify.messages.liquid_env import translate

log = logging.getLogger(__name__)

MAX_BYTES = 1_000_000
FAILURE_TTL = 60.0
MAX_REDIRECTS = 5
_MISSING = object()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses connected content may reach: public ones, plus what is allowed."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, allowed: Iterable[str]) -> AddressPolicy:
        """From ``email.connected_allow``: CIDR networks or addresses, and host names."""
        networks: list[Network] = []
        hosts: set[str] = set()
        for item in allowed:
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                hosts.add(item.strip().lower().rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def check(self, source: str, url: str) -> None:
        """Raise ConnectedError unless every address ``url``'s host resolves to may be reached."""
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        if not host:
            raise ConnectedError(f"{source}: the URL names no host")
        if host in self.hosts:
            return
        try:
            port = urlsplit(url).port
            infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, ValueError, UnicodeError):
            raise ConnectedError(f"{source}: {host} does not resolve", transient=True) from None
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            if address.is_global and not address.is_multicast:
                continue
            if any(address in network for network in self.networks):
                continue
            raise ConnectedError(
                f"{source}: {host} resolves to a non-public address ({address}); "
                "list it under email.connected_allow to reach it"
            )


PUBLIC_ONLY = AddressPolicy()
"""The default: public addresses only."""


@dataclass(frozen=True)
class Connected:
    """One connected-content source of a template."""

    name: str
    url: BoundTemplate
    timeout: float = 2.0
    ttl: float = 600.0
    fallback: Any = _MISSING

    @property
    def has_fallback(self) -> bool:
        return self.fallback is not _MISSING


class ConnectedError(Exception):
    """A source gave no usable answer (the reason names no personal data). ``transient``: it
    may answer later (a timeout, a dropped connection, a name that did not resolve, a 5xx or
    429), not a wrong answer (another status, not JSON, too large, a refused address)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ConnectedUnavailable(RenderError):
    """A source without a fallback is down for now: the email waits for it (a journey's message
    stays queued and is tried again later) instead of failing."""


def parse_connected(
    meta: Mapping[str, Any], template: str, env: Environment
) -> tuple[Connected, ...]:
    """The ``connected:`` front matter of ``template``. Raises RenderError naming the key."""
    raw = meta.get("connected")
    if raw is None:
        return ()
    entries = [raw] if isinstance(raw, Mapping) else raw
    if not isinstance(entries, list):
        raise RenderError("connected: must be a mapping or a list of them", template=template)
    out: list[Connected] = []
    for i, entry in enumerate(entries):
        where = f"connected[{i}]"
        if not isinstance(entry, Mapping):
            raise RenderError(f"{where} must be a mapping", template=template)
        unknown = set(entry) - {"name", "url", "timeout", "ttl", "fallback"}
        if unknown:
            raise RenderError(f"{where}: unknown keys {sorted(unknown)}", template=template)
        name, url = entry.get("name"), entry.get("url")
        if not isinstance(name, str) or not name.isidentifier():
            raise RenderError(f"{where}.name must be a variable name", template=template)
        if not isinstance(url, str) or not url.strip():
            raise RenderError(f"{where}.url is required", template=template)
        try:
            timeout = duration_seconds(entry.get("timeout", "2s"))
            ttl = duration_seconds(entry.get("ttl", "10m"))
        except ValueError as e:
            raise RenderError(f"{where}: {e}", template=template) from None
        if timeout <= 0:
            raise RenderError(f"{where}.timeout must be positive", template=template)
        try:
            parsed = env.from_string(url, name=f"{template} {where}.url")
        except LiquidError as e:
            raise translate(e, f"{template} {where}.url") from None
        out.append(Connected(name, parsed, timeout, ttl, entry.get("fallback", _MISSING)))
    return tuple(out)


class ConnectedCache:
    """Answers by URL, each until its ``ttl`` runs out (thread-safe); shares one HTTP client."""

    def __init__(self, client: httpx.Client | None = None) -> None:
        self._client = client
        self._answers: dict[
            tuple[str, AddressPolicy], tuple[float, Any, ConnectedError | None]
        ] = {}
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:  # redirects are followed by hand, each hop checked
                self._client = httpx.Client(follow_redirects=False)
            return self._client

    def get(self, source: Connected, url: str, policy: AddressPolicy = PUBLIC_ONLY) -> Any:
        """The JSON answer for ``url``. Raises ConnectedError (remembered for a short while)."""
        now = time.monotonic()
        key = (url, policy)
        with self._lock:
            hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            if hit[2] is not None:
                raise ConnectedError(str(hit[2]), transient=hit[2].transient)
            return hit[1]
        try:
            value = self._fetch(source, url, policy)
        except ConnectedError as e:
            with self._lock:
                self._answers[key] = (now + min(source.ttl, FAILURE_TTL), None, e)
            raise
        if source.ttl > 0:
            with self._lock:
                self._answers[key] = (now + source.ttl, value, None)
        return value

    def _fetch(self, source: Connected, url: str, policy: AddressPolicy) -> Any:
        started = time.monotonic()
        for _ in range(MAX_REDIRECTS + 1):
            host = urlsplit(url).hostname or "?"
            policy.check(source.name, url)
            left = source.timeout - (time.monotonic() - started)
            if left <= 0:
                raise ConnectedError(
                    f"{source.name}: {host} did not answer in time", transient=True
                )
            try:
                response = self._http().get(url, timeout=left)
            except httpx.TimeoutException:
                raise ConnectedError(
                    f"{source.name}: {host} did not answer in time", transient=True
                ) from None
            except httpx.HTTPError as e:
                raise ConnectedError(
                    f"{source.name}: {host} failed ({type(e).__name__})", transient=True
                ) from None
            if not response.is_redirect:
                break
            target = response.headers.get("location", "")
            url = str(response.url.join(target))
            if urlsplit(url).scheme not in ("http", "https"):
                raise ConnectedError(f"{source.name}: {host} redirected to a non-http(s) URL")
        else:
            raise ConnectedError(f"{source.name}: more than {MAX_REDIRECTS} redirects")
        if not response.is_success:
            status = response.status_code
            raise ConnectedError(
                f"{source.name}: {host} answered {status}", transient=status >= 500 or status == 429
            )
        if len(response.content) > MAX_BYTES:
            raise ConnectedError(f"{source.name}: {host} answered more than {MAX_BYTES} bytes")
        try:
            return response.json()
        except ValueError:
            raise ConnectedError(f"{source.name}: {host} did not answer JSON") from None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
            self._client = None
            self._answers.clear()


DEFAULT_CACHE = ConnectedCache()


def _url(source: Connected, context: Mapping[str, Any], template: str) -> str:
    try:
        url = source.url.render(**context).strip()
    except LiquidError as e:
        raise translate(e, f"{template} connected {source.name}.url") from None
    if urlsplit(url).scheme not in ("http", "https"):
        raise RenderError(f"connected {source.name}: not an http(s) URL", template=template)
    return url


def resolve(
    sources: Iterable[Connected],
    context: Mapping[str, Any],
    template: str,
    cache: ConnectedCache = DEFAULT_CACHE,
    policy: AddressPolicy = PUBLIC_ONLY,
) -> dict[str, Any]:
    """Each source's answer (or fallback) by name, for one email. Raises RenderError when a
    source without a fallback fails."""
    out: dict[str, Any] = {}
    for source in sources:
        url = _url(source, context, template)
        try:
            out[source.name] = cache.get(source, url, policy)
        except ConnectedError as e:
            if not source.has_fallback:
                raise (ConnectedUnavailable if e.transient else RenderError)(
                    f"connected content {e}",
                    template=template,
                    hint="give the source a fallback: to send without it",
                ) from None
            log.info("connected content %s; using its fallback", e)
            out[source.name] = source.fallback
    return out


def prefetch(
    sources: Iterable[Connected],
    contexts: Iterable[Mapping[str, Any]],
    template: str,
    cache: ConnectedCache = DEFAULT_CACHE,
    workers: int = 8,
    policy: AddressPolicy = PUBLIC_ONLY,
) -> None:
    """Fetch the distinct URLs of a batch concurrently, so each email then reads the cache.
    Errors are left for :func:`resolve` to report per email."""
    wanted: dict[str, Connected] = {}
    every = list(contexts)
    for source in sources:
        for context in every:
            try:
                wanted.setdefault(_url(source, context, template), source)
            except RenderError:
                continue
    if len(wanted) < 2:
        return

    def one(item: tuple[str, Connected]) -> None:
        try:
            cache.get(item[1], item[0], policy)
        except ConnectedError:
            pass

    with ThreadPoolExecutor(max_workers=min(workers, len(wanted))) as pool:
        list(pool.map(one, wanted.items()))
