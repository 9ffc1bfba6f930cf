"""A fake of the Google Ads API's Customer Match upload (OfflineUserDataJobService, REST) and of
Google's OAuth token endpoint, served for real on loopback. It checks what Google checks — the
refresh-token grant, the bearer token it issued, ``developer-token``, the job's type, user list
and consent, each operation's ``create``/``remove`` with ``userIdentifiers`` of one hashed field
each (SHA-256 hex) or a whole ``addressInfo``, at most 100,000 operations a request — answers
in Google's shapes (partial failures naming ``operations[i]``, quota and concurrency errors),
and changes the list only when a job runs — and, given Google's users (``Ads.users``), who is
in it as Google matches: an operation adds (or removes) every user with any of its
identifiers."""

from __future__ import annotations

import itertools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.loopback import QuietHandler, serve

CLIENT_ID, CLIENT_SECRET, REFRESH = "cid.apps", "csecret", "1//refresh"
DEVELOPER = "dev-token"  # noqa: S105
CUSTOMER, LIST = "1234567890", "555"
VERSION = "v26"
SHA256 = re.compile("[0-9a-f]{64}")
FIELDS = {"hashedEmail", "hashedPhoneNumber"}
FAILURE = f"type.googleapis.com/google.ads.googleads.{VERSION}.errors.GoogleAdsFailure"


@dataclass
class Ads:
    members: set[str] = field(default_factory=set)
    """Hashed identifiers in the list (as of the last job run)."""
    jobs: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    """Each job's operations (create/remove, its hashes) until it runs."""
    ran: list[str] = field(default_factory=list)
    tokens: int = 0
    """Access tokens issued."""
    requests: list[tuple[str, int]] = field(default_factory=list)
    """(method name, operations) of each API request taken."""
    refuse: set[str] = field(default_factory=set)
    """Hashes whose operations are refused (a partial failure)."""
    quota_next: int = 0
    concurrent_next: int = 0
    fail_runs: int = 0
    login_customer: str | None = None
    users: dict[str, set[str]] = field(default_factory=dict)
    """Google's users (a name → their identifiers as the list holds them: a hash, or
    :func:`address_member`) to match operations against."""
    audience: set[str] = field(default_factory=set)
    """The users in the list as Google matches them: an operation adds (or removes) every user
    who has any one of its identifiers."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)


def _error(code: int, status: str, message: str, error_code: dict[str, str]) -> dict[str, Any]:
    failure = {
        "@type": FAILURE,
        "errors": [{"errorCode": error_code, "message": message}],
        "requestId": "rQ1d",
    }
    return {"error": {"code": code, "message": message, "status": status, "details": [failure]}}


ADDRESS = ("hashedFirstName", "hashedLastName", "countryCode", "postalCode")


def address_member(
    hashedFirstName: str,  # noqa: N803 (Google's field names)
    hashedLastName: str,  # noqa: N803
    countryCode: str,  # noqa: N803
    postalCode: str,  # noqa: N803
) -> str:
    """How the list holds a person matched by their postal address."""
    return f"address:{hashedFirstName}:{hashedLastName}:{countryCode}:{postalCode}"


def _address_ok(info: object) -> bool:
    """Google's check of an ``OfflineUserAddressInfo`` for Customer Match: all four fields,
    the names SHA-256 hex, the country two capital letters, a postal code."""
    if not isinstance(info, dict) or set(info) != set(ADDRESS):
        return False
    names = all(SHA256.fullmatch(str(info[k])) for k in ADDRESS[:2])
    return (
        names
        and bool(re.fullmatch("[A-Z]{2}", str(info["countryCode"])))
        and bool(str(info["postalCode"]).strip())
    )


class _Handler(QuietHandler):
    ads: Ads

    def do_POST(self) -> None:
        raw = self.body()
        if self.path == "/token":
            return self._token(raw)
        a = self.ads
        auth = self.headers.get("Authorization", "")
        if not re.fullmatch(r"Bearer ya29\.\d+", auth) or int(auth.rsplit(".", 1)[1]) > a.tokens:
            return self.answer(
                401,
                _error(
                    401,
                    "UNAUTHENTICATED",
                    "Invalid credentials",
                    {"authenticationError": "OAUTH_TOKEN_INVALID"},
                ),
            )
        if self.headers.get("developer-token") != DEVELOPER:
            return self.answer(
                401,
                _error(
                    401,
                    "UNAUTHENTICATED",
                    "developer token invalid",
                    {"authenticationError": "DEVELOPER_TOKEN_INVALID"},
                ),
            )
        if self.headers.get("login-customer-id") != a.login_customer:
            return self.answer(
                403,
                _error(
                    403,
                    "PERMISSION_DENIED",
                    "login-customer-id",
                    {"authorizationError": "USER_PERMISSION_DENIED"},
                ),
            )
        with a.lock:
            quota, concurrent = a.quota_next > 0, a.concurrent_next > 0
            a.quota_next -= quota
            a.concurrent_next -= concurrent and not quota
        if quota:
            return self.answer(
                429,
                _error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Too many requests",
                    {"quotaError": "RESOURCE_EXHAUSTED"},
                ),
            )
        if concurrent:
            return self.answer(
                409,
                _error(
                    409,
                    "ABORTED",
                    "Multiple requests were attempting to modify the same resource at once.",
                    {"databaseError": "CONCURRENT_MODIFICATION"},
                ),
            )
        try:
            body = json.loads(raw)
        except ValueError:
            return self.answer(
                400, _error(400, "INVALID_ARGUMENT", "not JSON", {"requestError": "INVALID_INPUT"})
            )
        base = f"/{VERSION}/customers/{CUSTOMER}/offlineUserDataJobs"
        if self.path == base + ":create":
            return self._create(body)
        match = re.fullmatch(re.escape(base) + r"/(\d+):(addOperations|run)", self.path)
        if match is None:
            return self.answer(
                404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}
            )
        name = f"customers/{CUSTOMER}/offlineUserDataJobs/{match.group(1)}"
        if name not in a.jobs or name in a.ran:
            return self.answer(
                400,
                _error(
                    400,
                    "INVALID_ARGUMENT",
                    "job is not open",
                    {"offlineUserDataJobError": "INVALID_JOB_STATUS"},
                ),
            )
        if match.group(2) == "run":
            return self._run(name)
        return self._add(name, body)

    def _token(self, raw: str) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        expected = {
            "grant_type": "refresh_token",
            "refresh_token": REFRESH,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
        if form != expected:
            return self.answer(400, {"error": "invalid_grant", "error_description": "Bad Request"})
        with self.ads.lock:
            self.ads.tokens += 1
            n = self.ads.tokens
        self.answer(200, {"access_token": f"ya29.{n}", "expires_in": 3599, "token_type": "Bearer"})

    def _create(self, body: dict[str, Any]) -> None:
        job = body.get("job") or {}
        meta = job.get("customerMatchUserListMetadata") or {}
        if (
            job.get("type") != "CUSTOMER_MATCH_USER_LIST"
            or meta.get("userList") != f"customers/{CUSTOMER}/userLists/{LIST}"
            or meta.get("consent") != {"adUserData": "GRANTED", "adPersonalization": "GRANTED"}
        ):
            return self.answer(
                400,
                _error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid user list or consent",
                    {"offlineUserDataJobError": "INVALID_USER_LIST_ID"},
                ),
            )
        with self.ads.lock:
            name = f"customers/{CUSTOMER}/offlineUserDataJobs/{next(self.ads.counter)}"
            self.ads.jobs[name] = []
            self.ads.requests.append(("create", 0))
        self.answer(200, {"resourceName": name})

    def _add(self, name: str, body: dict[str, Any]) -> None:
        operations = body.get("operations")
        if body.get("enablePartialFailure") is not True or not isinstance(operations, list):
            return self.answer(
                400,
                _error(400, "INVALID_ARGUMENT", "bad request", {"requestError": "INVALID_INPUT"}),
            )
        if len(operations) > 100_000:
            return self.answer(
                400,
                _error(
                    400,
                    "INVALID_ARGUMENT",
                    "Too many operations",
                    {"requestError": "TOO_MANY_OPERATIONS"},
                ),
            )
        failures: list[dict[str, Any]] = []
        taken: list[tuple[str, list[str]]] = []
        for i, op in enumerate(operations):
            (kind,) = op.keys()  # exactly one of create / remove
            assert kind in ("create", "remove"), kind
            ids = op[kind]["userIdentifiers"]
            hashes = []
            for identifier in ids:
                ((key, value),) = identifier.items()
                if key == "addressInfo":
                    if not _address_ok(value):
                        return self.answer(
                            400,
                            _error(
                                400,
                                "INVALID_ARGUMENT",
                                "addressInfo needs hashed first and last names, a country "
                                "code and a postal code",
                                {"offlineUserDataJobError": "INCOMPLETE_ADDRESS"},
                            ),
                        )
                    hashes.append(address_member(**value))
                    continue
                if key not in FIELDS or not SHA256.fullmatch(value):
                    return self.answer(
                        400,
                        _error(
                            400,
                            "INVALID_ARGUMENT",
                            f"{key} not hashed",
                            {"fieldError": "INVALID_VALUE"},
                        ),
                    )
                hashes.append(value)
            if self.ads.refuse & set(hashes):
                failures.append(
                    {
                        "errorCode": {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                        "message": f"The SHA256 encoded value is malformed: {hashes[0]}",
                        "location": {
                            "fieldPathElements": [
                                {"fieldName": "operations", "index": i},
                                {"fieldName": kind},
                                {"fieldName": "user_identifiers", "index": 0},
                            ]
                        },
                    }
                )
                continue
            taken.append((kind, hashes))
        with self.ads.lock:
            self.ads.jobs[name] += taken
            self.ads.requests.append(("addOperations", len(operations)))
        answer: dict[str, Any] = {}
        if failures:
            answer["partialFailureError"] = {
                "code": 3,
                "message": "Multiple errors in ‘details’.",
                "details": [
                    {
                        "@type": FAILURE,
                        "errors": failures,
                    }
                ],
            }
        self.answer(200, answer)

    def _run(self, name: str) -> None:
        a = self.ads
        with a.lock:
            if a.fail_runs:
                a.fail_runs -= 1
                failed = True
            else:
                failed = False
                for kind, hashes in a.jobs[name]:
                    matched = {user for user, ids in a.users.items() if ids & set(hashes)}
                    if kind == "create":
                        a.members |= set(hashes)
                        a.audience |= matched
                    else:
                        a.members -= set(hashes)
                        a.audience -= matched
                a.ran.append(name)
                a.requests.append(("run", 0))
        if failed:
            return self.answer(
                500,
                {
                    "error": {
                        "code": 500,
                        "message": "Internal error encountered.",
                        "status": "INTERNAL",
                    }
                },
            )
        self.answer(200, {"name": f"customers/{CUSTOMER}/operations/{name.rsplit('/', 1)[1]}"})


@contextmanager
def serve_ads(ads: Ads) -> Iterator[str]:
    """The fake, on a free loopback port, until the block ends; yields its base URL (the token
    endpoint is ``{base}/token``)."""
    with serve(type("Handler", (_Handler,), {"ads": ads})) as url:
        yield url
