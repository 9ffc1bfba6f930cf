"""Identity resolution: identifiers → one ``customer_id`` per person, computed in the warehouse.

* :func:`identity_stage` — the pipeline stage (incremental batch pass);
* :func:`resolve_batch`, :func:`run_pass` — the pass itself, for a scope of inputs;
* :func:`explain` — why two identifiers are (or are not) one customer;
* :mod:`~personify.identity.normalize` — identifier normalization;
* :func:`connected_components` — the SQL algorithm.
"""

from __future__ import annotations

from personify.identity.components import ComponentsReport, connected_components
from personify.identity.explain import Explanation, explain
from personify.identity.resolve import PassReport, resolve_batch, run_pass
from personify.identity.sightings import Scope
from personify.session import Session


def identity_stage(session: Session) -> dict[str, int]:
    """Pipeline stage ``identity``: resolve what arrived since the last run."""
    report = resolve_batch(session.warehouse, session.project.config.identity)
    return report.counts


__all__ = [
    "ComponentsReport",
    "Explanation",
    "PassReport",
    "Scope",
    "connected_components",
    "explain",
    "identity_stage",
    "resolve_batch",
    "run_pass",
]
