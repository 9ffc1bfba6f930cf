"""``GET /v1/profiles/{id_or_email}`` in-process: the admin token (401 without it or with a wrong
one), 404 for unknown identifiers, the unified profile by email or customer id."""

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
from personify.profiles import profiles_stage
from personify.server.app import create_app
from personify.session import Session
from personify.sources.files import import_file

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CRM = (
    "id,email,first_name,last_name,updated_at\n"
    "c1, Ann@Example.org ,Ann,Lee,2026-01-01T00:00:00Z\n"
    "c2,bob@example.org,Bob,Ray,2026-01-02T00:00:00Z\n"
)


@pytest.fixture
def session(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    env = dotenv_values(project_dir / ".env")
    for key, value in env.items():
        if value is not None:
            monkeypatch.setenv(key, value)
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
def token(project_dir: Path) -> str:
    value = dotenv_values(project_dir / ".env").get("PERSONIFY_ADMIN_TOKEN")
    assert value
    return value


def get(session: Session, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    app = create_app(session, instance="inst-1")

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get(path, headers=headers or {})

    return asyncio.run(go())


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_profile_by_email_and_by_customer_id(session: Session, token: str) -> None:
    by_email = get(session, "/v1/profiles/ann@example.org", bearer(token))
    assert by_email.status_code == 200
    body: dict[str, Any] = by_email.json()
    assert body["profile"]["email"] == "ann@example.org"
    assert body["profile"]["first_name"] == "Ann"
    assert body["fields"]["first_name"]["source"] == "crm"
    kinds = {(i["kind"], i["value"]) for i in body["identities"]}
    assert {("email", "ann@example.org"), ("crm_id", "c1")} <= kinds
    # the same customer by its id, and by a differently written email
    by_id = get(session, f"/v1/profiles/{body['customer_id']}", bearer(token))
    assert by_id.status_code == 200 and by_id.json()["customer_id"] == body["customer_id"]
    messy = get(session, "/v1/profiles/%20ANN%40example.org", bearer(token))
    assert messy.json()["customer_id"] == body["customer_id"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic abc"}, {"authorization": ""}],
)
def test_without_the_admin_token_401(session: Session, headers: dict[str, str]) -> None:
    answer = get(session, "/v1/profiles/ann@example.org", headers)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "ann" not in answer.text


def test_unknown_identifier_404_without_echoing_it(session: Session, token: str) -> None:
    answer = get(session, "/v1/profiles/nobody@example.org", bearer(token))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
    assert "nobody" not in answer.text


def test_listed_in_openapi_with_its_security(session: Session) -> None:
    doc = get(session, "/openapi.json").json()
    op = doc["paths"]["/v1/profiles/{id_or_email}"]["get"]
    assert op["security"] == [{"adminToken": []}]
    assert "adminToken" in doc["components"]["securitySchemes"]
