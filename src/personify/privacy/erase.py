"""Erasure: remove a person from every table and file, leave a tombstone, report per step.

Steps, each in its own transaction together with its ``erasure_progress`` row (so a re-run after
a crash skips what is done — resumable — and a finished erasure run again changes nothing —
idempotent):

1. ``tombstone`` — a suppression per email and phone the person holds: a keyed hash
   (:mod:`.hashing`), never the address. Re-ingested data that brings the address back is
   linked to it by the privacy stage, so no marketable profile comes back until the person opts
   in again after the erasure. One per customer id too (no customer in it, so it suppresses
   nobody): a click on an old unsubscribe link is then known to be an erased person's
   (:func:`erased_customer`) and writes nothing. The person's other suppressions lose their
   customer id.
2. ``outbox`` — ``.eml`` files written to them (by the index's customer id, or their address in
   the file as a whole token) are deleted and ``index.jsonl`` rewritten without their lines.
3. one step per personal table (:mod:`.footprint`; journey or delivery tables added later are
   found by their ``customer_id`` column): their rows deleted — events reached through any linked
   identifier (and those only possibly theirs: a shared device's unattributable events,
   :data:`~personify.privacy.footprint.POSSIBLY`), order items through their orders, quarantined
   payloads that mention an identifier as a whole token — and, in the rows that remain, JSON
   string values that are their email or phone replaced by ``"[erased]"`` (a referral's
   ``properties`` …). The ``events`` step comes with ``event_forwards`` — what events
   destinations recorded of the person's events (message ids, a refusal's answer) — deleted in
   the same transaction, just before the events: never one without the other — first counted
   per ``kind: events`` destination (kept beside the step's progress: the report names each
   destination their events went to, with how many — those are in that tool, for the operator
   to erase there).
4. ``destination:NAME`` — per destination (reverse ETL), the records pushed with one of their
   identifiers as key (the step counts them). A destination that removes records
   (``on_remove: delete``, ad audiences among them) keeps each as a **pending removal** — its
   key's keyed hash and its encrypted key (an audience's: the hashed identifiers), nothing
   else — which the next push sends first, whatever the model says and regardless of
   ``max_removals``, then forgets (a removal the API refuses stays pending, retried each push).
   Any other destination's records are forgotten, and the report names the destination: the
   person's record there is the operator's to remove (GDPR art. 17(2), 19). The step leaves
   the keyed hashes of the keys it looked for (:data:`~personify.destinations.erasures.
   LOOKED_FOR`): a push that began before it, sending the person for the first time (no state
   to mark), records what the API took as this erasure's pending removal, not ``sent``.
5. ``identity`` — last, in one transaction: the identity graph, provenance
   (``profile_observations``), ``identities`` and ``customer_ids`` — until then the person can be
   found again, which is what makes the steps before resumable.

In-process caches that may hold a raw identifier (phone parsing) are cleared and the real-time
profile cache drops the customer. The audit log gets
one ``erase`` entry with the per-step counts (no personal data).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from personify import clock
from personify.config import Project, RestDestination
from personify.destinations.erasures import erase_records, forget, looked_for, pending_of
from personify.destinations.state import acks_lock, rest_destinations
from personify.errors import NotFound
from personify.identity.normalize import normalize
from personify.privacy.audit import customer_hash, log_action
from personify.privacy.export import outbox_folder
from personify.privacy.footprint import (
    Footprint,
    erasable,
    footprint,
    mention_pattern,
    personal_tables,
)
from personify.privacy.hashing import HASHED_KINDS, hash_normalized, identifier_hash, project_key
from personify.privacy.subjects import resolve
from personify.warehouse.base import UNNEST, Warehouse, quote
from personify.warehouse.schema import ERASURE_PROGRESS, EVENTS, SUPPRESSIONS, Table

IDENTITY_STEP = "identity"
IDENTITY_TABLES: tuple[str, ...] = (
    "identities",
    "profile_observations",
    "identity_edges",
    "identity_refusals",
    "identity_nodes",
    "customer_ids",
)
"""Erased last, together: until then the person's footprint can be computed again."""
_FIRST: tuple[str, ...] = ("order_items",)
"""Tables erased before the others (order items are found through their orders)."""
_SPECIAL = frozenset({"suppressions"})
REDACTED = "[erased]"
_KEEP_BOUNDS = "\\1" + REDACTED + "\\3"
"""The replacement of a mention: its bounding characters (groups 1 and 3) around ``[erased]``."""


@dataclass
class StepReport:
    step: str
    rows: int
    status: str
    """``done`` now, ``already_done`` by an earlier run."""


@dataclass
class ErasureReport:
    erasure_id: str
    status: str
    """``erased``, or ``already_erased`` when nothing was left."""
    steps: list[StepReport] = field(default_factory=list)
    destinations: list[DestinationReport] = field(default_factory=list)
    """Per destination that received the person's record: pending removals, or to do by hand."""
    pending: dict[str, int] = field(default_factory=dict)
    """Removals pending per destination, every erasure's (``personify push`` sends them)."""
    own_pending: dict[str, int] | None = None
    """``already_erased``: the removals the erasure(s) of this person queued that still wait,
    per destination (``destination_state.erasure_id``)."""
    events_forwarded: list[ForwardedReport] = field(default_factory=list)
    """Per events destination (``kind: events``) the person's events went to: how many."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "erasure_id": self.erasure_id,
            "status": self.status,
            "steps": [vars(s) for s in self.steps],
            "rows": sum(s.rows for s in self.steps),
            "destinations": [d.as_dict() for d in self.destinations],
            "removals_pending": (
                {d.destination: d.removals_pending for d in self.destinations if d.records}
                if self.own_pending is None
                else self.own_pending
            ),
            "removals_pending_all": self.pending,
            "events_forwarded": [vars(e) | {"message": e.message} for e in self.events_forwarded],
        }


@dataclass
class ForwardedReport:
    """The person's events an events destination (``kind: events``) received before the erasure:
    Personify cannot take them back (the operator erases them in that tool)."""

    destination: str
    events: int
    """Recorded as posted to its API (``sent``, or ``rejected`` by it)."""
    earlier: int
    """Stored before its floor, their outcome pruned: sent unless left out for consent."""

    @property
    def message(self) -> str:
        said = f"{self.events:,} of the person's events were forwarded to {self.destination}"
        if self.earlier:
            said += f" (and up to {self.earlier:,} earlier ones)"
        return said + ": erase them there"


@dataclass
class DestinationReport:
    """What erasure did about one destination that received the person's record."""

    destination: str
    records: int
    removals_pending: int
    """Records the next push removes at the API."""
    cannot_remove: int
    """Records Personify cannot remove (the destination does not remove records, or the key
    was not kept): the operator removes them in that tool."""
    push_running: bool = False
    """A push of the destination was running when the erasure reached it: if it read the
    person before, what its API took of them is recorded (as this erasure's pending removal, or
    counted among those to remove by hand) when it records that batch — after this report."""

    @property
    def message(self) -> str:
        said = []
        if self.removals_pending:
            said.append(
                f"{self.removals_pending:,} record(s) pending removal at {self.destination}: "
                f"the next push removes them (`personify push {self.destination}`)"
            )
        if self.cannot_remove:
            said.append(
                f"the person's record was sent to {self.destination} and cannot be removed by "
                "Personify: remove it there"
            )
        if self.push_running:
            said.append(
                f"a push of {self.destination} was running: if it was sending the person's "
                "record, it records it as this erasure's pending removal when that batch is "
                "recorded, which this report cannot show yet — run the same `personify erase` "
                f"again once the push ends (or see `personify status`: removals pending at "
                f"{self.destination})"
            )
        return "; ".join(said)

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "message": self.message}


def erase_subject(
    wh: Warehouse, project: Project, who: str, *, actor: str = "cli"
) -> ErasureReport:
    """Erase the person ``who`` names everywhere (see the module docstring)."""
    key = project_key(project)
    try:
        customer_id = resolve(wh, project, who)
    except NotFound:
        found = _already_erased(wh, key, who, project)
        if found is not None:
            # (the erasure found by its id or an alias — one: its id, not the name's hash)
            named = found[0] if len(found) == 1 else customer_hash(key, who.strip())
            again = ErasureReport(named, "already_erased")
            again.pending = pending_removals(wh, project)
            again.own_pending = pending_of(wh, found)
            return again
        raise
    erasure_id = customer_hash(key, customer_id)
    done = {
        str(s): int(n)
        for s, n in wh.fetch(
            "SELECT step, rows FROM erasure_progress WHERE erasure_id = ?", [erasure_id]
        )
    }
    if IDENTITY_STEP in done:
        # an erasure of this id finished before, and the id names a customer again (their data
        # came back under the same id, which is the hash of an identifier): a new erasure, every
        # step run again — not skipped as done
        with wh.transaction():
            wh.execute("DELETE FROM erasure_progress WHERE erasure_id = ?", [erasure_id])
        done = {}
    f = footprint(wh, customer_id, project.config.identity)
    report = ErasureReport(erasure_id, "erased")

    def together(*steps: tuple[str, Callable[[], int]]) -> None:
        """Run ``steps`` in one transaction with their progress rows (a crash leaves all of them
        to do, none half done); done all, they are skipped."""
        if all(name in done for name, _ in steps):
            report.steps += [StepReport(name, done[name], "already_done") for name, _ in steps]
            return
        with wh.transaction():
            counts = [(name, int(run())) for name, run in steps]
            for name, rows in counts:
                _progress(wh, erasure_id, name, rows)
        report.steps += [StepReport(name, rows, "done") for name, rows in counts]

    def step(name: str, run: Callable[[], int]) -> None:
        together((name, run))

    step("tombstone", lambda: _tombstone(wh, key, f))
    step("outbox", lambda: _outbox(outbox_folder(project), f))
    tables = [t for t in personal_tables() if t.name not in IDENTITY_TABLES + tuple(_SPECIAL)]
    tables.sort(key=lambda t: 0 if t.name in _FIRST else 1)
    for t in tables:
        if t.name == EVENTS.name:
            # what events destinations recorded of the events, then the events: one transaction
            # (event_forwards gone and the events kept, the next forwarding would send them)
            together(
                ("event_forwards", lambda: _event_forwards(wh, erasure_id, project, f)),
                (t.name, partial(_erase_table, wh, t, f)),
            )
        else:
            step(t.name, partial(_erase_table, wh, t, f))

    # destinations (reverse ETL) the person was pushed to: a destination that removes records
    # keeps theirs as pending removals (the next push sends them); the others forget them
    # (their record in that tool is the operator's to erase: the report says so)
    running: set[str] = set()
    for d in rest_destinations(project):  # (an events destination holds no one's records)
        step(f"destination:{d.name}", partial(_destination, wh, erasure_id, d, f.keys))
        if _push_running(wh, d.name):  # (what it records of them later, this report cannot say)
            running.add(d.name)

    def identity() -> int:
        _aliases(wh, key, f, erasure_id)
        return _erase_identity(wh, f)

    step(IDENTITY_STEP, identity)
    _clear_caches()
    invalidate_cached(wh, project, f.customer_ids)
    report.destinations = _destination_reports(wh, erasure_id, project, report.steps, running)
    report.pending = pending_removals(wh, project)
    report.events_forwarded = _forwarded_reports(wh, erasure_id, project)
    detail: dict[str, Any] = {s.step: s.rows for s in report.steps}
    detail["events_forwarded"] = {e.destination: e.events for e in report.events_forwarded}
    detail["removals_pending"] = {
        d.destination: d.removals_pending for d in report.destinations if d.records
    }
    detail["cannot_remove"] = [d.destination for d in report.destinations if d.cannot_remove]
    detail["push_running"] = sorted(running)
    with wh.transaction():
        log_action(wh, action="erase", actor=actor, customer_id=customer_id, key=key, detail=detail)
    return report


PENDING = ":pending"
"""The suffix of the ``erasure_progress`` row counting a destination step's pending removals."""


def _destination(wh: Warehouse, erasure_id: str, d: RestDestination, keys: Sequence[str]) -> int:
    """The person's records at ``d``: pending removals where ``d`` removes records, the rest
    forgotten (their count, with the pending ones, is the step's; the pending ones recorded
    beside it in the same transaction)."""
    acks_lock(wh, d.name)  # (a push recording what its API took: one after the other)
    pending = (
        erase_records(wh, d.name, keys, erasure_id=erasure_id) if d.on_remove == "delete" else 0
    )
    # (a first push under way records it erased; what forget drops is marked counted)
    looked_for(wh, d.name, keys, erasure_id)
    manual = forget(wh, d.name, keys)
    _progress(wh, erasure_id, f"destination:{d.name}{PENDING}", pending)
    return pending + manual


def _push_running(wh: Warehouse, name: str) -> bool:
    """Whether a push of destination ``name`` holds its lock (in this process or, on PostgreSQL,
    any): one that read the person before the erasure records what its API took of them as the
    erasure's pending removal only when it records that batch — after this report."""
    from personify.destinations.state import run_name
    from personify.sources.schedule import exclusive

    with exclusive(run_name(name), wait=False, warehouse=wh) as free:
        return not free


def _destination_reports(
    wh: Warehouse,
    erasure_id: str,
    project: Project,
    steps: list[StepReport],
    running: set[str] | frozenset[str] = frozenset(),
) -> list[DestinationReport]:
    rows = {s.step: s.rows for s in steps}
    pending = {
        str(s): int(n)
        for s, n in wh.fetch(
            "SELECT step, rows FROM erasure_progress WHERE erasure_id = ? AND step LIKE ?",
            [erasure_id, f"destination:%{PENDING}"],
        )
    }
    out = []
    for d in project.config.destinations:
        records = rows.get(f"destination:{d.name}", 0)
        if records or d.name in running:
            waiting = min(pending.get(f"destination:{d.name}{PENDING}", 0), records)
            report = DestinationReport(d.name, records, waiting, records - waiting)
            report.push_running = d.name in running
            out.append(report)
    return out


def _forwarded_reports(wh: Warehouse, erasure_id: str, project: Project) -> list[ForwardedReport]:
    """The events destinations the step ``event_forwards`` found the person's events at."""
    found = {
        str(s)[len(_FORWARDED) :]: int(n)
        for s, n in wh.fetch(
            "SELECT step, rows FROM erasure_progress WHERE erasure_id = ? AND step LIKE ?",
            [erasure_id, f"{_FORWARDED}%"],
        )
    }
    out = []
    for d in project.config.destinations:
        sent, earlier = found.get(d.name, 0), found.get(f"{d.name}:earlier", 0)
        if sent or earlier:
            out.append(ForwardedReport(d.name, sent, earlier))
    return out


def pending_removals(wh: Warehouse, project: Project) -> dict[str, int]:
    """Removals erasures left pending, per destination (``personify push`` sends them)."""
    from personify.destinations.model import erased_pending

    found = {d.name: erased_pending(wh, d.name) for d in project.config.destinations}
    return {name: n for name, n in found.items() if n}


ALIAS_STEP = "alias"
"""``erasure_progress`` rows (``step = 'alias'``) keyed by the hash of each identifier the
erased person had, as ``kind:value`` and as the bare value: asking to erase them again by any
of them (``u1``, ``user_id:u1``, ``email:ann@example.org``) answers ``already_erased``."""


def _alias_names(kind: str, value: str) -> tuple[str, str]:
    return f"{kind}:{value}", value


def _aliases(wh: Warehouse, key: bytes, f: Footprint, erasure_id: str) -> int:
    """Record the erased identifiers' :data:`ALIAS_STEP` rows (keyed hashes; no value kept),
    each naming this erasure (``erasure_of``: the latest erasure of that identifier)."""
    ids = sorted({customer_hash(key, n) for _, k, v in f.nodes for n in _alias_names(k, v)})
    if not ids:
        return 0
    now = clock.now()
    wh.load(
        ERASURE_PROGRESS,
        pa.table(
            {
                "erasure_id": ids,
                "step": [ALIAS_STEP] * len(ids),
                "status": ["done"] * len(ids),
                "rows": pa.array([0] * len(ids), pa.int64()),
                "finished_at": pa.array([now] * len(ids), pa.timestamp("us", tz="UTC")),
                "erasure_of": [erasure_id] * len(ids),
            }
        ),
        on_conflict="update",
        update_columns=["erasure_of"],
    )
    return len(ids)


def _already_erased(wh: Warehouse, key: bytes, who: str, project: Project) -> list[str] | None:
    """Whether ``who`` names someone erased (by their id, an identifier they had, or an
    address's tombstone): the ids of the erasures found (empty when unknown: an alias recorded
    before migration 40, a tombstone), or ``None``."""
    text = who.strip()
    kind, sep, rest = text.partition(":")
    names = [text]
    if sep and rest and not text.startswith("cus_"):  # ``kind:value``: its value, normalized
        value = normalize(kind, rest, project.config.identity) or rest.strip()
        names += _alias_names(kind, value)
        text = rest.strip() if kind in HASHED_KINDS else text
    rows = wh.fetch(
        "SELECT CASE WHEN step = ? THEN erasure_of ELSE erasure_id END FROM erasure_progress "
        f"WHERE step IN (?, ?) AND erasure_id IN (SELECT {UNNEST})",
        [ALIAS_STEP, IDENTITY_STEP, ALIAS_STEP, [customer_hash(key, n) for n in names]],
    )
    if rows:
        return sorted({str(e) for (e,) in rows if e is not None})
    hashes = [identifier_hash(wh, key, k, text, project.config.identity) for k in HASHED_KINDS]
    found = wh.scalar(
        "SELECT count(*) FROM suppressions WHERE reason = 'erased' "
        f"AND subject_hash IN (SELECT {UNNEST})",
        [hashes],
    )
    return [] if found else None


def _progress(wh: Warehouse, erasure_id: str, step: str, rows: int) -> None:
    wh.load(
        ERASURE_PROGRESS,
        pa.table(
            {
                "erasure_id": [erasure_id],
                "step": [step],
                "status": ["done"],
                "rows": pa.array([rows], pa.int64()),
                "finished_at": pa.array([clock.now()], pa.timestamp("us", tz="UTC")),
            }
        ),
        on_conflict="ignore",
    )


def erased_customer(wh: Warehouse, key: bytes, customer_id: str) -> bool:
    """Whether ``customer_id`` is (being) erased: its erasure has started and not finished, or
    no customer holds it any more and erasure left its tombstone (a ``customer_id`` suppression
    without a customer). An id re-ingested data gave a customer again is not. For many ids,
    :func:`erased_customers` answers in three statements."""
    return bool(erased_customers(wh, key, [customer_id]))


def erased_customers(wh: Warehouse, key: bytes, customer_ids: Iterable[str]) -> set[str]:
    """Those of ``customer_ids`` that :func:`erased_customer` says are (being) erased — three
    statements whatever their number (erasure progress, current customers, tombstones), not
    three per id."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    progress = {customer_hash(key, c): c for c in ids}
    steps: dict[str, set[str]] = {}
    for erasure_id, step in wh.fetch(
        f"SELECT erasure_id, step FROM erasure_progress WHERE erasure_id IN (SELECT {UNNEST})",
        [list(progress)],
    ):
        steps.setdefault(progress[str(erasure_id)], set()).add(str(step))
    # started and not finished: erased, whoever holds the id now
    erased = {c for c, s in steps.items() if IDENTITY_STEP not in s}
    rest = [c for c in ids if c not in erased]
    if not rest:
        return erased
    held = {
        str(r[0])
        for r in wh.fetch(
            f"SELECT customer_id FROM customer_ids WHERE customer_id IN (SELECT {UNNEST})",
            [rest],
        )
    }
    gone = [c for c in rest if c not in held]  # an id a customer holds again is not erased
    erased |= {c for c in gone if c in steps}  # (its identity step done)
    tombstones = {hash_normalized(key, "customer_id", c): c for c in gone if c not in steps}
    if tombstones:
        erased |= {
            tombstones[str(r[0])]
            for r in wh.fetch(
                "SELECT DISTINCT subject_hash FROM suppressions WHERE kind = 'customer_id' "
                f"AND customer_id IS NULL AND subject_hash IN (SELECT {UNNEST})",
                [list(tombstones)],
            )
        }
    return erased


def _tombstone(wh: Warehouse, key: bytes, f: Footprint) -> int:
    pairs = sorted({(k, hash_normalized(key, k, v)) for _, k, v in f.nodes if k in HASHED_KINDS})
    # their customer ids too (merged ones included): an old unsubscribe link still names one
    pairs += sorted(
        {("customer_id", hash_normalized(key, "customer_id", c)) for c in f.customer_ids}
    )
    if pairs:
        now = clock.now()
        wh.load(
            SUPPRESSIONS,
            pa.table(
                {
                    "subject_hash": [p[1] for p in pairs],
                    "kind": [p[0] for p in pairs],
                    "customer_id": pa.nulls(len(pairs), pa.string()),
                    "reason": ["erased"] * len(pairs),
                    "source": ["erasure"] * len(pairs),
                    "created_at": pa.array([now] * len(pairs), pa.timestamp("us", tz="UTC")),
                }
            ),
            on_conflict="update",
            update_columns=["customer_id"],
        )
    wh.execute(
        f"UPDATE suppressions SET customer_id = NULL WHERE customer_id IN (SELECT {UNNEST})",
        [list(f.customer_ids)],
    )
    return len(pairs)


_FORWARDED = "event_forwards:"
"""The prefix of the ``erasure_progress`` rows counting, per events destination, the person's
events it received (``…:NAME``) and those before its floor (``…:NAME:earlier``)."""


def _event_forwards(wh: Warehouse, erasure_id: str, project: Project, f: Footprint) -> int:
    """What events destinations recorded of the person's events (their message ids, a refusal's
    answer): deleted with them — counted first per destination, beside the step's progress in
    the same transaction (the report names where the events went)."""
    from personify.config import EventsDestination
    from personify.destinations.events import PRUNED, forwarded_to

    cond, params = erasable(EVENTS, f)
    if not wh.capabilities.single_process:
        # (PostgreSQL: the events locked first — a forwarding recording an outcome of one of
        # them holds it FOR SHARE until it commits, so what it recorded is deleted below; one
        # that comes after waits for this commit and finds the event gone) — by message id, the
        # order _record takes them in: in any other, each could hold one the other waits for
        wh.scalar(  # (counted there: the person's ids are not brought into Python)
            "SELECT count(*) FROM (SELECT message_id FROM events "
            f"WHERE {cond} ORDER BY message_id FOR UPDATE) locked",
            params,
        )
    wanted = [d for d in project.config.destinations if isinstance(d, EventsDestination)]
    for went in forwarded_to(wh, wanted, (cond, params)):
        name = str(went["destination"])
        _progress(wh, erasure_id, f"{_FORWARDED}{name}", went["sent"] + went["rejected"])
        _progress(wh, erasure_id, f"{_FORWARDED}{name}:earlier", went[PRUNED])
    return max(
        wh.execute(
            f"DELETE FROM event_forwards WHERE message_id IN (SELECT message_id FROM events "
            f"WHERE {cond})",
            params,
        ),
        0,
    )


def _outbox(folder: Path | None, f: Footprint) -> int:
    """Delete the person's ``.eml`` files and their index lines; returns files deleted."""
    if folder is None or not folder.is_dir():
        return 0
    ids = set(f.customer_ids)
    pattern = mention_pattern(e.lower() for e in f.emails)
    mentions = re.compile(pattern) if pattern else None
    doomed: set[str] = set()
    index = folder / "index.jsonl"
    kept: list[str] = []
    lines = index.read_text(encoding="utf-8").splitlines() if index.exists() else []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        if isinstance(entry, dict) and entry.get("customer_id") in ids:
            doomed.add(str(entry.get("file")))
        else:
            kept.append(line)
    for path in folder.glob("*.eml"):
        if path.name in doomed:
            continue
        text = path.read_bytes().decode("utf-8", "replace").lower()
        if mentions is not None and mentions.search(text):
            doomed.add(path.name)
    removed = 0
    for name in sorted(doomed):
        path = folder / Path(name).name
        if path.exists():
            path.unlink()
            removed += 1
    if len(kept) != len(lines) or doomed:
        kept = [ln for ln in kept if not _names_file(ln, doomed)]
        tmp = index.with_name(f".{index.name}.erase.tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        os.replace(tmp, index)
    return removed


def _names_file(line: str, names: set[str]) -> bool:
    try:
        entry = json.loads(line)
    except ValueError:
        return False
    return isinstance(entry, dict) and str(entry.get("file")) in names


def _erase_table(wh: Warehouse, t: Table, f: Footprint) -> int:
    cond, params = erasable(t, f)
    rows = wh.execute(f"DELETE FROM {quote(t.name)} WHERE {cond}", params)
    return max(rows, 0) + _scrub_json(wh, t, f)


def _scrub_json(wh: Warehouse, t: Table, f: Footprint) -> int:
    """In the rows that remain, the person's email (any case) and phone inside JSON strings
    become ``[erased]`` — a whole value (``"ann@ex.example"``) or a whole token in a longer text
    (``"note": "call ann@ex.example"``); ``joann@ex.example`` is someone else's
    (:func:`~personify.privacy.footprint.mention_pattern`: the bounding characters are matched,
    and put back by ``\\1`` and ``\\3``). Returns the rows changed."""
    json_cols = [c.name for c in t.columns if c.type == "JSON"]
    patterns = [
        p for p in (mention_pattern(e.lower() for e in f.emails), mention_pattern(f.phones)) if p
    ]
    if not patterns or not json_cols:
        return 0
    changed = 0
    anywhere = "|".join(f"({p})" for p in patterns)
    for col in json_cols:
        q = quote(col)
        text = f"CAST({q} AS VARCHAR)"
        params: list[object] = []
        for pattern in patterns:
            # twice: a bounding character matched by one mention is not there for the next one
            # (``a@x.org,a@x.org``), and a second replacement takes every mention the first
            # skipped (they alternate) — one scan of the table per JSON column
            for _ in range(2):
                text = f"regexp_replace({text}, ?, ?, 'gi')"
                params += [pattern, _KEEP_BOUNDS]
        changed += max(
            wh.execute(
                f"UPDATE {quote(t.name)} SET {q} = CAST({text} AS JSON) "
                f"WHERE regexp_matches(CAST({q} AS VARCHAR), ?, 'i')",
                [*params, anywhere],
            ),
            0,
        )
    return changed


def invalidate_cached(wh: Warehouse, project: Project, ids: Sequence[str]) -> None:
    """Drop the customers from the real-time profile cache (:mod:`personify.realtime`, where the
    installed version has one), after the write committed."""
    try:
        realtime = importlib.import_module("personify.realtime")
    except ImportError:
        return
    invalidate = getattr(realtime, "invalidate_customers", None)
    if callable(invalidate):
        invalidate(wh, project, list(ids))


def _clear_caches() -> None:
    """In-process caches that may hold a raw identifier (phone parsing memoizes its input)."""
    from personify.identity import normalize

    for name in dir(normalize):
        clear = getattr(getattr(normalize, name), "cache_clear", None)
        if callable(clear):
            clear()


def _erase_identity(wh: Warehouse, f: Footprint) -> int:
    total = 0
    for name in IDENTITY_TABLES:
        t = next(t for t in personal_tables() if t.name == name)
        cond, params = erasable(t, f)
        total += max(wh.execute(f"DELETE FROM {quote(name)} WHERE {cond}", params), 0)
    return total
