"""``/v1/privacy/*`` in-process: the admin token, export by email, consent with proof, erasure
(idempotent), 404 without echoing the subject, and the OpenAPI entries."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values

from personify import clock
from personify.config import load_project
from personify.identity import identity_stage
from personify.privacy.crypto import new_key
from personify.profiles import profiles_stage
from personify.server.app import create_app
from personify.session import Session
from personify.sources.files import import_file

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CRM = "id,email,first_name\nc1,ann@example.org,Ann\nc2,bob@example.org,Bob\n"


@pytest.fixture
def session(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    for key, value in dotenv_values(project_dir / ".env").items():
        if value is not None:
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("PERSONIFY_ENCRYPTION_KEYS", f"k1:{new_key()}")
    monkeypatch.setenv("SUPPORT_TOKEN", "support-token-123")
    with (project_dir / "personify.yml").open("a") as f:
        f.write(
            "privacy:\n  encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS}\n"
            "admin_tokens:\n  - name: support\n    token: ${SUPPORT_TOKEN}\n"
            "    scopes: [profiles:read]\n"
        )
    s = Session(load_project(project_dir))
    try:
        with clock.frozen(NOW):
            data = project_dir / "crm.csv"
            data.write_text(CRM, encoding="utf-8")
            import_file(
                s, data, table="customers", mapping={"customer_id": "id"}, source_name="crm"
            )
            identity_stage(s)
            profiles_stage(s)
        yield s
    finally:
        s.close()


@pytest.fixture
def auth(project_dir: Path) -> dict[str, str]:
    token = dotenv_values(project_dir / ".env").get("PERSONIFY_ADMIN_TOKEN")
    assert token
    return {"authorization": f"Bearer {token}"}


def call(
    session: Session, method: str, path: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    app = create_app(session, instance="inst-1")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.request(method, path, headers=headers, json=body)

    with clock.frozen(NOW):
        return asyncio.run(go())


def test_consent_export_erase(session: Session, auth: dict[str, str]) -> None:
    change = {
        "subject": "ann@example.org",
        "purpose": "email_marketing",
        "status": "granted",
        "source": "preference_centre",
        "proof": {"ip": "192.0.2.7", "confirmed_at": "2026-03-01T11:00:00Z"},
    }
    answer = call(session, "POST", "/v1/privacy/consent", auth, change)
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed"] is True

    doc = call(session, "GET", "/v1/privacy/export?subject=ann@example.org", auth)
    assert doc.status_code == 200
    body = doc.json()
    assert body["profile"]["first_name"] == "Ann"
    (history,) = body["tables"]["consent_history"]
    assert history["ip"] == "192.0.2.7" and history["confirmed_at"]
    stored = session.warehouse.scalar("SELECT ip FROM consent_history")
    assert str(stored).startswith("enc1:k1:")  # at rest: encrypted; in the export: plain
    assert "bob@example.org" not in doc.text
    assert [e["action"] for e in body["access_log"]] == ["consent"]

    erased = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "ann@example.org"})
    assert erased.status_code == 200 and erased.json()["status"] == "erased"
    again = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "ann@example.org"})
    assert again.json()["status"] == "already_erased"
    gone = call(session, "GET", "/v1/privacy/export?subject=ann@example.org", auth)
    assert gone.status_code == 404 and "ann" not in gone.text
    actions = session.warehouse.fetch("SELECT action, actor FROM audit_log ORDER BY occurred_at")
    assert actions == [("consent", "api:admin"), ("export", "api:admin"), ("erase", "api:admin")]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/privacy/export?subject=ann@example.org"), ("POST", "/v1/privacy/erase")],
)
def test_admin_token_required(session: Session, method: str, path: str) -> None:
    answer = call(session, method, path, {"authorization": "Bearer wrong"}, {"subject": "x"})
    assert answer.status_code == 401
    assert session.warehouse.scalar("SELECT count(*) FROM customers") == 2


def test_bad_requests(session: Session, auth: dict[str, str]) -> None:
    assert call(session, "GET", "/v1/privacy/export", auth).status_code == 400
    assert call(session, "POST", "/v1/privacy/erase", auth, {"who": "x"}).status_code == 400
    bad = {"subject": "ann@example.org", "purpose": "p", "status": "maybe"}
    assert call(session, "POST", "/v1/privacy/consent", auth, bad).status_code == 400
    missing = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "nobody@example.org"})
    assert missing.status_code == 404 and "nobody" not in missing.text


def test_listed_in_openapi(session: Session) -> None:
    doc = call(session, "GET", "/openapi.json", {}).json()
    for path, method in (
        ("/v1/privacy/export", "get"),
        ("/v1/privacy/erase", "post"),
        ("/v1/privacy/consent", "post"),
    ):
        assert doc["paths"][path][method]["security"] == [{"adminToken": []}]


def test_scopes_and_profile_read_audit(session: Session) -> None:
    support = {"authorization": "Bearer support-token-123"}
    profile = call(session, "GET", "/v1/profiles/ann@example.org", support)
    assert profile.status_code == 200
    denied = call(session, "GET", "/v1/privacy/export?subject=ann@example.org", support)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    audit = session.warehouse.fetch("SELECT action, actor, subject_hash FROM audit_log")
    assert [a[:2] for a in audit] == [("profile_read", "api:support")]
    assert profile.json()["customer_id"] not in str(audit)


def test_failed_attempts_are_limited(session: Session, auth: dict[str, str]) -> None:
    app = create_app(session, instance="inst-1")

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.50", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            wrong = {"authorization": "Bearer guess"}
            answers = [await c.get("/v1/profiles/x", headers=wrong) for _ in range(11)]
            answers.append(await c.get("/v1/profiles/ann@example.org", headers=auth))
            return answers

    answers = asyncio.run(go())
    assert [a.status_code for a in answers[:10]] == [401] * 10
    assert answers[10].status_code == 429 and int(answers[10].headers["retry-after"]) > 0
    assert answers[11].status_code == 429  # the address is locked out for the window


def test_double_opt_in(session: Session, auth: dict[str, str]) -> None:
    from personify.privacy.consent import consented

    wh = session.warehouse
    ask = {
        "subject": "bob@example.org",
        "purpose": "email_marketing",
        "status": "granted",
        "double_opt_in": True,
        "proof": {"form": "footer", "ip": "192.0.2.10"},
    }
    pending = call(session, "POST", "/v1/privacy/consent", auth, ask).json()
    assert pending["pending"] is True
    bob = pending["customer_id"]
    assert consented(wh, [bob], purpose="email_marketing") == set()
    path = "/v1/privacy/confirm/" + pending["confirmation_url"].rsplit("/", 1)[1]
    page = call(session, "GET", path, {})
    assert page.status_code == 200 and "<form" in page.text
    assert consented(wh, [bob], purpose="email_marketing") == set()  # a GET changes nothing
    forged = call(session, "POST", path[:-3] + "AAA", {})
    assert forged.status_code == 400
    done = call(session, "POST", path, {"user-agent": "MailApp/1"})
    assert done.status_code == 200 and "confirmed" in done.text
    assert consented(wh, [bob], purpose="email_marketing") == {bob}
    rows = wh.fetch(
        "SELECT status, source, confirmed_at IS NOT NULL FROM consent_history "
        "WHERE customer_id = ? ORDER BY recorded_at",
        [bob],
    )
    assert rows == [("pending", "api", False), ("granted", "double_opt_in", True)]


def test_confirmation_tokens_expire() -> None:
    from datetime import timedelta

    from personify.privacy.doi import VALID_FOR, sign, verify

    token = sign(b"k", "c1", "email_marketing", "email", NOW)
    claim = verify(b"k", token, NOW + timedelta(days=1))
    assert claim and claim.customer_id == "c1" and claim.purpose == "email_marketing"
    assert verify(b"k", token, NOW + VALID_FOR + timedelta(seconds=1)) is None
    assert verify(b"other", token, NOW) is None
    assert verify(b"k", "garbage", NOW) is None
