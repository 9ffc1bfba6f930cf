"""The send-time gates: what stops, holds or lets through a decided email at one instant.

The send loop (:mod:`.send`) asks them of every message of a batch just before rendering it, and
a preview (``personify render``) of the one message it shows — the same code, so a preview says
whether a send now would go out. In order, the first that applies:

1. **suppressed** — an unsubscribe, bounce, complaint, or an erasure's tombstone (which gives way
   to consent for the message's purpose granted after it) ⇒ ``skipped_suppressed``;
2. **paused** — consent for the purpose by email, but the person paused mail for it on the
   preference page (``consent_pauses``, not over at ``now``) ⇒ ``skipped_paused``; **no
   consent** for the purpose by email (fail-closed) ⇒ ``skipped_consent``;
3. **goal reached** since the trigger (the cart bought while the email waited) ⇒
   ``skipped_goal``; the customer **left the journey's** ``exit_when`` **segment** (and is not
   back in it) ⇒ ``skipped_left_segment``;
4. **quiet hours** of the customer's local day ⇒ ``held`` until they end;
5. **frequency cap** — capped journeys' emails sent to the customer within the window are at the
   cap ⇒ ``skipped_frequency`` (the send loop also counts its own batch's messages);

else ``send``. :func:`load` reads what the gates need for a set of messages in a few set-wise
queries; :meth:`Gates.check` judges one message.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from personify.audiences.schedule import parse_duration
from personify.config import JourneySettings, Project
from personify.journeys.decide import PAUSED, allowed, blocking, paused_among, suppressions_of
from personify.journeys.definitions import Journey
from personify.journeys.engine import goal_reached, left_segment
from personify.journeys.localtime import quiet_until, zone
from personify.messages import read_customers
from personify.privacy.consent import is_marketing
from personify.privacy.hashing import optional_key
from personify.warehouse.base import Warehouse

SEND = "send"
HELD = "held"
"""Outcomes of :meth:`Gates.check` besides the ``skipped_*`` statuses."""


@dataclass(frozen=True)
class Gate:
    """What the gates say of one message at one instant."""

    outcome: str
    """``send``, ``held`` (quiet hours), or the status it would get: ``skipped_suppressed``,
    ``skipped_paused``, ``skipped_consent``, ``skipped_goal``, ``skipped_left_segment``,
    ``skipped_frequency``."""
    reason: str | None = None
    """Why, in words (what ``messages.error`` records); ``None`` for ``send``."""
    until: datetime | None = None
    """``held``: when the quiet hours end (the message waits until then)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "until": self.until.isoformat() if self.until is not None else None,
        }


@dataclass(frozen=True)
class Message:
    """The message judged: its key, person, journey (``None``: a template no journey sends)
    and consent purpose."""

    key: str
    customer_id: str
    journey: str | None
    purpose: str


@dataclass
class Gates:
    """What the gates read for a set of messages at ``now`` (:func:`load`)."""

    project: Project
    journeys: Mapping[str, Journey]
    now: datetime
    suppressions: Mapping[str, list[str]]
    """Customer → the reasons of the suppressions holding them."""
    blocked: Mapping[str, set[str]]
    """Purpose → the customers a suppression stops for it."""
    consent: Mapping[str, set[str]]
    """Purpose → the customers with consent for it by email."""
    paused: Mapping[str, set[str]]
    """Purpose → the customers with consent for it by email who paused it (not over yet)."""
    profiles: Mapping[str, Mapping[str, Any]]
    reached: set[str]
    """Message keys whose journey instance reached its goal."""
    left: set[str]
    """Message keys whose customer left their journey's ``exit_when`` segment."""
    capped: dict[str, int]
    """Customer → capped journeys' emails sent within the cap's window (the send loop adds its
    batch's as it goes)."""

    @property
    def settings(self) -> JourneySettings:
        return self.project.config.journeys

    def check(self, message: Message) -> Gate:
        """The first gate that stops or holds ``message`` now, else ``send``."""
        who, purpose = message.customer_id, message.purpose
        journey = self.journeys.get(message.journey) if message.journey else None
        if who in self.blocked.get(purpose, ()):
            reasons = ", ".join(self.suppressions.get(who) or ["suppressed"])
            return Gate("skipped_suppressed", f"suppressed ({reasons})")
        if who in self.paused.get(purpose, ()):
            return Gate("skipped_paused", PAUSED.format(purpose=purpose) + " at send time")
        if who not in self.consent.get(purpose, ()):
            return Gate("skipped_consent", f"no consent for {purpose} by email at send time")
        if message.key in self.reached and journey is not None and journey.goal is not None:
            return Gate("skipped_goal", f"goal reached before sending ({journey.goal.event})")
        if message.key in self.left and journey is not None and journey.exit_when is not None:
            return Gate(
                "skipped_left_segment", f"left the segment {journey.exit_when} before sending"
            )
        if (hold := self.quiet(self.profiles.get(who))) is not None:
            quiet = self.settings.quiet_hours
            assert quiet is not None
            return Gate(HELD, f"quiet hours ({quiet.start}–{quiet.end} local time)", hold)
        cap = self.settings.frequency_cap
        capped = journey is not None and journey.capped and cap is not None
        if capped and cap is not None and self.capped.get(who, 0) >= cap.max:
            return Gate("skipped_frequency", over_cap(self.settings))
        return Gate(SEND)

    def quiet(self, customer: Mapping[str, Any] | None) -> datetime | None:
        """When the customer's quiet hours end, if ``now`` is inside them."""
        quiet = self.settings.quiet_hours
        if quiet is None:
            return None
        tz = zone((customer or {}).get("timezone"), fallback=self.project.config.timezone)
        return quiet_until(self.now, _hhmm(quiet.start), _hhmm(quiet.end), tz)


def load(
    wh: Warehouse,
    project: Project,
    journeys: Mapping[str, Journey],
    messages: Sequence[Message],
    now: datetime,
    *,
    exclude: Collection[str] = (),
) -> Gates:
    """What the gates need to judge ``messages`` at ``now``: suppressions and consent per
    purpose, profiles (time zones), goals reached, capped emails sent. ``exclude``: message keys
    the cap does not count (a preview of an email already sent: not its own cap)."""
    ids = sorted({m.customer_id for m in messages})
    kinds = project.config.identity.source_kinds
    purposes = sorted({m.purpose for m in messages})
    consent = {p: allowed(wh, ids, purpose=p, source_kinds=kinds) for p in purposes}
    found = suppressions_of(wh, ids, optional_key(project))  # once for every purpose
    reasons: dict[str, list[str]] = {}
    for customer, reason, _ in found:
        if reason not in reasons.setdefault(customer, []):
            reasons[customer].append(reason)
    reached: set[str] = set()
    left: set[str] = set()
    for name in sorted({m.journey for m in messages if m.journey}):
        if (journey := journeys.get(name)) is not None:
            keys = [m.key for m in messages if m.journey == name]
            reached |= goal_reached(wh, journey, keys, now)
            left |= left_segment(wh, journey, keys, now)
    return Gates(
        project=project,
        journeys=journeys,
        now=now,
        suppressions={c: sorted(r) for c, r in reasons.items()},
        blocked={
            p: blocking(wh, found, purpose=p, source_kinds=kinds)
            for p in purposes
            if is_marketing(p)
        },
        consent=consent,
        paused={
            p: paused_among(wh, ids, consent[p], purpose=p, source_kinds=kinds) for p in purposes
        },
        profiles=read_customers(wh, ids),
        reached=reached,
        left=left,
        capped=capped_sent(wh, project.config.journeys, journeys, ids, now, exclude),
    )


def over_cap(settings: JourneySettings) -> str:
    cap = settings.frequency_cap
    assert cap is not None
    return f"frequency cap: {cap.max} per {cap.per}"


def capped_sent(
    wh: Warehouse,
    settings: JourneySettings,
    journeys: Mapping[str, Journey],
    ids: list[str],
    now: datetime,
    exclude: Collection[str] = (),
) -> dict[str, int]:
    """Emails of capped journeys sent to each customer within the cap's window."""
    cap = settings.frequency_cap
    names = sorted(j.name for j in journeys.values() if j.capped)
    if cap is None or not names or not ids:
        return {}
    since = now - parse_duration(cap.per)
    skip = sorted(exclude)
    rows = wh.fetch(
        "SELECT customer_id, count(*) FROM messages WHERE status = 'sent' AND sent_at > ? "
        f"AND sent_at <= ? AND journey IN ({', '.join('?' for _ in names)}) "
        f"AND customer_id IN ({', '.join('?' for _ in ids)}) "
        + (f"AND idempotency_key NOT IN ({', '.join('?' for _ in skip)}) " if skip else "")
        + "GROUP BY customer_id",
        [since, now, *names, *ids, *skip],
    )
    return {str(c): int(n) for c, n in rows}


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))
