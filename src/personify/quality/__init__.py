"""Data quality: audits of sources against the warehouse (reconciliation), validation rules run
in the warehouse after loads and syncs, and reports of where sources disagree.

:func:`reconcile` re-reads sources and compares them with the warehouse
(:mod:`personify.quality.reconcile`).
"""

from personify.quality.reconcile import ReconcileReport as ReconcileReport
from personify.quality.reconcile import TableResult as TableResult
from personify.quality.reconcile import latest_run as latest_run
from personify.quality.reconcile import reconcile as reconcile

__all__ = ["ReconcileReport", "TableResult", "latest_run", "reconcile"]
