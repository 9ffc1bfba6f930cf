"""``GET /v1/profiles/{id_or_email}`` in-process: the admin token (401 without it or with a wrong
one), 404 for unknown identifiers, the unified profile by email or customer id."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from tests.unit.admin_api import AdminApi

from personify.session import Session

CRM = (
    "id,email,first_name,last_name,updated_at\n"
    "c1, Ann@Example.org ,Ann,Lee,2026-01-01T00:00:00Z\n"
    "c2,bob@example.org,Bob,Ray,2026-01-02T00:00:00Z\n"
)


@pytest.fixture
def api(admin_api: Callable[..., AdminApi]) -> AdminApi:
    return admin_api(CRM)


@pytest.fixture
def session(api: AdminApi) -> Session:
    return api.session


@pytest.fixture
def token(api: AdminApi) -> str:
    return api.admin_token


def get(session: Session, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return AdminApi(session, session.project.root).call("GET", path, headers)


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
