"""Journeys: triggers, waits, branches, goals and sends — durable in the warehouse.

* :func:`load_journeys` / :func:`project_journeys` — ``journeys/*.yml`` checked into
  :class:`Journey` objects (errors name file, line and key);
* :func:`advance` — enter and advance one journey to ``--now``, set-wise in SQL;
* :func:`deliver` — send every queued message due now, in batches, crash-safe;
* :func:`journeys_stage` / :func:`delivery_stage` — the two pipeline stages;
* :func:`message_key` — the idempotency key of a decided email;
* :func:`preview` — a template as a journey would send it to one customer now, writing nothing.
"""

from __future__ import annotations

from personify.journeys.decide import message_key as message_key
from personify.journeys.definitions import Journey as Journey
from personify.journeys.definitions import Step as Step
from personify.journeys.definitions import Trigger as Trigger
from personify.journeys.definitions import load_journeys as load_journeys
from personify.journeys.definitions import parse_journey as parse_journey
from personify.journeys.engine import Context as Context
from personify.journeys.engine import JourneyCounts as JourneyCounts
from personify.journeys.engine import advance as advance
from personify.journeys.preview import NotInJourney as NotInJourney
from personify.journeys.preview import Preview as Preview
from personify.journeys.preview import preview as preview
from personify.journeys.preview import preview_template as preview_template
from personify.journeys.send import SendCounts as SendCounts
from personify.journeys.send import deliver as deliver
from personify.journeys.stage import delivery_stage as delivery_stage
from personify.journeys.stage import email_summary as email_summary
from personify.journeys.stage import journeys_stage as journeys_stage
from personify.journeys.stage import project_journeys as project_journeys
from personify.journeys.stage import run_journeys as run_journeys
from personify.journeys.stage import send_due as send_due

__all__ = [
    "Context",
    "Journey",
    "JourneyCounts",
    "NotInJourney",
    "Preview",
    "SendCounts",
    "Step",
    "Trigger",
    "advance",
    "deliver",
    "delivery_stage",
    "email_summary",
    "journeys_stage",
    "load_journeys",
    "message_key",
    "parse_journey",
    "preview",
    "preview_template",
    "project_journeys",
    "run_journeys",
    "send_due",
]
