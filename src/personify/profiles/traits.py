"""Computed traits, in SQL pushed to the warehouse, relative to :func:`personify.clock.now`.

Each builder returns one SELECT keyed by ``customer_id`` (restricted to the customers of
``scope``, a SQL condition on the column ``{c}``) and the params it needs, ``now`` first:

* purchases — ``last_purchase_at``, ``first_purchase_at``, ``order_count``, ``total_spent``,
  ``average_order_value`` (orders whose status is not excluded; money rounded to cents);
* activity — ``first_seen`` / ``last_seen`` over the customer's identifiers;
* ``engagement_score`` — 100·a/(a + saturation), a = Σ weight · ½^(age / half-life) over email
  opens, clicks, active days and orders within the window (machine opens and scanner clicks,
  ``properties.machine = true``, left out);
* ``preferred_categories`` — top categories by weighted views, adds to cart and purchased units
  (ties by the name's bytes, ``COLLATE "C"``: a PostgreSQL database created under ``en_US``
  would otherwise sort them differently from DuckDB);
* ``open_tickets``.

``days_since_last_purchase`` and ``lifecycle_stage`` derive from these in the final SELECT.
"""

from __future__ import annotations

from datetime import datetime

from personify.config import TraitsConfig

Sql = tuple[str, list[object]]


def _in(column: str, values: tuple[str, ...]) -> Sql:
    if not values:
        return "FALSE", []
    return f"{column} IN ({', '.join('?' for _ in values)})", list(values)


def seconds_between(later: str, earlier: str, dialect: str | None = None) -> str:
    """SQL: the seconds from ``earlier`` to ``later`` (two TIMESTAMPTZ), as a DOUBLE —
    ``epoch(later - earlier)``.

    On DuckDB (``dialect="duckdb"``) a TIMESTAMPTZ difference goes through the ICU calendar:
    ~0.6 CPU-s per million rows, 40× the cost of the rest of the engagement score. There the
    interval's seconds are computed from the two microsecond epochs instead, as DuckDB's
    ``epoch`` of an interval does (whole days · 86400 + the remaining microseconds / 10⁶, both
    truncated toward zero, as the interval's parts): bit for bit the same DOUBLE (checked on
    1M timestamps on both sides of ``later``), at 1/30 of the cost. Other engines take the
    portable form."""
    if dialect != "duckdb":
        return f"epoch({later} - {earlier})"
    us = f"(epoch_us({later}) - epoch_us({earlier}))"
    return (
        f"(CAST(({us} // 86400000000) * 86400 AS DOUBLE) "
        f"+ CAST({us} % 86400000000 AS DOUBLE) / 1000000.0)"
    )


def day_of(t: str, dialect: str | None = None) -> str:
    """SQL: a value per UTC day of the TIMESTAMPTZ ``t`` (for grouping): ``CAST(t AS DATE)``
    (the warehouse session's time zone is UTC), or on DuckDB the day number from the
    microsecond epoch (floor division), without the ICU calendar's cost."""
    if dialect != "duckdb":
        return f"CAST({t} AS DATE)"
    return f"CAST(floor(epoch_us({t}) / 86400000000.0) AS BIGINT)"


def _round2(expr: str) -> str:
    """``expr`` rounded to 2 decimals, portably (PostgreSQL rounds only NUMERIC)."""
    return f"CAST(round(CAST({expr} AS DECIMAL(38, 6)), 2) AS DOUBLE)"


def purchases(config: TraitsConfig, scope: str) -> Sql:
    excluded, params = _in(
        "lower(o.status)", tuple(s.lower() for s in config.excluded_order_statuses)
    )
    sql = (
        "SELECT o.customer_id, max(o.created_at) AS last_purchase_at, "
        "min(o.created_at) AS first_purchase_at, count(*) AS order_count, "
        f"{_round2('sum(coalesce(o.total, 0))')} AS total_spent, "
        f"{_round2('sum(coalesce(o.total, 0)) / count(*)')} AS average_order_value "
        f"FROM orders o WHERE o.customer_id IS NOT NULL AND ({scope.format(c='o.customer_id')}) "
        f"AND (o.status IS NULL OR NOT ({excluded})) GROUP BY o.customer_id"
    )
    return sql, params


def activity(scope: str) -> Sql:
    """``first_seen`` / ``last_seen`` per customer, with its ``part`` of the identity graph
    (identity gives each part one customer id; the profile's fields are keyed by it)."""
    return (
        "SELECT part, customer_id, min(first_seen) AS first_seen, max(last_seen) AS last_seen "
        f"FROM identity_nodes WHERE customer_id IS NOT NULL AND ({scope.format(c='customer_id')}) "
        "GROUP BY part, customer_id",
        [],
    )


_PERSON = "AND coalesce({e}properties->>'machine', '') <> 'true' "
"""Machine opens and scanner clicks (:mod:`personify.engagement.machine`) count for nothing."""
_PERSON_DUCKDB = (
    "AND ({e}properties IS NULL OR NOT (contains(CAST({e}properties AS VARCHAR), 'machine') "
    "OR contains(CAST({e}properties AS VARCHAR), '\\')) "
    "OR coalesce({e}properties->>'machine', '') <> 'true') "
)
""":data:`_PERSON` on DuckDB, which parses the JSON text for ``->>`` on every row: a text with
neither ``machine`` nor a backslash (an escaped key) cannot hold the key, so it is not parsed."""


NOT_ACTIVITY = ("Email Delivered", "Email Unsubscribed", "Email Marked as Spam")
"""Track events that are not a day of the person's activity: an ESP's delivery report, an
unsubscribe, a spam complaint (:mod:`personify.engagement.record`)."""


def _person(e: str, dialect: str | None) -> str:
    return (_PERSON_DUCKDB if dialect == "duckdb" else _PERSON).format(e=e)


def engagement(
    config: TraitsConfig,
    scope: str,
    now: datetime,
    dialect: str | None = None,
    events: str = "events",
) -> Sql:
    """``events``: the table to read them from (the events of the scope's customers, taken
    once for every trait, where the scope is a few customers)."""
    w = config.engagement
    opens, p_open = _in("e.event", w.open_events)
    clicks, p_click = _in("e.event", w.click_events)
    age = seconds_between("CAST(? AS TIMESTAMPTZ)", "t", dialect)
    decay = f"pow(0.5, {age} / 86400.0 / {float(w.half_life_days)!r})"
    sql = (
        f"SELECT customer_id, {_round2(f'100 * a / (a + {float(w.saturation)!r})')} AS "
        "engagement_score FROM (SELECT customer_id, sum(weight * "
        f"{decay}) AS a FROM ("
        f"SELECT e.customer_id, e.timestamp AS t, CASE WHEN {opens} THEN {float(w.open)!r} "
        f"WHEN {clicks} THEN {float(w.click)!r} END AS weight FROM {events} e "
        # only opens and clicks weigh anything: other track events are not read further
        f"WHERE e.type = 'track' AND ({opens} OR {clicks}) AND e.customer_id IS NOT NULL "
        f"AND ({scope.format(c='e.customer_id')}) {_person('e.', dialect)}"
        "AND e.timestamp <= CAST(? AS TIMESTAMPTZ) "
        f"AND e.timestamp > CAST(? AS TIMESTAMPTZ) - INTERVAL '{int(w.window_days)} days' "
        "UNION ALL SELECT customer_id, min(timestamp) AS t, "
        f"{float(w.session)!r} AS weight FROM {events} WHERE customer_id IS NOT NULL "
        f"AND ({scope.format(c='customer_id')}) {_person('', dialect)}"
        "AND type IN ('page', 'screen', 'track') "
        # what the ESP or the unsubscribe link reports about an email is not the person active
        f"AND NOT (type = 'track' AND event IN ({', '.join('?' for _ in NOT_ACTIVITY)})) "
        "AND timestamp <= CAST(? AS TIMESTAMPTZ) "
        f"AND timestamp > CAST(? AS TIMESTAMPTZ) - INTERVAL '{int(w.window_days)} days' "
        f"GROUP BY customer_id, {day_of('timestamp', dialect)} "
        f"UNION ALL SELECT customer_id, created_at AS t, {float(w.purchase)!r} AS weight "
        f"FROM orders WHERE customer_id IS NOT NULL AND ({scope.format(c='customer_id')}) "
        "AND created_at <= CAST(? AS TIMESTAMPTZ) "
        f"AND created_at > CAST(? AS TIMESTAMPTZ) - INTERVAL '{int(w.window_days)} days'"
        ") x WHERE weight IS NOT NULL GROUP BY customer_id) s"
    )
    params: list[object] = [*[now] * age.count("?"), *p_open, *p_click]
    params += [*p_open, *p_click, now, now, *NOT_ACTIVITY, *[now] * 4]
    return sql, params


def categories(
    config: TraitsConfig, scope: str, dialect: str | None = None, events: str = "events"
) -> Sql:
    """``events``: as for :func:`engagement`."""
    c = config.categories
    views, p_view = _in("e.event", c.view_events)
    carts, p_cart = _in("e.event", c.cart_events)
    # only views and adds to cart weigh anything: the JSON of other events is never read; on
    # DuckDB both keys come from one parse of the properties (``->>`` parses them per key)
    if dialect == "duckdb":
        keys = (
            "j[1] AS category, j[2] AS product_id FROM (SELECT e.*, "
            f"json_extract_string(e.properties, ['category', 'product_id']) AS j FROM {events} e"
        )
    else:
        keys = (
            "e.properties->>'category' AS category, e.properties->>'product_id' AS product_id "
            f"FROM (SELECT * FROM {events} e"
        )
    tracked = (
        f"SELECT e.customer_id, e.event, {keys} WHERE e.type = 'track' AND ({views} OR {carts}) "
        f"AND e.customer_id IS NOT NULL AND ({scope.format(c='e.customer_id')})) e"
    )
    sql = (
        "SELECT customer_id, '[' || string_agg(CAST(to_json(category) AS VARCHAR), ',' "
        "ORDER BY w DESC, category COLLATE \"C\") || ']' AS preferred_categories FROM ("
        "SELECT customer_id, category, w, row_number() OVER (PARTITION BY customer_id "
        'ORDER BY w DESC, category COLLATE "C") AS pos FROM (SELECT customer_id, category, '
        "sum(w) AS w FROM (SELECT e.customer_id, coalesce(e.category, p.category) "
        f"AS category, CASE WHEN {views} THEN {float(c.view)!r} WHEN {carts} "
        f"THEN {float(c.cart)!r} END AS w FROM ({tracked}) e LEFT JOIN products p "
        "ON p.product_id = e.product_id "
        "UNION ALL SELECT o.customer_id, p.category, "
        f"{float(c.purchase)!r} * i.quantity AS w FROM order_items i "
        "JOIN orders o ON o.order_id = i.order_id JOIN products p ON p.product_id = i.product_id "
        f"WHERE o.customer_id IS NOT NULL AND ({scope.format(c='o.customer_id')})"
        ") v WHERE category IS NOT NULL AND w IS NOT NULL GROUP BY customer_id, category) g"
        f") r WHERE pos <= {int(c.top)} GROUP BY customer_id"
    )
    return sql, [*p_view, *p_cart, *p_view, *p_cart]


def tickets(config: TraitsConfig, scope: str) -> Sql:
    open_, params = _in("lower(status)", tuple(s.lower() for s in config.open_ticket_statuses))
    return (
        f"SELECT customer_id, count(*) FILTER (WHERE {open_}) AS open_tickets FROM tickets "
        f"WHERE customer_id IS NOT NULL AND ({scope.format(c='customer_id')}) GROUP BY customer_id",
        params,
    )


def lifecycle_sql(config: TraitsConfig) -> Sql:
    """CASE over ``order_count`` and ``days_since_last_purchase`` giving the stage."""
    lc = config.lifecycle
    return (
        "CASE WHEN coalesce(order_count, 0) = 0 THEN 'prospect' "
        "WHEN order_count = 1 AND days_since_last_purchase <= ? THEN 'new' "
        "WHEN days_since_last_purchase <= ? THEN 'active' "
        "WHEN days_since_last_purchase <= ? THEN 'at_risk' ELSE 'lapsed' END",
        [lc.new_days, lc.active_days, lc.at_risk_days],
    )
