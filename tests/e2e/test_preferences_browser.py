"""The preference page (``/preferences/{token}``) in real headless Chromium against ``personify
serve``: the boxes show the person's state, saving records each change with the browser's proof,
a pause is taken and ended, and "unsubscribe from everything" suppresses — the form POSTed by the
browser itself."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from personify.config import load_project
from personify.delivery import unsubscribe_for
from personify.privacy.consent import record
from personify.scaffold import init_project
from personify.session import Session
from personify.warehouse import table
from tests.e2e.browser import chromium, chromium_or_skip
from tests.e2e.test_serve import Server
from tests.e2e.tracking_support import query, start_server_on

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
WHEN = datetime(2026, 2, 1, tzinfo=UTC)
TOPICS = """  topics:
    news: {label: Weekly news}
    promos: {label: Promotions, description: Sales and offers}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    chromium_or_skip()
    project = tmp_path / "shop"
    init_project(project)
    yml = project / "personify.yml"
    yml.write_text(yml.read_text().replace("email:\n", "email:\n" + TOPICS, 1))
    session = Session(load_project(project))
    try:
        session.warehouse.load(
            table("customers"),
            pa.Table.from_pylist(
                [{"customer_id": "c-42", "email": "zoe@x.org", "updated_at": WHEN}]
            ),
        )
        record(session.warehouse, subject="c-42", purpose="news", status="granted", source="t")
    finally:
        session.close()
    server = start_server_on(project, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def test_choose_topics_then_leave_everything_in_a_browser(served: Server) -> None:
    link = unsubscribe_for(load_project(served.project), "c-42", "news").preferences
    assert link is not None
    url = served.url + "/preferences/" + link.rsplit("/preferences/", 1)[1]
    with chromium() as browser:
        page = browser.new_page()
        page.goto(url)
        assert page.title() == "Email preferences"
        news, promos = page.locator("input[value=news]"), page.locator("input[value=promos]")
        assert news.is_checked() and not promos.is_checked()
        assert query(served.project, "SELECT count(*) AS n FROM consent_history")[0]["n"] == 1

        news.uncheck()
        promos.check()
        page.get_by_role("button", name="Save preferences").click()
        page.get_by_text("Your preferences are saved.").wait_for()
        news, promos = page.locator("input[value=news]"), page.locator("input[value=promos]")
        assert not news.is_checked() and promos.is_checked()
        changes = query(
            served.project,
            "SELECT purpose, status, form, ip, user_agent FROM consent_history "
            "WHERE source = 'preference_centre' ORDER BY purpose",
        )
        assert [(c["purpose"], c["status"], c["form"], c["ip"]) for c in changes] == [
            ("news", "revoked", "preference_centre", "127.0.0.1"),
            ("promos", "granted", "preference_centre", "127.0.0.1"),
        ]
        assert all("HeadlessChrome" in c["user_agent"] for c in changes)
        none = query(served.project, "SELECT count(*) AS n FROM suppressions")
        assert none[0]["n"] == 0

        page.get_by_role("button", name="Pause all emails for 30 days").click()
        page.get_by_text("Our emails are paused until").wait_for()
        paused = query(served.project, "SELECT purpose FROM consent_pauses ORDER BY 1")
        assert [r["purpose"] for r in paused] == ["news", "promos"]
        assert page.locator("input[value=promos]").is_checked()  # consent untouched
        page.get_by_role("button", name="Resume now").click()
        page.get_by_text("Our emails are no longer paused.").wait_for()
        assert query(served.project, "SELECT count(*) AS n FROM consent_pauses")[0]["n"] == 0

        page.get_by_role("button", name="Unsubscribe from everything").click()
        page.get_by_text("You are unsubscribed from all our emails.").first.wait_for()
        assert page.locator("input[value=promos]").is_disabled()
        assert page.get_by_role("button").count() == 0
    rows = query(served.project, "SELECT kind, reason, source FROM suppressions ORDER BY kind")
    assert [(r["kind"], r["reason"], r["source"]) for r in rows] == [
        ("customer_id", "unsubscribed", "unsubscribe"),
        ("email", "unsubscribed", "unsubscribe"),
    ]
