"""``/preferences/{token}`` in-process (the app over httpx's ASGI transport): GET shows the
topics with the person's state and changes nothing; the form's POST records each change with
proof and nothing else; "unsubscribe from everything" suppresses; a suppressed person cannot be
re-subscribed by the page; forged and test tokens change nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from personify import delivery
from personify.config import load_project
from personify.delivery import unsubscribe_for
from personify.journeys.decide import suppressed
from personify.privacy.consent import consented, record
from personify.server.app import create_app
from personify.session import Session
from personify.warehouse import table

WHEN = datetime(2026, 2, 1, tzinfo=UTC)
TOPICS = """  topics:
    news: {label: "Weekly <b>news</b>"}
    promos: {label: Promotions, description: Sales and offers}
"""
FORM = {"content-type": "application/x-www-form-urlencoded", "user-agent": "Browser/3"}


@pytest.fixture
def session(project_dir: Path) -> Iterator[Session]:
    yml = project_dir / "personify.yml"
    yml.write_text(yml.read_text().replace("email:\n", "email:\n" + TOPICS, 1))
    s = Session(load_project(project_dir))
    s.warehouse.load(
        table("customers"),
        pa.Table.from_pylist([{"customer_id": "c-42", "email": "Zoe@X.org", "updated_at": WHEN}]),
    )
    record(s.warehouse, subject="c-42", purpose="news", status="granted", source="t", at=WHEN)
    try:
        yield s
    finally:
        s.close()


def call(session: Session, method: str, path: str, **kw: Any) -> httpx.Response:
    app = create_app(session, instance="inst-1")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def path_for(session: Session, purpose: str = "news") -> str:
    url = unsubscribe_for(session.project, "c-42", purpose).preferences
    assert url is not None and url.startswith("http://127.0.0.1:8787/preferences/")
    return "/preferences/" + url.rsplit("/preferences/", 1)[1]


def boxes(page: str) -> dict[str, bool]:
    """Each checkbox's value → checked."""
    return {
        m.group(1): " checked" in m.group(0)
        for m in re.finditer(r'<input type="checkbox" name="topic" value="([^"]+)"[^>]*>', page)
    }


def history(session: Session) -> list[tuple[Any, ...]]:
    return session.warehouse.fetch(
        "SELECT purpose, status, source, form, ip, user_agent FROM consent_history "
        "WHERE source <> 't' ORDER BY purpose"
    )


def test_get_lists_topics_with_their_state_and_changes_nothing(session: Session) -> None:
    got = call(session, "GET", path_for(session))
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"
    assert boxes(got.text) == {"news": True, "promos": False}
    assert "Weekly &lt;b&gt;news&lt;/b&gt;" in got.text and "Sales and offers" in got.text
    assert "Unsubscribe from everything" in got.text
    assert "zoe" not in got.text.lower() and "c-42" not in got.text
    assert history(session) == []


def test_post_records_each_change_with_proof(session: Session) -> None:
    wh = session.warehouse
    got = call(
        session, "POST", path_for(session), content=b"topic=promos&action=save", headers=FORM
    )
    assert got.status_code == 200 and "saved" in got.text
    assert boxes(got.text) == {"news": False, "promos": True}
    proof = ("preference_centre", "203.0.113.9", "Browser/3")
    assert history(session) == [
        ("news", "revoked", "preference_centre", *proof),
        ("promos", "granted", "preference_centre", *proof),
    ]
    assert consented(wh, ["c-42"], purpose="news") == set()
    assert consented(wh, ["c-42"], purpose="promos") == {"c-42"}
    assert suppressed(wh, ["c-42"]) == set()  # opting down is no suppression
    actions = wh.fetch("SELECT action, actor FROM audit_log")
    assert actions == [("consent", "preference_centre")] * 2

    # the same choice again, and a topic the project does not offer: nothing more
    body = b"topic=promos&topic=transactional&action=save"
    call(session, "POST", path_for(session), content=body, headers=FORM)
    assert len(history(session)) == 2
    assert consented(wh, ["c-42"], purpose="transactional") == set()


def test_unsubscribe_from_everything_suppresses_and_locks_the_page(session: Session) -> None:
    wh = session.warehouse
    got = call(session, "POST", path_for(session), content=b"action=all", headers=FORM)
    assert got.status_code == 200 and "unsubscribed from all" in got.text
    assert suppressed(wh, ["c-42"]) == {"c-42"}
    assert wh.fetch("SELECT form FROM consent_history WHERE status = 'revoked'") == [
        ("preference_centre",)
    ]
    page = call(session, "GET", path_for(session)).text
    assert boxes(page) == {"news": False, "promos": False} and " disabled" in page
    assert "<button" not in page
    # a crafted POST cannot lift the suppression
    again = call(session, "POST", path_for(session), content=b"topic=news", headers=FORM)
    assert "Nothing was changed" in again.text
    assert consented(wh, ["c-42"], purpose="news") == set()
    assert len(wh.fetch("SELECT 1 FROM consent_history WHERE status = 'granted'")) == 1


def test_forged_and_test_tokens_change_nothing(session: Session) -> None:
    bad = path_for(session)[:-2] + "zz"
    for method in ("GET", "POST"):
        got = call(session, method, bad, content=b"action=all", headers=FORM)
        assert got.status_code == 400
    url = delivery.test_unsubscribe(session.project).preferences
    assert url is not None
    test_path = "/preferences/" + url.rsplit("/preferences/", 1)[1]
    got = call(session, "POST", test_path, content=b"action=all", headers=FORM)
    assert got.status_code == 200 and "test email" in got.text
    assert suppressed(session.warehouse, ["c-42"]) == set() and history(session) == []


def test_listed_in_openapi(session: Session) -> None:
    doc = call(session, "GET", "/openapi.json").json()
    assert {"get", "post"} <= set(doc["paths"]["/preferences/{token}"])


def test_the_unsubscribe_page_offers_the_preference_page(session: Session) -> None:
    token = path_for(session).rsplit("/", 1)[1]
    page = call(session, "GET", f"/unsubscribe/{token}").text
    assert f'<a href="http://127.0.0.1:8787/preferences/{token}">' in page


def test_pause_for_30_days_then_resume(session: Session) -> None:
    """A pause stops every topic (and the link's purpose) for 30 days without touching consent:
    the boxes keep the person's choice, and "Resume now" ends it."""
    wh = session.warehouse
    page = call(session, "GET", path_for(session)).text
    assert 'value="pause30"' in page and 'value="pause90"' in page
    before = datetime.now(UTC)
    got = call(session, "POST", path_for(session), content=b"action=pause30", headers=FORM)
    assert got.status_code == 200 and "paused until" in got.text and "Resume now" in got.text
    assert boxes(got.text) == {"news": True, "promos": False}
    ends = wh.fetch("SELECT purpose, paused_until, source FROM consent_pauses ORDER BY purpose")
    assert [(p, s) for p, _, s in ends] == [
        ("news", "preference_centre"),
        ("promos", "preference_centre"),
    ]
    days = [(until - before).total_seconds() / 86400 for _, until, _ in ends]
    assert all(29.99 < d <= 30.01 for d in days), (days, ends, before)
    assert consented(wh, ["c-42"], purpose="news") == set()
    assert history(session) == []  # consent untouched

    got = call(session, "POST", path_for(session), content=b"action=resume", headers=FORM)
    assert "no longer paused" in got.text and 'value="pause30"' in got.text
    assert consented(wh, ["c-42"], purpose="news") == {"c-42"}
    assert wh.fetch("SELECT count(*) FROM consent_pauses") == [(0,)]
    assert len(wh.fetch("SELECT 1 FROM audit_log")) == 2
