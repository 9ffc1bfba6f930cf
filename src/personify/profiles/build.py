"""Rebuild ``customers`` from observations (survivorship) and traits — for everyone, or for a few.

The same SQL serves both: the batch stage passes no ids (everyone), the real-time path passes
the ids one input touched. Either way the rows of those customers are deleted and inserted
again inside one transaction, so readers never see half a profile, and merged-away ids vanish.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from personify import clock
from personify.config import Project
from personify.errors import WarehouseError
from personify.identity.normalize import phone_sql
from personify.identity.tables import PHONES, WRITES, phone_map
from personify.privacy.fields import cipher_of, seal_customers
from personify.profiles import traits as T
from personify.profiles.custom import Trait, compile_traits, traits_sql
from personify.profiles.observations import FIELDS
from personify.profiles.survivorship import fields_sql
from personify.realtime import invalidate_all, invalidate_customers
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop, scratch, temp_table

_SCOPE = scratch("_profile_scope", customer_id="VARCHAR")
_SCOPE_EVENTS = "_scope_events"
_TEMPS = (
    "_fields",
    "_t_buy",
    "_t_act",
    "_t_eng",
    "_t_cat",
    "_t_tix",
    "_t_usr",
    _SCOPE_EVENTS,
    PHONES.name,
)


def _scope(wh: Warehouse, customer_ids: Sequence[str] | None) -> str:
    if customer_ids is None:
        return "TRUE"
    temp_table(wh, _SCOPE, pa.table({"customer_id": pa.array(list(customer_ids), pa.string())}))
    return "{c} IN (SELECT customer_id FROM _profile_scope)"


def _fields(wh: Warehouse, project: Project, scope: str) -> None:
    # keyed by the customer's partition of the identity graph (an integer: identity gives each
    # part one customer id): the survivorship aggregate groups on it instead of on the id text
    observations = (
        "SELECT n.part, o.field, o.value, o.source, o.observed_at "
        "FROM profile_observations o JOIN identity_nodes n ON n.node_id = o.node_id "
        f"WHERE n.customer_id IS NOT NULL AND ({scope.format(c='n.customer_id')})"
    )
    sql, params = fields_sql(
        project.config.survivorship, FIELDS, observations, wh.dialect, key="part"
    )
    wh.execute(f"CREATE TEMP TABLE _fields AS {sql}", params)
    _phones(wh, project)


def _phones(wh: Warehouse, project: Project) -> None:
    """The profile's phone in E.164, as the identity graph holds it: a value SQL could not
    normalize when it was observed (a national number, ``(202) 555-0143``) is parsed once per
    distinct value with ``phonenumbers``, in the profile's country when it is an ISO code, else
    in ``identity.phone_region``; one that does not parse stays as the source wrote it. The
    observations keep what each source said."""
    cipher = cipher_of(wh)
    if cipher is not None and "phone" in cipher.columns:  # sealed tokens, not numbers
        return
    numbers = phone_map(
        wh,
        "SELECT DISTINCT phone, coalesce(CAST(country AS VARCHAR), '') FROM _fields "
        f"WHERE phone IS NOT NULL AND {phone_sql('phone')} IS NULL",
        project.config.identity.phone_region,
    )
    if numbers:
        wh.execute(
            f"UPDATE _fields SET phone = p.e164 FROM {PHONES.name} p "
            "WHERE _fields.phone = p.raw AND coalesce(CAST(_fields.country AS VARCHAR), '') = "
            "p.region AND p.e164 IS NOT NULL"
        )


def _traits(wh: Warehouse, project: Project, scope: str, *, few: bool) -> list[Trait]:
    """The trait temp tables; ``few``: the scope lists customers (not everyone). Returns the
    user traits (for :func:`_late_traits`)."""
    cfg, now = project.config.traits, clock.now()
    events = "events"
    if few:  # their events taken once, for the three reads below
        # (each a scan of every stored event's customer id: 5M stored, 0.1–0.2 CPU-s apiece)
        wh.execute(
            f"CREATE TEMP TABLE {_SCOPE_EVENTS} AS SELECT customer_id, type, event, timestamp, "
            f"properties FROM events WHERE {scope.format(c='customer_id')}"
        )
        events = _SCOPE_EVENTS
    for name, (sql, params) in (
        ("_t_buy", T.purchases(cfg, scope)),
        ("_t_act", T.activity(scope)),
        ("_t_eng", T.engagement(cfg, scope, now, wh.dialect, events)),
        ("_t_cat", T.categories(cfg, scope, wh.dialect, events)),
        ("_t_tix", T.tickets(cfg, scope)),
    ):
        wh.execute(f"CREATE TEMP TABLE {name} AS {sql}", params)
    users = compile_traits(wh, project)
    # traits that read the profiles run once they are rebuilt (_late_traits); until then the
    # rows are written without them
    _user_traits(wh, [] if any(t.reads_profiles for t in users) else users, scope)
    return users


def _user_traits(wh: Warehouse, users: list[Trait], scope: str) -> None:
    """The temp table ``_t_usr`` of the user traits' JSON objects."""
    sql, params = traits_sql(users, scope) or (
        "SELECT CAST(NULL AS VARCHAR) AS customer_id, CAST(NULL AS VARCHAR) AS traits WHERE FALSE",
        [],
    )
    try:
        wh.execute(f"CREATE TEMP TABLE _t_usr AS {sql}", params)
    except WarehouseError as e:
        # the user traits run as one statement: the engine's message alone (an unknown column)
        # does not say which file it is about
        if type(e) is not WarehouseError or not users:
            raise
        where = ", ".join(t.where for t in users)
        raise WarehouseError(
            f"{'the user trait' if len(users) == 1 else 'one of the user traits'} ({where}) "
            f"failed on the warehouse: {e.message}",
            hint="each trait is one SELECT returning customer_id and value over the warehouse's "
            "tables; `personify sql` runs it as it stands",
        ) from e


def _late_traits(wh: Warehouse, users: list[Trait], scope: str) -> None:
    """When a user trait reads ``customers`` (or ``customer_data``): every user trait, over the
    rows just rebuilt, set on them — a trait such as ``total_spent * 2`` then follows this
    build, where reading the table before it was rebuilt gave the previous build's values (none
    on a first build, and the real-time path one order late)."""
    if not any(t.reads_profiles for t in users):
        return
    drop(wh, "_t_usr")
    _user_traits(wh, users, scope)
    wh.execute(
        "UPDATE customers SET traits = CAST(u.traits AS JSON) FROM _t_usr u "
        "WHERE customers.customer_id = u.customer_id"
    )


_COLUMNS = (
    "customer_id, email, first_name, last_name, phone, timezone, country, city, locale, "
    "created_at, "
    "last_purchase_at, first_purchase_at, order_count, total_spent, average_order_value, "
    "engagement_score, preferred_categories, last_seen_at, source, updated_at, first_seen, "
    "last_seen, days_since_last_purchase, open_tickets, lifecycle_stage, traits"
)


_KEPT = "_t_kept_predictions"
_PREDICTED = "p_alive, expected_orders, predicted_clv"


def _keep_predictions(wh: Warehouse) -> None:
    """Before a full build deletes the rows: their predictive traits, which the rebuilt rows keep
    until the fit after the build's commit replaces them (:func:`fit_predictive`) — readers in
    between (a segment refresh) see the previous fit's values, never NULL."""
    wh.execute(
        f"CREATE TEMP TABLE {_KEPT} AS SELECT customer_id, {_PREDICTED} FROM customers "
        "WHERE p_alive IS NOT NULL OR expected_orders IS NOT NULL OR predicted_clv IS NOT NULL"
    )


def _insert(wh: Warehouse, project: Project, scope: str, *, kept: bool = False) -> int:
    lifecycle, lc_params = T.lifecycle_sql(project.config.traits)
    now = clock.now()
    since = T.seconds_between("CAST(? AS TIMESTAMPTZ)", "b.last_purchase_at", wh.dialect)
    inner = (
        "SELECT c.customer_id, f.email, f.first_name, f.last_name, f.phone, f.timezone, "
        "f.country, f.city, f.locale, CAST(f.created_at AS TIMESTAMPTZ) AS created_at, "
        "b.last_purchase_at, b.first_purchase_at, coalesce(b.order_count, 0) AS order_count, "
        "coalesce(b.total_spent, 0) AS total_spent, b.average_order_value, "
        "coalesce(e.engagement_score, 0) AS engagement_score, "
        "coalesce(k.preferred_categories, '[]') AS preferred_categories, "
        "c.last_seen AS last_seen_at, f.source, CAST(? AS TIMESTAMPTZ) AS updated_at, "
        f"c.first_seen, c.last_seen, CAST(floor({since} / 86400) AS BIGINT) "
        "AS days_since_last_purchase, "
        "coalesce(t.open_tickets, 0) AS open_tickets, u.traits "
        # the activity traits hold one row per customer of the scope (every customer_id of
        # identity_nodes there): they are the customers, no second DISTINCT over the nodes
        "FROM _t_act c "
        "LEFT JOIN _fields f ON f.part = c.part "
        "LEFT JOIN _t_buy b ON b.customer_id = c.customer_id "
        "LEFT JOIN _t_eng e ON e.customer_id = c.customer_id "
        "LEFT JOIN _t_cat k ON k.customer_id = c.customer_id "
        "LEFT JOIN _t_tix t ON t.customer_id = c.customer_id "
        "LEFT JOIN _t_usr u ON u.customer_id = c.customer_id"
    )
    columns = _COLUMNS
    if kept:  # a full build with predictive traits: the rows keep their last predictions
        columns = f"{_COLUMNS}, {_PREDICTED}"
        inner = inner.replace(
            " FROM _t_act c ", ", p.p_alive, p.expected_orders, p.predicted_clv FROM _t_act c ", 1
        )
        inner += f" LEFT JOIN {_KEPT} p ON p.customer_id = c.customer_id"
    cols = columns.replace("lifecycle_stage", f"{lifecycle} AS lifecycle_stage")
    cols = cols.replace("preferred_categories", "CAST(preferred_categories AS JSON)", 1)
    cols = cols.replace(", traits", ", CAST(traits AS JSON)")
    added = wh.execute(
        f"INSERT INTO customers ({columns}) SELECT {cols} FROM ({inner}) x",
        [*lc_params, now, *[now] * since.count("?")],
    )
    return max(added, 0)


def build_customers(
    wh: Warehouse,
    project: Project,
    customer_ids: Sequence[str] | None = None,
    *,
    fit: bool = True,
) -> dict[str, int]:
    """Rebuild the ``customers`` rows of ``customer_ids`` (default: everyone).

    Predictive traits, when on: a rebuild of a few customers predicts theirs with the last fit's
    parameters, in its transaction; a full build's rows keep their previous predictions and the
    fit runs after the build's commit, with no lock held (:func:`fit_predictive`) — ``fit=False``
    leaves that call to the caller, after its own transaction (:func:`profiles_stage`)."""
    full = customer_ids is None
    kept = full and project.config.traits.predictive.enabled
    with wh.transaction():
        wh.hold(*WRITES)
        drop(wh, *_TEMPS, _KEPT)
        scope = _scope(wh, customer_ids)
        _fields(wh, project, scope)
        users = _traits(wh, project, scope, few=customer_ids is not None)
        if kept:
            _keep_predictions(wh)
        wh.execute(f"DELETE FROM customers WHERE {scope.format(c='customer_id')}")
        built = _insert(wh, project, scope, kept=kept)
        _late_traits(wh, users, scope)
        if not full:
            _predictive_scope(wh, project, scope)
        drop(wh, *_TEMPS, _SCOPE.name, _KEPT)
        cipher = cipher_of(wh)
        if cipher is not None:  # encrypted fields: the rows are sealed before they commit
            seal_customers(wh, cipher, None if customer_ids is None else list(customer_ids))
    if customer_ids is None:  # committed (or inside a caller's transaction: it invalidates too)
        invalidate_all(wh, project)
    else:
        invalidate_customers(wh, project, customer_ids)
    predicted = fit_predictive(wh, project) if kept and fit else {}
    return {"customers_built": built, **predicted}


def _predictive_scope(wh: Warehouse, project: Project, scope: str) -> None:
    """A rebuild of a few customers predicts theirs with the last fit's parameters (when
    predictive traits are on; off: nothing at all is read)."""
    if not project.config.traits.predictive.enabled:
        return
    from personify.profiles import predictive  # numpy/scipy only for projects that use it

    predictive.refresh_scope(wh, project, scope)


def fit_predictive(wh: Warehouse, project: Project) -> dict[str, int]:
    """The full build's predictive traits, after its commit (when on): the fit outside any
    lock, then the predictions written in a short transaction of their own
    (:func:`personify.profiles.predictive.refresh`)."""
    if not project.config.traits.predictive.enabled:
        return {}
    from personify.profiles import predictive

    counts = predictive.refresh(wh, project)
    invalidate_all(wh, project)  # the predictive columns changed for everyone
    return counts
