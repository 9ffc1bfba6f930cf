"""The marketer console (``/console``) in-process, on DuckDB and PostgreSQL: sign-in with a
``console`` token and its session cookie (HttpOnly, SameSite=Strict, signed, expiring, checked
against the current tokens), CSRF on the forms, 401 without a session, every value escaped (a
customer named ``<script>``), personal data masked without ``profiles:read``, profile views and
previews audited, and the security headers of every page."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from tests.unit.admin_api import AdminApi

from personify.profiles import resolve_customer
from personify.server.app import create_app
from personify.server.auth_limits import PREFIX_FAILURES
from personify.server.console import auth
from personify.session import Session
from personify.signed import seal

CRM = (
    "id,email,first_name,last_name,updated_at\n"
    'c1,ann@example.org,"<script>alert(1)</script>",Lee,2026-01-01T00:00:00Z\n'
    "c2,bob@example.org,Bob,Ray,2026-01-02T00:00:00Z\n"
)
TOKENS = (
    "admin_tokens:\n"
    "  - name: marketer\n    token: ${MARKETER_TOKEN}\n    scopes: [console]\n"
    "  - name: lead\n    token: ${LEAD_TOKEN}\n    scopes: [console, profiles:read]\n"
    "  - name: support\n    token: ${SUPPORT_TOKEN}\n    scopes: [profiles:read]\n"
    "  - name: dpo\n    token: ${DPO_TOKEN}\n    scopes: [console, privacy]\n"
    "  - name: helpdesk\n    token: ${HELPDESK_TOKEN}\n    scopes: [console, privacy:masked]\n"
)
ENV = {
    "MARKETER_TOKEN": "marketer-token-1-Qx7pL2vR9s",
    "LEAD_TOKEN": "lead-token-2-Hj4kW8mN3bZt",
    "SUPPORT_TOKEN": "support-token-3-Fd6yT1cV5g",
    "DPO_TOKEN": "dpo-token-4-Rb2nM7xK4wQe",
    "HELPDESK_TOKEN": "helpdesk-token-5-Zs9vJ3pL8h",
}
ORIGIN = {"origin": "http://testserver"}


@pytest.fixture
def api(admin_api: Callable[..., AdminApi], project_dir: Path, warehouse_url: str) -> AdminApi:
    yml = project_dir / "personify.yml"
    yml.write_text(
        yml.read_text().replace(
            "warehouse: duckdb:///warehouse.duckdb", f"warehouse: {warehouse_url}"
        )
    )
    (project_dir / "segments" / "everyone.sql").write_text(
        "-- name: everyone\n-- description: Every <b>customer</b>\n"
        "SELECT customer_id, email, first_name FROM customers\n"
    )
    (project_dir / "templates" / "hello.liquid").write_text(
        "---\nsubject: Hello {{ customer.first_name }}\n---\n"
        '<p style="color: red">Hello {{ customer.first_name }}</p>\n'
    )
    return admin_api(CRM, TOKENS, ENV)


class Browser:
    """An in-process client of the app that keeps its cookies between requests."""

    def __init__(self, app: Starlette, address: str = "127.0.0.1") -> None:
        self.app = app
        self.address = address
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.address, 50000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", cookies=self.cookies
            ) as c:
                answer = await c.request(method, path, **kwargs)
                self.cookies = httpx.Cookies(c.cookies)
                return answer

        return asyncio.run(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def client(api: AdminApi) -> Browser:
    return Browser(create_app(api.session, instance="inst-1"))


def sign_in(client: Browser, token: str) -> None:
    answer = client.post("/console/login", data={"token": token}, headers=ORIGIN)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console"


def audit(session: Session) -> list[tuple[str, str]]:
    return [
        (str(a), str(b))
        for a, b in session.warehouse.fetch("SELECT action, actor FROM audit_log ORDER BY seq")
    ]


def test_pages_need_a_session(client: Browser) -> None:
    for path in ("/console", "/console/segments", "/console/profiles/c1", "/console/preview"):
        answer = client.get(path)
        assert answer.status_code == 401
        assert "Sign in" in answer.text and 'name="token"' in answer.text
        assert "Lee" not in answer.text


def test_sign_in_sets_a_strict_http_only_expiring_cookie(client: Browser) -> None:
    answer = client.post("/console/login", data={"token": ENV["LEAD_TOKEN"]}, headers=ORIGIN)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{auth.COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"):
        assert attribute in cookie
    assert ENV["LEAD_TOKEN"] not in cookie
    page = client.get("/console")
    assert page.status_code == 200 and "lead" in page.text
    # sign out: the cookie is cleared, the pages ask again
    out = client.post("/console/logout", headers=ORIGIN)
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/console").status_code == 401


def test_sign_out_ends_the_session_server_side(api: AdminApi, client: Browser) -> None:
    """A copy of the cookie taken before "Sign out" no longer signs in — on this server and on
    another one sharing the warehouse (its own process state); signing out twice is harmless."""
    sign_in(client, ENV["LEAD_TOKEN"])
    copied = client.cookies.get(auth.COOKIE)
    assert copied is not None
    other = Browser(create_app(api.session, instance="inst-2"))  # a second `serve`
    other.cookies.set(auth.COOKIE, copied)
    assert other.get("/console").status_code == 200
    assert client.post("/console/logout", headers=ORIGIN).status_code == 200
    replayed = Browser(client.app)
    replayed.cookies.set(auth.COOKIE, copied)
    assert replayed.get("/console").status_code == 401
    assert other.get("/console").status_code == 401
    assert replayed.post("/console/logout", headers=ORIGIN).status_code == 200  # again: no-op
    ended = api.session.warehouse.fetch(
        "SELECT token_name, ended_at IS NOT NULL FROM console_sessions"
    )
    assert ended == [("lead", True)]
    assert copied not in str(api.session.warehouse.fetch("SELECT * FROM console_sessions"))
    # a new sign-in is a new session
    sign_in(client, ENV["LEAD_TOKEN"])
    assert client.get("/console").status_code == 200


def test_ending_a_tokens_sessions(api: AdminApi, client: Browser) -> None:
    """:func:`auth.end_sessions` (``personify console sign-out NAME``) ends every session of one
    token, wherever it was signed in, and no other token's."""
    lead_elsewhere, marketer = Browser(client.app), Browser(client.app)
    sign_in(client, ENV["LEAD_TOKEN"])
    sign_in(lead_elsewhere, ENV["LEAD_TOKEN"])
    sign_in(marketer, ENV["MARKETER_TOKEN"])
    assert auth.end_sessions(api.session.warehouse, "lead") == 2
    assert client.get("/console").status_code == 401
    assert lead_elsewhere.get("/console").status_code == 401
    assert marketer.get("/console").status_code == 200
    assert auth.end_sessions(api.session.warehouse, "lead") == 0  # idempotent


def test_a_cookie_without_a_recorded_session_is_refused(api: AdminApi, client: Browser) -> None:
    """A cookie signed right, for the right token, but naming no recorded session (one made
    before sessions were recorded, or a session id made up) does not sign in."""
    sign_in(client, ENV["LEAD_TOKEN"])
    key = api.session.project.config.signing_key
    assert key is not None
    real = auth.unseal(key.reveal().encode(), auth.DOMAIN, client.cookies.get(auth.COOKIE) or "")
    assert real is not None and isinstance(real.get("s"), str)
    for doc in ({k: v for k, v in real.items() if k != "s"}, {**real, "s": "made-up"}):
        client.cookies.set(auth.COOKIE, seal(key.reveal().encode(), auth.DOMAIN, doc))
        assert client.get("/console").status_code == 401


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        ("nope", 401, "wrong token"),
        (ENV["SUPPORT_TOKEN"], 403, "lacks the console scope"),
        ("", 401, "wrong token"),
    ],
)
def test_sign_in_refusals(client: Browser, token: str, status: int, says: str) -> None:
    answer = client.post("/console/login", data={"token": token}, headers=ORIGIN)
    assert answer.status_code == status and says in answer.text
    assert "set-cookie" not in answer.headers


def test_forms_from_another_site_are_refused(client: Browser) -> None:
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {},
        {"sec-fetch-site": "cross-site", "origin": "http://testserver"},
    ):
        answer = client.post("/console/login", data={"token": ENV["LEAD_TOKEN"]}, headers=headers)
        assert answer.status_code == 403 and "set-cookie" not in answer.headers


def test_failed_sign_ins_are_limited(client: Browser) -> None:
    for _ in range(10):
        client.post("/console/login", data={"token": "guess"}, headers=ORIGIN)
    answer = client.post("/console/login", data={"token": ENV["LEAD_TOKEN"]}, headers=ORIGIN)
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) > 0


def test_a_guess_spread_over_addresses_is_limited_by_token_prefix(client: Browser) -> None:
    """Guesses at one token whose start is known (``lead-token…``), one per address: after
    ``PREFIX_FAILURES`` a minute every sign-in with that prefix waits — the right token too, so
    the 429 tells nothing — while a token with another prefix signs in."""

    def from_(n: int) -> Browser:
        return Browser(client.app, address=f"10.0.{n // 250}.{n % 250 + 1}")

    for n in range(PREFIX_FAILURES):
        token = f"lead-token-guess-{n}"
        guess = from_(n).post("/console/login", data={"token": token}, headers=ORIGIN)
        assert guess.status_code == 401
    late = from_(1000).post("/console/login", data={"token": "lead-token-x"}, headers=ORIGIN)
    assert late.status_code == 429 and int(late.headers["retry-after"]) > 0
    right = from_(1001).post("/console/login", data={"token": ENV["LEAD_TOKEN"]}, headers=ORIGIN)
    assert right.status_code == 429 and "set-cookie" not in right.headers
    sign_in(from_(1002), ENV["MARKETER_TOKEN"])  # marketer-t…: its own budget
    # a start everyone knows (a token family's "mark") is no budget of its own: ten characters
    # are, so no one locks a token's sign-in out without holding that much of it
    for n in range(PREFIX_FAILURES):
        token = f"mark-{n:05d}"
        assert from_(2000 + n).post("/console/login", data={"token": token}, headers=ORIGIN)
    sign_in(from_(3000), ENV["MARKETER_TOKEN"])


def test_forged_expired_or_revoked_sessions_are_refused(api: AdminApi, client: Browser) -> None:
    key = api.session.project.config.signing_key
    assert key is not None
    # a cookie signed right but for a token that does not match: no session
    forged = seal(key.reveal().encode(), auth.DOMAIN, {"n": "lead", "f": "x", "e": 2**40})
    client.cookies.set(auth.COOKIE, forged)
    assert client.get("/console").status_code == 401
    # signed with another key
    other = seal(b"another key", auth.DOMAIN, {"n": "lead", "f": "x", "e": 2**40})
    client.cookies.set(auth.COOKIE, other)
    assert client.get("/console").status_code == 401
    # a real session past its expiry
    client.cookies.clear()
    sign_in(client, ENV["LEAD_TOKEN"])
    real = client.cookies.get(auth.COOKIE)
    assert real is not None
    fingerprint = auth.unseal(key.reveal().encode(), auth.DOMAIN, real)
    assert fingerprint is not None
    expired = seal(key.reveal().encode(), auth.DOMAIN, {**fingerprint, "e": int(time.time()) - 1})
    client.cookies.set(auth.COOKIE, expired)
    assert client.get("/console").status_code == 401


def test_a_token_losing_its_scope_ends_its_sessions(api: AdminApi, client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    assert client.get("/console").status_code == 200
    project = api.session.project
    narrowed = tuple(
        msgspec.structs.replace(t, scopes=("profiles:read",)) if t.name == "lead" else t
        for t in project.config.admin_tokens
    )
    # the project file as the server reads it after the change
    api.session.project = dataclasses.replace(
        project, config=msgspec.structs.replace(project.config, admin_tokens=narrowed)
    )
    try:
        assert client.get("/console").status_code == 401
    finally:
        api.session.project = project
    assert client.get("/console").status_code == 200


def test_token_names_stay_out_of_the_logs(
    api: AdminApi, client: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    """A token's name may be its holder's (``alice``): recorded in ``console_sessions`` and the
    audit log (staff data, ``footprint.STAFF``), never written to the server's log — not by a
    sign-in, a page, a refusal, a sign-out nor ``end_sessions``."""
    caplog.set_level(logging.DEBUG)
    client.post("/console/login", data={"token": "marketer-token-wrong-0"}, headers=ORIGIN)
    sign_in(client, ENV["MARKETER_TOKEN"])
    for path in ("/console", "/console/segments/everyone", "/console/profiles", "/console/preview"):
        client.get(path)
    client.post("/console/logout", headers=ORIGIN)
    auth.end_sessions(api.session.warehouse, "marketer")
    assert api.session.warehouse.fetch("SELECT token_name FROM console_sessions") == [("marketer",)]
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert caplog.records and "marketer" not in logged


def test_escaping_and_security_headers(client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    page = client.get("/console/profiles/c1")
    assert page.status_code == 200
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    segment = client.get("/console/segments/everyone")
    assert segment.status_code == 200
    assert "Every &lt;b&gt;customer&lt;/b&gt;" in segment.text
    assert "<script>" not in segment.text


def test_masked_without_profiles_read(api: AdminApi, client: Browser) -> None:
    sign_in(client, ENV["MARKETER_TOKEN"])
    ann = resolve_customer(api.session.warehouse, "c1", api.session.project)
    found = client.get("/console/profiles", params={"q": ann})  # by customer id: masked
    assert found.status_code == 303
    page = client.get(found.headers["location"])
    assert page.status_code == 200
    assert "ann@example.org" not in page.text and "***@example.org" in page.text
    assert "Lee" not in page.text and "masked" in page.text
    segment = client.get("/console/segments/everyone")
    assert "bob@example.org" not in segment.text and "***@example.org" in segment.text
    assert ">Bob<" not in segment.text
    preview = client.get("/console/preview", params={"customer": "c1", "template": "hello"})
    assert preview.status_code == 403 and "profiles:read" in preview.text
    frame = client.get("/console/preview/email", params={"customer": "c1", "template": "hello"})
    assert frame.status_code == 403 and frame.text == ""
    assert ("profile_read", "console:marketer") in audit(api.session)


def test_a_masked_token_cannot_tell_an_existing_email_from_a_missing_one(
    api: AdminApi, client: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``profiles:read`` customers are found by id only: asked about an email, every
    page answers the same — status, words, and the queries it ran — whether a customer has it
    (ann@example.org) or not (zed@example.org); nothing is audited for either."""
    sign_in(client, ENV["MARKETER_TOKEN"])
    wh = api.session.warehouse
    ran: list[str] = []
    for name in ("fetch", "scalar"):
        real = getattr(wh, name)

        def spy(sql: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            ran.append(sql)
            return _real(sql, *args, **kw)

        monkeypatch.setattr(wh, name, spy)
    before = audit(api.session)

    def answers(email: str) -> list[tuple[int, str, list[str]]]:
        out = []
        for path, params in (
            ("/console/profiles", {"q": email}),
            ("/console/profiles/" + email, {}),
            ("/console/segments/everyone", {"customer": email}),
        ):
            ran.clear()
            answer = client.get(path, params=params)
            out.append((answer.status_code, answer.text.replace(email, "EMAIL"), list(ran)))
        return out

    exists, missing = answers("ann@example.org"), answers("zed@example.org")
    assert exists == missing
    assert [status for status, _, _ in exists] == [404, 404, 200]
    assert all("customer id only" in text for _, text, _ in exists)
    assert not any("identity_nodes" in sql for _, _, queries in exists for sql in queries)
    assert [a for a in audit(api.session) if a[0] == "profile_read"] == [
        a for a in before if a[0] == "profile_read"
    ]
    # by customer id (what segment samples show it), the masked token still finds customers
    # (masked), and that read is audited
    bob = resolve_customer(wh, "c2", api.session.project)
    assert client.get("/console/profiles", params={"q": bob}).status_code == 303
    checked = client.get("/console/segments/everyone", params={"customer": bob})
    assert "is in this segment now" in checked.text and "bob@example.org" not in checked.text
    assert audit(api.session)[-1] == ("profile_read", "console:marketer")
    # a token that reads profiles finds them by email, as before
    client.cookies.clear()
    sign_in(client, ENV["LEAD_TOKEN"])
    assert client.get("/console/profiles", params={"q": "ann@example.org"}).status_code == 303
    assert client.get("/console/profiles/ann@example.org").status_code == 200


@pytest.mark.parametrize(
    ("token", "finds", "api_path"),
    [
        ("LEAD_TOKEN", True, "/v1/profiles/"),  # console + profiles:read
        ("DPO_TOKEN", True, "/v1/privacy/export?subject="),  # console + privacy
        ("HELPDESK_TOKEN", False, "/v1/privacy/export?subject="),  # console + privacy:masked
    ],
)
def test_one_rule_names_people_by_email_in_the_console_and_the_api(
    api: AdminApi, client: Browser, token: str, finds: bool, api_path: str
) -> None:
    """Whether a token may name a person by email is one rule (``Grant.finds_by_identifier``):
    the console's search, profile address and segment check answer as the token's API route
    does — a ``privacy`` token finds ``ann@example.org`` in both (and is shown her masked in the
    console: no ``profiles:read``); a ``privacy:masked`` one in neither (id only)."""
    by_api = api.call("GET", api_path + "ann%40example.org", api.bearer(ENV[token]))
    assert by_api.status_code == (200 if finds else 404), by_api.text
    sign_in(client, ENV[token])
    search = client.get("/console/profiles", params={"q": "ann@example.org"})
    page = client.get("/console/profiles/ann@example.org")
    check = client.get("/console/segments/everyone", params={"customer": "ann@example.org"})
    if finds:
        assert search.status_code == 303 and page.status_code == 200
        assert "is in this segment now" in check.text
        masked = token != "LEAD_TOKEN"
        assert ("Lee" not in page.text) is masked and ("***@example.org" in page.text) is masked
        assert "customer id only" not in client.get("/console/profiles").text + check.text
    else:
        assert search.status_code == 404 and page.status_code == 404
        assert "is in this segment now" not in check.text
        assert all("customer id only" in a.text for a in (search, page, check))
        assert "customer id only" in by_api.text
    form = client.get("/console/profiles").text
    assert ("Customer id, email or kind:value" in form) is finds


@pytest.mark.parametrize("token", ["DPO_TOKEN", "LEAD_TOKEN"])
def test_a_customer_not_found_is_said_as_what_was_asked(
    api: AdminApi, client: Browser, token: str
) -> None:
    """A viewer who names people by email (a ``privacy`` or ``profiles:read`` token) asking for an
    unknown email is told no customer has this *email* — on the profile page, the search and
    a segment's check — an unknown id that no customer has this id, a ``kind:value`` identifier."""
    sign_in(client, ENV[token])
    for text, words in (
        ("zed@example.org", "No customer has this email."),
        ("email:zed@example.org", "No customer has this email."),
        ("c404", "No customer has this id."),
        ("crm_id:404", "No customer has this identifier."),
    ):
        page = client.get("/console/profiles/" + quote(text, safe=""))
        search = client.get("/console/profiles", params={"q": text})
        check = client.get("/console/segments/everyone", params={"customer": text})
        assert (page.status_code, search.status_code, check.status_code) == (404, 404, 200)
        for answer in (page, search, check):
            assert words in answer.text, (text, answer.text)
            assert "customer id only" not in answer.text


def test_plain_with_profiles_read_and_audited(api: AdminApi, client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    found = client.get("/console/profiles", params={"q": " ANN@example.org"})
    page = client.get(found.headers["location"])
    assert "ann@example.org" in page.text and "Lee" in page.text
    assert audit(api.session)[-1] == ("profile_read", "console:lead")
    missing = client.get("/console/profiles", params={"q": "nobody@example.org"})
    assert missing.status_code == 404 and "No customer" in missing.text


def test_why_is_a_customer_in_a_segment(client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    page = client.get("/console/segments/everyone", params={"customer": "bob@example.org"})
    assert page.status_code == 200
    assert "is in this segment now" in page.text
    assert re.search(r"<td>bob@example.org</td>\s*<td>Bob</td>", page.text)
    nobody = client.get("/console/segments/everyone", params={"customer": "zed@example.org"})
    assert nobody.status_code == 200 and "No customer has this email." in nobody.text
    assert client.get("/console/segments/nope").status_code == 404
    # an unknown segment asked about a customer: 404 too, not a server error
    asked = client.get("/console/segments/nope", params={"customer": "c1"})
    assert asked.status_code == 404 and "No segment of that name" in asked.text


def test_a_broken_segments_file_is_said_with_its_file_and_line(
    api: AdminApi, client: Browser
) -> None:
    """A segments file that cannot load: the segment pages say so with the file and line of
    the error (masked), as ``personify segments`` does — before, a segment page answered "No
    segment of that name" (the segment may well be there) and the list a server error."""
    broken = api.project_dir / "segments" / "buyers.sql"
    broken.write_text("-- name: buyers\n-- refresh: ann@example.org\nSELECT customer_id FROM x\n")
    sign_in(client, ENV["LEAD_TOKEN"])
    for path in ("/console/segments/everyone", "/console/segments", "/console/segments/buyers"):
        page = client.get(path)
        assert page.status_code == 500, path
        assert "No segment of that name" not in page.text
        assert "The segments file segments/buyers.sql (line 2) failed to load" in page.text
        assert "is not a refresh schedule" in page.text
        assert "ann@example.org" not in page.text and "***@example.org" in page.text
    asked = client.get("/console/segments/everyone", params={"customer": "c1"})
    assert asked.status_code == 500 and "segments/buyers.sql" in asked.text
    broken.unlink()  # fixed: the pages are back
    assert client.get("/console/segments/everyone").status_code == 200
    assert client.get("/console/segments/nope").status_code == 404


def test_preview_in_a_sandboxed_frame_with_the_verdict(api: AdminApi, client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    before = api.session.warehouse.scalar("SELECT count(*) FROM messages")
    params = {"customer": "ann@example.org", "template": "hello"}
    page = client.get("/console/preview", params=params)
    assert page.status_code == 200, page.text
    assert 'id="verdict"' in page.text and "a send now would" in page.text
    assert "<iframe" in page.text and " sandbox " in page.text
    assert "Hello &lt;script&gt;" in page.text  # the subject, escaped in the page
    frame = client.get("/console/preview/email", params=params)
    assert frame.status_code == 200
    assert "sandbox" in frame.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "&lt;script&gt;" in frame.text  # the template's own autoescape
    assert "/o/" not in frame.text  # no open pixel: a preview is not an open
    assert api.session.warehouse.scalar("SELECT count(*) FROM messages") == before
    # the page and its frame (which alone fetches the whole email) are each a read
    assert audit(api.session)[-2:] == [("email_preview", "console:lead")] * 2
    bad = client.get("/console/preview", params={"customer": "c1", "template": "nope"})
    assert bad.status_code == 400 and "no template" in bad.text


def test_overview(client: Browser) -> None:
    sign_in(client, ENV["LEAD_TOKEN"])
    page = client.get("/console")
    assert page.status_code == 200
    assert "Sources" in page.text and "Journeys, last 7 days" in page.text
    assert "Firing alerts" in page.text
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_a_broken_segments_file_outside_the_project_is_named_without_its_path(
    tmp_path: Path,
) -> None:
    """A segments folder configured outside the project: the console names the file alone, not
    where it lives on the server."""
    from personify.errors import ConfigError
    from personify.server.console.views import SegmentsBroken

    root = tmp_path / "project"
    elsewhere = tmp_path / "shared" / "segments" / "buyers.sql"
    inside = SegmentsBroken(ConfigError("bad", file=str(root / "segments" / "x.sql")), root)
    outside = SegmentsBroken(ConfigError("bad", file=str(elsewhere)), root)
    assert inside.file == "segments/x.sql"
    assert outside.file == "buyers.sql" and str(tmp_path) not in outside.page()["file"]


def test_a_warehouse_that_does_not_answer_is_a_503_page(
    api: AdminApi, client: Browser, project_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every page reads its session in the warehouse: pointed at a PostgreSQL URL nothing answers
    on (a closed loopback port) — a server restarted while the database is down — a signed-in
    page, the sign-in and the sign-out answer a plain 503 page with ``Retry-After``, with neither
    a stack trace nor the driver's error, instead of a 500."""
    import socket

    from personify.config import load_project

    sign_in(client, ENV["LEAD_TOKEN"])
    assert client.get("/console/segments").status_code == 200
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yml = project_dir / "personify.yml"
    yml.write_text(
        re.sub(
            r"(?m)^warehouse: .*$",
            f"warehouse: postgresql://postgres@127.0.0.1:{port}/t",
            yml.read_text(),
        )
    )
    down = Session(load_project(project_dir))
    try:
        browser = Browser(create_app(down, instance="inst-2"))
        browser.cookies = client.cookies  # the session cookie signed in above
        answers = [
            browser.get("/console"),
            browser.get("/console/profiles/c1"),
            browser.post("/console/login", data={"token": ENV["LEAD_TOKEN"]}, headers=ORIGIN),
            browser.post("/console/logout", headers=ORIGIN),
        ]
    finally:
        down.close()
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert "The warehouse is not answering" in answer.text and "Try again" in answer.text
        assert "Traceback" not in answer.text and "refused" not in answer.text.lower()
        assert answer.headers["cache-control"] == "no-store"
        assert "set-cookie" not in answer.headers
    assert not [r for r in caplog.records if r.levelname == "ERROR"]  # not an unhandled 500
