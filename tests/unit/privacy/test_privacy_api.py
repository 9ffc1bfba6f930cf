"""``/v1/privacy/*`` in-process: the admin token, export by email, consent with proof, erasure
(idempotent), 404 without echoing the subject, and the OpenAPI entries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from tests.unit.admin_api import API_NOW, AdminApi

from personify.privacy.crypto import new_key
from personify.profiles import resolve_customer
from personify.server.app import create_app
from personify.session import Session

NOW = API_NOW
CRM = "id,email,first_name\nc1,ann@example.org,Ann\nc2,bob@example.org,Bob\n"


@pytest.fixture
def api(admin_api: Callable[..., AdminApi]) -> AdminApi:
    return admin_api(
        CRM,
        "privacy:\n  encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS}\n"
        "admin_tokens:\n  - name: support\n    token: ${SUPPORT_TOKEN}\n"
        "    scopes: [profiles:read]\n"
        "  - name: helpdesk\n    token: ${HELPDESK_TOKEN}\n    scopes: [privacy:masked]\n",
        {
            "PERSONIFY_ENCRYPTION_KEYS": f"k1:{new_key()}",
            "SUPPORT_TOKEN": "support-token-123-Kp4sW9",
            "HELPDESK_TOKEN": "helpdesk-token-456-Tn8qB2",
        },
    )


@pytest.fixture
def session(api: AdminApi) -> Session:
    return api.session


@pytest.fixture
def auth(api: AdminApi) -> dict[str, str]:
    return api.bearer()


def call(
    session: Session, method: str, path: str, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    return AdminApi(session, Path()).call(method, path, headers, body)


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
    # what is left to remove at destinations (none configured here: nothing, said so)
    assert erased.json()["removals_pending"] == {} and erased.json()["destinations"] == []
    again = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "ann@example.org"})
    assert again.json()["status"] == "already_erased"
    assert again.json()["removals_pending_all"] == {}
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
    support = {"authorization": "Bearer support-token-123-Kp4sW9"}
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


def test_a_masked_role_sees_what_is_held_but_not_the_values(
    session: Session, auth: dict[str, str]
) -> None:
    proof = {"ip": "192.0.2.7", "user_agent": "Firefox/130"}
    change = {"subject": "ann@example.org", "purpose": "p", "status": "granted", "proof": proof}
    assert call(session, "POST", "/v1/privacy/consent", auth, change).status_code == 200
    helpdesk = {"authorization": "Bearer helpdesk-token-456-Tn8qB2"}
    ann = resolve_customer(session.warehouse, "c1", session.project)  # by customer id only
    masked = call(session, "GET", export(ann), helpdesk)
    assert masked.status_code == 200, masked.text
    body = masked.json()
    assert body["masked"] is True
    assert "ann@example.org" not in masked.text and "192.0.2.7" not in masked.text
    assert body["profile"]["email"] == "***@example.org"
    assert body["profile"]["first_name"] == "A***"
    assert {"kind": "email", "value": "***@example.org"} in body["identifiers"]
    (history,) = body["tables"]["consent_history"]
    assert history["ip"] == "192.x.x.x" and history["user_agent"] == "F***"
    assert body["counts"]["customers"] == 1  # what is held: the same rows
    # the same export with the privacy scope: raw values
    raw = call(session, "GET", "/v1/privacy/export?subject=ann@example.org", auth).json()
    assert raw["profile"]["email"] == "ann@example.org" and "masked" not in raw
    assert raw["counts"] == body["counts"]
    # the masked role may not change anything, nor read profiles
    erase = call(session, "POST", "/v1/privacy/erase", helpdesk, {"subject": "ann@example.org"})
    assert erase.status_code == 403
    assert call(session, "GET", "/v1/profiles/ann@example.org", helpdesk).status_code == 403
    details = session.warehouse.fetch(
        "SELECT actor, CAST(detail AS VARCHAR) FROM audit_log WHERE action = 'export' ORDER BY seq"
    )
    assert [d[0] for d in details] == ["api:helpdesk", "api:admin"]
    assert '"masked":true' in details[0][1].replace(" ", "")


def _outbox(api_dir: Path) -> list[Any]:
    import email
    from email import policy

    folder = api_dir / "outbox"
    return [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(folder.glob("*.eml"))
    ]


def test_double_opt_in_sends_the_confirmation_email_once(api: AdminApi) -> None:
    from personify.privacy.consent import consented

    ask = {
        "subject": "bob@example.org",
        "purpose": "email_marketing",
        "status": "granted",
        "double_opt_in": True,
    }
    first = api.call("POST", "/v1/privacy/consent", api.bearer(), ask).json()
    assert first["email"]["status"] == "sent", first
    (mail,) = _outbox(api.project_dir)
    assert mail["To"].addresses[0].addr_spec == "bob@example.org"
    assert mail["Subject"] == "Please confirm your subscription"
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert first["confirmation_url"] in html.replace("&amp;", "&")
    assert "/c/" not in html  # no click tracking: the signed link goes out as it is
    row = api.session.warehouse.fetch(
        "SELECT journey, template, status, purpose, transport FROM messages"
    )
    assert row == [("double_opt_in", "confirm_subscription", "sent", "transactional", "outbox")]
    # the same sign-up again the same day: no second email; nothing granted until confirmed
    again = api.call("POST", "/v1/privacy/consent", api.bearer(), ask).json()
    assert again["email"]["status"] == "already_sent"
    assert len(_outbox(api.project_dir)) == 1
    bob = first["customer_id"]
    assert consented(api.session.warehouse, [bob], purpose="email_marketing") == set()
    # the link in the email confirms
    path = "/v1/privacy/confirm/" + first["confirmation_url"].rsplit("/", 1)[1]
    assert api.call("POST", path).status_code == 200
    assert consented(api.session.warehouse, [bob], purpose="email_marketing") == {bob}


def test_double_opt_in_without_the_projects_template_uses_the_packaged_one(
    api: AdminApi,
) -> None:
    (api.project_dir / "templates" / "confirm_subscription.liquid").unlink()
    ask = {
        "subject": "ann@example.org",
        "purpose": "newsletter",
        "status": "granted",
        "double_opt_in": True,
    }
    answer = api.call("POST", "/v1/privacy/consent", api.bearer(), ask).json()
    assert answer["email"]["status"] == "sent"
    (mail,) = _outbox(api.project_dir)
    assert "Ann, one more step" in mail.get_body(preferencelist=("html",)).get_content()
    quiet = {**ask, "purpose": "offers", "send_email": False}
    assert api.call("POST", "/v1/privacy/consent", api.bearer(), quiet).json()["email"] is None
    assert len(_outbox(api.project_dir)) == 1


def test_the_erase_answer_is_what_openapi_documents(session: Session, auth: dict[str, str]) -> None:
    """A real erase answer — and the "already erased" one — validated against the schema
    ``/openapi.json`` gives for it: a key the route returns that the model does not list fails."""
    from tests.openapi_check import assert_matches

    doc = call(session, "GET", "/openapi.json", {}).json()
    erased = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "ann@example.org"})
    assert erased.status_code == 200 and erased.json()["status"] == "erased"
    assert_matches(doc, "/v1/privacy/erase", "post", 200, erased.json())
    again = call(session, "POST", "/v1/privacy/erase", auth, {"subject": "ann@example.org"})
    assert again.json()["status"] == "already_erased"
    assert_matches(doc, "/v1/privacy/erase", "post", 200, again.json())
    with pytest.raises(AssertionError, match="new_key"):  # the check can fail
        assert_matches(doc, "/v1/privacy/erase", "post", 200, {**erased.json(), "new_key": 1})


@pytest.fixture
def api_on(admin_api: Callable[..., AdminApi], project_dir: Path, warehouse_url: str) -> AdminApi:
    """The ``api`` world on each backend (DuckDB and PostgreSQL)."""
    yml = project_dir / "personify.yml"
    yml.write_text(
        yml.read_text().replace(
            "warehouse: duckdb:///warehouse.duckdb", f"warehouse: {warehouse_url}"
        )
    )
    return admin_api(
        CRM,
        "admin_tokens:\n  - name: helpdesk\n    token: ${HELPDESK_TOKEN}\n"
        "    scopes: [privacy:masked]\n"
        "  - name: dpo\n    token: ${DPO_TOKEN}\n    scopes: [privacy]\n",
        {"HELPDESK_TOKEN": "helpdesk-token-456-Tn8qB2", "DPO_TOKEN": "dpo-token-789-Lx3vH6mc"},
    )


def export(subject: str) -> str:
    return "/v1/privacy/export?subject=" + quote(subject, safe="")


def test_a_masked_token_cannot_tell_an_existing_email_from_a_missing_one(
    api_on: AdminApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``privacy:masked`` token names people by customer id only: asked to export an email,
    the API answers the same — status, body, and the queries it ran — whether a customer has it
    (ann@example.org) or not (zed@example.org), and nothing is audited; by customer id it gets
    the masked export. A ``privacy`` token still exports by email."""
    wh = api_on.session.warehouse
    helpdesk = {"authorization": "Bearer helpdesk-token-456-Tn8qB2"}
    ran: list[str] = []
    for name in ("fetch", "scalar", "fetch_arrow"):
        real = getattr(wh, name)

        def spy(sql: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            ran.append(sql)
            return _real(sql, *args, **kw)

        monkeypatch.setattr(wh, name, spy)

    def answer(subject: str) -> tuple[int, str, list[str]]:
        ran.clear()
        got = api_on.call("GET", export(subject), helpdesk)
        return got.status_code, got.text.replace(subject, "SUBJECT"), list(ran)

    exists, missing = answer("ann@example.org"), answer("zed@example.org")
    assert exists == missing
    assert exists[0] == 404 and "customer id only" in exists[1]
    assert answer("email:ann@example.org") == answer("email:zed@example.org")
    assert not any("identity" in sql for sql in exists[2])  # the email was not looked up
    assert wh.fetch("SELECT count(*) FROM audit_log")[0][0] == 0
    ann = resolve_customer(wh, "c1", api_on.session.project)
    by_id = api_on.call("GET", export(ann), helpdesk)
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["masked"] is True and "ann@example.org" not in by_id.text
    unknown = api_on.call("GET", export("c-404"), helpdesk)
    assert (unknown.status_code, unknown.text) == (404, exists[1].replace("SUBJECT", "c-404"))
    dpo = {"authorization": "Bearer dpo-token-789-Lx3vH6mc"}
    raw = api_on.call("GET", export("ann@example.org"), dpo)
    assert raw.status_code == 200 and raw.json()["profile"]["email"] == "ann@example.org"
    nobody = api_on.call("GET", export("zed@example.org"), dpo)
    assert nobody.status_code == 404 and "customer id only" not in nobody.text


def test_a_guess_spread_over_addresses_is_limited_by_token_prefix(
    session: Session, auth: dict[str, str]
) -> None:
    """The API counts wrong tokens per token prefix too, in the budget the console's sign-in
    uses: one guess per address at ``helpdesk-…`` — at the API or the console — and after
    ``PREFIX_FAILURES`` a minute every sign-in with that prefix waits (the right token too, so a
    429 says nothing), while a token with another prefix is answered. The API itself is not held
    by the prefix budget: the right token is still answered there (anyone could otherwise stop
    an integration with 30 wrong tokens a minute)."""
    from personify.server.auth_limits import PREFIX_FAILURES

    app = create_app(session, instance="inst-1")

    def get(n: int, token: str) -> httpx.Response:
        async def go() -> httpx.Response:
            address = f"10.0.{n // 250}.{n % 250 + 1}"
            transport = httpx.ASGITransport(app=app, client=(address, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                if n % 2:  # every other guess at the console's sign-in: one budget
                    return await c.post(
                        "/console/login",
                        data={"token": token},
                        headers={"origin": "http://t"},
                    )
                return await c.get(
                    "/v1/privacy/export?subject=x", headers={"authorization": f"Bearer {token}"}
                )

        return asyncio.run(go())

    for n in range(PREFIX_FAILURES):
        assert get(n, f"helpdesk-token-guess-{n}").status_code == 401
    late = get(1001, "helpdesk-token-x")  # (odd: the console's sign-in)
    assert late.status_code == 429 and int(late.headers["retry-after"]) > 0
    signing_in = get(1003, "helpdesk-token-456-Tn8qB2")
    assert signing_in.status_code == 429 and "masked" not in signing_in.text
    right = get(1002, "helpdesk-token-456-Tn8qB2")  # (even: the API) answered, not held
    assert right.status_code == 404  # (x names nobody: a masked token names by customer id)
    wrong = get(1004, "helpdesk-token-y")  # a wrong one at the API: 401, from a new address
    assert wrong.status_code == 401
    other = get(1005, auth["authorization"].split(" ", 1)[1])  # the admin token: adm_…
    assert other.status_code != 429  # signed in (another prefix)
