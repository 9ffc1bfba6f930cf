"""The email notifier through the project's SMTP delivery, into a real SMTP server on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.unit.delivery.servers import Handler, smtp_server

from personify.alerts.notify import NotifyError, message, send_email
from personify.config import EmailNotifier, Project, parse_config


def test_alert_email_over_smtp(tmp_path: Path) -> None:
    handler = Handler(refuse={"gone@example.org": "550 5.1.1 no such user"})
    with smtp_server(handler=handler) as smtp:
        config = parse_config(
            "name: shop\n"
            f"delivery: {{kind: smtp, host: 127.0.0.1, port: {smtp.port}, tls: none}}\n"
            "email: {from_address: alerts@shop.example}\n"
        )
        project = Project(config, tmp_path, tmp_path / "personify.yml")
        msg = message(
            project,
            alert="complaints",
            signal="complaint_rate",
            kind="firing",
            subjects={"winback": 0.012},
            since="2026-05-04T12:00:00+00:00",
            at="2026-05-04T12:00:00+00:00",
        )
        notifier = EmailNotifier(to=("ops@example.org",), subject_prefix="[ALERT]")
        assert send_email(project, notifier, msg, "complaints|mail|firing|x") == (
            "1 email(s) via smtp"
        )
        (got,) = handler.received
        parsed = got.message
        assert got.rcpt_tos == ["ops@example.org"] and got.mail_from == "alerts@shop.example"
        assert parsed["Subject"] == "[ALERT] [shop] alert complaints FIRING: complaint_rate"
        text = parsed.get_body(("plain",))
        assert text is not None and "winback (0.012)" in text.get_content()

        refused = EmailNotifier(to=("gone@example.org",))
        with pytest.raises(NotifyError, match="not handed over via smtp"):
            send_email(project, refused, msg, "complaints|mail2|firing|x")


def test_a_refused_address_is_retried_alone(tmp_path: Path) -> None:
    """One row per address: the retry mails the address that was refused, not the others."""
    from datetime import UTC, datetime, timedelta

    from personify import clock
    from personify.alerts import check_alerts, list_alerts
    from personify.session import Session
    from personify.sources.schedule import record_run
    from personify.warehouse import connect

    t0 = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    handler = Handler(refuse={"late@example.org": "450 4.2.0 mailbox busy"})
    with smtp_server(handler=handler) as smtp:
        config = parse_config(
            f"warehouse: duckdb:///{tmp_path / 'w.duckdb'}\n"
            f"delivery: {{kind: smtp, host: 127.0.0.1, port: {smtp.port}, tls: none}}\n"
            "alerts:\n  - {name: sync_failing, when: source_failed, notify: [ops_mail]}\n"
            "notifiers:\n  ops_mail: {kind: email, to: [ops@example.org, late@example.org]}\n"
        )
        project = Project(config, tmp_path, tmp_path / "personify.yml")
        wh = connect(config.warehouse)
        session = Session(project)
        session._warehouse = wh
        try:
            with clock.frozen(t0):
                record_run(wh, "crm", started_at=t0, seconds=1, counts={}, error="boom")
                first = check_alerts(session, now=t0)
            assert len(first.sent) == 1 and len(first.failed) == 1
            assert [r.rcpt_tos for r in handler.received] == [["ops@example.org"]]
            assert list_alerts(session)[0].failed_notifications[0]["attempts"] == 1
            handler.refuse.clear()
            later = t0 + timedelta(minutes=1)
            with clock.frozen(later):
                second = check_alerts(session, now=later)
            assert len(second.sent) == 1 and second.failed == []
            assert [r.rcpt_tos for r in handler.received] == [
                ["ops@example.org"],
                ["late@example.org"],
            ]
        finally:
            wh.close()
