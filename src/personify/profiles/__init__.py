"""Profiles: survivorship over observations, computed and user-defined traits, profile reads.

* :func:`profiles_stage` — the pipeline stage: new observations, then ``customers`` rebuilt;
* :func:`build_customers` — the rebuild, for everyone or a few ids;
* :func:`apply_event` / :func:`apply_record` / :func:`apply_order` — the real-time path;
* :func:`read_profile` — one unified profile with provenance.
"""

from __future__ import annotations

from personify.identity import state
from personify.identity.rules import load_rules
from personify.identity.sightings import NOTHING, Scope
from personify.identity.tables import WRITES
from personify.profiles.build import build_customers, fit_predictive
from personify.profiles.observations import collect_observations
from personify.profiles.read import read_profile, resolve_customer
from personify.profiles.realtime import apply, apply_event, apply_order, apply_record
from personify.session import Session
from personify.warehouse.base import Warehouse


def _window(wh: Warehouse, key: str, table: str) -> tuple[str, tuple[object, ...]]:
    """Rows received since the last pass (and no later than now's newest), and move the mark."""
    upto = state.latest(wh, table)
    if upto is None:
        return NOTHING
    after = state.get_instant(wh, key)
    state.put(wh, key, upto.isoformat())
    if after is None:
        return ("received_at <= ?", (upto,))
    # from the mark itself: rows stored at the very instant of the last pass (a fixed --now, a
    # file imported in the same microsecond) are read again — passes are idempotent — not lost
    return ("received_at >= ? AND received_at <= ?", (after, upto))


def profiles_stage(session: Session) -> dict[str, int]:
    """Pipeline stage ``profiles``: record new observations, rebuild every customer; then,
    once that has committed, the predictive traits' fit (when on)."""
    wh, project = session.warehouse, session.project
    with wh.transaction():
        wh.hold(*WRITES)
        load_rules(wh, project.config.identity)
        scope = Scope(
            events=_window(wh, "profiles.events", "events"),
            records=_window(wh, "profiles.records", "customer_records"),
            orders=("TRUE", ()),
        )
        added = collect_observations(wh, scope, project.config.identity)
        counts = {"observations_added": added}
        counts |= build_customers(wh, project, fit=False)
    # predictive traits: fit once the rebuild has committed, its locks released
    counts |= fit_predictive(wh, project)
    return counts


__all__ = [
    "apply",
    "apply_event",
    "apply_order",
    "apply_record",
    "build_customers",
    "profiles_stage",
    "read_profile",
    "resolve_customer",
]
