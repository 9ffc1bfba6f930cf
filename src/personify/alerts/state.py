"""Alert state in the warehouse, and notifications sent once whichever process evaluates.

Each evaluation reads every alert's signal (:mod:`personify.alerts.signals`) and moves its row of
``alert_state``: ``ok`` → ``pending`` (it holds, not yet for its ``for:``) → ``firing`` → back to
``ok`` when it stops holding (*resolved*) — and each of its subjects (sources, journeys …) moves
the same way in ``subject_state``: ``for:`` and ``repeat:`` apply per subject (:func:`_transition`).
A change is written only over the ``version`` it was
read at (``UPDATE … WHERE version = ?``): when ``personify serve``'s schedule and a ``personify
run`` evaluate at once, one of them makes the change and the other sees it already made.

The process that makes a change also queues its notifications, in the same transaction: one row
of ``alert_notifications`` per notifier, keyed ``alert|notifier|kind|episode`` (``INSERT … ON
CONFLICT DO NOTHING``). Every evaluation then sends what is pending or failed, each row claimed
first by a conditional update (one process sends it); a notifier that fails leaves its row
``failed`` with the reason, tried again after a backoff (:func:`retry_delay`: 1 minute doubling
to 1 hour) and ``given_up`` once it is :data:`GIVE_UP_AFTER` old. A row left ``sending`` by a
process that died is taken again after :data:`STALE_CLAIM`. The notifications of an alert no
longer in ``personify.yml`` are not sent: ``dropped`` (kept, with the reason) — by every
evaluation, one with no alert configured at all included.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from personify import clock
from personify.alerts.notify import NotifyError, message, send_email, send_webhook
from personify.alerts.signals import Readings
from personify.config import Alert, EmailNotifier, duration_seconds
from personify.session import Session
from personify.warehouse.base import Warehouse
from personify.warehouse.retry import is_write_conflict

log = logging.getLogger("personify.alerts")

STALE_CLAIM: Final = timedelta(minutes=10)
"""A notification claimed this long ago and still ``sending`` is taken again."""
RETRY_FIRST: Final = timedelta(minutes=1)
"""The wait after a notification's first failed attempt; it doubles at each further failure…"""
RETRY_MAX: Final = timedelta(hours=1)
"""… up to this."""
GIVE_UP_AFTER: Final = timedelta(hours=24)
"""A notification still failing this long after it was queued is ``given_up`` (still listed)."""
DROPPED: Final = "alert no longer in personify.yml"
"""Why a notification was ``dropped``."""


def retry_delay(attempts: int) -> timedelta:
    """How long after its last attempt a notification that failed ``attempts`` times is tried
    again: 1 min, 2, 4, 8 … up to 1 h."""
    if attempts <= 1:
        return RETRY_FIRST
    delay: timedelta = RETRY_FIRST * 2 ** min(attempts - 1, 16)
    return min(delay, RETRY_MAX)


@dataclass
class AlertReport:
    """One alert after an evaluation (what ``personify alerts check|list`` show)."""

    name: str
    signal: str
    state: str
    """``ok``, ``pending`` or ``firing``; ``removed`` for a stored alert no longer in
    ``personify.yml`` (``list_alerts(..., removed=True)``)."""
    subjects: dict[str, Any] = field(default_factory=dict)
    subject_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each subject's own state: ``state`` (``pending``, ``firing``, or ``ok`` — it stopped
    while the alert fires for others), ``pending_since``, ``firing_since``,
    ``last_notified_at`` (``for:`` and ``repeat:`` apply per subject), ``stopped_at`` (``ok``:
    when it stopped; its recovery is told with the episode's next notification)."""
    pending_since: str | None = None
    firing_since: str | None = None
    resolved_at: str | None = None
    last_notified_at: str | None = None
    evaluated_at: str | None = None
    notify: list[str] = field(default_factory=list)
    error: str | None = None
    """Why its signal could not be read at this evaluation."""
    failed_notifications: list[dict[str, Any]] = field(default_factory=list)
    """Notifications not handed over yet: notifier, kind, attempts, error, next_attempt_at."""
    given_up_notifications: list[dict[str, Any]] = field(default_factory=list)
    """Notifications that failed for :data:`GIVE_UP_AFTER` and are no longer tried: notifier,
    kind, attempts, error, created_at."""
    dropped_notifications: list[dict[str, Any]] = field(default_factory=list)
    """Notifications never sent because the alert was removed from ``personify.yml`` while they
    waited: notifier, kind, attempts, error (the reason), created_at."""


@dataclass
class CheckResult:
    alerts: list[AlertReport]
    sent: list[dict[str, Any]] = field(default_factory=list)
    """Notifications handed over by this evaluation: alert, notifier, kind."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """Notifications that failed in this evaluation (retried after a backoff): alert,
    notifier, kind, error."""
    given_up: list[dict[str, Any]] = field(default_factory=list)
    """Notifications given up by this evaluation (failing for :data:`GIVE_UP_AFTER`): alert,
    notifier, kind, error."""
    dropped: list[dict[str, Any]] = field(default_factory=list)
    """Notifications dropped by this evaluation (their alert is no longer in
    ``personify.yml``): alert, notifier, kind, error (the reason)."""

    @property
    def firing(self) -> list[str]:
        return [a.name for a in self.alerts if a.state == "firing"]


def _instant(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        return clock.parse_instant(value)
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(value: Any) -> str | None:
    instant = _instant(value)
    return instant.isoformat() if instant else None


_COLUMNS: Final = (
    "state, pending_since, firing_since, resolved_at, last_notified_at, subjects, "
    "evaluated_at, version, subject_state"
)


def _read(wh: Warehouse, name: str) -> tuple[Any, ...] | None:
    rows = wh.fetch(f"SELECT {_COLUMNS} FROM alert_state WHERE alert = ?", [name])
    return rows[0] if rows else None


def _row(wh: Warehouse, name: str) -> tuple[Any, ...]:
    row = _read(wh, name)
    if row is None:
        try:
            wh.execute(
                "INSERT INTO alert_state (alert, state, version) VALUES (?, 'ok', 0) "
                "ON CONFLICT (alert) DO NOTHING",
                [name],
            )
        except Exception:  # DuckDB: another transaction is inserting it at the same moment
            deadline = time.monotonic() + 5.0
            while _read(wh, name) is None:  # its commit is a moment away
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        row = _read(wh, name)
    assert row is not None
    return row


@dataclass
class Subject:
    """One subject's own state within an alert (``alert_state.subject_state``): ``pending``
    (it holds, not yet for the alert's ``for:``), ``firing``, or ``ok`` — it stopped holding
    while the alert fired for others, and is remembered until the alert resolves so that it
    is not told again ("now also") in the same episode unless its ``repeat:`` is due."""

    state: str
    pending_since: datetime | None = None
    firing_since: datetime | None = None
    notified: datetime | None = None
    """When the notifiers were last told about it in this episode (firing, now also, repeat)."""
    stopped: datetime | None = None
    """``ok`` after it was told: when it stopped holding — its recovery, not told yet (the
    episode's next notification tells it: :func:`_transition`)."""

    def stored(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pending_since": _iso(self.pending_since),
            "firing_since": _iso(self.firing_since),
            "last_notified_at": _iso(self.notified),
            "stopped_at": _iso(self.stopped),
        }


def _subjects_state(
    stored: Any, state: str, pending: Any, firing: Any, notified: Any, before: dict[str, Any]
) -> dict[str, Subject]:
    """The subjects' states as stored; for a row written before they were kept (migration
    35), each subject it held for takes the alert's own state."""
    if stored:
        return {
            name: Subject(
                str(v["state"]),
                _instant(v.get("pending_since")),
                _instant(v.get("firing_since")),
                _instant(v.get("last_notified_at")),
                _instant(v.get("stopped_at")),
            )
            for name, v in json.loads(stored).items()
        }
    if state == "firing":
        since, told = _instant(firing), _instant(notified)
        return {s: Subject("firing", None, since, told or since) for s in before}
    if state == "pending":
        return {s: Subject("pending", _instant(pending)) for s in before}
    return {}


def _transition(session: Session, alert: Alert, subjects: dict[str, Any], now: datetime) -> None:
    """Move ``alert``'s state, and each subject's, for what its signal reads now; queue its
    notifications.

    ``for:`` and ``repeat:`` apply per subject: a subject fires once it has held for ``for:``
    itself, and is told again once ``repeat:`` has passed since it was last told. The alert
    fires with its first firing subject (*firing*: the firing subjects), a subject firing
    while it fires is told once (*grown*: "now also"), the subjects due are told again
    (*repeat*), and it resolves when no subject fires any more (*resolved*: those that did).
    A subject that stops holding before its ``for:`` tells nobody; one that stops while
    others fire is remembered until the alert resolves: coming back in the same episode, it
    is not told again until its ``repeat:`` is due (a flapping source tells once).

    A told subject that stopped while others fire is told as *resolved for* it in the
    episode's next notification ("now also", a repeat, the resolution: ``resolved_subjects``,
    with when it stopped) — if it is still stopped then; once told, it is forgotten, so that
    holding again is told again ("now also"). No notification of its own: a subject that
    flaps between two notifications tells nothing more, and one that came back before the
    next one was, as far as anyone was told, firing all along."""
    wh = session.warehouse
    row = _row(wh, alert.name)
    state, pending, firing, resolved, notified, before_json, _, version, stored = row
    before: dict[str, Any] = json.loads(before_json or "{}")
    tracked = _subjects_state(stored, state, pending, firing, notified, before)
    was_firing = [n for n, t in tracked.items() if t.state == "firing"]
    firing, resolved, notified = map(_instant, (firing, resolved, notified))
    hold = duration_seconds(alert.hold or 0)
    repeat = duration_seconds(alert.repeat) if alert.repeat else None
    new: list[str] = []  # firing now, not told yet in this episode
    due: list[str] = []  # firing, told, and their repeat: is due
    for name in sorted(subjects):
        t = tracked.get(name)
        if t is None or t.state == "ok":
            t = tracked[name] = Subject("pending", now, None, t.notified if t else None)
        if (
            t.state == "pending"
            and t.pending_since
            and ((now - t.pending_since).total_seconds() >= hold)
        ):
            t.state, t.firing_since = "firing", now
            if t.notified is None:
                new.append(name)
        last = t.notified or t.firing_since or now
        if (
            t.state == "firing"
            and name not in new
            and repeat is not None
            and ((now - last).total_seconds() >= repeat)
        ):
            due.append(name)
    for name, t in list(tracked.items()):
        if name in subjects:
            continue
        if t.state == "firing" or t.notified:  # (told, then back pending: still told)
            # remembered in this episode; its recovery is told with the next notification
            tracked[name] = Subject("ok", notified=t.notified, stopped=t.stopped or now)
        else:
            del tracked[name]  # pending: stopped before its for:, told nobody
    firing_now = {n: subjects[n] for n, t in sorted(tracked.items()) if t.state == "firing"}
    recovered = {  # told, stopped since: "resolved for" them in the next notification
        n: _iso(t.stopped)
        for n, t in sorted(tracked.items())
        if t.state == "ok" and t.notified and t.stopped
    }
    # kind, episode, subjects, new, resolved for
    events: list[tuple[str, str, dict[str, Any], list[str], dict[str, Any]]] = []
    if firing_now and firing is None:  # a new episode: every firing subject is told
        firing = now
        events.append(("firing", now.isoformat(), firing_now, [], {}))
        for name in firing_now:
            tracked[name].notified = now
    elif firing_now and firing is not None:
        later = f"{firing.isoformat()}@{now.isoformat()}"
        if new:
            events.append(("grown", later, firing_now, new, recovered))
        if due:
            events.append(
                ("repeat", later, {n: subjects[n] for n in due}, [], {} if new else recovered)
            )
        for name in new + due:
            tracked[name].notified = now
        if events:
            for name in recovered:  # told: forgotten (holding again is "now also")
                del tracked[name]
    elif firing is not None:
        events.append(
            (
                "resolved",
                firing.isoformat(),
                {n: before.get(n) for n in sorted(was_firing)},
                [],
                {n: at for n, at in recovered.items() if n not in was_firing},
            )
        )
        firing, resolved = None, now
        tracked = {  # the episode is over: what was told is forgotten
            n: Subject("pending", t.pending_since)
            for n, t in tracked.items()
            if t.state == "pending"
        }
    if events and events[-1][0] != "resolved":
        notified = now
    waiting = [
        t.pending_since for t in tracked.values() if t.state == "pending" and t.pending_since
    ]
    pending = min(waiting) if waiting else None
    state = "firing" if firing_now else ("pending" if waiting else "ok")
    since = firing
    try:
        with wh.transaction():
            changed = wh.execute(
                "UPDATE alert_state SET state = ?, pending_since = ?, firing_since = ?, "
                "resolved_at = ?, last_notified_at = ?, subjects = ?, evaluated_at = ?, "
                "subject_state = ?, version = version + 1 WHERE alert = ? AND version = ?",
                [
                    state,
                    pending,
                    firing,
                    resolved,
                    notified,
                    json.dumps(subjects, sort_keys=True),
                    now,
                    json.dumps({n: t.stored() for n, t in tracked.items()}, sort_keys=True),
                    alert.name,
                    version,
                ],
            )
            if changed == 0:
                return  # another process changed it since we read it: its change stands
            for kind, episode, told, added, stopped in events:
                body = message(
                    session.project,
                    alert=alert.name,
                    signal=alert.when,
                    kind=kind,
                    subjects=told,
                    new=added,
                    resolved=stopped,
                    since=(since or now).isoformat() if kind != "resolved" else episode,
                    at=now.isoformat(),
                )
                for notifier in alert.notify:
                    for part in _parts(session, notifier):
                        wh.execute(
                            "INSERT INTO alert_notifications (key, alert, notifier, recipient, "
                            "kind, status, message, attempts, created_at) "
                            "VALUES (?, ?, ?, ?, ?, 'pending', ?, 0, ?) "
                            "ON CONFLICT (key) DO NOTHING",
                            [
                                f"{alert.name}|{notifier}{'' if part is None else f'#{part}'}"
                                f"|{kind}|{episode}",
                                alert.name,
                                notifier,
                                part,
                                kind,
                                json.dumps(body, sort_keys=True),
                                now,
                            ],
                        )
    except Exception as e:
        if not is_write_conflict(e):
            raise
        log.info("alert %s: changed by another process at the same time", alert.name)


def _parts(session: Session, notifier: str) -> list[int | None]:
    """One notification row per address of an email notifier (a retry never mails an address
    that already got it), one for a webhook."""
    found = session.project.config.notifiers.get(notifier)
    if isinstance(found, EmailNotifier):
        return list(range(len(found.to)))
    return [None]


def _deliver(session: Session, now: datetime, result: CheckResult) -> None:
    """Send every pending notification and every failed one whose backoff is over, each claimed
    by one process first; give up those failing for :data:`GIVE_UP_AFTER`, drop those of
    alerts no longer configured."""
    wh = session.warehouse
    notifiers = session.project.config.notifiers
    configured = {a.name for a in session.project.config.alerts}
    rows = wh.fetch(
        "SELECT key, alert, notifier, kind, status, message, attempts, claimed_at, recipient, "
        "created_at, error FROM alert_notifications "
        "WHERE status IN ('pending', 'failed', 'sending') ORDER BY created_at, key"
    )
    for key, alert, name, kind, status, body, attempts, claimed, recipient, created, err in rows:
        last = _instant(claimed)
        if status == "sending" and (last is None or now - last < STALE_CLAIM):
            continue  # another process is sending it
        entry = {"alert": alert, "notifier": name, "kind": kind}
        if alert not in configured:
            if _settle(wh, key, status, attempts, "dropped", DROPPED):
                log.info(
                    "alert %s: no longer configured; its %s notification is not sent", alert, kind
                )
                result.dropped.append({**entry, "error": DROPPED})
            continue
        if status == "failed":
            if now - (_instant(created) or now) >= GIVE_UP_AFTER:
                if _settle(wh, key, status, attempts, "given_up", err):
                    log.warning(
                        "alert %s: notifier %s failing for %s (%s attempts); given up",
                        alert,
                        name,
                        GIVE_UP_AFTER,
                        attempts,
                    )
                    result.given_up.append({**entry, "error": err})
                continue
            if last is not None and now - last < retry_delay(int(attempts)):
                continue  # backing off
        try:
            won = wh.execute(
                "UPDATE alert_notifications SET status = 'sending', claimed_at = ?, "
                "attempts = attempts + 1 WHERE key = ? AND status = ? AND attempts = ?",
                [now, key, status, attempts],
            )
        except Exception as e:
            if not is_write_conflict(e):
                raise
            continue
        if won == 0:
            continue
        entry = {"alert": alert, "notifier": name, "kind": kind}
        notifier = notifiers.get(name)
        try:
            if notifier is None:
                raise NotifyError(f"no notifier named {name!r} in personify.yml any more")
            msg = json.loads(body)
            if isinstance(notifier, EmailNotifier):
                only = None if recipient is None else [int(recipient)]
                done = send_email(session.project, notifier, msg, key, only)
            else:
                done = send_webhook(notifier, msg)
        except Exception as e:  # a notifier never fails the run: recorded, retried
            reason = str(e) if isinstance(e, NotifyError) else type(e).__name__
            wh.execute(
                "UPDATE alert_notifications SET status = 'failed', error = ? WHERE key = ?",
                [reason, key],
            )
            log.warning(
                "alert %s: notifier %s failed (%s); retried in %s",
                alert,
                name,
                reason,
                retry_delay(int(attempts) + 1),
            )
            result.failed.append({**entry, "error": reason})
            continue
        wh.execute(
            "UPDATE alert_notifications SET status = 'sent', sent_at = ?, error = NULL "
            "WHERE key = ?",
            [now, key],
        )
        log.info("alert %s: %s notified through %s (%s)", alert, kind, name, done)
        result.sent.append(entry)


def _settle(wh: Warehouse, key: str, status: str, attempts: int, to: str, why: Any) -> bool:
    """End a notification (``given_up``, ``dropped``) unless another process took it since."""
    try:
        changed = wh.execute(
            "UPDATE alert_notifications SET status = ?, error = ? "
            "WHERE key = ? AND status = ? AND attempts = ?",
            [to, why, key, status, attempts],
        )
    except Exception as e:
        if not is_write_conflict(e):
            raise
        return False
    return bool(changed)


def check_alerts(session: Session, *, now: datetime | None = None) -> CheckResult:
    """Evaluate every alert now: read the signals, move the states, send the notifications.
    Never raises for a signal or a notifier (both are reported in the result). With no alert
    configured, nothing is evaluated, but what is still queued for alerts removed from
    ``personify.yml`` is settled (``dropped``, with the reason), as it is with some."""
    now = now or clock.now()
    alerts = session.project.config.alerts
    errors: dict[str, str] = {}
    result = CheckResult(alerts=[])
    if not alerts:
        _deliver(session, now, result)  # (every queued row is a removed alert's: dropped)
        return result
    readings = Readings(session, now)
    for alert in alerts:
        try:
            subjects = readings.read(alert)
        except Exception as e:  # a signal that cannot be read changes nothing
            errors[alert.name] = f"cannot read {alert.when} ({type(e).__name__})"
            log.warning("alert %s: %s", alert.name, errors[alert.name])
            continue
        _transition(session, alert, subjects, now)
    _deliver(session, now, result)
    result.alerts = list_alerts(session)
    for report in result.alerts:
        report.error = errors.get(report.name)
    return result


def list_alerts(session: Session, *, removed: bool = False) -> list[AlertReport]:
    """Every configured alert with its stored state (``ok`` when never evaluated); with
    ``removed``, also those stored but no longer in ``personify.yml`` (state ``removed``; their
    notifications are not sent)."""
    wh = session.warehouse
    stored = {str(r[0]): r[1:] for r in wh.fetch(f"SELECT alert, {_COLUMNS} FROM alert_state")}
    failing: dict[str, list[dict[str, Any]]] = {}
    abandoned: dict[str, list[dict[str, Any]]] = {}
    dropped: dict[str, list[dict[str, Any]]] = {}
    for alert, notifier, kind, status, attempts, error, claimed, created in wh.fetch(
        "SELECT alert, notifier, kind, status, attempts, error, claimed_at, created_at "
        "FROM alert_notifications WHERE status IN ('failed', 'given_up', 'dropped') "
        "ORDER BY created_at, key"
    ):
        entry: dict[str, Any] = {
            "notifier": notifier,
            "kind": kind,
            "attempts": int(attempts),
            "error": error,
        }
        if status in ("given_up", "dropped"):
            entry["created_at"] = _iso(created)
            (abandoned if status == "given_up" else dropped).setdefault(str(alert), []).append(
                entry
            )
            continue
        last = _instant(claimed)
        entry["next_attempt_at"] = (
            (last + retry_delay(int(attempts))).isoformat() if last is not None else None
        )
        failing.setdefault(str(alert), []).append(entry)
    configured = session.project.config.alerts
    wanted = [(a.name, a.when, list(a.notify)) for a in configured]
    if removed:
        names = {a.name for a in configured}
        wanted += [(name, "", []) for name in sorted(stored) if name not in names]
    out = []
    for name, signal, notify in wanted:
        row = stored.get(name)
        report = AlertReport(
            name=name,
            signal=signal,
            state="ok",
            notify=notify,
            failed_notifications=failing.get(name, []),
            given_up_notifications=abandoned.get(name, []),
            dropped_notifications=dropped.get(name, []),
        )
        if row is not None:
            state, pending, firing, resolved, notified, subjects, evaluated, _, each = row
            report.state = str(state)
            report.subjects = json.loads(subjects) if subjects else {}
            report.subject_states = {
                n: t.stored()
                for n, t in _subjects_state(
                    each, str(state), pending, firing, notified, report.subjects
                ).items()
            }
            report.pending_since = _iso(pending)
            report.firing_since = _iso(firing)
            report.resolved_at = _iso(resolved)
            report.last_notified_at = _iso(notified)
            report.evaluated_at = _iso(evaluated)
        if not signal:  # (stored, no longer configured)
            report.state = "removed"
        out.append(report)
    return out


__all__ = ["AlertReport", "CheckResult", "check_alerts", "list_alerts"]
