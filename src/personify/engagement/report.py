"""Attribution of orders to emails, and the per-journey report (``personify report journeys``).

**Attribution.** An order is attributed to a message when one of its customer's *touches* — a
person's (not a machine's) ``Email Link Clicked``, and with ``engagement.attribution_touch:
open`` also ``Email Opened`` — happened within ``engagement.attribution_window`` before it. When
several touches qualify, ``attribution_rule`` picks one: ``last_touch`` (the default, the touch
nearest the order) or ``first_touch``. Each order is attributed at most once; orders whose status
is excluded from purchases (``traits.excluded_order_statuses``) are not conversions.

**The report**, per journey, step and variant: ``sends`` (messages sent), ``delivered`` (sent,
less those whose customer bounced afterwards — bounces are known per customer, from the ESP
webhooks), ``unique_opens`` and ``unique_clicks`` (messages with at least one person's open or
click: machine ones excluded), ``conversions`` and ``revenue`` (attributed orders and their
totals), ``unsubscribed`` and ``complained`` (messages with an ``Email Unsubscribed`` /
``Email Marked as Spam`` event: their unsubscribe link used, or the ESP's unsubscribe or spam
complaint naming them) and their rates over ``delivered``. A step with an experiment
(``variants`` / ``holdout``) also shows, per variant, the customers assigned and converted and
the uplift over the holdout, and as a guardrail the assigned customers who unsubscribed within
the attribution window and that rate's difference over the holdout's (:func:`experiments`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from personify.audiences.schedule import parse_duration
from personify.config import Project
from personify.engagement.experiments import HOLDOUT, Uplift, guardrail, uplift
from personify.engagement.record import COMPLAINED, UNSUBSCRIBED
from personify.warehouse.base import Warehouse

STEP_COLUMNS = (
    "journey",
    "step",
    "variant",
    "sends",
    "delivered",
    "unique opens",
    "unique clicks",
    "conversions",
    "revenue",
    "unsubscribed",
    "complained",
)
"""The headings of a step's row, as the CLI table and the HTML report show them."""


@dataclass(frozen=True)
class StepReport:
    """The figures of one journey step (and variant)."""

    journey: str
    step: str
    variant: str | None
    sends: int
    delivered: int
    unique_opens: int
    unique_clicks: int
    conversions: int
    revenue: float
    unsubscribed: int = 0
    """Messages unsubscribed from (``Email Unsubscribed``: their link, or the ESP's report)."""
    complained: int = 0
    """Messages marked as spam (``Email Marked as Spam``, from the ESP's feedback loop)."""
    unsubscribe_rate: float = 0.0
    """``unsubscribed / delivered`` (0 when nothing was delivered)."""
    complaint_rate: float = 0.0
    """``complained / delivered`` (0 when nothing was delivered): keep it under 0.3 %
    (``engagement.max_complaint_rate``), as mailbox providers require of bulk senders."""
    experiment: str | None = None
    """The step's experiment (``variants`` / ``holdout`` in the journey file), if any."""
    assigned: int | None = None
    """Experiments: customers assigned to this variant (the holdout too)."""
    converted: int | None = None
    """Experiments: assigned customers with an order within the attribution window after
    their assignment (intent to treat: sent to or not, clicked or not)."""
    uplift: Uplift | None = None
    """Experiments, not for the holdout: the conversion-rate difference over the holdout with
    its 95 % interval and whether the sample can conclude."""
    assigned_unsubscribed: int | None = None
    """Experiments: assigned customers who unsubscribed within the attribution window after
    their assignment (from any email or the ESP: ``suppressions``)."""
    unsubscribe_guardrail: Uplift | None = None
    """Experiments, not for the holdout: the unsubscribe-rate difference over the holdout (a
    variant that wins on conversions while driving people away shows it here)."""


@dataclass(frozen=True)
class VariantResult:
    """One arm of an experiment: customers assigned, those who ordered within the attribution
    window after assignment, and (not for the holdout) the uplift over the holdout."""

    experiment: str
    variant: str
    assigned: int
    converted: int
    uplift: Uplift | None
    unsubscribed: int = 0
    """Assigned customers who unsubscribed within the attribution window after assignment."""
    unsubscribe_guardrail: Uplift | None = None
    """Not for the holdout: the unsubscribe-rate difference over the holdout
    (:func:`~personify.engagement.experiments.guardrail`)."""


@dataclass(frozen=True)
class JourneysReport:
    """The report, with the attribution rule it used."""

    rule: str
    """``last_touch`` or ``first_touch``."""
    touch: str
    """``click`` (clicks only) or ``open`` (opens and clicks)."""
    window: str
    """The attribution window (``3d``)."""
    steps: list[StepReport]
    experiments: list[VariantResult] = field(default_factory=list)
    """Per experiment and variant (``experiment_assignments``), holdout first; intent to treat:
    every assigned customer counts, sent to or not."""


def _in(values: tuple[str, ...]) -> tuple[str, list[object]]:
    if not values:
        return "FALSE", []
    return f"e.event IN ({', '.join('?' for _ in values)})", list(values)


_PERSON = "coalesce(e.properties->>'machine', '') <> 'true'"


def _touches(project: Project) -> tuple[str, list[object]]:
    weights = project.config.traits.engagement
    settings = project.config.engagement
    names = weights.click_events
    if settings.attribution_touch == "open":
        names += weights.open_events
    where, params = _in(tuple(dict.fromkeys(names)))
    return (
        "SELECT e.customer_id, e.timestamp AS t, e.properties->>'message_key' AS message_key "
        f"FROM events e WHERE e.type = 'track' AND {where} AND e.customer_id IS NOT NULL "
        f"AND {_PERSON} AND e.properties->>'message_key' IS NOT NULL",
        params,
    )


def attributed_sql(project: Project, now: datetime) -> tuple[str, list[object]]:
    """SQL: ``order_id, total, message_key, created_at`` — each attributed order once."""
    settings = project.config.engagement
    seconds = int(parse_duration(settings.attribution_window).total_seconds())
    order = "DESC" if settings.attribution_rule == "last_touch" else "ASC"
    excluded = tuple(s.lower() for s in project.config.traits.excluded_order_statuses)
    status = (
        f"AND (o.status IS NULL OR lower(o.status) NOT IN ({', '.join('?' for _ in excluded)}))"
        if excluded
        else ""
    )
    touches, params = _touches(project)
    sql = (
        "SELECT order_id, total, message_key, created_at FROM (SELECT o.order_id, "
        "coalesce(o.total, 0) AS total, o.created_at, t.message_key, row_number() OVER "
        f"(PARTITION BY o.order_id ORDER BY t.t {order}, t.message_key) AS pos FROM orders o "
        f"JOIN ({touches}) t ON t.customer_id = o.customer_id AND t.t <= o.created_at "
        f"AND t.t > o.created_at - INTERVAL '{seconds} seconds' "
        f"WHERE o.customer_id IS NOT NULL AND o.created_at <= CAST(? AS TIMESTAMPTZ) {status}"
        ") a WHERE pos = 1"
    )
    return sql, [*params, now, *excluded]


def attributed(wh: Warehouse, project: Project, now: datetime) -> list[tuple[str, float, str]]:
    """Each attributed order: (order id, total, the message's idempotency key)."""
    sql, params = attributed_sql(project, now)
    return [(str(o), float(t), str(k)) for o, t, k, _ in wh.fetch(sql + " ORDER BY 1", params)]


def journeys_report(wh: Warehouse, project: Project, now: datetime) -> JourneysReport:
    """The per journey/step/variant figures as of ``now``."""
    settings = project.config.engagement
    arms = experiments(wh, project, now)
    return JourneysReport(
        settings.attribution_rule,
        settings.attribution_touch,
        settings.attribution_window,
        _with_experiments(project, step_figures(wh, project, now), arms),
        arms,
    )


HEADLINE_DAYS = 7
"""The period of ``personify status``'s headline figures."""


def journey_headlines(
    wh: Warehouse, project: Project, now: datetime, *, days: int = HEADLINE_DAYS
) -> dict[str, dict[str, Any]]:
    """Per journey, the messages decided in the ``days`` before ``now`` and what they did as of
    ``now`` (the figures of :func:`step_figures`, summed over steps and variants): ``sends``,
    ``unique_opens``, ``unique_clicks`` (people's, machine ones excluded), ``conversions``,
    ``revenue``, ``delivered``, ``complained``, ``complaint_rate`` (over ``delivered``) and
    ``complaint_rate_high`` (above ``engagement.max_complaint_rate``) — ``personify status``'s
    headline."""
    out: dict[str, dict[str, Any]] = {}
    counts = ("sends", "unique_opens", "unique_clicks", "conversions", "delivered", "complained")
    for s in step_figures(wh, project, now, since=now - timedelta(days=days)):
        row = out.setdefault(s.journey, {**dict.fromkeys(counts, 0), "revenue": 0.0})
        for name in counts:
            row[name] += getattr(s, name)
        row["revenue"] = round(row["revenue"] + s.revenue, 2)
    ceiling = project.config.engagement.max_complaint_rate
    for row in out.values():
        row["complaint_rate"] = _rate(row["complained"], row["delivered"])
        row["complaint_rate_high"] = row["complaint_rate"] > ceiling
    return out


def _rate(n: int, of: int) -> float:
    return round(n / of, 6) if of else 0.0


def step_figures(
    wh: Warehouse, project: Project, now: datetime, *, since: datetime | None = None
) -> list[StepReport]:
    """The per journey/step/variant figures as of ``now`` (without the experiments) of the
    messages decided up to ``now`` — only those decided after ``since`` when given."""
    weights = project.config.traits.engagement
    opens, p_open = _in(weights.open_events)
    clicks, p_click = _in(weights.click_events)
    attributed_q, p_attr = attributed_sql(project, now)
    sql = (
        "SELECT m.journey, m.step, m.variant, "
        "count(*) FILTER (WHERE m.status = 'sent') AS sends, "
        "count(*) FILTER (WHERE m.status = 'sent' AND b.customer_id IS NULL) AS delivered, "
        "count(op.k) AS unique_opens, count(cl.k) AS unique_clicks, "
        "coalesce(sum(a.n), 0) AS conversions, coalesce(sum(a.revenue), 0) AS revenue, "
        "coalesce(sum(fb.u), 0) AS unsubscribed, coalesce(sum(fb.s), 0) AS complained "
        "FROM messages m "
        "LEFT JOIN (SELECT customer_id, min(created_at) AS at FROM suppressions "
        "WHERE reason = 'bounced' AND customer_id IS NOT NULL GROUP BY customer_id) b "
        "ON b.customer_id = m.customer_id AND b.at >= m.sent_at "
        "LEFT JOIN (SELECT DISTINCT e.properties->>'message_key' AS k FROM events e "
        f"WHERE e.type = 'track' AND {opens} AND {_PERSON} "
        "AND e.timestamp <= CAST(? AS TIMESTAMPTZ)) op ON op.k = m.idempotency_key "
        "LEFT JOIN (SELECT DISTINCT e.properties->>'message_key' AS k FROM events e "
        f"WHERE e.type = 'track' AND {clicks} AND {_PERSON} "
        "AND e.timestamp <= CAST(? AS TIMESTAMPTZ)) cl ON cl.k = m.idempotency_key "
        "LEFT JOIN (SELECT message_key AS k, count(*) AS n, sum(total) AS revenue "
        f"FROM ({attributed_q}) x GROUP BY message_key) a ON a.k = m.idempotency_key "
        "LEFT JOIN (SELECT e.properties->>'message_key' AS k, "
        "max(CASE WHEN e.event = ? THEN 1 ELSE 0 END) AS u, "
        "max(CASE WHEN e.event = ? THEN 1 ELSE 0 END) AS s FROM events e "
        "WHERE e.type = 'track' AND e.event IN (?, ?) AND e.timestamp <= CAST(? AS TIMESTAMPTZ) "
        "GROUP BY e.properties->>'message_key') fb ON fb.k = m.idempotency_key "
        "WHERE m.journey IS NOT NULL AND m.decided_at <= CAST(? AS TIMESTAMPTZ) "
        + ("AND m.decided_at > CAST(? AS TIMESTAMPTZ) " if since is not None else "")
        + "GROUP BY m.journey, m.step, m.variant ORDER BY m.journey, m.step, m.variant"
    )
    feedback = [UNSUBSCRIBED, COMPLAINED, UNSUBSCRIBED, COMPLAINED, now]
    params = [*p_open, now, *p_click, now, *p_attr, *feedback, now]
    params += [since] if since is not None else []
    return [
        StepReport(
            str(j),
            str(s or ""),
            None if v is None else str(v),
            int(n_sent),
            int(n_delivered),
            int(n_open),
            int(n_click),
            int(n_conv),
            round(float(revenue), 2),
            unsubscribed=int(n_unsub),
            complained=int(n_spam),
            unsubscribe_rate=_rate(int(n_unsub), int(n_delivered)),
            complaint_rate=_rate(int(n_spam), int(n_delivered)),
        )
        for j, s, v, n_sent, n_delivered, n_open, n_click, n_conv, revenue, n_unsub, n_spam in (
            wh.fetch(sql, params)
        )
    ]


def _with_experiments(
    project: Project, steps: list[StepReport], arms: list[VariantResult]
) -> list[StepReport]:
    """Each step row of an experiment's step with its arm's assigned, converted and uplift."""
    from personify.errors import PersonifyError
    from personify.journeys import project_journeys

    try:
        journeys = project_journeys(project)
    except PersonifyError:  # a broken journey file: the figures without the experiments
        journeys = []
    named: dict[tuple[str, str], str] = {}
    for journey in journeys:
        for step in journey.steps:
            if step.experiment is not None:
                named[(journey.name, step.id)] = step.experiment.name
    by_arm = {(a.experiment, a.variant): a for a in arms}
    out = []
    for row in steps:
        experiment = named.get((row.journey, row.step))
        arm = by_arm.get((experiment, row.variant or "")) if experiment else None
        if arm is None:
            out.append(row)
            continue
        out.append(
            dataclasses.replace(
                row,
                experiment=experiment,
                assigned=arm.assigned,
                converted=arm.converted,
                uplift=arm.uplift,
                assigned_unsubscribed=arm.unsubscribed,
                unsubscribe_guardrail=arm.unsubscribe_guardrail,
            )
        )
    return out


def experiments(wh: Warehouse, project: Project, now: datetime) -> list[VariantResult]:
    """Each experiment's arms: assigned customers, those with an order (not excluded) and those
    who unsubscribed (a ``suppressions`` row of reason ``unsubscribed``, whatever email or ESP
    it came from) within ``attribution_window`` after their assignment; each variant's uplift
    over the holdout, and its unsubscribe-rate difference over the holdout's as a guardrail."""
    seconds = int(parse_duration(project.config.engagement.attribution_window).total_seconds())
    excluded = tuple(s.lower() for s in project.config.traits.excluded_order_statuses)
    status = (
        f"AND (o.status IS NULL OR lower(o.status) NOT IN ({', '.join('?' for _ in excluded)}))"
        if excluded
        else ""
    )
    rows = wh.fetch(
        "SELECT a.experiment, a.variant, count(*) AS assigned, count(c.customer_id) AS converted, "
        "count(u.customer_id) AS unsubscribed "
        "FROM experiment_assignments a LEFT JOIN (SELECT DISTINCT x.experiment, x.customer_id "
        "FROM experiment_assignments x JOIN orders o ON o.customer_id = x.customer_id "
        "AND o.created_at >= x.assigned_at "
        f"AND o.created_at < x.assigned_at + INTERVAL '{seconds} seconds' "
        f"WHERE o.created_at <= CAST(? AS TIMESTAMPTZ) {status}) c "
        "ON c.experiment = a.experiment AND c.customer_id = a.customer_id "
        "LEFT JOIN (SELECT DISTINCT x.experiment, x.customer_id FROM experiment_assignments x "
        "JOIN suppressions s ON s.customer_id = x.customer_id "
        "AND s.reason = 'unsubscribed' AND s.created_at >= x.assigned_at "
        f"AND s.created_at < x.assigned_at + INTERVAL '{seconds} seconds' "
        "WHERE s.created_at <= CAST(? AS TIMESTAMPTZ)) u "
        "ON u.experiment = a.experiment AND u.customer_id = a.customer_id "
        "WHERE a.assigned_at <= CAST(? AS TIMESTAMPTZ) "
        "GROUP BY a.experiment, a.variant ORDER BY a.experiment, a.variant",
        [now, *excluded, now, now],
    )
    arms: dict[str, dict[str, tuple[int, int, int]]] = {}
    for experiment, variant, n, converted, unsubscribed in rows:
        arms.setdefault(str(experiment), {})[str(variant)] = (
            int(n),
            int(converted),
            int(unsubscribed),
        )
    out: list[VariantResult] = []
    for experiment, by_variant in arms.items():
        holdout = by_variant.get(HOLDOUT)
        if holdout is not None:
            n0, conv0, unsub0 = holdout
            out.append(VariantResult(experiment, HOLDOUT, n0, conv0, None, unsub0))
        for variant, (n, converted, unsubscribed) in by_variant.items():
            if variant == HOLDOUT:
                continue
            lift = uplift(n, converted, *holdout[:2]) if holdout is not None else None
            guard = guardrail(n, unsubscribed, holdout[0], holdout[2]) if holdout else None
            out.append(VariantResult(experiment, variant, n, converted, lift, unsubscribed, guard))
    return out
