"""An erasure racing a push, on every backend, against the real loopback fake CRM: what the
erasure leaves for the push (the keys it looked for) goes at the destination's next push, a
record it counted as one to remove by hand that the push then turns into its pending removal is
counted once, and its report says when a push was running (what that push records comes
after the report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from tests.conformance.destination_support import apis, session_for, url
from tests.conformance.test_destination_removals import crm
from tests.conformance.test_erasure_destinations import MODEL, _people, _push, _state

from personify import clock
from personify.demo.mock_apis import MockApis
from personify.destinations import push_destinations
from personify.destinations.erasures import looked_for_step, push_started
from personify.privacy.erase import ErasureReport, StepReport, _destination_reports, erase_subject
from personify.session import Session

__all__ = ["apis", "url"]  # (the fixtures, imported)


def _looked_for(session: Session, name: str) -> int:
    return int(
        session.warehouse.scalar(
            "SELECT count(*) FROM erasure_progress WHERE step = ?", [looked_for_step(name)]
        )
        or 0
    )


def test_what_an_erasure_looked_for_goes_at_the_next_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """The keyed hashes an erasure leaves of the keys it looked for at a destination (for a
    push under way) are dropped by that destination's next push — not by a dry run, nor by
    another destination's push."""
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    other = msgspec.structs.replace(removing, name="crm2")
    with session_for(warehouse_url, tmp_path, removing, other) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        assert _push(session, "crm2")["rows_sent"] == 3
        erase_subject(wh, session.project, "ann@x.org")
        assert _looked_for(session, "crm") >= 1 and _looked_for(session, "crm2") >= 1
        with clock.frozen(clock.now()):
            (dry,) = push_destinations(session, ["crm"], dry_run=True)
        assert dry.error is None and _looked_for(session, "crm") >= 1
        assert _push(session, "crm")["rows_erased_removed"] == 1
        assert _looked_for(session, "crm") == 0
        assert _looked_for(session, "crm2") >= 1  # (its own next push drops them)
        assert _push(session, "crm2")["rows_erased_removed"] == 1
        assert _looked_for(session, "crm2") == 0


def test_a_record_sent_to_learn_its_key_and_erased_meanwhile_is_counted_once(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record pushed before its key was kept (``record_key`` NULL) is sent again to learn it;
    the person is erased while that push waits for the API: the erasure forgets the record (no
    key to remove it by: one to remove by hand), then the push records it as the erasure's
    pending removal. The erasure's step counts it once — pending, not also "remove it there";
    its report says a push was running."""
    removing = msgspec.structs.replace(crm(url), model=MODEL, max_removals=0)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        wh.execute("UPDATE destination_state SET record_key = NULL")  # (kept before its key)
        fault = apis._fault
        erased: list[ErasureReport] = []

        def erase_meanwhile() -> Any:  # (the API's thread, while it takes the batch)
            if not erased:
                erased.append(erase_subject(wh, session.project, "ann@x.org"))
            return fault()

        monkeypatch.setattr(apis, "_fault", erase_meanwhile)
        assert _push(session, "crm")["rows_sent"] == 3  # (sent again: their keys learnt)
        monkeypatch.setattr(apis, "_fault", fault)
        report = erased[0]
        (said,) = report.destinations
        assert said.push_running and (said.records, said.removals_pending) == (1, 0)
        assert "was running" in said.message and "personify erase" in said.message
        assert report.as_dict()["destinations"][0]["push_running"] is True
        steps = dict(
            wh.fetch(
                "SELECT step, rows FROM erasure_progress WHERE erasure_id = ? AND step LIKE ?",
                [report.erasure_id, "destination:crm%"],
            )
        )
        assert steps == {"destination:crm": 1, "destination:crm:pending": 1}
        # (the report as a resumed erasure builds it: one record, pending — none by hand)
        (again,) = _destination_reports(
            wh, report.erasure_id, session.project, [StepReport("destination:crm", 1, "done")]
        )
        assert (again.records, again.removals_pending, again.cannot_remove) == (1, 1, 0)
        assert "remove it there" not in again.message
        assert _state(session, "crm") == {"sent": 2, "erased": 1}
        assert _push(session, "crm")["rows_erased_removed"] == 1
        assert _state(session, "crm") == {"sent": 2}


def test_an_erasure_with_no_push_running_says_nothing_of_one(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        (said,) = erase_subject(session.warehouse, session.project, "ann@x.org").destinations
        assert not said.push_running and "was running" not in said.message


def test_a_push_starts_after_an_erasure_step_under_way_commits(
    warehouse_url: str, tmp_path: Path, url: str
) -> None:
    """PostgreSQL, two connections: an erasure's destination step has stamped what it looked
    for and not committed when a push reads its start; the push waits for it (the destination's
    transaction lock), so its start is after the stamp — the push reads the state as the
    erasure left it — and the stamped rows are dropped as before it."""
    import threading

    from personify.sources.schedule import advisory_key

    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        if not wh.capabilities.advisory_lock:
            pytest.skip("one process: its transactions run one after the other")
        import psycopg

        from personify.warehouse.postgres.backend import split_url

        conninfo, schema = split_url(wh.url)
        with psycopg.connect(conninfo) as other:  # (the erasure's step, under way)
            other.execute(f'SET search_path TO "{schema}"')
            other.execute(f"SELECT pg_advisory_xact_lock({advisory_key('acks:crm', schema)})")
            other.execute(
                "INSERT INTO erasure_progress (erasure_id, step, status, rows, finished_at, "
                "erasure_of) VALUES ('h1', %s, 'done', 0, clock_timestamp(), 'e1')",
                [looked_for_step("crm")],
            )
            stamped = other.execute("SELECT clock_timestamp()").fetchone()
            started: list[Any] = []
            worker = threading.Thread(target=lambda: started.append(push_started(wh, "crm")))
            worker.start()
            try:
                worker.join(0.5)
                assert not started  # (waiting for the erasure's step)
            finally:
                other.commit()
                worker.join(10)
        assert started and stamped is not None and started[0] > stamped[0]
        assert _looked_for(session, "crm") == 0
