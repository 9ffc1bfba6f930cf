"""What a merge carries over: journey instances and messages follow the surviving customer id.

When an identity pass merges customer B into A (``customer_ids.merged_into``), B's profile row
goes away, so anything still keyed by B would find nobody: a journey instance B entered would
end ``skipped_not_found`` at its send step, and a message queued for B could not be sent. In the
same transaction as the merge, :func:`follow_merges`:

* re-points B's journey instances to A — unless A already has an instance of that journey for
  the same trigger key (or several merged ids bring one each): the oldest entry is kept, the
  others are exited with ``exit_reason = 'merged'``, so the person gets the email once;
* re-points B's messages to A (their idempotency keys stay as decided, so nothing is decided or
  sent twice; the frequency cap and reports see one person).

Other customer-keyed data resolves merges when read (``consents_current``, suppressions).
"""

from __future__ import annotations

from personify import clock
from personify.warehouse.base import Warehouse
from personify.warehouse.scratch import drop

_MOVES = "_journey_moves"


def follow_merges(wh: Warehouse, merged: str) -> dict[str, int]:
    """Re-point the journey instances and messages of the ids in ``merged`` (a table of
    ``customer_id, merged_into``; rows with a NULL ``merged_into`` are ignored). The counts
    that are not zero: ``journey_instances_moved`` and ``journey_instances_merged``."""
    if not wh.scalar(f"SELECT count(*) FROM {merged} WHERE merged_into IS NOT NULL"):
        return {}  # most passes merge nobody: no scan of instances and messages
    now = clock.now()
    drop(wh, _MOVES)
    wh.execute(
        f"CREATE TEMP TABLE {_MOVES} AS SELECT j.journey, j.customer_id AS old_id, "
        "m.merged_into AS new_id, j.trigger_key, "
        "row_number() OVER (PARTITION BY j.journey, m.merged_into, j.trigger_key "
        "ORDER BY j.entered_at, j.customer_id) AS rn, "
        "EXISTS (SELECT 1 FROM journey_instances s WHERE s.journey = j.journey "
        "AND s.customer_id = m.merged_into AND s.trigger_key = j.trigger_key) AS taken "
        f"FROM journey_instances j JOIN {merged} m ON m.customer_id = j.customer_id "
        "WHERE m.merged_into IS NOT NULL AND m.merged_into <> m.customer_id"
    )
    exited = int(
        wh.scalar(
            f"SELECT count(*) FROM {_MOVES} mv JOIN journey_instances j ON "
            "j.journey = mv.journey AND j.customer_id = mv.old_id AND "
            "j.trigger_key = mv.trigger_key WHERE (mv.taken OR mv.rn > 1) AND j.status = 'active'"
        )
        or 0
    )
    wh.execute(
        "UPDATE journey_instances SET status = 'exited', exit_reason = 'merged', "
        f"exited_at = ?, updated_at = ? FROM {_MOVES} mv "
        "WHERE journey_instances.journey = mv.journey AND journey_instances.customer_id = "
        "mv.old_id AND journey_instances.trigger_key = mv.trigger_key "
        "AND (mv.taken OR mv.rn > 1) AND journey_instances.status = 'active'",
        [now, now],
    )
    moved = int(wh.scalar(f"SELECT count(*) FROM {_MOVES} WHERE NOT taken AND rn = 1") or 0)
    wh.execute(
        "UPDATE journey_instances SET customer_id = mv.new_id, updated_at = ? "
        f"FROM {_MOVES} mv WHERE journey_instances.journey = mv.journey "
        "AND journey_instances.customer_id = mv.old_id "
        "AND journey_instances.trigger_key = mv.trigger_key AND NOT mv.taken AND mv.rn = 1",
        [now],
    )
    wh.execute(
        f"UPDATE messages SET customer_id = m.merged_into FROM {merged} m "
        "WHERE messages.customer_id = m.customer_id AND m.merged_into IS NOT NULL"
    )
    drop(wh, _MOVES)
    counts = {"journey_instances_moved": moved, "journey_instances_merged": exited}
    return {k: v for k, v in counts.items() if v}
