"""Engagement and measurement: open and click tracking, machine opens, attribution.

* :mod:`~personify.engagement.tokens` — signed open/click tokens (:func:`sign_open`,
  :func:`sign_click`, :func:`verify`); a click token carries its target, so the redirect can
  never be pointed elsewhere;
* :mod:`~personify.engagement.links` — :func:`instrument`: links rewritten to ``/c/{token}`` and
  the pixel ``/o/{token}.gif`` added, at send time (called by
  :func:`personify.delivery.prepare_one`);
* :mod:`~personify.engagement.machine` — Apple Mail privacy prefetches and link scanners;
* :mod:`~personify.engagement.record` — :func:`record`: a hit → an ``Email Opened`` /
  ``Email Link Clicked`` event tied to the message, journey, variant and customer
  (:func:`record_many`: a batch in one store, as the server records); :func:`record_feedback`:
  an unsubscribe or spam complaint naming a message → ``Email Unsubscribed`` /
  ``Email Marked as Spam``, once per message;
* :mod:`~personify.engagement.report` — attribution of orders to touches and the per-journey
  report (``personify report journeys``: with unsubscribes, complaints and their rates);
* :mod:`~personify.engagement.experiments` — deterministic variant/holdout :func:`assign` (and
  ``assign_many``, which journey send steps call), ``experiment_assignments``, and the
  :func:`uplift` of a variant over the holdout;
* :mod:`~personify.engagement.esp` — ESP-reported opens, clicks and deliveries (SendGrid,
  Postmark webhooks) → the same events, deduplicated;
* :mod:`~personify.engagement.html` — the report as a self-contained HTML page with SVG charts.
"""

from __future__ import annotations

from personify.engagement.experiments import HOLDOUT, Uplift, assign, uplift
from personify.engagement.links import base_url, instrument, tracking_on
from personify.engagement.record import (
    CLICKED,
    COMPLAINED,
    OPENED,
    UNSUBSCRIBED,
    Hit,
    Recorded,
    record,
    record_feedback,
    record_many,
)
from personify.engagement.tokens import TrackingClaim, sign_click, sign_open, verify

__all__ = [
    "CLICKED",
    "COMPLAINED",
    "HOLDOUT",
    "OPENED",
    "UNSUBSCRIBED",
    "Hit",
    "Recorded",
    "TrackingClaim",
    "Uplift",
    "assign",
    "base_url",
    "instrument",
    "record",
    "record_feedback",
    "record_many",
    "sign_click",
    "sign_open",
    "tracking_on",
    "uplift",
    "verify",
]
