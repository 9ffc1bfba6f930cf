"""``/unsubscribe/{token}`` in-process (the app over httpx's ASGI transport): GET changes nothing,
the RFC 8058 one-click POST and the page's form suppress the customer once, forged tokens change
nothing, and the journeys' send-time check and the consent gate then stop the next send."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from personify.config import load_project
from personify.delivery import sign, unsubscribe_for
from personify.delivery.tokens import project_key
from personify.journeys.decide import suppressed
from personify.privacy.consent import consented, record
from personify.server.app import create_app
from personify.session import Session
from personify.warehouse import table

WHEN = datetime(2026, 2, 1, tzinfo=UTC)


@pytest.fixture
def session(project_dir: Path) -> Iterator[Session]:
    s = Session(load_project(project_dir))
    s.warehouse.load(
        table("customers"),
        pa.Table.from_pylist(
            [
                {"customer_id": "c-42", "email": "Zoe@X.org", "updated_at": WHEN},
                {"customer_id": "c-7", "email": "max@x.org", "updated_at": WHEN},
            ]
        ),
    )
    for cid in ("c-42", "c-7"):
        record(
            s.warehouse,
            subject=cid,
            purpose="marketing",
            status="granted",
            source="test",
            at=WHEN,
        )
    try:
        yield s
    finally:
        s.close()


def call(session: Session, method: str, path: str, **kw: Any) -> httpx.Response:
    app = create_app(session, instance="inst-1")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, **kw)

    return asyncio.run(go())


def rows(session: Session) -> list[tuple[Any, ...]]:
    return session.warehouse.fetch(
        "SELECT kind, customer_id, reason, source, subject_hash FROM suppressions ORDER BY kind"
    )


def path_for(session: Session, customer_id: str = "c-42") -> str:
    url = unsubscribe_for(session.project, customer_id).url
    return "/unsubscribe/" + url.rsplit("/unsubscribe/", 1)[1]


ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"content-type": "application/x-www-form-urlencoded"},
}


def test_get_shows_a_button_and_changes_nothing(session: Session) -> None:
    got = call(session, "GET", path_for(session))
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/html")
    assert '<form method="post">' in got.text and "<button" in got.text
    assert "zoe" not in got.text.lower() and "c-42" not in got.text
    assert got.headers["cache-control"] == "no-store"
    assert rows(session) == []
    assert suppressed(session.warehouse, ["c-42"]) == set()


def test_one_click_post_suppresses_once(session: Session) -> None:
    wh = session.warehouse
    assert consented(wh, ["c-42", "c-7"], purpose="marketing") == {"c-42", "c-7"}
    first = call(session, "POST", path_for(session), **ONE_CLICK)
    assert first.status_code == 200 and "unsubscribed" in first.text
    stored = rows(session)
    assert [(k, c, r, s) for k, c, r, s, _ in stored] == [
        ("customer_id", "c-42", "unsubscribed", "unsubscribe"),
        ("email", "c-42", "unsubscribed", "unsubscribe"),
    ]
    assert all(len(h) == 64 and "zoe" not in h for *_, h in stored)  # keyed hashes only
    assert suppressed(wh, ["c-42", "c-7"]) == {"c-42"}
    assert consented(wh, ["c-42", "c-7"], purpose="marketing") == {"c-7"}
    history = wh.fetch(
        "SELECT status, source, form FROM consent_history WHERE customer_id = 'c-42' "
        "ORDER BY changed_at"
    )
    assert history[-1][:2] == ("revoked", "unsubscribe")

    again = call(session, "POST", path_for(session), **ONE_CLICK)
    assert again.status_code == 200 and "unsubscribed" in again.text
    assert rows(session) == stored
    assert len(wh.fetch("SELECT 1 FROM consent_history WHERE customer_id = 'c-42'")) == len(history)


def test_the_page_form_post_works_too(session: Session) -> None:
    got = call(
        session,
        "POST",
        path_for(session, "c-7"),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert got.status_code == 200
    empty = call(session, "POST", path_for(session))  # a bare POST (no body) also counts
    assert empty.status_code == 200
    assert suppressed(session.warehouse, ["c-42", "c-7"]) == {"c-42", "c-7"}


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(".", "." + ("A" if t.split(".")[1][0] != "A" else "B"), 1)[:-1],
        lambda t: "x" + t,  # payload changed
        lambda t: t.split(".")[0],  # no signature
        lambda t: "not-a-token",
    ],
)
def test_forged_tokens_change_nothing(session: Session, mangle: Any) -> None:
    path = path_for(session)
    token = path.rsplit("/", 1)[1]
    bad = "/unsubscribe/" + mangle(token)
    for method in ("GET", "POST"):
        got = call(session, method, bad, **(ONE_CLICK if method == "POST" else {}))
        assert got.status_code == 400 and "not valid" in got.text
    assert rows(session) == []


def test_a_token_signed_with_another_key_is_refused(session: Session) -> None:
    other = sign(b"another key", "c-42")
    assert other.split(".")[0] == path_for(session).rsplit("/", 1)[1].split(".")[0]
    got = call(session, "POST", f"/unsubscribe/{other}", **ONE_CLICK)
    assert got.status_code == 400 and rows(session) == []
    assert project_key(session.project) != b"another key"


def test_listed_in_openapi(session: Session) -> None:
    doc = call(session, "GET", "/openapi.json").json()
    assert {"get", "post"} <= set(doc["paths"]["/unsubscribe/{token}"])
    assert "post" in doc["paths"]["/webhooks/esp/{provider}"]


def test_counted_in_metrics(session: Session) -> None:
    app = create_app(session, instance="inst-1")
    good, bad = path_for(session), "/unsubscribe/not-a-token"

    async def go() -> str:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for path in (good, good, bad):
                await c.post(path, **ONE_CLICK)
            return (await c.get("/metrics")).text

    text = asyncio.run(go())
    for outcome in ("new", "repeat", "invalid"):
        assert f'personify_unsubscribes_total{{outcome="{outcome}"}} 1' in text
    assert "/unsubscribe/{token}" in text and "not-a-token" not in text


def _sent(session: Session, key: str, customer_id: str = "c-42") -> None:
    ts = pa.timestamp("us", tz="UTC")
    session.warehouse.load(
        table("messages"),
        pa.table(
            {
                "idempotency_key": [key],
                "customer_id": [customer_id],
                "journey": ["cart"],
                "step": ["remind"],
                "variant": ["bold"],
                "template": ["abandoned_cart"],
                "status": ["sent"],
                "decided_at": pa.array([WHEN], ts),
                "sent_at": pa.array([WHEN], ts),
            }
        ),
    )


def _unsubscribed_events(session: Session) -> list[tuple[Any, ...]]:
    return session.warehouse.fetch(
        "SELECT customer_id, source, properties->>'message_key', properties->>'journey', "
        "properties->>'step', properties->>'variant' FROM events "
        "WHERE event = 'Email Unsubscribed' ORDER BY message_id"
    )


def test_a_link_naming_its_message_records_one_unsubscribed_event(session: Session) -> None:
    """The token names the message: the POST also records ``Email Unsubscribed`` for it (tied
    to its journey, step and variant), once however often it is posted."""
    _sent(session, "cart:remind:c-42:k1")
    url = unsubscribe_for(session.project, "c-42", "marketing", "cart:remind:c-42:k1").url
    path = "/unsubscribe/" + url.rsplit("/unsubscribe/", 1)[1]
    for _ in range(2):
        got = call(session, "POST", path, **ONE_CLICK)
        assert got.status_code == 200
    assert _unsubscribed_events(session) == [
        ("c-42", "email_tracking", "cart:remind:c-42:k1", "cart", "remind", "bold")
    ]
    assert suppressed(session.warehouse, ["c-42"]) == {"c-42"}


def test_an_old_link_unsubscribes_without_an_event(session: Session) -> None:
    """A token without a message (sent before tokens named it) unsubscribes all the same."""
    _sent(session, "cart:remind:c-42:k1")
    got = call(session, "POST", path_for(session), **ONE_CLICK)
    assert got.status_code == 200
    assert suppressed(session.warehouse, ["c-42"]) == {"c-42"}
    assert _unsubscribed_events(session) == []


def test_a_link_naming_a_message_never_sent_records_nothing(session: Session) -> None:
    url = unsubscribe_for(session.project, "c-42", "marketing", "preview:k").url
    got = call(session, "POST", "/unsubscribe/" + url.rsplit("/unsubscribe/", 1)[1], **ONE_CLICK)
    assert got.status_code == 200
    assert suppressed(session.warehouse, ["c-42"]) == {"c-42"}
    assert _unsubscribed_events(session) == []


def test_a_test_sends_link_unsubscribes_nobody(session: Session) -> None:
    """``personify send-test`` mails staff a customer's email whose unsubscribe links are a
    test token: a reviewer pressing their mail client's unsubscribe button (one-click POST)
    must not unsubscribe the customer — the page says it was a test."""
    from personify.delivery import test_unsubscribe

    url = test_unsubscribe(session.project).url
    path = "/unsubscribe/" + url.rsplit("/unsubscribe/", 1)[1]
    page = call(session, "GET", path)
    assert page.status_code == 200 and "test email" in page.text and "<form" not in page.text
    done = call(session, "POST", path, **ONE_CLICK)
    assert done.status_code == 200 and "test email" in done.text
    assert rows(session) == []
    assert consented(session.warehouse, ["c-42"], purpose="marketing") == {"c-42"}
    # the same token under another key is forged, as ever
    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert call(session, "POST", forged, **ONE_CLICK).status_code == 400


def _scoped(project_dir: Path, extra: str = "") -> Session:
    """The session of ``project_dir`` with ``email.unsubscribe_scope: purpose`` (and ``extra``
    lines under ``email:``)."""
    yml = project_dir / "personify.yml"
    text = yml.read_text(encoding="utf-8")
    yml.write_text(
        text.replace("email:\n", "email:\n  unsubscribe_scope: purpose\n" + extra, 1),
        encoding="utf-8",
    )
    return Session(load_project(project_dir))


def test_scope_purpose_revokes_the_tokens_purpose_with_proof(
    session: Session, project_dir: Path
) -> None:
    """``email.unsubscribe_scope: purpose``: the one-click POST revokes the token's purpose
    (proof: form, IP, user agent), writes no suppression, and the person's other purpose still
    passes the gate."""
    record(session.warehouse, subject="c-42", purpose="news", status="granted", source="t", at=WHEN)
    session.close()
    scoped = _scoped(project_dir)
    try:
        wh = scoped.warehouse
        url = unsubscribe_for(scoped.project, "c-42", "marketing").url
        path = "/unsubscribe/" + url.rsplit("/unsubscribe/", 1)[1]
        headers = {**ONE_CLICK["headers"], "user-agent": "MailClient/2"}
        for _ in range(2):
            got = call(scoped, "POST", path, content=ONE_CLICK["content"], headers=headers)
            assert got.status_code == 200 and "unsubscribed" in got.text
        assert rows(scoped) == [] and suppressed(wh, ["c-42"]) == set()
        assert consented(wh, ["c-42", "c-7"], purpose="marketing") == {"c-7"}
        assert consented(wh, ["c-42"], purpose="news") == {"c-42"}
        assert wh.fetch(
            "SELECT purpose, form, ip, user_agent FROM consent_history WHERE status = 'revoked'"
        ) == [("marketing", "list-unsubscribe one-click", "127.0.0.1", "MailClient/2")]
    finally:
        scoped.close()
