"""The journey engine: enter, then advance every instance to ``--now`` — set-wise, in SQL.

Each run, for each journey:

1. **Enter.** Candidates come from one query per journey: trigger events in the lookback
   window (one entry per customer and trigger key — ``properties.cart_id`` — or per event),
   ``audience_changes`` rows (segment entries, tag assignments) after the journey's checkpoint,
   or a broadcast's segment members at its latest due occurrence. The re-entry policy filters
   them in the same query; they are bulk-loaded into ``journey_instances`` (the primary key
   ``(journey, customer_id, trigger_key)`` makes entering idempotent) with ``wake_at`` = the
   trigger's time.
2. **Advance.** While instances are due (``status = 'active' AND wake_at <= now``), every step
   is applied to all its due instances with one or two statements: goal exits first (a goal
   event between the trigger and the step's due time), then waits (``wake_at + duration``;
   local-time waits are computed per time zone in Python and written back through Arrow),
   ``wait_for`` steps (below), branches (a ``CASE`` over the profile condition), sends
   (decided: queued ``messages`` rows, see :mod:`personify.journeys.decide`), tags and exits.
   Waits count from when the step was due, not from when the run happened, so a late run
   catches up exactly as if the engine had run continuously.

A ``wait_for`` step opens its window when it becomes due: the instance waits
(``waiting_since`` = that time, ``wake_at`` = the deadline, so it is not due meanwhile). Each
run — first thing, so goal and segment exits see where it went — and the step itself move every
waiting instance whose awaited event happened (the first after the window opened, by ``--now``)
to ``then``, due at the event's time, and every one whose deadline passed without it to
``else``, due at the deadline; a goal (or ``exit_when`` exit) before the event ends it where it
waited. The outcome and the times follow from event times only, whatever the runs' cadence.

Every statement of a step runs in one transaction with the instance's move to the next step,
so a crash leaves each instance before or after its step, never between.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp

from personify import clock
from personify.engagement.record import CLICKED, OPENED
from personify.journeys.decide import decide
from personify.journeys.definitions import Goal, Journey, Step
from personify.journeys.localtime import next_local_time, zone
from personify.warehouse.base import Warehouse, quote
from personify.warehouse.query import pin_time
from personify.warehouse.schema import JOURNEY_INSTANCES, Column, Table

log = logging.getLogger(__name__)

MAX_PASSES = 64
"""A journey whose branches loop without a wait stops after this many passes per run."""


@dataclass
class JourneyCounts:
    """What one run did to one journey."""

    journey: str
    entered: int = 0
    decided: int = 0
    """Messages queued (consent and suppression passed)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Messages decided but skipped at once, by status (``skipped_consent`` …)."""
    goal: int = 0
    left_segment: int = 0
    """Instances ended by ``exit_when`` (the customer left the segment)."""
    waited_event: int = 0
    """``wait_for`` steps left by ``then``: the event happened within the window."""
    waited_timeout: int = 0
    """``wait_for`` steps left by ``else``: the window passed without the event."""
    completed: int = 0
    exited: int = 0
    active: int = 0
    """Instances still in the journey (waiting) after the run."""


@dataclass(frozen=True)
class Context:
    """What the engine needs of the project."""

    default_zone: str = "UTC"
    """Time zone of customers without one (the project's ``timezone``)."""
    source_kinds: Mapping[str, str] = field(default_factory=dict)
    """``identity.source_kinds``, for the consent gate."""
    suppression_key: bytes | None = field(default=None, repr=False)
    """The project's hashing key (its ``signing_key``): the send gate also stops customers
    holding an address a tombstone was kept for (:func:`~personify.journeys.decide.suppressed`)."""


def advance(
    wh: Warehouse, journey: Journey, *, now: datetime, context: Context, entering: bool = True
) -> JourneyCounts:
    """Enter new customers into ``journey`` and advance every instance to ``now``.

    ``entering=False`` (the real-time tick, which enters per customer with
    :func:`enter`'s ``only``): advance the instances due, and return at once if none is."""
    counts = JourneyCounts(journey.name)
    for index, step in enumerate(journey.steps):  # first: where waiting instances went
        if step.kind == "wait_for":
            with wh.transaction():
                _wait_for(wh, journey, index, step, now, counts, opening=False)
    if journey.enabled and entering:
        counts.entered = enter(wh, journey, now=now)
    elif not entering and not _any_due(wh, journey, now):
        return counts
    _forget_stale_waits(wh, journey, now)
    for _ in range(MAX_PASSES):
        if not _any_due(wh, journey, now):
            break
        for index, step in enumerate(journey.steps):
            counts.goal += _goal_exits(wh, journey, now)  # before each step: due at wake_at
            counts.left_segment += _segment_exits(wh, journey, now)
            _run_step(wh, journey, index, step, now, counts, context)
        counts.completed += _complete(wh, journey, now)
    else:
        log.warning(
            "journey %s: still due after %d passes (a loop without a wait?)",
            journey.name,
            MAX_PASSES,
        )
    counts.goal += _goal_exits(wh, journey, now)
    counts.left_segment += _segment_exits(wh, journey, now)
    counts.active = int(
        wh.scalar(
            "SELECT count(*) FROM journey_instances WHERE journey = ? AND status = 'active'",
            [journey.name],
        )
        or 0
    )
    return counts


# ----------------------------------------------------------------------------------- entering
def _key_sql(key: str, alias: str = "e") -> str:
    """``properties.cart_id`` → ``e.properties->>'cart_id'``; nested, a JSON path
    (``->>'$."a"."b"'``: sqlglot reads a chain of arrows wrongly for PostgreSQL)."""
    column, *path = key.split(".")  # names checked by the definition's pattern
    if len(path) == 1:
        return f"{alias}.{column}->>'{path[0]}'"
    return f"{alias}.{column}->>'$." + ".".join(f'"{p}"' for p in path) + "'"


def _candidates_sql(journey: Journey) -> tuple[str, list[Any]]:
    """A query of ``(customer_id, trigger_key, trigger_at)`` for the trigger (parameters: the
    window's start and end are appended by the caller)."""
    trigger = journey.trigger
    if trigger.kind == "event":
        key = _key_sql(trigger.key) if trigger.key else "e.message_id"
        passes = f" AND ({trigger.where}) IS TRUE" if trigger.where else ""
        return (
            f"SELECT e.customer_id, {key} AS trigger_key, min(e.timestamp) AS trigger_at "
            "FROM events AS e WHERE e.type = 'track' AND e.event = ? "
            f"AND e.customer_id IS NOT NULL AND {key} IS NOT NULL{passes} "
            "AND e.timestamp > ? AND e.timestamp <= ? GROUP BY 1, 2",
            [trigger.name],
        )
    if trigger.kind in ("segment", "tag"):
        return (
            "SELECT customer_id, NULL AS trigger_key, max(changed_at) AS trigger_at "
            "FROM audience_changes WHERE kind = ? AND name = ? AND change = 'entered' "
            "AND changed_at > ? AND changed_at <= ? GROUP BY 1",
            [trigger.kind, trigger.name],
        )
    return (
        "SELECT DISTINCT customer_id, NULL AS trigger_key, CAST(? AS TIMESTAMPTZ) AS trigger_at "
        "FROM segment_memberships WHERE segment = ? AND exited_at IS NULL",
        [],
    )


def enter(wh: Warehouse, journey: Journey, *, now: datetime, only: str | None = None) -> int:
    """Enter the trigger's new customers (see the module docstring); returns how many.

    ``only`` (the real-time path): a table of ``customer_id`` s — enter just those customers,
    with the same query; the trigger's checkpoint is left for the batch run, whose entries of
    the same triggers are then no-ops (same instance key). Broadcasts are not entered."""
    trigger = journey.trigger
    if only is not None and trigger.kind == "schedule":
        return 0
    state = _state(wh, journey.name)
    start = now - trigger.within
    sql, params = _candidates_sql(journey)
    occurrence = None
    if trigger.kind == "schedule":
        occurrence = trigger.occurrence(now)
        last = state.get("last_schedule")
        if occurrence is None or occurrence <= start or (last is not None and occurrence <= last):
            return 0
        params = [occurrence, trigger.name]
    else:
        if trigger.kind in ("segment", "tag") and state.get("checkpoint") is not None:
            start = max(start, state["checkpoint"])
        params = [*params, start, now]
    if only is not None:
        listed = f"SELECT customer_id FROM {quote(only)}"
        sql = f"SELECT * FROM ({sql}) AS r WHERE r.customer_id IN ({listed})"
    policy = ""
    policy_params: list[Any] = []
    if journey.reentry == "never":
        policy = (
            " AND NOT EXISTS (SELECT 1 FROM journey_instances AS p WHERE p.journey = ? "
            "AND p.customer_id = c.customer_id)"
        )
        policy_params = [journey.name]
    elif journey.reentry == "after":
        assert journey.reentry_after is not None
        policy = (
            " AND NOT EXISTS (SELECT 1 FROM journey_instances AS p WHERE p.journey = ? "
            "AND p.customer_id = c.customer_id AND p.trigger_at > c.trigger_at - "
            f"INTERVAL '{int(journey.reentry_after.total_seconds())} seconds')"
        )
        policy_params = [journey.name]
    keyed = trigger.kind == "event"
    fresh = (
        " AND NOT EXISTS (SELECT 1 FROM journey_instances AS d WHERE d.journey = ? "
        "AND d.customer_id = c.customer_id AND d.trigger_key = c.trigger_key)"
        if keyed
        else ""
    )
    one_each = "" if journey.reentry == "always" else " WHERE n = 1"
    query = (
        "SELECT customer_id, trigger_key, trigger_at FROM ("
        "SELECT c.*, row_number() OVER (PARTITION BY c.customer_id ORDER BY c.trigger_at, "
        f"c.trigger_key) AS n FROM ({sql}) AS c WHERE TRUE{fresh}{policy}) AS ranked{one_each}"
    )
    rows = wh.fetch_arrow(query, [*params, *([journey.name] if keyed else []), *policy_params])
    customers = [str(c) for c in rows.column("customer_id").to_pylist()]
    at = [_utc(t) for t in rows.column("trigger_at").to_pylist()]
    if keyed:
        keys = [str(k) for k in rows.column("trigger_key").to_pylist()]
    else:
        keys = [_instant_key(t) for t in at]
    entered = 0
    with wh.transaction():
        if customers:
            data = pa.table(
                {
                    "journey": [journey.name] * len(customers),
                    "customer_id": customers,
                    "trigger_key": keys,
                    "step": pa.array([0] * len(customers), pa.int64()),
                    "status": ["active"] * len(customers),
                    "wake_at": pa.array(at, pa.timestamp("us", tz="UTC")),
                    "trigger_at": pa.array(at, pa.timestamp("us", tz="UTC")),
                    "entered_at": pa.array([now] * len(customers), pa.timestamp("us", tz="UTC")),
                    "updated_at": pa.array([now] * len(customers), pa.timestamp("us", tz="UTC")),
                }
            )
            entered = wh.load(JOURNEY_INSTANCES, data, on_conflict="ignore")
            entered = entered if entered >= 0 else len(customers)
        if trigger.kind in ("segment", "tag") and only is None:
            _save_state(
                wh, journey.name, checkpoint=max(now, state.get("checkpoint") or now), now=now
            )
        elif occurrence is not None:
            _save_state(wh, journey.name, last_schedule=occurrence, now=now)
    return entered


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _instant_key(value: datetime) -> str:
    """The trigger key of an audience change or a broadcast: its instant, ISO 8601 UTC."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(wh: Warehouse, name: str) -> dict[str, Any]:
    rows = wh.fetch("SELECT checkpoint, last_schedule FROM journey_state WHERE journey = ?", [name])
    if not rows:
        return {}
    checkpoint, last = rows[0]
    return {
        "checkpoint": _utc(checkpoint) if checkpoint else None,
        "last_schedule": _utc(last) if last else None,
    }


def _save_state(
    wh: Warehouse,
    name: str,
    *,
    now: datetime,
    checkpoint: datetime | None = None,
    last_schedule: datetime | None = None,
) -> None:
    wh.execute(
        "INSERT INTO journey_state (journey, checkpoint, last_schedule, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT (journey) DO UPDATE SET "
        "checkpoint = coalesce(excluded.checkpoint, journey_state.checkpoint), "
        "last_schedule = coalesce(excluded.last_schedule, journey_state.last_schedule), "
        "updated_at = excluded.updated_at",
        [name, checkpoint, last_schedule, now],
    )


# ---------------------------------------------------------------------------------- advancing
_DUE = "journey = ? AND status = 'active' AND step = ? AND wake_at <= ?"


def _any_due(wh: Warehouse, journey: Journey, now: datetime) -> bool:
    rows = wh.fetch(
        "SELECT 1 FROM journey_instances WHERE journey = ? AND status = 'active' "
        "AND wake_at <= ? LIMIT 1",
        [journey.name, now],
    )
    return bool(rows)


ORDER_GOAL = "Order Completed"
"""The goal event an order of the customer (``orders``: a shop sync, a webhook) also reaches."""
_ORDER_KEYS = {"properties.cart_id": "cart_id", "properties.order_id": "order_id"}
"""Goal keys an order answers, and the ``orders`` column holding it."""


def _exit_where(wh: Warehouse, reason: str, where: str, params: list[Any], now: datetime) -> int:
    """End the instances ``where`` selects (its ``params``) with ``exit_reason = reason``;
    returns how many."""
    sql = (
        "UPDATE journey_instances SET status = 'exited', exit_reason = ?, exited_at = ?, "
        f"updated_at = ? WHERE {where}"
    )
    return max(wh.execute(sql, [reason, now, now, *params]), 0)


def _goal_exits(wh: Warehouse, journey: Journey, now: datetime) -> int:
    """Active instances whose goal event happened between their trigger and their next step's
    due time (or ``now``, whichever is earlier) leave with ``exit_reason = 'goal'``. The goal
    ``Order Completed`` is also reached by an order of the customer placed in that window (for
    the same cart or order, when the goal has that key): a shop whose orders arrive by REST sync
    or webhook, with no tracked event, ends its abandoned carts too."""
    if journey.goal is None:
        return 0
    reached, params = _goal_condition(
        journey.goal, "journey_instances", "least(journey_instances.wake_at, ?)", [now]
    )
    where = f"journey = ? AND status = 'active' AND {reached}"
    return _exit_where(wh, "goal", where, [journey.name, *params], now)


def _segment_exits(wh: Warehouse, journey: Journey, now: datetime) -> int:
    """``exit_when: {segment: NAME}``: active instances whose customer left the segment
    (``segment_memberships.exited_at``) between their trigger and their next step's due time (or
    ``now``, whichever is earlier), and is not a member again at that time, leave with
    ``exit_reason = 'left_segment'`` — read from membership times only, so a late run or a
    replay at any ``--now`` decides as an on-time run would."""
    if journey.exit_when is None:
        return 0
    left, params = _left_condition(
        journey.exit_when,
        "journey_instances",
        "least(journey_instances.wake_at, CAST(? AS TIMESTAMPTZ))",
        [now],
    )
    where = f"journey = ? AND status = 'active' AND {left}"
    return _exit_where(wh, "left_segment", where, [journey.name, *params], now)


def left_segment(wh: Warehouse, journey: Journey, keys: list[str], now: datetime) -> set[str]:
    """The messages among ``keys`` (idempotency keys of ``journey``'s) whose customer left the
    journey's ``exit_when`` segment between the instance's trigger and ``now`` and is not back
    in it: decided, but not to be sent any more (it left while the email was held)."""
    if journey.exit_when is None or not keys:
        return set()
    left, params = _left_condition(journey.exit_when, "i", "CAST(? AS TIMESTAMPTZ)", [now])
    return _messages_where(wh, keys, left, params)


def _messages_where(wh: Warehouse, keys: list[str], condition: str, params: list[Any]) -> set[str]:
    """The messages among ``keys`` whose journey instance ``i`` meets ``condition``."""
    rows = wh.fetch(
        "SELECT m.idempotency_key FROM messages AS m JOIN journey_instances AS i ON "
        "i.journey = m.journey AND i.customer_id = m.customer_id AND i.trigger_key = "
        f"m.trigger_key WHERE m.idempotency_key IN ({', '.join('?' for _ in keys)}) "
        f"AND {condition}",
        [*keys, *params],
    )
    return {str(k) for (k,) in rows}


def _left_condition(
    segment: str, inst: str, until: str, until_params: list[Any]
) -> tuple[str, list[Any]]:
    """The SQL condition "the customer of instance ``inst`` left ``segment`` after its trigger,
    by ``until``, and is not a member again at ``until``", and its parameters."""
    sql = (
        "(EXISTS (SELECT 1 FROM segment_memberships AS sx WHERE sx.segment = ? AND "
        f"sx.customer_id = {inst}.customer_id AND sx.exited_at >= {inst}.trigger_at AND "
        f"sx.exited_at <= {until}) AND NOT EXISTS (SELECT 1 FROM segment_memberships AS sm "
        f"WHERE sm.segment = ? AND sm.customer_id = {inst}.customer_id AND "
        f"sm.entered_at <= {until} AND (sm.exited_at IS NULL OR sm.exited_at > {until})))"
    )
    return sql, [segment, *until_params, segment, *until_params, *until_params]


def goal_reached(wh: Warehouse, journey: Journey, keys: list[str], now: datetime) -> set[str]:
    """The messages among ``keys`` (idempotency keys of ``journey``'s) whose journey instance
    reached its goal between its trigger and ``now``: decided, but not to be sent any more (the
    cart was bought while the email was held by quiet hours or an outage)."""
    if journey.goal is None or not keys:
        return set()
    reached, params = _goal_condition(journey.goal, "i", "?", [now])
    return _messages_where(wh, keys, reached, params)


def _goal_condition(
    goal: Goal, inst: str, until: str, until_params: list[Any]
) -> tuple[str, list[Any]]:
    """The SQL condition "the goal happened for instance ``inst`` between its trigger and
    ``until``" (an expression with the placeholders ``until_params``), and its parameters."""
    same_key = f" AND {_key_sql(goal.key, 'g')} = {inst}.trigger_key" if goal.key else ""
    params: list[Any] = [goal.event, *until_params]
    order = ""
    if goal.event == ORDER_GOAL and (goal.key is None or goal.key in _ORDER_KEYS):
        key = (
            f" AND CAST(o.{_ORDER_KEYS[goal.key]} AS VARCHAR) = {inst}.trigger_key"
            if goal.key
            else ""
        )
        order = (
            f" OR EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = {inst}.customer_id "
            f"AND o.created_at >= {inst}.trigger_at AND o.created_at <= {until}{key})"
        )
        params += until_params
    sql = (
        "(EXISTS (SELECT 1 FROM events AS g WHERE g.type = 'track' AND g.event = ? AND "
        f"g.customer_id = {inst}.customer_id AND g.timestamp >= {inst}.trigger_at AND "
        f"g.timestamp <= {until}{same_key}){order})"
    )
    return sql, params


def _run_step(
    wh: Warehouse,
    journey: Journey,
    index: int,
    step: Step,
    now: datetime,
    counts: JourneyCounts,
    context: Context,
) -> None:
    due = [journey.name, index, now]
    with wh.transaction():
        if step.kind == "wait":
            assert step.duration is not None
            seconds = int(step.duration.total_seconds())
            wh.execute(
                "UPDATE journey_instances SET step = step + 1, updated_at = ?, "
                f"wake_at = wake_at + INTERVAL '{seconds} seconds' WHERE {_DUE}",
                [now, *due],
            )
        elif step.kind == "wait_until":
            _wait_until(wh, journey, index, step, now, context.default_zone)
        elif step.kind == "wait_for":
            _wait_for(wh, journey, index, step, now, counts)
        elif step.kind == "branch":
            _branch(wh, journey, index, step, now)
        elif step.kind == "send":
            decided = decide(
                wh,
                journey,
                index,
                step,
                now=now,
                source_kinds=context.source_kinds,
                key=context.suppression_key,
            )
            counts.decided += decided.get("queued", 0)
            for status, n in decided.items():
                if status != "queued":
                    counts.skipped[status] = counts.skipped.get(status, 0) + n
            wh.execute(
                f"UPDATE journey_instances SET step = step + 1, updated_at = ? WHERE {_DUE}",
                [now, *due],
            )
        elif step.kind == "tag":
            _tag(wh, journey, index, step, now)
        else:  # exit
            counts.exited += max(
                wh.execute(
                    "UPDATE journey_instances SET status = 'exited', exit_reason = 'exit', "
                    f"exited_at = ?, updated_at = ? WHERE {_DUE}",
                    [now, now, *due],
                ),
                0,
            )


def _complete(wh: Warehouse, journey: Journey, now: datetime) -> int:
    """Instances past the last step complete the journey."""
    return max(
        wh.execute(
            "UPDATE journey_instances SET status = 'completed', exit_reason = 'completed', "
            "exited_at = ?, updated_at = ? WHERE journey = ? AND status = 'active' AND step >= ?",
            [now, now, journey.name, len(journey.steps)],
        ),
        0,
    )


def _branch(wh: Warehouse, journey: Journey, index: int, step: Step, now: datetime) -> None:
    """One ``CASE`` moves every due instance to the branch's target; exits leave."""
    assert step.condition is not None
    with clock.frozen(now):
        condition = _engagement(pin_time(step.condition.tree.copy()), journey)
    matching = (
        exp.select("customer_id")
        .from_("customers")
        .where(exp.Is(this=exp.paren(condition), expression=exp.true()))
    )
    exit_index = -1
    then = exit_index if step.then is None else step.then
    otherwise = exit_index if step.otherwise is None else step.otherwise
    inner = matching.sql(dialect="duckdb")
    wh.execute(
        "UPDATE journey_instances SET updated_at = ?, step = CASE WHEN customer_id IN "
        f"({inner}) THEN {int(then)} ELSE {int(otherwise)} END WHERE {_DUE}",
        [now, journey.name, index, now],
    )
    wh.execute(
        "UPDATE journey_instances SET status = 'exited', exit_reason = 'exit', exited_at = ?, "
        "updated_at = ? WHERE journey = ? AND status = 'active' AND step = ?",
        [now, now, journey.name, exit_index],
    )


_EXIT_STEP = -1
"""The step an instance is parked at for one statement before it exits (branch targets)."""


def _exit_parked(wh: Warehouse, journey: Journey, now: datetime) -> None:
    wh.execute(
        "UPDATE journey_instances SET status = 'exited', exit_reason = 'exit', exited_at = ?, "
        "updated_at = ? WHERE journey = ? AND status = 'active' AND step = ?",
        [now, now, journey.name, _EXIT_STEP],
    )


def _forget_stale_waits(wh: Warehouse, journey: Journey, now: datetime) -> None:
    """Instances left waiting at a step that is no ``wait_for`` step any more (the journey file
    was edited meanwhile) forget their window, so a ``wait_for`` step they reach later opens
    its own.

    A journey without ``wait_for`` steps skips the statement (it would run on every advance): no
    other step reads ``waiting_since``, and once an edit gives the journey a ``wait_for`` step
    again its next run clears the windows left at the other steps."""
    waits = [str(i) for i, s in enumerate(journey.steps) if s.kind == "wait_for"]
    if not waits:
        return
    wh.execute(
        "UPDATE journey_instances SET waiting_since = NULL, updated_at = ? WHERE journey = ? "
        f"AND status = 'active' AND waiting_since IS NOT NULL AND step NOT IN ({', '.join(waits)})",
        [now, journey.name],
    )


def _wait_for(
    wh: Warehouse,
    journey: Journey,
    index: int,
    step: Step,
    now: datetime,
    counts: JourneyCounts,
    *,
    opening: bool = True,
) -> None:
    """The ``wait_for`` step ``index``, over all its instances at once, in four statements:

    1. (``opening``) the instances due at it start waiting: ``waiting_since`` = their due time,
       ``wake_at`` = the deadline (``within`` later);
    2. waiting ones whose goal (or ``exit_when`` exit) came before the awaited event (or the
       deadline, or ``now``) leave — as a continuous engine would have seen them, waiting;
    3. those whose event happened (the first after the window opened, by the deadline and
       ``now``) move to ``then``, due at the event's time;
    4. those whose deadline passed move to ``else``, due at the deadline.

    Every instance waits through step 1, whether its run came early or late: what it did and
    the row it leaves follow from event times only."""
    wait = step.wait_for
    assert wait is not None
    inst = "journey_instances"
    if opening:
        seconds = int(wait.within.total_seconds())
        wh.execute(
            f"UPDATE {inst} SET waiting_since = wake_at, updated_at = ?, "
            f"wake_at = wake_at + INTERVAL '{seconds} seconds' WHERE {_DUE} "
            "AND waiting_since IS NULL",
            [now, journey.name, index, now],
        )
    same_key = f" AND {_key_sql(wait.key)} = {inst}.trigger_key" if wait.key else ""
    passes = f" AND ({wait.where}) IS TRUE" if wait.where else ""
    hit = (
        "(SELECT min(e.timestamp) FROM events AS e WHERE e.type = 'track' AND e.event = ? "
        f"AND e.customer_id = {inst}.customer_id AND e.timestamp > {inst}.waiting_since "
        f"AND e.timestamp <= least({inst}.wake_at, CAST(? AS TIMESTAMPTZ)){same_key}{passes})"
    )
    hit_params: list[Any] = [wait.event, now]
    waiting = "journey = ? AND status = 'active' AND step = ? AND waiting_since IS NOT NULL"
    here = [journey.name, index]
    until = f"least(coalesce({hit}, {inst}.wake_at), CAST(? AS TIMESTAMPTZ))"
    until_params = [*hit_params, now]
    if journey.goal is not None:
        reached, params = _goal_condition(journey.goal, inst, until, until_params)
        counts.goal += _exit_where(wh, "goal", f"{waiting} AND {reached}", [*here, *params], now)
    if journey.exit_when is not None:
        left, params = _left_condition(journey.exit_when, inst, until, until_params)
        counts.left_segment += _exit_where(
            wh, "left_segment", f"{waiting} AND {left}", [*here, *params], now
        )
    then = _EXIT_STEP if step.then is None else step.then
    otherwise = _EXIT_STEP if step.otherwise is None else step.otherwise
    counts.waited_event += max(
        wh.execute(
            f"UPDATE journey_instances SET step = {int(then)}, wake_at = {hit}, "
            f"waiting_since = NULL, updated_at = ? WHERE {waiting} AND {hit} IS NOT NULL",
            [*hit_params, now, *here, *hit_params],
        ),
        0,
    )
    counts.waited_timeout += max(
        wh.execute(
            f"UPDATE journey_instances SET step = {int(otherwise)}, waiting_since = NULL, "
            f"updated_at = ? WHERE {waiting} AND wake_at <= ?",
            [now, *here, now],
        ),
        0,
    )
    if step.then is None or step.otherwise is None:
        _exit_parked(wh, journey, now)


def _engagement(condition: exp.Expr, journey: Journey) -> exp.Expr:
    """``message.STEP.opened`` / ``.clicked`` in a branch condition → an ``EXISTS`` over the
    events of the instance's own email of that step (the ``messages`` row of the same journey,
    customer and trigger key: its idempotency key is the events' ``properties.message_key``):
    a person's open or click — machine opens and scanner clicks are flagged and do not count —
    at or before the branch's due time (``wake_at``), so a late run decides as an on-time one."""
    ids = {s.id.lower(): s.id for s in journey.steps}
    for column in list(condition.find_all(exp.Column)):
        if column.text("db") != "message":
            continue
        what = column.name
        names = (OPENED, CLICKED) if what == "opened" else (CLICKED,)
        inst = "journey_instances"
        sql = (
            "EXISTS (SELECT 1 FROM messages AS pm JOIN events AS pe ON "
            "pe.properties->>'message_key' = pm.idempotency_key AND "
            "pe.customer_id = pm.customer_id "
            f"WHERE pm.journey = {inst}.journey AND pm.step = '{ids[column.table]}' "
            f"AND pm.customer_id = {inst}.customer_id AND pm.trigger_key = {inst}.trigger_key "
            "AND pe.type = 'track' AND pe.event IN ("
            + ", ".join(f"'{n}'" for n in names)
            + ") AND coalesce(pe.properties->>'machine', '') <> 'true' "
            f"AND pe.timestamp <= {inst}.wake_at)"
        )
        replacement = sqlglot.parse_one(sql, read="duckdb")
        if column is condition:
            return replacement
        column.replace(replacement)
    return condition


def _tag(wh: Warehouse, journey: Journey, index: int, step: Step, now: datetime) -> None:
    """Tag every due customer (``journey_tags``) once, recording the assignment in
    ``audience_changes`` so tag-triggered journeys see it."""
    due = [journey.name, index, now]
    new = (
        f"SELECT DISTINCT customer_id FROM journey_instances WHERE {_DUE} AND NOT EXISTS "
        "(SELECT 1 FROM journey_tags AS t WHERE t.customer_id = journey_instances.customer_id "
        "AND t.tag = ?)"
    )
    wh.execute(
        "INSERT INTO audience_changes (kind, name, customer_id, change, changed_at, rule, "
        f"recorded_at) SELECT 'tag', ?, customer_id, 'entered', ?, ?, ? FROM ({new}) AS n",
        [step.tag, now, f"journey:{journey.name}", datetime.now(UTC), *due, step.tag],
    )
    wh.execute(
        "INSERT INTO journey_tags (customer_id, tag, journey, assigned_at) "
        f"SELECT customer_id, ?, ?, ? FROM ({new}) AS n",
        [step.tag, journey.name, now, *due, step.tag],
    )
    wh.execute(
        f"UPDATE journey_instances SET step = step + 1, updated_at = ? WHERE {_DUE}", [now, *due]
    )


_WAKE = Table(
    "_wake",
    (
        Column("customer_id", "VARCHAR"),
        Column("trigger_key", "VARCHAR"),
        Column("wake_at", "TIMESTAMPTZ"),
    ),
)


def _wait_until(
    wh: Warehouse, journey: Journey, index: int, step: Step, now: datetime, default_zone: str
) -> None:
    """The next ``HH:MM`` in each customer's time zone at or after the step's due time:
    computed per row in Python (time zones), written back in one staged ``UPDATE``."""
    assert step.until is not None
    rows = wh.fetch(
        "SELECT i.customer_id, i.trigger_key, i.wake_at, c.timezone FROM journey_instances AS i "
        "LEFT JOIN customers AS c ON c.customer_id = i.customer_id "
        "WHERE i.journey = ? AND i.status = 'active' AND i.step = ? AND i.wake_at <= ?",
        [journey.name, index, now],
    )
    if not rows:
        return
    wakes = [
        next_local_time(_utc(w), step.until, zone(tz, fallback=default_zone))
        for _, _, w, tz in rows
    ]
    stage = f"_personify_wake_{uuid.uuid4().hex[:12]}"
    table = Table(stage, _WAKE.columns)
    cols = ", ".join(f"{quote(c.name)} {wh.column_type(c.type)}" for c in table.columns)
    wh.execute(f"CREATE TEMP TABLE {quote(stage)} ({cols})")
    try:
        wh.load(
            table,
            pa.table(
                {
                    "customer_id": [str(r[0]) for r in rows],
                    "trigger_key": [str(r[1]) for r in rows],
                    "wake_at": pa.array(wakes, pa.timestamp("us", tz="UTC")),
                }
            ),
        )
        wh.execute(
            f"UPDATE journey_instances SET step = step + 1, updated_at = ?, wake_at = s.wake_at "
            f"FROM {quote(stage)} AS s WHERE journey_instances.journey = ? AND "
            "journey_instances.customer_id = s.customer_id AND journey_instances.trigger_key = "
            "s.trigger_key AND journey_instances.step = ? AND journey_instances.status = 'active'",
            [now, journey.name, index],
        )
    finally:
        wh.execute(f"DROP TABLE {quote(stage)}")
