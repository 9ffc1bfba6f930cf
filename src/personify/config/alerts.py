"""Alerts (``alerts:``, ``notifiers:``): the signals watched, and who is told."""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from personify.config.base import _DURATION_PATTERN, Duration, Name, Secret, _Base, _FieldError

ALERT_SIGNALS: Final[dict[str, str]] = {
    "source_failed": "a source's (or destination's) last sync or push failed",
    "source_stale": "a source's lag is over `over` (a duration; default: its "
    "quality.freshness limit)",
    "quarantine_growth": "more than `over` rows (default 0) were quarantined in the last hour",
    "run_failed": "the last `personify run` ended failed",
    "delivery_failures": "more than `over` emails (default 0) failed in the last hour",
    "complaint_rate": "a journey's spam complaint rate over its last 7 days is over `over` "
    "(default engagement.max_complaint_rate)",
    "bounce_rate": "a journey's bounce rate over its last 7 days is over `over` "
    "(default engagement.max_bounce_rate)",
    "tracking_plan_broken": "a tracking plan file cannot be used",
    "anomaly": "a volume or null-rate anomaly is flagged",
    "quality_flagged": "a validation rule with action flag or quarantine is broken",
    "reconcile_flagged": "the last reconciliation found more discrepancies than "
    "quality.reconcile.threshold",
    "removals_stranded": "erased people's records a destination can never remove (on_remove no "
    "longer delete, the destination gone, or its keys lost)",
    "forwarding_lag": "an events destination's oldest event not yet forwarded is older than "
    "`over` (a duration; default 5m)",
}
"""The signals an alert can watch (``when:``), each computed from what ``personify status``
shows, and what makes it hold."""
ALERT_THRESHOLDS: Final[dict[str, str]] = {
    "source_stale": "duration",
    "forwarding_lag": "duration",
    "quarantine_growth": "count",
    "delivery_failures": "count",
    "complaint_rate": "rate",
    "bounce_rate": "rate",
}
"""Signals that take ``over:``, and what it is."""


class Alert(_Base, frozen=True):
    """One alert: a signal watched at the end of every ``personify run``, on ``personify serve``'s
    schedule and by ``personify alerts check``, notified when it fires and when it resolves."""

    name: Name
    """Its name in messages and ``personify alerts list``."""
    when: str
    """The signal (see :data:`ALERT_SIGNALS`): ``source_failed``, ``source_stale`` …"""
    over: float | str | None = None
    """The signal's threshold, for those that take one: a duration (``source_stale``), a count
    per hour (``quarantine_growth``, ``delivery_failures``) or a fraction (``complaint_rate``,
    ``bounce_rate``)."""
    only: tuple[str, ...] = ()
    """Only these sources, destinations or journeys (default: all)."""
    hold: Duration | None = msgspec.field(default=None, name="for")
    """``for:``: a subject (source, journey …) fires only when the signal has held this long for
    it (``15m``); default at once."""
    repeat: Duration | None = None
    """Notify again about each firing subject this often after it was last told (``4h``);
    default: once per episode."""
    notify: tuple[Name, ...] = ()
    """Notifiers (names under ``notifiers:``) told when it fires and when it resolves."""


class WebhookNotifier(_Base, frozen=True, tag="webhook", tag_field="kind"):
    """POSTs a JSON message to a URL (a Slack incoming webhook, a chat bot, a pager)."""

    url: Secret
    """Where to POST; use ``${VAR}`` (webhook URLs are secrets)."""
    format: Literal["slack", "json"] = "json"
    """``slack``: ``{"text": …, "blocks": […]}`` as Slack incoming webhooks take it; ``json``:
    the alert as fields (``alert``, ``status``, ``signal``, ``subjects`` …)."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How long one POST may take."""

    def __post_init__(self) -> None:
        if not self.url.reveal().startswith(("http://", "https://")):
            raise ValueError("url: expected an http:// or https:// URL")


class EmailNotifier(_Base, frozen=True, tag="email", tag_field="kind"):
    """Emails the alert through the project's delivery (outbox, SMTP or ESP), from
    ``email.from_address``."""

    to: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    """Who gets it (staff addresses)."""
    subject_prefix: str = ""
    """Put before each subject (which starts ``[PROJECT] alert NAME FIRING``)."""

    def __post_init__(self) -> None:
        for address in self.to:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                raise ValueError(f"to: {address!r} is not an email address")


Notifier = WebhookNotifier | EmailNotifier


def _check_alerts(
    alerts: tuple[Alert, ...], notifiers: dict[str, WebhookNotifier | EmailNotifier]
) -> None:
    """Alert names are unique; each names a known signal, a threshold fit for it and
    notifiers that exist."""
    seen: set[str] = set()
    for i, alert in enumerate(alerts):
        if alert.name in seen:
            raise _FieldError(
                ("alerts", i, "name"), f"two alerts are named {alert.name!r}; names must be unique"
            )
        seen.add(alert.name)
        if alert.when not in ALERT_SIGNALS:
            raise _FieldError(
                ("alerts", i, "when"),
                f"unknown signal {alert.when!r}: use one of {', '.join(ALERT_SIGNALS)} "
                '(README, "Alerts")',
            )
        kind = ALERT_THRESHOLDS.get(alert.when)
        if alert.over is not None:
            _check_threshold(i, alert, kind)
        for j, name in enumerate(alert.notify):
            if name not in notifiers:
                known = ", ".join(notifiers) or "none: add a notifiers: section"
                raise _FieldError(
                    ("alerts", i, "notify", j),
                    f"unknown notifier {name!r} (notifiers: {known})",
                )


def _check_threshold(i: int, alert: Alert, kind: str | None) -> None:
    where = ("alerts", i, "over")
    over = alert.over
    if kind is None:
        raise _FieldError(where, f"signal {alert.when!r} takes no threshold: remove over")
    if kind == "duration":
        if isinstance(over, bool) or not re.fullmatch(_DURATION_PATTERN, str(over)):
            raise _FieldError(where, f"{over!r}: expected a duration like 30m, 2h or 1d")
        return
    if isinstance(over, str | bool) or over is None or over < 0:
        raise _FieldError(where, f"{over!r}: expected a number of at least 0")
    if kind == "rate" and over > 1:
        raise _FieldError(where, f"{over!r}: expected a fraction from 0 to 1 (0.003 is 0.3 %)")
