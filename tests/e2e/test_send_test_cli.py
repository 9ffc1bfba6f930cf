"""``personify send-test``: a customer's email, as ``render`` shows it, into a real SMTP server
(aiosmtpd on loopback) for the addresses ``email.test_recipients`` lists — and nowhere else."""

from __future__ import annotations

import re
from pathlib import Path

from personify.config import load_project
from personify.delivery import verify
from personify.delivery.tokens import is_test
from personify.privacy.audit import customer_hash
from personify.warehouse import connect
from tests.e2e.cli import personify, personify_json
from tests.e2e.test_render_cli import NOW, _state, load_shop, send_journeys
from tests.unit.delivery.servers import smtp_server

STAFF = ("qa@shop.example", "Lead@Team.Example")


def configure(root: Path, smtp_port: int) -> None:
    yml = root / "personify.yml"
    text = yml.read_text()
    text = text.replace(
        "delivery:\n  kind: outbox\n  path: outbox\n",
        f"delivery:\n  kind: smtp\n  host: 127.0.0.1\n  port: {smtp_port}\n  tls: none\n",
    )
    text = text.replace(
        "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/",
        "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/\n"
        "  test_recipients: [qa@shop.example, '*@team.example']",
    )
    assert "kind: smtp" in text and "test_recipients" in text
    yml.write_text(text)


def _audit(root: Path) -> list[tuple[object, ...]]:
    with connect(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        return wh.fetch(
            "SELECT action, actor, subject_hash, CAST(detail AS VARCHAR) FROM audit_log "
            "WHERE action = 'test_send' ORDER BY seq"
        )


def test_send_test_mails_staff_only_and_records_nothing_but_an_audit_entry(
    project_dir: Path,
) -> None:
    load_shop(project_dir)
    send_journeys(project_dir)  # outbox: the journeys' real sends happen before SMTP is set
    p = str(project_dir)
    with smtp_server() as smtp:
        configure(project_dir, smtp.port)
        before = _state(project_dir)  # messages, discount_codes, journey_instances

        # a customer's address (or a typo) is refused before anything is rendered or sent
        refused = personify(
            "send-test", "abandoned_cart", "-c", "c", "--to", "qa@shop.example",
            "--to", "c@example.com", "--project", p, "--now", NOW,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert "email.test_recipients" in refused.stderr and "c@example.com" in refused.stderr
        assert smtp.handler.received == [] and _audit(project_dir) == []

        doc = personify_json(
            "send-test", "abandoned_cart", "--customer", "c@example.com", "--to", STAFF[0],
            "--to", STAFF[1], "--project", p, "--now", NOW,
        )  # fmt: skip
        received = list(smtp.handler.received)
        preview = personify_json(
            "render", "abandoned_cart", "-c", "c", "--project", p, "--now", NOW
        )
        plain = personify(
            "send-test", "abandoned_cart", "-c", "c", "--to", STAFF[0], "--project", p,
            "--now", NOW,
        )  # fmt: skip
        assert plain.returncode == 0, plain.stderr
        assert "a send now would go out" in plain.stderr and "[TEST] " in plain.stdout
        again = smtp.handler.received[len(received) :]

    assert doc["transport"] == "smtp" and doc["customer_id"] == "c"
    assert [s["to"] for s in doc["sent"]] == ["qa@shop.example", "Lead@Team.Example"]
    assert all(s["ok"] for s in doc["sent"])
    assert doc["journey"]["name"] == "abandoned_cart" and doc["journey"]["trigger_key"] == "cc"
    assert doc["send_now"]["outcome"] == "send"

    # each test address got its own copy, marked, with nobody else in it
    assert sorted(r.rcpt_tos[0] for r in received) == ["Lead@Team.Example", "qa@shop.example"]
    tokens = re.compile(r"/(c|o|unsubscribe)/[A-Za-z0-9_.\-=]+")
    key = load_project(project_dir).config.signing_key.reveal().encode()  # type: ignore[union-attr]
    for got in received:
        msg = got.message
        assert len(got.rcpt_tos) == 1 and str(msg["To"]) == got.rcpt_tos[0]
        assert msg["Subject"] == "[TEST] " + preview["subject"] == doc["subject"]
        assert msg["X-Personify-Test"] == "1" and msg["Bcc"] is None and msg["Cc"] is None
        assert not re.search(rb"(?<![\w.+-])c@example\.com", got.data)  # the customer's address
        assert b"\r\nList-Unsubscribe: <http://" in got.data  # as sent to customers, not re-encoded
        html, text = msg.get_body(("html",)), msg.get_body(("plain",))
        assert html is not None and text is not None
        # what render shows (its preview code, cart and links), but for the link tokens
        body = str(text.get_content()).replace("\r\n", "\n")
        assert tokens.sub("/t", body) == tokens.sub("/t", preview["text"])
        assert "PREVIEW-CODE" in body and "Product 3" in body
        # the unsubscribe link is a test token: it names and unsubscribes nobody
        unsub = re.findall(r"<([^>]+/unsubscribe/[^>]+)>", str(msg["List-Unsubscribe"]))[0]
        token = unsub.rsplit("/", 1)[1]
        assert verify(key, token) is None and is_test(key, token)
        assert b"\r\n" in got.data and b"\n" not in got.data.replace(b"\r\n", b"")
    ids = {str(r.message["Message-ID"]) for r in [*received, *again]}
    assert len(ids) == 3  # every copy, and a second test send, arrive as new emails

    # no messages row, no code, no journey state: only the audit log knows
    assert _state(project_dir) == before
    audit = _audit(project_dir)
    assert len(audit) == 2 and audit[0][:3] == ("test_send", "cli", customer_hash(key, "c"))
    detail = str(audit[0][3])
    assert '"template":"abandoned_cart"' in detail.replace(" ", "")
    assert "shop.example" not in detail.lower() and "team.example" not in detail.lower()
    assert detail.count('"') and len(re.findall(r"[0-9a-f]{32}", detail)) >= 2


def test_send_test_is_off_until_recipients_are_listed(project_dir: Path) -> None:
    load_shop(project_dir)
    done = personify(
        "send-test", "re_engagement", "-c", "a", "--to", "qa@shop.example",
        "--project", str(project_dir),
    )  # fmt: skip
    assert done.returncode == 2
    assert "test sends are off" in done.stderr and "email.test_recipients" in done.stderr
    assert not (project_dir / "outbox").exists() or not any(
        (project_dir / "outbox").glob("test_*.eml")
    )


def test_an_outbox_test_copy_is_the_customers_data_erasure_removes(project_dir: Path) -> None:
    """With the outbox, a test copy is a file holding the customer's data: the index names them,
    so their erasure deletes it like their own emails."""
    load_shop(project_dir)
    yml = project_dir / "personify.yml"
    yml.write_text(
        yml.read_text().replace(
            "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/",
            "unsubscribe_url: http://127.0.0.1:8787/unsubscribe/\n"
            "  test_recipients: [qa@shop.example]",
        )
    )
    p = str(project_dir)
    doc = personify_json("send-test", "re_engagement", "-c", "a", "--to", STAFF[0], "--project", p)
    assert doc["transport"] == "outbox" and doc["sent"][0]["ok"]
    [copy] = (project_dir / "outbox").glob("test_re_engagement_*.eml")
    assert copy.read_bytes().count(b"X-Personify-Test: 1") == 1
    with connect(f"duckdb:///{project_dir / 'warehouse.duckdb'}") as wh:  # a resolved customer
        wh.execute(
            "INSERT INTO customer_ids (customer_id, founder, founded_at, status) "
            "VALUES ('a', 1, TIMESTAMP '2026-01-01 00:00:00', 'active')"
        )
    erased = personify("privacy", "erase", "a", "--project", p)
    assert erased.returncode == 0, erased.stderr
    assert not copy.exists()
