"""Unsubscribes and spam complaints counted against the message, through a real ``personify
serve``: a journey sends two emails to the outbox; one recipient POSTs the one-click unsubscribe
link of their email (from its ``List-Unsubscribe`` header), the ESP relays the other's spam
complaint naming the message; ``personify report journeys`` counts one of each for the step, and
``personify status`` flags the journey's complaint rate above ``engagement.max_complaint_rate``."""

from __future__ import annotations

import base64
import email
import json
import time
from datetime import UTC, datetime
from email import policy
from pathlib import Path

import httpx
import pytest

from tests.e2e.cli import start_server
from tests.e2e.test_serve import CART_JOURNEY, run, run_json

BASIC = {"authorization": "Basic " + base64.b64encode(b"hooks:pw-123").decode()}
PEOPLE = {"u-1": "ann@example.com", "u-2": "bob@example.com"}


def _project(project_dir: Path) -> None:
    yml = project_dir / "personify.yml"
    text = yml.read_text()
    outbox = "delivery:\n  kind: outbox\n  path: outbox\n"
    assert outbox in text
    hooks = outbox + "  webhooks:\n    - {provider: postmark, secret: 'hooks:pw-123'}\n"
    yml.write_text(text.replace(outbox, hooks))
    (project_dir / "journeys" / "cart_now.yml").write_text(CART_JOURNEY)
    (project_dir / "templates" / "cart_now.liquid").write_text(
        '---\nsubject: "Your cart"\nlayout: none\n---\n<p>Hi {{ customer.first_name }}</p>\n'
    )


def _wait(check: object, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.timeout(240)
def test_unsubscribe_link_and_esp_complaint_show_in_the_report(
    project_dir: Path, tmp_path: Path
) -> None:
    _project(project_dir)
    env = dict(
        line.split("=", 1) for line in (project_dir / ".env").read_text().splitlines() if line
    )
    p = str(project_dir)
    server = start_server(project_dir, tmp_path / "serve.log")
    try:
        auth = (env["PERSONIFY_WRITE_KEY"], "")
        with httpx.Client(base_url=server.url, auth=auth, timeout=30, trust_env=False) as http:
            for user, address in PEOPLE.items():
                http.post(
                    "/v1/identify",
                    json={"userId": user, "messageId": f"id-{user}", "traits": {"email": address}},
                ).raise_for_status()
            _wait(
                lambda: (
                    len(
                        run_json("sql", "SELECT customer_id FROM customers", "--project", p)["rows"]
                    )
                    == 2
                ),
                server.output(),
            )
            for address in PEOPLE.values():
                consent = ["consent", "set", address, "--purpose", "email_marketing"]
                assert run(*consent, "--status", "granted", "--project", p).returncode == 0
            for user in PEOPLE:
                http.post(
                    "/v1/track",
                    json={
                        "userId": user,
                        "messageId": f"added-{user}",
                        "event": "Product Added",
                        "properties": {"cart_id": f"cart-{user}", "product_id": "p1"},
                    },
                ).raise_for_status()
        outbox = project_dir / "outbox"
        _wait(lambda: len(list(outbox.glob("cart_now*.eml"))) == 2, server.output())
        sent = run_json(
            "sql",
            "SELECT m.idempotency_key, c.email FROM messages m JOIN customers c "
            "ON c.customer_id = m.customer_id WHERE m.journey = 'cart_now' AND m.status = 'sent'",
            "--project",
            p,
        )["rows"]
        key_of = {r["email"]: r["idempotency_key"] for r in sent}
        assert set(key_of) == set(PEOPLE.values())

        # Ann uses the one-click link of her email, twice (a mail client retrying)
        anns = [
            m
            for m in (
                email.message_from_bytes(f.read_bytes(), policy=policy.default)
                for f in outbox.glob("cart_now*.eml")
            )
            if "ann@" in str(m["To"])
        ]
        assert len(anns) == 1 and anns[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = next(
            part.strip().strip("<>")
            for part in str(anns[0]["List-Unsubscribe"]).split(",")
            if "/unsubscribe/" in part
        )
        path = "/unsubscribe/" + link.rsplit("/unsubscribe/", 1)[1]
        for _ in range(2):
            done = httpx.post(
                server.url + path,
                content=b"List-Unsubscribe=One-Click",
                headers={"content-type": "application/x-www-form-urlencoded"},
                timeout=30,
                trust_env=False,
            )
            assert done.status_code == 200 and "unsubscribed" in done.text

        # Postmark relays Bob's spam complaint, naming the message (Metadata.personify_key)
        complaint = {
            "RecordType": "SpamComplaint",
            "ID": 4242,
            "Type": "SpamComplaint",
            "TypeCode": 512,
            "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {"personify_key": key_of["bob@example.com"]},
            "Email": "bob@example.com",
            "BouncedAt": datetime.now(UTC).isoformat(),
            "Subject": "Your cart",
        }
        got = httpx.post(
            server.url + "/webhooks/esp/postmark",
            content=json.dumps(complaint).encode(),
            headers={**BASIC, "content-type": "application/json"},
            timeout=30,
            trust_env=False,
        )
        assert got.status_code == 200, got.text
        assert got.json()["suppressing"] == 1 and got.json()["attributed"] == 1

        report = run_json("report", "journeys", "--project", p)
        (step,) = [s for s in report["steps"] if s["journey"] == "cart_now"]
        assert (step["sends"], step["delivered"]) == (2, 2)
        assert (step["unsubscribed"], step["complained"]) == (1, 1)
        assert (step["unsubscribe_rate"], step["complaint_rate"]) == (0.5, 0.5)
        page = Path(p) / "fatigue.html"
        shown = run("report", "journeys", "--project", p, "--out", str(page))
        assert shown.returncode == 0, shown.stderr
        # (the table's text follows the width of the process that renders it — a forwarded
        # command renders in the server: the HTML report is what every reader sees alike)
        assert "Journeys" in shown.stdout
        html = page.read_text(encoding="utf-8")
        assert "1 unsubscribed, 1 marked as spam" in html and "50.0" in html

        status = run_json("status", "--project", p)
        cart = status["journeys"]["cart_now"]
        assert (cart["complained"], cart["complaint_rate"]) == (1, 0.5)
        assert cart["complaint_rate_high"] and status["max_complaint_rate"] == 0.003
        text = run("status", "--project", p)
        assert text.returncode == 0, text.stderr
        assert "journey cart_now: spam complaint rate 50.00%" in " ".join(text.stdout.split())
        assert "ann@" not in server.output() and "bob@" not in server.output()
    finally:
        server.stop()
