"""The marketer console (``/console``) in real headless Chromium against ``personify serve``:
sign in with a token, search a customer by email, open the profile (a customer named
``<script>`` is shown as text, nothing runs), open an email preview in its sandboxed frame with
the send gate's verdict, sign out (a copy of the session cookie is refused after) — and no
console error or CSP violation on the way."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dotenv import dotenv_values

from personify import clock
from personify.config import load_project
from personify.identity import identity_stage
from personify.profiles import profiles_stage
from personify.scaffold import init_project
from personify.session import Session
from personify.sources.files import import_file
from tests.e2e.browser import chromium, chromium_or_skip, page_errors
from tests.e2e.cli import personify
from tests.e2e.test_serve import Server
from tests.e2e.tracking_support import query, start_server_on

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
WHEN = datetime(2026, 2, 1, tzinfo=UTC)
NAME = "<script>alert(1)</script>"
CRM = (
    "id,email,first_name,last_name,updated_at\n"
    f'c1,zoe@example.org,"{NAME}",Lee,2026-01-01T00:00:00Z\n'
    "c2,bob@example.org,Bob,Ray,2026-01-02T00:00:00Z\n"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    chromium_or_skip()
    project = tmp_path / "shop"
    init_project(project)
    (project / "templates" / "hello.liquid").write_text(
        "---\nsubject: Hello {{ customer.first_name }}\n---\n"
        '<p style="color: #c00">Hello {{ customer.first_name }}</p>\n'
    )
    session = Session(load_project(project))
    try:
        with clock.frozen(WHEN):
            data = tmp_path / "crm.csv"
            data.write_text(CRM, encoding="utf-8")
            import_file(
                session, data, table="customers", mapping={"customer_id": "id"}, source_name="crm"
            )
            identity_stage(session)
            profiles_stage(session)
    finally:
        session.close()
    server = start_server_on(project, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def test_sign_in_search_profile_preview_in_a_browser(served: Server) -> None:
    token = dotenv_values(served.project / ".env")["PERSONIFY_ADMIN_TOKEN"]
    assert token
    with chromium() as browser:
        page = browser.new_page()
        errors = page_errors(page)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        answer = page.goto(served.url + "/console")
        assert answer is not None and answer.status == 401
        errors.clear()  # the 401 itself is logged as a failed load: meant
        page.fill("#token", token)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Sources").wait_for()
        cookies = page.context.cookies()
        (session,) = [c for c in cookies if c["name"] == "personify_console"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"

        page.get_by_role("link", name="Profiles").click()
        page.fill("#q", "ZOE@example.org")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("heading", name="Fields").wait_for()
        assert page.locator("td", has_text=NAME).count() >= 1  # shown as text
        assert page.get_by_text("zoe@example.org").count() >= 1

        page.select_option("#template", "hello")
        page.get_by_role("button", name="Preview").click()
        verdict = page.locator("#verdict")
        verdict.wait_for()
        assert verdict.inner_text().startswith("a send now would")
        frame = page.frame_locator("iframe.email")
        frame.get_by_text("Hello").wait_for()
        assert NAME in frame.locator("p").inner_text()
        assert page.locator("iframe.email").get_attribute("sandbox") == ""

        assert errors == [], errors
        page.get_by_role("button", name="Sign out").click()
        page.get_by_text("Signed out.").wait_for()
        assert page.goto(served.url + "/console/segments").status == 401  # type: ignore[union-attr]
        # the session ended on the server: the cookie copied before signing out is refused
        page.context.add_cookies([session])
        assert page.goto(served.url + "/console/segments").status == 401  # type: ignore[union-attr]

        assert dialogs == []
    logged = served.log.read_text(encoding="utf-8")
    assert "zoe" not in logged.lower() and "script>" not in logged  # the access log: templates
    audited = query(
        served.project,
        "SELECT action, actor FROM audit_log WHERE actor LIKE 'console:%' ORDER BY seq",
    )
    assert [(r["action"], r["actor"]) for r in audited] == [
        ("profile_read", "console:admin"),
        ("email_preview", "console:admin"),  # the preview's page
        ("email_preview", "console:admin"),  # its frame (the email's HTML alone)
    ]
    listed = personify(
        "audit", "--action", "email_preview", "--json", "--project", str(served.project)
    )
    assert listed.returncode == 0, listed.stderr
    assert '"console:admin"' in listed.stdout
