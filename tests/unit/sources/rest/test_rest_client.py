"""The polite client against the real local mock APIs: budget, 429 + Retry-After, backoff on 5xx
and timeouts, clear 4xx errors without secrets, OAuth2 token refresh."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from personify.config import (
    ApiKeyAuth,
    BearerAuth,
    OAuth2ClientCredentials,
    RestClient,
    Secret,
)
from personify.demo.mock_apis import CLIENT_ID, CLIENT_SECRET, TOKEN, MockApis
from personify.http import HttpClient, TokenBucket, mask_url, retry_after
from personify.http.auth import OAuth2ClientCredentialsFlow
from personify.http.errors import RestHttpError, RestResponseError, RestUnavailable


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client(url: str, sleeps: Sleeps | None = None, **kw: object) -> HttpClient:
    config = RestClient(
        base_url=url,
        auth=kw.pop("auth", BearerAuth(token=Secret(TOKEN))),  # type: ignore[arg-type]
        requests_per_second=kw.pop("rps", 1000.0),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )
    return HttpClient(config, source="test", sleep=sleeps or Sleeps())


def test_429_waits_what_retry_after_says(apis: MockApis, api_url: str) -> None:
    apis.faults.rate_limit_every = 2
    apis.faults.retry_after = 3
    sleeps = Sleeps()
    with client(api_url, sleeps) as http:
        for _ in range(4):
            response, body = http.get_json("GET", "/generic/items", params={"limit": 5})
            assert response.status_code == 200
            assert len(body["items"]) == 5
    assert http.stats.rate_limited == 3  # requests 2, 4 and 6 of 7
    assert sleeps.calls == [3.0, 3.0, 3.0]


def test_retry_after_longer_than_the_backoff_limit_stops_the_sync(
    apis: MockApis, api_url: str
) -> None:
    apis.faults.rate_limit_every = 1
    apis.faults.retry_after = 120
    with client(api_url, backoff_max=30.0) as http, pytest.raises(RestUnavailable) as e:
        http.get_json("GET", "/generic/items")
    assert "rate limited for 120 s" in str(e.value)


def test_5xx_backs_off_with_jitter_then_succeeds(apis: MockApis, api_url: str) -> None:
    apis.faults.fail_next = 3
    sleeps = Sleeps()
    with client(api_url, sleeps, backoff_base=0.5, backoff_max=30.0) as http:
        response, _ = http.get_json("GET", "/generic/items")
    assert response.status_code == 200
    assert http.stats.server_errors == 3 and http.stats.retries == 3
    assert len(sleeps.calls) == 3
    for attempt, wait in enumerate(sleeps.calls):
        assert 0 <= wait <= 0.5 * 2**attempt


def test_503_waits_what_retry_after_says(apis: MockApis, api_url: str) -> None:
    """Not a random backoff of a fraction of a second, hammering an API that asked for time."""
    apis.faults.unavailable_next = 2
    apis.faults.retry_after = 7
    sleeps = Sleeps()
    with client(api_url, sleeps, backoff_base=0.01, backoff_max=30.0) as http:
        response, _ = http.get_json("GET", "/generic/items")
    assert response.status_code == 200
    assert sleeps.calls == [7.0, 7.0]
    apis.faults.unavailable_next = 1
    apis.faults.retry_after = 120
    with client(api_url, backoff_max=30.0) as http, pytest.raises(RestUnavailable) as e:
        http.get_json("GET", "/generic/items")
    assert "answered 503, unavailable for 120 s" in str(e.value)


def test_5xx_outlasting_the_retries_is_a_transient_error(apis: MockApis, api_url: str) -> None:
    apis.faults.fail_next = 100
    with client(api_url, max_retries=2) as http, pytest.raises(RestUnavailable) as e:
        http.get_json("GET", "/generic/items")
    assert "answered 500 3 times" in str(e.value)
    assert http.stats.requests == 3


def test_timeouts_are_retried(apis: MockApis, api_url: str) -> None:
    apis.faults.slow_next = 1
    apis.faults.slow_seconds = 1.0
    with client(api_url, timeout=0.2) as http:
        response, _ = http.get_json("GET", "/generic/items")
    assert response.status_code == 200
    assert http.stats.timeouts == 1


def test_4xx_is_a_clear_error_without_the_secret(apis: MockApis, api_url: str) -> None:
    auth = ApiKeyAuth(api_key=Secret("wrong-key"), name="api_key", location="query")
    with client(api_url, auth=auth) as http, pytest.raises(RestHttpError) as e:
        http.get_json("GET", "/generic/items", params={"limit": 3})
    message = str(e.value)
    assert e.value.status == 401
    assert "/generic/items" in message and "answered 401" in message
    assert "invalid credentials" in message
    assert "wrong-key" not in message and "api_key=%2A%2A%2A" in message
    assert http.stats.requests == 1  # no retry


@pytest.mark.parametrize("auth", ["bearer", "header"])
def test_credentials_are_never_sent_to_another_host(
    apis: MockApis, api_url: str, auth: str
) -> None:
    """A next link (or a redirect) to another host would carry the source's credentials there:
    httpx drops only Authorization on a redirect, and a next link is a request of its own."""
    elsewhere = api_url.replace("127.0.0.1", "localhost")  # the same server, another host
    key = (
        BearerAuth(token=Secret(TOKEN))
        if auth == "bearer"
        else ApiKeyAuth(api_key=Secret(TOKEN), name="X-Api-Key")
    )
    with client(api_url, auth=key) as http:
        with pytest.raises(RestResponseError, match="refused to send the source's credentials"):
            http.get_json("GET", f"{elsewhere}/generic/linked")  # a next link
        assert apis.data_requests() == 0
        with pytest.raises(RestResponseError, match=r"to http://localhost:\d+/generic/items,"):
            http.get_json("GET", "/generic/moved", params={"to": f"{elsewhere}/generic/items"})
        assert apis.data_requests() == 1  # the redirect, not where it led
        if auth == "bearer":  # (the mock takes no X-Api-Key)
            response, _ = http.get_json("GET", f"{api_url}/generic/linked")  # its own host
            assert response.status_code == 200


def test_api_key_in_the_query_works(api_url: str) -> None:
    auth = ApiKeyAuth(api_key=Secret(TOKEN), name="api_key", location="query")
    with client(api_url, auth=auth) as http:
        response, _ = http.get_json("GET", "/generic/items")
    assert response.status_code == 200


def test_oauth2_client_credentials_refreshes_a_revoked_token(apis: MockApis, api_url: str) -> None:
    auth = OAuth2ClientCredentials(
        access_token_url=f"{api_url}/oauth/token",
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
    )
    with client(api_url, auth=auth) as http:
        http.get_json("GET", "/generic/items")
        http.get_json("GET", "/generic/items")
        flow = http.auth
        assert isinstance(flow, OAuth2ClientCredentialsFlow)
        assert flow.fetched == 1  # cached
        apis.revoke_tokens()
        response, _ = http.get_json("GET", "/generic/items")
        assert response.status_code == 200
        assert flow.fetched == 2


def test_oauth2_token_expiring_soon_is_replaced(apis: MockApis, api_url: str) -> None:
    apis.token_ttl = 10  # inside the 30 s margin: every call fetches a fresh one
    auth = OAuth2ClientCredentials(
        access_token_url=f"{api_url}/oauth/token",
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
    )
    with client(api_url, auth=auth) as http:
        http.get_json("GET", "/generic/items")
        http.get_json("GET", "/generic/items")
        assert isinstance(http.auth, OAuth2ClientCredentialsFlow)
        assert http.auth.fetched == 2


def test_oauth2_bad_client_is_a_clear_error(api_url: str) -> None:
    auth = OAuth2ClientCredentials(
        access_token_url=f"{api_url}/oauth/token",
        client_id=Secret(CLIENT_ID),
        client_secret=Secret("nope"),
    )
    with client(api_url, auth=auth) as http, pytest.raises(RestHttpError) as e:
        http.get_json("GET", "/generic/items")
    assert "token endpoint" in str(e.value) and "nope" not in str(e.value)


def test_the_request_budget_spaces_requests() -> None:
    sleeps = Sleeps()
    bucket = TokenBucket(10.0, sleep=sleeps)
    for _ in range(15):
        bucket.take()
    # ten at once (one second's burst), then one every 0.1 s: the 15th is due 0.5 s after start
    assert len(sleeps.calls) == 5
    assert sleeps.calls[-1] == pytest.approx(0.5, abs=0.05)


def test_the_budget_holds_against_a_real_api(apis: MockApis, api_url: str) -> None:
    apis.faults.requests_per_second = 20
    with client(api_url, rps=5.0) as http:
        http.bucket.sleep = time.sleep
        for _ in range(8):
            http.get_json("GET", "/generic/items")
    assert http.stats.rate_limited == 0


def test_retry_after_accepts_seconds_and_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_mask_url_hides_secrets() -> None:
    shown = mask_url("https://u:pw@api.example/x?token=abc&page=2&k=v", frozenset({"k"}))
    assert "abc" not in shown and "pw" not in shown and "page=2" in shown and "k=%2A%2A%2A" in shown


def test_httpx_request_lines_mask_a_query_key(
    apis: MockApis, api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs every request URL at INFO: a key sent as a query parameter is masked there
    by a filter on httpx's own logger, whatever handler records it (here pytest's)."""
    auth = ApiKeyAuth(name="crm_key", location="query", api_key=Secret("sekrit-ABC123"))
    with (
        caplog.at_level(logging.INFO, logger="httpx"),
        client(api_url, auth=auth) as http,
        pytest.raises(RestHttpError),  # (the mock wants its key as api_key: a 401, logged too)
    ):
        http.get_json("GET", "/generic/items", params={"limit": 5})
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert lines and all("sekrit" not in line for line in lines)
    assert any("crm_key=%2A%2A%2A" in line or "crm_key=***" in line for line in lines)


class Trickle:
    """A loopback HTTP server that answers every request one byte every ``every`` seconds —
    its headers too (``headers=True``) or only its body: never slower than a read timeout."""

    def __init__(self, *, headers: bool, every: float = 0.2) -> None:
        self.headers, self.every = headers, every
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        body = b'{"items": [' + b" " * 10_000 + b"]}"
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        with conn:
            conn.recv(65536)
            self.requests += 1
            if not self.headers:
                conn.sendall(head.encode())
            for byte in (head.encode() if self.headers else b"") + body:
                if self.stop.wait(self.every):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:  # the client gave up: good
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "body"])
def test_a_trickling_server_meets_the_request_deadline(headers: bool) -> None:
    """httpx's timeout is per read: a byte every 0.2 s never trips a 1 s timeout. The request's
    deadline does — like a timeout: retried, then the sync stops with a clear error."""
    server = Trickle(headers=headers)
    sleeps = Sleeps()
    started = time.monotonic()
    try:
        with (
            client(server.url, sleeps, timeout=1.0, request_deadline=1.0, max_retries=1) as http,
            pytest.raises(RestUnavailable) as e,
        ):
            http.get_json("GET", "/items")
    finally:
        server.close()
    assert time.monotonic() - started < 6
    assert "took longer than its request_deadline (1 s) 2 times" in str(e.value)
    assert http.stats.timeouts == 2 and http.stats.retries == 1 and len(sleeps.calls) == 1
    assert server.requests == 2


def test_a_trickling_token_endpoint_meets_the_request_deadline(api_url: str) -> None:
    """The OAuth2 token is fetched inside the request it authenticates: within its deadline."""
    server = Trickle(headers=False)
    auth = OAuth2ClientCredentials(
        access_token_url=f"{server.url}/oauth/token",
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
    )
    started = time.monotonic()
    try:
        with (
            client(api_url, auth=auth, timeout=1.0, request_deadline=1.0) as http,
            pytest.raises(RestUnavailable) as e,
        ):
            http.get_json("GET", "/generic/items")
    finally:
        server.close()
    assert time.monotonic() - started < 5
    assert "token endpoint" in str(e.value) and "ReadTimeout" in str(e.value)
