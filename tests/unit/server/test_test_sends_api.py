"""``POST /v1/test-sends`` in-process, into a real SMTP server on loopback: the admin scope, only
``email.test_recipients``, one marked copy per recipient, nothing in ``messages``, an audit row
naming the token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.unit.admin_api import AdminApi
from tests.unit.delivery.servers import smtp_server

CRM = "id,email,first_name,last_name,updated_at\nc1,ann@example.org,Ann,Lee,2026-01-01T00:00:00Z\n"
READER = "reader-token-0123456789"


def _configure(root: Path, smtp_port: int) -> None:
    yml = root / "personify.yml"
    text = yml.read_text().replace(
        "delivery:\n  kind: outbox\n  path: outbox\n",
        f"delivery:\n  kind: smtp\n  host: 127.0.0.1\n  port: {smtp_port}\n  tls: none\n",
    )
    text = text.replace(
        "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/",
        "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/\n"
        "  test_recipients: ['*@shop.example']",
    )
    assert "kind: smtp" in text and "test_recipients" in text
    yml.write_text(text)


def test_post_test_sends(project_dir: Path, admin_api: Callable[..., AdminApi]) -> None:
    with smtp_server() as smtp:
        _configure(project_dir, smtp.port)
        api = admin_api(
            CRM,
            yaml="admin_tokens:\n  - name: reader\n    token: ${READER}\n"
            "    scopes: [profiles:read]\n",
            env={"READER": READER},
        )
        body = {"template": "re_engagement", "customer": "ann@example.org", "to": []}
        assert api.call("POST", "/v1/test-sends", {}, body).status_code == 401
        weak = api.call("POST", "/v1/test-sends", api.bearer(READER), body)
        assert weak.status_code == 403

        body["to"] = ["qa@shop.example", "ann@example.org"]
        refused = api.call("POST", "/v1/test-sends", api.bearer(), body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "recipient_not_allowed"
        assert "email.test_recipients" in error["message"]
        assert smtp.handler.received == []

        body["to"] = ["qa@shop.example"]
        nobody = api.call("POST", "/v1/test-sends", api.bearer(), {**body, "customer": "x@y.z"})
        assert nobody.status_code == 404 and "x@y.z" not in nobody.text

        done = api.call("POST", "/v1/test-sends", api.bearer(), body)
        assert done.status_code == 200, done.text
        [got] = smtp.handler.received

    answer = done.json()
    assert answer["customer_id"].startswith("cus_") and answer["transport"] == "smtp"
    assert answer["subject"].startswith("[TEST] ") and answer["sent"][0]["ok"] is True
    assert answer["send_now"]["outcome"]  # the customer's own send, judged
    assert got.rcpt_tos == ["qa@shop.example"]
    assert got.message["X-Personify-Test"] == "1" and got.message["Subject"] == answer["subject"]
    wh = api.session.warehouse
    assert wh.scalar("SELECT count(*) FROM messages") == 0
    assert wh.fetch("SELECT actor FROM audit_log WHERE action = 'test_send'") == [("api:admin",)]
