"""Webhook notifiers: the Slack and JSON bodies, and a URL (a secret) never logged."""

from __future__ import annotations

import logging

import pytest
from tests.alert_hooks import webhook_receiver

from personify.alerts.notify import NotifyError, message, send_webhook, slack_payload
from personify.config import Project, WebhookNotifier, parse_config
from personify.config import Secret as S


def _msg(kind: str = "firing") -> dict[str, object]:
    proj = Project(parse_config("name: shop\n"), None, None)  # type: ignore[arg-type]
    return message(
        proj,
        alert="crm_down",
        signal="source_failed",
        kind=kind,
        subjects={"crm": "failed", "shop": "failed"},
        since="2026-05-04T12:00:00+00:00",
        at="2026-05-04T12:01:00+00:00",
    )


def test_slack_shape() -> None:
    body = slack_payload(_msg())
    assert (
        body["text"] == "[shop] alert crm_down FIRING: source_failed — crm (failed), shop (failed)"
    )
    assert body["blocks"][0] == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": ":rotating_light: *[shop] alert crm_down FIRING: source_failed*",
        },
    }
    resolved = slack_payload(_msg("resolved"))
    assert resolved["text"].startswith("[shop] alert crm_down RESOLVED")
    assert slack_payload(_msg("repeat"))["text"].startswith("[shop] alert crm_down STILL FIRING")


def test_the_url_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="httpx")
    with webhook_receiver() as hook:
        secret = hook.url + "/T000/B000/XXXXsecretXXXX"
        notifier = WebhookNotifier(url=S(secret), format="json")
        assert send_webhook(notifier, _msg()) == "HTTP 200"
        assert hook.bodies[0]["subjects"] == {"crm": "failed", "shop": "failed"}
        hook.statuses = [404]
        with pytest.raises(NotifyError, match="webhook answered HTTP 404") as caught:
            send_webhook(notifier, _msg())
        assert "secret" not in str(caught.value)
    assert "HTTP Request: POST http://127.0.0.1" in caplog.text
    assert "XXXXsecretXXXX" not in caplog.text and "/***" in caplog.text


def test_the_headline_says_who_joined_and_who_recovered() -> None:
    proj = Project(parse_config("name: shop\n"), None, None)  # type: ignore[arg-type]
    msg = message(
        proj,
        alert="sync_failing",
        signal="source_failed",
        kind="grown",
        subjects={"crm": "failed", "web": "failed"},
        new=["web"],
        resolved={"shop": "2026-05-04T12:10:00+00:00"},
        since="2026-05-04T12:00:00+00:00",
        at="2026-05-04T12:20:00+00:00",
    )
    body = slack_payload(msg)
    assert body["text"].startswith(
        "[shop] alert sync_failing FIRING: source_failed (now also web; resolved for shop)"
    )
    assert (
        "*resolved for:* shop (at 2026-05-04T12:10:00+00:00)" in body["blocks"][1]["text"]["text"]
    )
