"""Delivery end to end: a project configured with ``delivery: kind: smtp`` sends a rendered
abandoned-cart email into a real SMTP server (aiosmtpd on loopback), read back with the ``email``
package; the unsubscribe link it carries, POSTed one-click to a real ``personify serve``, suppresses
the customer so the next send is stopped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa

from personify.config import load_project
from personify.delivery import prepare, transport_for, verify
from personify.delivery.tokens import project_key
from personify.journeys.decide import suppressed
from personify.privacy.consent import consented, record
from personify.scaffold import init_project
from personify.session import open_session
from personify.warehouse import connect, table
from tests.e2e.cli import CART, RECS
from tests.e2e.test_serve import free_port, start_server
from tests.unit.delivery.servers import smtp_server

WHEN = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
CODE = "CART-K7Q2-9XWD"


def configure(root: Path, smtp_port: int, serve_port: int) -> None:
    yml = root / "personify.yml"
    text = yml.read_text()
    text = text.replace(
        "delivery:\n  kind: outbox\n  path: outbox\n",
        "delivery:\n  kind: smtp\n  host: 127.0.0.1\n"
        f"  port: {smtp_port}\n  tls: none\n  pool_size: 2\n  rate_limit: 100\n",
    )
    text = text.replace(
        "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/",
        f"unsubscribe_url: http://127.0.0.1:{serve_port}/unsubscribe/\n"
        "  unsubscribe_mailto: unsubscribe@shop.example",
    )
    assert "kind: smtp" in text and f":{serve_port}/unsubscribe/" in text
    yml.write_text(text)
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.load(
            table("customers"),
            pa.Table.from_pylist(
                [
                    {
                        "customer_id": "c-42",
                        "email": "zoe@x.org",
                        "first_name": "Zoë",
                        "last_name": "Ünal",
                        "preferred_categories": '["Shoes"]',
                        "updated_at": WHEN,
                    }
                ]
            ),
        )
        record(wh, subject="c-42", purpose="marketing", status="granted", source="crm", at=WHEN)


def test_smtp_delivery_and_one_click_unsubscribe(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    init_project(root)
    serve_port = free_port()
    with smtp_server() as smtp:
        configure(root, smtp.port, serve_port)
        variables = {
            "cart": CART,
            "recommendations": RECS,
            "discount": {"code": CODE, "label": "10% off", "expires_at": "1 March"},
            "currency": "€",
        }
        key = "abandoned_cart:send:c-42:cart-9"
        with open_session(root) as session:
            envelope = prepare(
                session.warehouse, session.project, "abandoned_cart", "c-42", variables, key=key
            )
        transport = transport_for(load_project(root))
        try:
            assert transport.name == "smtp"
            first = transport.send(envelope)
            again = transport.send(envelope)  # a rerun: nothing handed over twice
        finally:
            transport.close()
        assert first.new and not again.new
        [got] = smtp.handler.received

    assert got.rcpt_tos == ["zoe@x.org"] and got.mail_from == "shop@example.com"
    msg = got.message
    assert msg["To"].addresses[0].display_name == "Zoë Ünal"
    assert msg["From"].addresses[0].display_name == "My Shop"
    assert msg["Subject"] == "Zoë, your cart is waiting"
    assert msg["Date"] is not None and msg["Message-ID"].endswith("@example.com>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    assert links[0].startswith(f"http://127.0.0.1:{serve_port}/unsubscribe/")
    assert links[1] == "mailto:unsubscribe@shop.example?subject=unsubscribe"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    for part in (text, html):
        content = part.get_content()
        assert CODE in content and "Trail Boot" in content
        assert all(f"Rec {i}" in content for i in range(4))
    assert b"\r\n" in got.data and b"\n" not in got.data.replace(b"\r\n", b"")

    token = links[0].rsplit("/", 1)[1]
    claim = verify(project_key(load_project(root)), token)
    assert claim is not None and claim.customer_id == "c-42"

    server = start_server(root, tmp_path / "serve.log", port=serve_port)
    try:
        page = httpx.get(links[0], timeout=10, trust_env=False)
        assert page.status_code == 200 and "<form" in page.text
        done = httpx.post(
            links[0],
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=10,
            trust_env=False,
        )
        assert done.status_code == 200, done.text
        forged = httpx.post(links[0][:-3] + "xyz", timeout=10, trust_env=False)
        assert forged.status_code == 400
    finally:
        assert server.stop() == 0, server.output()
    assert "zoe@x.org" not in server.output() and token not in server.output()

    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        reasons = wh.fetch("SELECT kind, reason, customer_id FROM suppressions ORDER BY kind")
        assert reasons == [
            ("customer_id", "unsubscribed", "c-42"),
            ("email", "unsubscribed", "c-42"),
        ]
        assert suppressed(wh, ["c-42"]) == {"c-42"}  # the next send is stopped
        assert consented(wh, ["c-42"], purpose="marketing") == set()
