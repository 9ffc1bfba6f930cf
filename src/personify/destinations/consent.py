"""A destination's consent rule, in one place: whose each model row is, which rows are left out,
and which column is there for the check only (not sent).

With a consent rule (``consent:``, ``data_sharing`` by default) the model selects
:data:`WHOSE`; rows of people the destination may not receive — and rows of no one — are dropped
in the warehouse before anything is compared or sent, by the rules of the send-time gate
(:mod:`personify.privacy.consent`); the column is not sent unless it is the destination's key.
``consent: none`` (a model that is no person's data) turns all of it off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from personify.config import Project, RestDestination
from personify.errors import ConfigError
from personify.warehouse.base import Warehouse

WHOSE: Final = "customer_id"
"""The model's column naming whose row it is (the consent check reads it)."""


def check_columns(project: Project, d: RestDestination, columns: Sequence[str]) -> None:
    """Refuse a model with a consent rule that does not say whose each row is."""
    if d.consent_rule is not None and WHOSE not in columns:
        raise ConfigError(
            f"the model of destination {d.name!r} has no column {WHOSE!r}: the push cannot "
            "leave out the people who did not consent to it",
            file=str(project.file),
            key=f"destinations.{d.name}.model",
            hint=f"select customer_id too (it is not sent unless it is the key), or set "
            f"destinations.{d.name}.consent: none for a model that is no person's data",
        )


def drop_without_consent(wh: Warehouse, d: RestDestination, rows: str) -> int:
    """Drop from the staged table ``rows`` the rows of people the destination may not receive
    (and rows of no one), in the warehouse; returns how many. Fail closed. A person who drops
    out is then a record that left the model: removed at the API with ``on_remove: delete``. An
    ad audience also leaves out whoever opted out of data sharing, whatever purpose it checks."""
    from personify.privacy.consent import DATA_SHARING, consented_sql, opted_out_sql

    rule = d.consent_rule
    if rule is None:
        return 0
    ids = f"SELECT CAST({WHOSE} AS VARCHAR) AS id FROM {rows}"
    if rule.purpose == DATA_SHARING:  # an opt-out: everyone but those who opted out
        sql, params = opted_out_sql(ids)
        test = "IN"
    else:  # an opt-in: only those who granted it
        sql, params = consented_sql(ids, purpose=rule.purpose, channel=rule.channel)
        test = "NOT IN"
    dropped = _drop(wh, rows, sql, params, test, no_one=True)
    if d.ad_audience and rule.purpose != DATA_SHARING:  # an opt-out of sharing wins over a grant
        sql, params = opted_out_sql(ids)
        dropped += _drop(wh, rows, sql, params, "IN", no_one=False)
    return dropped


def _drop(wh: Warehouse, rows: str, sql: str, params: list[Any], test: str, *, no_one: bool) -> int:
    """Delete the rows of ``rows`` whose person is (``IN``) or is not (``NOT IN``) among the ids
    ``sql`` selects (and, ``no_one``, the rows of no one)."""
    wh.execute(f"CREATE TEMP TABLE _push_consent AS {sql}", params)
    nobody = f"{WHOSE} IS NULL OR " if no_one else ""
    try:
        return max(
            wh.execute(
                f"DELETE FROM {rows} WHERE {nobody}CAST({WHOSE} AS VARCHAR) "
                f"{test} (SELECT id FROM _push_consent)"
            ),
            0,
        )
    finally:
        wh.execute("DROP TABLE IF EXISTS _push_consent")


def unsent_columns(d: RestDestination) -> frozenset[str]:
    """Model columns not sent: :data:`WHOSE` when it is there for the consent check only."""
    return frozenset({WHOSE}) if d.consent_rule is not None and d.key != WHOSE else frozenset()
