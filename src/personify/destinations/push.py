"""A push: each destination under its lock, staged, sent (or, ``--dry-run``, shown), recorded
like a source's run."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from personify import clock
from personify.config import Destination, EventsDestination, Project, RestDestination
from personify.destinations.erasures import (
    Stranded,
    forget_stranded,
    prune_unconfigured,
    push_started,
    stranded_removals,
)
from personify.destinations.model import ROWS, changed_rows, leaving, stage_rows
from personify.destinations.presets import shaped
from personify.destinations.send import send
from personify.destinations.state import ERASED, kept_key, opened, run_name
from personify.errors import ConfigError, PersonifyError, WarehouseError
from personify.http.errors import RestError
from personify.privacy.crypto import KeyRing, project_ring
from personify.privacy.masking import mask_text
from personify.session import Session
from personify.sources.schedule import exclusive, record_run
from personify.warehouse.base import Warehouse

log = logging.getLogger(__name__)


@dataclass
class PushResult:
    """What one push did."""

    destination: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    sample: list[dict[str, Any]] = field(default_factory=list)
    """``--dry-run``: the first records it would send (personal values masked)."""
    removals: list[str] = field(default_factory=list)
    """``--dry-run``: the keys of the first records it would remove (masked)."""
    warnings: list[str] = field(default_factory=list)
    """What the push cannot do and someone should: erased people's records it can never
    remove (:func:`~personify.destinations.erasures.stranded_removals`), rows the API took but
    could not read (:func:`push_warnings`)."""


def destination(project: Project, name: str) -> Destination:
    for d in project.config.destinations:
        if d.name == name:
            return d
    known = ", ".join(d.name for d in project.config.destinations) or "none"
    raise ConfigError(
        f"no destination named {name!r} (destinations: {known})", file=str(project.file)
    )


def push_destinations(
    session: Session,
    names: Sequence[str] | None = None,
    *,
    dry_run: bool = False,
    trigger: str = "manual",
    allow_removals: bool = False,
) -> list[PushResult]:
    """Push the named destinations (default: all), each holding its lock, each recorded. A
    destination that fails is recorded and reported; the others still run. ``allow_removals``:
    remove past ``max_removals`` (a person checked the dry run)."""
    project = session.project
    wanted = (
        [destination(project, n) for n in names] if names else list(project.config.destinations)
    )
    results = [
        _forward_one(session, d, dry_run=dry_run, trigger=trigger)
        if isinstance(d, EventsDestination)
        else _push_one(session, d, dry_run=dry_run, trigger=trigger, allow_removals=allow_removals)
        for d in wanted
    ]
    if not dry_run:  # (a dry run writes nothing)
        _prune_removed(session)
    return results


def _prune_removed(session: Session) -> None:
    """What erasures left for the pushes of destinations taken out of personify.yml (which no
    push of theirs will drop): dropped — or, the warehouse refusing, said and left for the next
    push (the pushes' own results stand)."""
    configured = [d.name for d in session.project.config.destinations]
    try:
        gone = prune_unconfigured(session.warehouse, configured)
    except WarehouseError as e:
        log.warning("erasures' rows of removed destinations not dropped: %s", mask_text(e.message))
        return
    if gone:
        log.info("dropped erasures' rows of destinations no longer configured: %s", gone)


def destinations_stage(session: Session) -> dict[str, int]:
    """The pipeline stage: push every destination; counts summed (``push_failed``: how many
    destinations stopped on an error — recorded for ``personify status``)."""
    totals: dict[str, int] = {}
    for result in push_destinations(session):
        for key, value in result.counts.items():
            totals[key] = totals.get(key, 0) + value
        if result.error:
            totals["push_failed"] = totals.get("push_failed", 0) + 1
    return totals


@contextlib.contextmanager
def _run(
    session: Session, name: str, *, dry_run: bool, trigger: str, sent: str, what: str
) -> Iterator[tuple[PushResult, contextlib.ExitStack[bool | None], datetime]]:
    """The frame of one push or forwarding of destination ``name``: under its lock, timed, the
    API's or the warehouse's refusal — or any other error (a dropped connection, a bug in a
    preset), its type named — kept as the result's error (masked: shown, not raised; the other
    destinations still run),
    the run recorded (not a dry run; ``sent``: the count its ``rows_loaded`` is) and a stop
    logged. Yields the result to fill, an exit stack closed with the lock held (a local API),
    and when it started."""
    wh = session.warehouse
    result = PushResult(name)
    with exclusive(run_name(name), warehouse=wh), contextlib.ExitStack() as stack:
        started, t0 = clock.now(), time.perf_counter()
        try:
            yield result, stack, started
        except (RestError, WarehouseError, ConfigError) as e:  # (recorded, shown: not raised)
            said = e.message if isinstance(e, PersonifyError) else str(e)
            hint = getattr(e, "hint", None)
            result.error = mask_text(said + (f" — {hint}" if hint else ""))
        except Exception as e:  # noqa: BLE001 (a dropped connection, a bug: this one stops alone)
            result.error = _unexpected(e)
            log.warning("destination %s: %s failed unexpectedly (%s)", name, what, result.error)
        finally:
            result.seconds = time.perf_counter() - t0
        if not dry_run:
            try:
                record_run(
                    wh,
                    run_name(name),
                    started_at=started,
                    seconds=result.seconds,
                    counts={"rows_loaded": result.counts.get(sent, 0), **result.counts},
                    error=result.error,
                    trigger=trigger,
                )
            except Exception as e:  # noqa: BLE001 (the warehouse gone too: said, not raised)
                unrecorded = f"the run could not be recorded: {_unexpected(e)}"
                result.error = f"{result.error}; {unrecorded}" if result.error else unrecorded
                log.warning("destination %s: %s", name, unrecorded)
    if result.error:  # (the caller shows it: the CLI's table, serve's scheduler log, status)
        log.info("destination %s: %s stopped (%s)", name, what, result.error)


def _unexpected(e: Exception) -> str:
    """An error no push expects (not the API's nor the warehouse's refusal): its type and its
    message, masked — what to do said, since it may be a bug."""
    said = e.message if isinstance(e, PersonifyError) else str(e)
    return mask_text(
        f"{type(e).__name__}: {said or 'no message'} — the other destinations still ran; run "
        "the push again, and report it if it repeats"
    )


def _push_one(
    session: Session, d: RestDestination, *, dry_run: bool, trigger: str, allow_removals: bool
) -> PushResult:
    from personify.sources.rest.sync import local_api

    wh = session.warehouse
    with _run(session, d.name, dry_run=dry_run, trigger=trigger, sent="rows_sent", what="push") as (
        result,
        stack,
        _,
    ):
        try:
            ring = key_ring(session.project, d)
            # (an erasure from now on: what the API takes of them is its — by the clock the
            # erasure stamps with, the warehouse server's on PostgreSQL: no skew between hosts;
            # what erasures left for the pushes before this one goes)
            since = push_started(wh, d.name, prune=not dry_run)
            result.counts = stage_rows(wh, session.project, d)
            work = (
                result.counts["rows_changed"]
                + result.counts.get("rows_to_remove", 0)
                + result.counts.get("rows_erased_to_remove", 0)
            )
            if work and not dry_run:  # (a local API: served now)
                d = local_api(stack, session, d)
            if dry_run:
                result.sample = [_masked(r) for r in shaped(d, changed_rows(wh, d, limit=3))]
                if ring is not None:
                    rows = leaving(wh, d, limit=3, erased=True) or leaving(wh, d, limit=3)
                    kept = [k for _, _, k in opened(wh, d, ring, rows)]
                    keys = [None if k is None else kept_key(d, k) for k in kept]
                    result.removals = [mask_text(k) for k in keys if k is not None]
                    if d.ad_audience and d.on_remove == "delete":
                        result.counts["removals_shared"] = _unsent(wh, d, ring)
            elif work:
                held = _too_many_removals(wh, d, result.counts) if not allow_removals else None
                send(wh, d, result.counts, ring, remove=held is None, since=since)
                if held is not None:
                    raise ConfigError(held, key=f"destinations.{d.name}.max_removals")
        finally:
            with contextlib.suppress(Exception):
                wh.execute(f"DROP TABLE IF EXISTS {ROWS}")
    result.warnings = push_warnings(d.name, result.counts)
    with contextlib.suppress(WarehouseError):  # (a warning: never fails the push)
        result.warnings += [s.message() for s in stranded_removals(wh, session.project, [d.name])]
    for warning in result.warnings:  # (names and counts only)
        log.warning("%s", warning)
    return result


@dataclass
class Forgotten:
    """What ``personify push --forget-stranded`` settled (or, a dry run, would) at one
    destination."""

    destination: str
    records: int
    stranded: list[Stranded]


def forget_stranded_removals(
    session: Session, name: str, *, dry_run: bool = False, actor: str = "cli"
) -> Forgotten:
    """Settle destination ``name``'s stranded removals (:func:`stranded_removals`: erasures'
    removals no push can send — it left personify.yml, stopped removing, lost their key, or an
    ad audience holds them without identifiers): dropped under the destination's lock, and an
    ``audit_log`` entry (``removals_forgotten``: who, when, the destination, how many, why, how
    many of each erasure) in the same transaction. ``dry_run``: how many, nothing dropped. A
    name neither configured nor holding stranded removals is refused."""
    from personify.privacy.audit import log_action

    wh = session.warehouse
    stranded = stranded_removals(wh, session.project, [name])
    if not stranded and name not in {d.name for d in session.project.config.destinations}:
        destination(session.project, name)  # (raises, naming the destinations)
    if dry_run or not stranded:
        return Forgotten(name, sum(s.records for s in stranded), stranded)
    with exclusive(run_name(name), warehouse=wh), wh.transaction():
        records, stranded, erasures = forget_stranded(wh, session.project, name)
        if records:
            detail = {
                "destination": name,
                "records": records,
                "why": [s.why for s in stranded],
                "erasures": erasures,  # (erasure id, a keyed hash → how many of its removals)
            }
            log_action(
                wh,
                action="removals_forgotten",
                actor=actor,
                customer_id=None,
                key=None,
                detail=detail,
            )
    log.info("destination %s: %d stranded removal(s) forgotten", name, records)
    return Forgotten(name, records, stranded)


def push_warnings(name: str, counts: Mapping[str, Any]) -> list[str]:
    """What a push's counts say someone should look at (names and counts only): rows an ad
    platform took but could not read (Meta's ``num_invalid_entries``, summed as
    ``api_invalid_entries``: Meta does not say which)."""
    out: list[str] = []
    invalid = int(counts.get("api_invalid_entries") or 0)
    if invalid > 0:
        found = int(counts.get("rows_unread") or 0)  # (kept rejected: not among rows_sent)
        sent = int(counts.get("rows_sent") or 0) + found
        of = f" of the {sent:,} rows sent" if sent else ""
        which = f"{found:,} found, kept rejected" if found else "it does not say which"
        out.append(
            f"destination {name}: Meta could not read {invalid:,}{of} (num_invalid_entries; "
            f"{which}): they are not in the audience — check the model's identifier "
            f"columns (`personify push {name} --dry-run` shows what each row goes as)"
        )
    return out


def _forward_one(
    session: Session, d: EventsDestination, *, dry_run: bool, trigger: str
) -> PushResult:
    """One forwarding of an events destination (:mod:`.events`), under its lock, recorded."""
    from personify.destinations import events
    from personify.sources.rest.sync import local_api

    wh = session.warehouse
    with _run(
        session, d.name, dry_run=dry_run, trigger=trigger, sent="events_sent", what="forwarding"
    ) as (result, stack, started):
        if dry_run:
            result.counts = {"events_pending": events.waiting(wh, d, started)["events_pending"]}
            result.sample = [_masked(e) for e in events.sample(wh, d, started)]
        else:
            events.forward(wh, local_api(stack, session, d), result.counts)
    return result


def _too_many_removals(wh: Warehouse, d: RestDestination, counts: dict[str, int]) -> str | None:
    """Why this push may not remove what left the model (more than ``max_removals``), or
    ``None``."""
    leaving = counts.get("rows_to_remove", 0)
    if not leaving:
        return None
    held = int(
        wh.scalar(
            "SELECT count(*) FROM destination_state WHERE destination = ? "
            "AND record_key IS NOT NULL AND status <> ?",
            [d.name, ERASED],
        )
        or 0
    )
    limit = d.removal_limit(held)
    if leaving <= limit:
        return None
    counts["rows_removal_held"] = leaving
    return (
        f"destination {d.name!r} would remove {leaving:,} of the {held:,} records it holds, more "
        f"than max_removals ({d.max_removals}, here {limit:,}): removed none (the upserts went) "
        f"— did the model lose its rows? Check with `personify push {d.name} --dry-run`, then "
        f"`personify push {d.name} --allow-removals` (or raise max_removals)"
    )


def _unsent(wh: Warehouse, d: RestDestination, ring: KeyRing) -> int:
    """``--dry-run`` of an ad audience: of the records to remove, how many would not be sent
    (every identifier shared with a remaining member: :mod:`.shared`)."""
    from personify.destinations import google, meta
    from personify.destinations.shared import unsent_removals

    preset = google if d.preset == "google_ads_audience" else meta
    return unsent_removals(wh, d, ring, preset.units, preset.without)


def key_ring(project: Project, d: RestDestination) -> KeyRing | None:
    """The key ring the keys of ``d``'s records are kept under (``on_remove: delete`` only)."""
    if d.on_remove != "delete":
        return None
    ring = project_ring(project)
    if ring is None:  # (the project file's check says so first; a project built in code too)
        raise ConfigError(
            f"destination {d.name!r} removes records (on_remove: delete), which needs "
            "privacy.encryption_keys: their keys are kept encrypted",
            file=str(project.file),
            key=f"destinations.{d.name}.on_remove",
            hint="set privacy.encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS} (make a key with "
            "`personify privacy keygen`)",
        )
    return ring


def _masked(record: dict[str, Any]) -> dict[str, Any]:
    from personify.privacy.masking import mask_document

    masked: dict[str, Any] = mask_document(record)
    return masked
