"""What the journeys hold: per journey (instances and messages by status), per customer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from personify.journeys.definitions import Journey
from personify.privacy.crypto import SUBJECT, open_field
from personify.privacy.fields import ring_of
from personify.warehouse.base import Warehouse


def _trigger_text(journey: Journey) -> str:
    t = journey.trigger
    if t.kind == "event":
        return f"event {t.name!r}" + (f" by {t.key}" if t.key else "")
    if t.kind == "schedule":
        every = f" every {t.every}" if t.every else ""
        return f"broadcast to {t.name} at {t.at:%Y-%m-%dT%H:%M:%SZ}{every}"
    return f"{t.kind} {t.name}"


def span(duration: timedelta) -> str:
    """A duration as journey files write it: ``1h``, ``3d``, ``1d 12h``, ``90s``."""
    left = int(duration.total_seconds())
    parts = []
    for unit, seconds in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= seconds:
            parts.append(f"{left // seconds}{unit}")
            left %= seconds
    return " ".join(parts) or "0s"


def _step_text(journey: Journey) -> list[str]:
    out = []
    for step in journey.steps:
        if step.kind == "wait":
            assert step.duration is not None
            out.append(f"{step.id}: wait {span(step.duration)}")
        elif step.kind == "wait_until":
            out.append(f"{step.id}: wait until {step.until:%H:%M} local")
        elif step.kind == "wait_for":
            assert step.wait_for is not None
            w = step.wait_for
            by = f" by {w.key}" if w.key else ""
            where = f" where {w.where_source}" if w.where_source else ""
            then, otherwise = _target(journey, step.then), _target(journey, step.otherwise)
            out.append(
                f"{step.id}: wait for {w.event!r}{by}{where} within {span(w.within)}, "
                f"then {then}, else {otherwise}"
            )
        elif step.kind == "branch":
            assert step.condition is not None
            out.append(f"{step.id}: branch if {step.condition.source}")
        elif step.kind == "send":
            out.append(f"{step.id}: send {step.template}")
        elif step.kind == "tag":
            out.append(f"{step.id}: tag {step.tag}")
        else:
            out.append(f"{step.id}: exit")
    return out


def _target(journey: Journey, index: int | None) -> str:
    if index is None:
        return "exit"
    return journey.steps[index].id if index < len(journey.steps) else "end"


def journeys_report(wh: Warehouse, journeys: Sequence[Journey]) -> list[dict[str, Any]]:
    """Each journey's definition with its instances by status and its messages by status."""
    instances: dict[str, dict[str, int]] = {}
    for journey, status, n in wh.fetch(
        "SELECT journey, coalesce(exit_reason, status), count(*) FROM journey_instances "
        "GROUP BY 1, 2"
    ):
        instances.setdefault(str(journey), {})[str(status)] = int(n)
    messages: dict[str, dict[str, int]] = {}
    for journey, status, n in wh.fetch(
        "SELECT journey, status, count(*) FROM messages WHERE journey IS NOT NULL GROUP BY 1, 2"
    ):
        messages.setdefault(str(journey), {})[str(status)] = int(n)
    return [
        {
            "name": j.name,
            "description": j.description,
            "file": j.file,
            "enabled": j.enabled,
            "trigger": _trigger_text(j),
            "within": span(j.trigger.within),
            "goal": (
                f"{j.goal.event}" + (f" by {j.goal.key}" if j.goal.key else "") if j.goal else None
            ),
            "exit_when": f"left segment {j.exit_when}" if j.exit_when else None,
            "reentry": j.reentry + (f" {j.reentry_after}" if j.reentry_after else ""),
            "purpose": j.purpose,
            "capped": j.capped,
            "steps": _step_text(j),
            "instances": instances.get(j.name, {}),
            "messages": messages.get(j.name, {}),
        }
        for j in journeys
    ]


def customer_report(wh: Warehouse, customer_id: str) -> dict[str, Any]:
    """One customer's journey instances and messages (with the reason of each skip; subject
    lines decrypted with the key ring attached to ``wh``)."""
    instances = wh.fetch_arrow(
        "SELECT journey, trigger_key, step, status, exit_reason, trigger_at, wake_at, entered_at, "
        "exited_at FROM journey_instances WHERE customer_id = ? ORDER BY trigger_at, journey",
        [customer_id],
    ).to_pylist()
    messages = wh.fetch_arrow(
        "SELECT idempotency_key, journey, step, template, status, subject, decided_at, sent_at, "
        "send_after, error FROM messages WHERE customer_id = ? ORDER BY decided_at, "
        "idempotency_key",
        [customer_id],
    ).to_pylist()
    ring = ring_of(wh)
    for message in messages:
        message["subject"] = open_field(ring, SUBJECT, message["subject"])
    return {"customer_id": customer_id, "instances": instances, "messages": messages}
