"""Alerts: signals from what ``personify status`` computes (a source's sync failed, a lag, the
quarantine growing, complaint and bounce rates, a failed run …), watched at the end of every
``personify run``, on ``personify serve``'s schedule and by ``personify alerts check``, and told
to webhooks (Slack) and inboxes once when they fire and once when they resolve.

* :func:`check_alerts` — evaluate now: signals → ``alert_state`` → notifications sent;
* :func:`list_alerts` — each alert's stored state;
* :data:`~personify.config.ALERT_SIGNALS` — the signals and what makes each hold.
"""

from personify.alerts.state import AlertReport, CheckResult, check_alerts, list_alerts

__all__ = ["AlertReport", "CheckResult", "check_alerts", "list_alerts"]
