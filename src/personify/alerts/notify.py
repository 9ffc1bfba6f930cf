"""Notifiers: what an alert's message says, and how it reaches a webhook or an inbox.

Messages hold names and figures only (the alert, its signal, sources, journeys, counts, rates),
never personal data. A webhook gets a JSON body — Slack's ``{"text", "blocks"}`` shape with
``format: slack`` — and an email goes through the project's own delivery (outbox, SMTP, ESP).
A notifier that fails raises :class:`NotifyError`, whose words never hold the URL (a secret).
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from personify.config import ALERT_SIGNALS, EmailNotifier, Project, WebhookNotifier
from personify.errors import PersonifyError

_SECRET_URLS: set[str] = set()
"""Webhook URLs posted to by this process: their path is the secret (Slack's ``/services/…``)."""
_URLS_LOCK = threading.Lock()


class _HiddenWebhooks(logging.Filter):
    """On httpx's logger: its request line (``HTTP Request: POST https://hooks…``, at INFO)
    shows a webhook's URL as ``https://host/***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRET_URLS and isinstance(record.args, tuple):
            record.args = tuple(_hidden(a) for a in record.args)
        return True


def _hidden(value: Any) -> Any:
    text = str(value)
    if type(value).__name__ == "URL" or isinstance(value, str):
        for url in _SECRET_URLS:
            if text.startswith(url):
                return url.split("/", 3)[0] + "//" + url.split("/", 3)[2] + "/***"
    return value


if not any(isinstance(f, _HiddenWebhooks) for f in logging.getLogger("httpx").filters):
    logging.getLogger("httpx").addFilter(_HiddenWebhooks())


class NotifyError(PersonifyError):
    """A notifier could not hand a message over; it is retried at the next evaluation."""


def message(
    project: Project,
    *,
    alert: str,
    signal: str,
    kind: str,
    subjects: dict[str, Any],
    since: str | None,
    at: str,
    new: Sequence[str] = (),
    resolved: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The message of one notification as data (what the ``json`` format POSTs). ``kind``:
    ``firing``, ``repeat`` (still firing, ``repeat:`` later), ``grown`` (still firing, and now
    for ``new`` subjects too) or ``resolved``. ``resolved``: the subjects that stopped holding
    since they were told, and when (``resolved_subjects``; while it fires for others: "resolved
    for …")."""
    return {
        "project": project.config.name,
        "alert": alert,
        "status": "resolved" if kind == "resolved" else "firing",
        "repeat": kind == "repeat",
        "signal": signal,
        "description": ALERT_SIGNALS.get(signal, signal),
        "subjects": subjects,
        "new_subjects": list(new),
        "resolved_subjects": dict(resolved or {}),
        "since": since,
        "at": at,
    }


def headline(msg: dict[str, Any]) -> str:
    """One line: ``[project] alert NAME FIRING: signal — a (3), b (1)``."""
    word = (
        "RESOLVED"
        if msg["status"] == "resolved"
        else ("STILL FIRING" if msg["repeat"] else "FIRING")
    )
    added = msg.get("new_subjects") or []
    gone = msg.get("resolved_subjects") or {} if msg["status"] != "resolved" else {}
    notes = ([f"now also {', '.join(added)}"] if added else []) + (
        [f"resolved for {', '.join(gone)}"] if gone else []
    )
    more = f" ({'; '.join(notes)})" if notes else ""
    return f"[{msg['project']}] alert {msg['alert']} {word}: {msg['signal']}{more}"


def _resolved_line(msg: dict[str, Any]) -> str | None:
    """``resolved for: shop (at …)`` — subjects that stopped holding since they were told."""
    gone = msg.get("resolved_subjects") or {}
    if not gone:
        return None
    said = ", ".join(f"{k} (at {v or '-'})" for k, v in gone.items())
    return f"{'also resolved' if msg['status'] == 'resolved' else 'resolved'} for: {said}"


def _subject_line(msg: dict[str, Any]) -> str:
    subjects = msg["subjects"] or {}
    return ", ".join(f"{k} ({v})" for k, v in subjects.items()) or "-"


def text(msg: dict[str, Any]) -> str:
    """The message as plain text (emails, logs)."""
    lines = [
        headline(msg),
        f"signal: {msg['signal']}: {msg['description']}",
        f"{'was' if msg['status'] == 'resolved' else 'holds'} for: {_subject_line(msg)}",
        *filter(None, [_resolved_line(msg)]),
        f"firing since: {msg['since'] or '-'}",
        f"at: {msg['at']}",
        "See `personify alerts list` and `personify status`.",
    ]
    return "\n".join(lines) + "\n"


def slack_payload(msg: dict[str, Any]) -> dict[str, Any]:
    """Slack's incoming webhook shape: ``text`` (the fallback) and ``blocks``."""
    icon = ":white_check_mark:" if msg["status"] == "resolved" else ":rotating_light:"
    head = f"{icon} *{headline(msg)}*"
    body = f"{msg['description']}\n*subjects:* {_subject_line(msg)}"
    if (resolved := _resolved_line(msg)) is not None:
        body += f"\n*{resolved.split(':', 1)[0]}:*{resolved.split(':', 1)[1]}"
    return {
        "text": f"{headline(msg)} — {_subject_line(msg)}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": head}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"firing since {msg['since'] or '-'} · at {msg['at']}",
                    }
                ],
            },
        ],
    }


def send_webhook(notifier: WebhookNotifier, msg: dict[str, Any]) -> str:
    """POST the message; raises :class:`NotifyError` unless the answer is 2xx."""
    import httpx

    body = slack_payload(msg) if notifier.format == "slack" else msg
    url = str(httpx.URL(notifier.url.reveal()))
    with _URLS_LOCK:
        _SECRET_URLS.add(url)
    try:
        answer = httpx.post(
            url,
            json=body,
            timeout=notifier.timeout_seconds,
            headers={"User-Agent": "personify-alerts"},
        )
    except httpx.HTTPError as e:  # (its words may hold the URL: the type only)
        raise NotifyError(f"webhook unreachable ({type(e).__name__})") from None
    if not 200 <= answer.status_code < 300:
        raise NotifyError(f"webhook answered HTTP {answer.status_code}")
    return f"HTTP {answer.status_code}"


def send_email(
    project: Project,
    notifier: EmailNotifier,
    msg: dict[str, Any],
    key: str,
    recipients: Sequence[int] | None = None,
) -> str:
    """Email the message to each address (``recipients``: only these of ``notifier.to``, by
    index) through the project's delivery; idempotent by ``key`` where the transport is (the
    outbox never writes one key twice)."""
    from personify import clock
    from personify.delivery import DeliveryError, Envelope, transport_for
    from personify.delivery.mime import build_raw, mailbox, sender_mailbox
    from personify.messages import RenderedEmail

    settings = project.config.email
    subject = f"{notifier.subject_prefix} {headline(msg)}".strip()
    plain = text(msg)
    email = RenderedEmail(
        template="alert",
        version="1",
        subject=subject,
        html=f"<pre>{html.escape(plain)}</pre>",
        text=plain,
    )
    sender = sender_mailbox(settings.from_address, settings.from_name or None)
    transport = transport_for(project)
    failed: list[str] = []
    chosen = range(len(notifier.to)) if recipients is None else recipients
    if any(not 0 <= i < len(notifier.to) for i in chosen):
        raise NotifyError("its address is no longer in the notifier's to: (personify.yml)")
    try:
        for i in chosen:
            to = notifier.to[i]
            mail_key = f"alert-{key}-{i}"
            raw = build_raw(
                email, sender=sender, recipient=mailbox(to), date=clock.now(), key=mail_key
            )
            envelope = Envelope(
                key=mail_key,
                customer_id="",
                template="alert",
                subject=subject,
                raw=raw,
                sender=sender.addr_spec,
                recipient=to,
            )
            try:
                transport.send(envelope)
            except DeliveryError as e:
                failed.append(f"recipient {i + 1}: {type(e).__name__}")
    finally:
        transport.close()
    if failed:
        raise NotifyError(f"email not handed over via {transport.name} ({'; '.join(failed)})")
    return f"{len(chosen)} email(s) via {transport.name}"
