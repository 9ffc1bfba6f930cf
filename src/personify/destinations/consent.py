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
from typing import Final

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
    out is then a record that left the model: removed at the API with ``on_remove: delete``."""
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
    wh.execute(f"CREATE TEMP TABLE _push_consent AS {sql}", params)
    try:
        return max(
            wh.execute(
                f"DELETE FROM {rows} WHERE {WHOSE} IS NULL OR CAST({WHOSE} AS VARCHAR) "
                f"{test} (SELECT id FROM _push_consent)"
            ),
            0,
        )
    finally:
        wh.execute("DROP TABLE IF EXISTS _push_consent")


def unsent_columns(d: RestDestination) -> frozenset[str]:
    """Model columns not sent: :data:`WHOSE` when it is there for the consent check only."""
    return frozenset({WHOSE}) if d.consent_rule is not None and d.key != WHOSE else frozenset()
