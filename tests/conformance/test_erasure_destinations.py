"""Erasure reaches the destinations, on every backend, against the real loopback fake APIs: a
person's records at a destination that removes records (``on_remove: delete``, a Meta audience)
become pending removals — kept as the key's keyed hash and the encrypted key, nothing else —
that the next push sends first (whatever the model says, ``max_removals`` notwithstanding) and
then forgets; a refused one stays pending and is retried; a destination that cannot remove is
named in the report. Erasing twice doubles nothing."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pyarrow as pa
import pytest
from tests.conformance.destination_support import (
    KEYS,
    NOW,
    ads,
    ads_url,
    apis,
    consent,
    google,
    graph,
    meta,
    meta_url,
    session_for,
    sha,
    url,
)
from tests.conformance.google_ads import Ads
from tests.conformance.meta_graph import Graph
from tests.conformance.test_destination_removals import crm
from tests.openapi_check import assert_erase_answer

from personify import clock
from personify.demo.mock_apis import MockApis
from personify.destinations import push_destinations, stranded_removals
from personify.identity import resolve_batch
from personify.privacy.crypto import new_key
from personify.privacy.erase import erase_subject
from personify.profiles import profiles_stage
from personify.session import Session
from personify.status import _destinations, status_report
from personify.warehouse import table

__all__ = ["ads", "ads_url", "apis", "graph", "meta_url", "url"]  # (the fixtures, imported)

MODEL = "SELECT customer_id, email FROM customers"
PEOPLE = ("ann@x.org", "bob@x.org", "cy@x.org")


def _people(session: Session) -> list[str]:
    """Three people ingested and resolved (customers built); their customer ids."""
    wh = session.warehouse
    n = len(PEOPLE)
    wh.load(
        table("customer_records"),
        pa.table(
            {
                "source": ["crm"] * n,
                "record_id": [f"r{i}" for i in range(n)],
                "email": list(PEOPLE),
                "observed_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
                "received_at": pa.array([NOW] * n, pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    with clock.frozen(NOW):
        resolve_batch(wh, session.project.config.identity)
        profiles_stage(session)
    return [str(c) for (c,) in wh.fetch("SELECT customer_id FROM customers ORDER BY email")]


def _push(session: Session, name: str) -> dict[str, Any]:
    with clock.frozen(NOW):
        (result,) = push_destinations(session, [name])
    assert result.error is None, result.error
    return result.counts


def _state(session: Session, name: str) -> dict[str, int]:
    rows = session.warehouse.fetch(
        "SELECT status, count(*) FROM destination_state WHERE destination = ? GROUP BY 1", [name]
    )
    return {str(s): int(n) for s, n in rows}


@contextlib.contextmanager
def _crm_session(
    warehouse_url: str, tmp_path: Path, url: str, *, people: bool = True, **changes: Any
) -> Iterator[Session]:
    """A session whose one destination is ``crm`` selecting :data:`MODEL` (``changes`` on top),
    the three people of :func:`_people` in it unless ``people`` is false."""
    d = msgspec.structs.replace(crm(url), **{"model": MODEL, **changes})
    with session_for(warehouse_url, tmp_path, d) as session:
        if people:
            _people(session)
        yield session


def _push_erasing(
    session: Session,
    apis: MockApis,
    monkeypatch: pytest.MonkeyPatch,
    erase: Callable[[], Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Push ``crm`` while, on the API's thread as it takes the first batch, ``erase`` runs
    (once; by default ann@x.org's erasure, answering its :meth:`as_dict`): the push's counts and
    what ``erase`` returned."""
    wh = session.warehouse
    erase = erase or (lambda: erase_subject(wh, session.project, "ann@x.org").as_dict())
    fault = apis._fault
    erased: list[Any] = []

    def erase_meanwhile() -> Any:  # (the API's thread, while it takes the batch)
        if not erased:
            erased.append(erase())
        return fault()

    monkeypatch.setattr(apis, "_fault", erase_meanwhile)
    try:
        counts = _push(session, "crm")
    finally:
        monkeypatch.setattr(apis, "_fault", fault)
    assert erased, "the push reached no API: nobody was erased while it ran"
    return counts, erased[0]


@contextlib.contextmanager
def _erasure_step_under_way(session: Session) -> Iterator[psycopg.Connection[Any]]:
    """PostgreSQL: another connection in the middle of an erasure's destination step on ``crm``
    — a transaction holding the destination's transaction lock, not committed (the block may
    write more in it; its ``now()`` is when the block began). Skips on one process."""
    from personify.sources.schedule import advisory_key
    from personify.warehouse.postgres.backend import split_url

    wh = session.warehouse
    if not wh.capabilities.advisory_lock:
        pytest.skip("one process: its transactions run one after the other")
    conninfo, schema = split_url(wh.url)
    with psycopg.connect(conninfo) as other:
        other.execute(f'SET search_path TO "{schema}"')
        other.execute(f"SELECT pg_advisory_xact_lock({advisory_key('acks:crm', schema)})")
        yield other


def _waits_for(other: psycopg.Connection[Any], action: Callable[[], object]) -> None:
    """``action``, run on a thread of its own, waits for ``other``'s transaction: not done
    within half a second, done once it commits."""
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as e:  # (raised here, not lost on the thread)
            failed.append(e)
        finally:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    waited = not done.wait(0.5)
    other.commit()
    worker.join(10)
    if failed:
        raise failed[0]
    assert waited, "it did not wait for the erasure's step"
    assert done.is_set(), "still waiting after the erasure's step committed"


def test_erasure_removes_the_record_at_the_api_at_the_next_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    removing = msgspec.structs.replace(crm(url), model=MODEL, max_removals=0)
    keeping = msgspec.structs.replace(crm(url, on_remove="ignore"), name="kept", model=MODEL)
    with session_for(warehouse_url, tmp_path, removing, keeping) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        assert _push(session, "kept")["rows_sent"] == 3

        report = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert_erase_answer(report)  # what POST /v1/privacy/erase answers: as documented
        by_name = {d["destination"]: d for d in report["destinations"]}
        assert (by_name["crm"]["removals_pending"], by_name["crm"]["cannot_remove"]) == (1, 0)
        assert "next push removes" in by_name["crm"]["message"]
        assert (by_name["kept"]["removals_pending"], by_name["kept"]["cannot_remove"]) == (0, 1)
        assert "cannot be removed by Personify: remove it there" in by_name["kept"]["message"]
        assert report["removals_pending"] == {"crm": 1, "kept": 0}
        assert report["removals_pending_all"] == {"crm": 1}
        steps = {s["step"]: s["rows"] for s in report["steps"]}
        assert steps["destination:crm"] == 1 and steps["destination:kept"] == 1
        # the pending removal keeps the key's keyed hash and the encrypted key, nothing else
        (pending,) = wh.fetch(
            "SELECT row_hash, error, record_key FROM destination_state WHERE status = 'erased'"
        )
        assert pending[0] == "" and pending[1] is None and pending[2]
        assert "ann" not in json.dumps([list(map(str, r)) for r in wh.fetch(
            "SELECT * FROM destination_state"
        )])  # fmt: skip
        assert _state(session, "kept") == {"sent": 2}
        (detail,) = wh.fetch("SELECT detail FROM audit_log WHERE action = 'erase'")
        logged = detail[0] if isinstance(detail[0], dict) else json.loads(str(detail[0]))
        assert logged["removals_pending"] == {"crm": 1, "kept": 0}
        assert logged["cannot_remove"] == ["kept"]
        (status,) = [d for d in _destinations(session, {}, NOW) if d["name"] == "crm"]
        assert status["removals_pending"] == 1

        # erasing again doubles nothing, and still says what is pending
        again = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert again["status"] == "already_erased"
        assert again["removals_pending_all"] == {"crm": 1}
        assert_erase_answer(again)
        assert _state(session, "crm") == {"sent": 2, "erased": 1}

        # the API refuses the removal: it stays pending, reported, retried next push
        apis.refuse_archive = frozenset({"ann@x.org"})
        counts = _push(session, "crm")
        assert counts["rows_erased_remove_rejected"] == 1 and counts["rows_erased_removed"] == 0
        assert _state(session, "crm") == {"sent": 2, "erased": 1} and "ann@x.org" in apis.pushed
        apis.refuse_archive = frozenset()
        # max_removals is 0: an erasure's removal goes all the same, first
        counts = _push(session, "crm")
        assert counts["rows_erased_removed"] == 1
        assert "ann@x.org" not in apis.pushed and apis.archives == 1
        assert _state(session, "crm") == {"sent": 2}
        assert _push(session, "crm").get("rows_erased_removed", 0) == 0 and apis.archives == 1


def test_a_removal_goes_first_even_when_the_model_still_selects_the_record(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """A model reading a table erasure does not know (a copy): the record is removed first, then
    — still in the model — pushed as new; the pending removal is not lost to the upsert."""
    copy = "SELECT customer_id, email FROM customers_copy"
    removing = msgspec.structs.replace(crm(url), model=copy)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        _people(session)
        wh.execute("CREATE TABLE customers_copy AS SELECT customer_id, email FROM customers")
        assert _push(session, "crm")["rows_sent"] == 3
        erase_subject(wh, session.project, "ann@x.org")
        assert _state(session, "crm") == {"sent": 2, "erased": 1}
        counts = _push(session, "crm")
        assert counts["rows_erased_removed"] == 1 and apis.archives == 1
        assert counts["rows_sent"] == 1  # (the copy still holds them: the model's business)
        assert _state(session, "crm") == {"sent": 3}


def test_an_erased_person_leaves_the_meta_audience(
    warehouse_url: str, tmp_path: Path, graph: Graph, meta_url: str
) -> None:
    with session_for(warehouse_url, tmp_path, meta(meta_url, model=MODEL)) as session:
        wh = session.warehouse
        ids = _people(session)
        consent(session, [(c, "advertising", "granted") for c in ids])
        assert _push(session, "ads")["rows_sent"] == 3
        assert sha("ann@x.org") in graph.members["EMAIL"]
        report = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert report["removals_pending"] == {"ads": 1}
        counts = _push(session, "ads")
        assert counts["rows_erased_removed"] == 1
        assert graph.members["EMAIL"] == {sha("bob@x.org"), sha("cy@x.org")}
        assert ("DELETE", ["EMAIL"], 1) in graph.requests
        assert _state(session, "ads") == {"sent": 2}


def test_a_push_stopped_by_the_api_keeps_the_pending_removal_for_the_next_one(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    removing = msgspec.structs.replace(crm(url, max_retries=0), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        erase_subject(wh, session.project, "ann@x.org")
        erase_subject(wh, session.project, "email:ann@x.org")  # (again: nothing doubles)
        apis.faults.fail_next = 1  # the removal answers 500, no retry: the push stops
        with clock.frozen(NOW):
            (stopped,) = push_destinations(session, ["crm"])
        assert stopped.error is not None and "answered 500" in stopped.error
        assert _state(session, "crm") == {"sent": 2, "erased": 1} and apis.archives == 0
        counts = _push(session, "crm")
        assert counts["rows_erased_removed"] == 1 and apis.archives == 1
        assert _state(session, "crm") == {"sent": 2}


def test_an_erased_person_leaves_the_google_customer_match_list(
    warehouse_url: str, tmp_path: Path, ads: Ads, ads_url: str
) -> None:
    destination = google(ads_url, model=MODEL, max_removals=0)
    with session_for(warehouse_url, tmp_path, destination) as session:
        wh = session.warehouse
        ids = _people(session)
        consent(session, [(c, "advertising", "granted") for c in ids])
        assert _push(session, "gads")["rows_sent"] == 3
        assert sha("ann@x.org") in ads.members
        report = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert report["removals_pending"] == {"gads": 1}
        counts = _push(session, "gads")
        assert counts["rows_erased_removed"] == 1
        assert ads.members == {sha("bob@x.org"), sha("cy@x.org")}
        assert _state(session, "gads") == {"sent": 2}


def test_removals_that_can_never_go_are_warned_about(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """An erasure's pending removal at a destination then switched to ``on_remove: ignore``,
    removed from personify.yml, or whose key left ``privacy.encryption_keys``: the push warns
    (name, count, what to do), ``status`` has it as a problem; once fixed, it goes."""
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        erase_subject(session.warehouse, session.project, "ann@x.org")
        with clock.frozen(NOW):
            (fine,) = push_destinations(session, ["crm"], dry_run=True)
        assert fine.warnings == [] and stranded_removals(session.warehouse, session.project) == []

    ignoring = msgspec.structs.replace(crm(url, on_remove="ignore"), model=MODEL)
    with session_for(warehouse_url, tmp_path, ignoring) as session:
        with clock.frozen(NOW):
            (result,) = push_destinations(session, ["crm"])
        assert result.error is None
        (warning,) = result.warnings
        assert warning.startswith("destination crm: 1 erased people's record(s) left to remove")
        assert "on_remove is ignore" in warning
        assert "set destinations.crm.on_remove: delete again" in warning
        assert "ann" not in warning
        assert _state(session, "crm") == {"sent": 2, "erased": 1}  # kept: nothing lost
        with clock.frozen(NOW):
            assert warning in status_report(session)["problems"]

    other = msgspec.structs.replace(crm(url), name="other", model=MODEL)
    with session_for(warehouse_url, tmp_path, other) as session:  # crm gone from the file
        (gone,) = stranded_removals(session.warehouse, session.project)
        assert (gone.destination, gone.records) == ("crm", 1)
        assert "no longer in personify.yml" in gone.why
        assert stranded_removals(session.warehouse, session.project, ["other"]) == []

    lost = f"k2:{new_key()}"  # the key the removal was kept under is no longer there
    with session_for(warehouse_url, tmp_path, removing, keys=lost) as session:
        with clock.frozen(NOW):
            (result,) = push_destinations(session, ["crm"])
        assert result.counts["rows_erased_remove_rejected"] == 1
        (warning,) = result.warnings
        assert "kept keys do not decrypt" in warning and "put that key back" in warning
        assert _state(session, "crm") == {"sent": 2, "erased": 1}

    with session_for(warehouse_url, tmp_path, removing, keys=KEYS) as session:  # key back
        with clock.frozen(NOW):
            (result,) = push_destinations(session, ["crm"])
        assert result.counts["rows_erased_removed"] == 1 and result.warnings == []
        assert "ann@x.org" not in apis.pushed
        assert stranded_removals(session.warehouse, session.project) == []
        with clock.frozen(NOW):
            assert status_report(session)["problems"] == []


def _audit(session: Session, action: str) -> list[dict[str, Any]]:
    rows = session.warehouse.fetch(
        "SELECT actor, detail FROM audit_log WHERE action = ? ORDER BY seq", [action]
    )
    return [{"actor": a, **(d if isinstance(d, dict) else json.loads(str(d)))} for a, d in rows]


def test_stranded_removals_are_forgotten_when_asked_and_audited(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """A pending removal a push can never send (here: ``on_remove: ignore`` now) stays until
    someone settles it: ``--forget-stranded`` with ``--dry-run`` counts it and drops nothing;
    without, it goes, with an ``audit_log`` entry saying who, how many and why — the rest of
    the destination's state untouched, the warning and the status problem gone."""
    from personify.destinations import forget_stranded_removals
    from personify.errors import ConfigError

    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        erase_subject(session.warehouse, session.project, "ann@x.org")
        # nothing stranded while a push can send it: nothing to forget
        assert forget_stranded_removals(session, "crm").records == 0
        assert _state(session, "crm") == {"sent": 2, "erased": 1}

    ignoring = msgspec.structs.replace(crm(url, on_remove="ignore"), model=MODEL)
    with session_for(warehouse_url, tmp_path, ignoring) as session:
        dry = forget_stranded_removals(session, "crm", dry_run=True)
        assert dry.records == 1 and "on_remove is ignore" in dry.stranded[0].why
        assert _state(session, "crm") == {"sent": 2, "erased": 1}
        assert _audit(session, "removals_forgotten") == []
        done = forget_stranded_removals(session, "crm")
        assert done.records == 1
        assert _state(session, "crm") == {"sent": 2}  # the others' state is kept
        (entry,) = _audit(session, "removals_forgotten")
        assert (entry["actor"], entry["destination"], entry["records"]) == ("cli", "crm", 1)
        assert "on_remove is ignore" in entry["why"][0] and "ann" not in json.dumps(entry)
        assert list(entry["erasures"].values()) == [1] and "unlinked" not in entry["erasures"]
        assert stranded_removals(session.warehouse, session.project) == []
        with clock.frozen(NOW):
            assert status_report(session)["problems"] == []
        assert forget_stranded_removals(session, "crm").records == 0  # (again: nothing)
        assert len(_audit(session, "removals_forgotten")) == 1
        try:
            forget_stranded_removals(session, "nope")
        except ConfigError as e:
            assert "no destination named 'nope'" in e.message
        else:
            raise AssertionError("an unknown destination was accepted")


def test_an_audience_record_pushed_before_it_was_an_audience_is_stranded_and_forgettable(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, graph: Graph, meta_url: str
) -> None:
    """A record pushed to ``ads`` before it became a Meta audience kept its key without the
    identifiers a removal must name: once erased, its removal can never go. It counts as
    stranded (the push warns, ``status`` says so, with what to do), and ``--forget-stranded``
    settles it."""
    from tests.conformance.destination_support import FAST

    from personify.config import BearerAuth, RestClient, RestDestination, Secret
    from personify.demo.mock_apis import TOKEN
    from personify.destinations import forget_stranded_removals

    generic = RestDestination(
        name="ads",
        model="SELECT customer_id AS id, customer_id, email FROM customers",
        key="id",  # (the customer id: what the audience keys its records by too)
        path="/generic/records",
        on_remove="delete",
        delete_path="/generic/records/{key}",
        delete_method="DELETE",
        client=RestClient(base_url=url, auth=BearerAuth(token=Secret(TOKEN)), **FAST),
    )
    with session_for(warehouse_url, tmp_path, generic) as session:
        ids = _people(session)
        consent(session, [(c, "advertising", "granted") for c in ids])
        assert _push(session, "ads")["rows_sent"] == 3
        erase_subject(session.warehouse, session.project, "ann@x.org")
    with session_for(warehouse_url, tmp_path, meta(meta_url, model=MODEL)) as session:
        with clock.frozen(NOW):
            (result,) = push_destinations(session, ["ads"])
        assert result.counts["rows_erased_remove_rejected"] == 1
        (warning,) = result.warnings
        assert "1 erased people's record(s)" in warning and "no identifiers were kept" in warning
        assert "personify push --forget-stranded ads" in warning
        with clock.frozen(NOW):
            status = status_report(session)
        assert warning in status["problems"]
        (ads,) = status["destinations"]  # (a number too, for a dashboard: not only the line)
        assert (ads["removals_pending"], ads["removals_stranded"]) == (1, 1)
        assert forget_stranded_removals(session, "ads", dry_run=True).records == 1
        assert forget_stranded_removals(session, "ads").records == 1
        with clock.frozen(NOW):
            (ads,) = status_report(session)["destinations"]
        assert (ads["removals_pending"], ads["removals_stranded"]) == (0, 0)
        assert "erased" not in _state(session, "ads")
        assert stranded_removals(session.warehouse, session.project) == []
        (entry,) = _audit(session, "removals_forgotten")
        assert entry["records"] == 1 and "no identifiers" in entry["why"][0]


def test_an_erasure_asked_again_shows_its_own_pending_removals(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """Two people erased, their removals pending: asking to erase one again — by their
    address, ``email:`` or their customer id — reports that erasure's pending removals (each
    removal keeps the erasure that queued it), beside every erasure's; after a push, none."""
    removing = msgspec.structs.replace(crm(url), model=MODEL)
    with session_for(warehouse_url, tmp_path, removing) as session:
        wh = session.warehouse
        ann, _, _ = _people(session)
        assert _push(session, "crm")["rows_sent"] == 3
        first = erase_subject(wh, session.project, "ann@x.org")
        erase_subject(wh, session.project, "bob@x.org")
        assert _state(session, "crm") == {"sent": 1, "erased": 2}
        for who in ("ann@x.org", "email:ann@x.org", ann):
            again = erase_subject(wh, session.project, who).as_dict()
            assert again["status"] == "already_erased", who
            assert again["erasure_id"] == first.erasure_id, who
            assert again["removals_pending"] == {"crm": 1}, who
            assert again["removals_pending_all"] == {"crm": 2}, who
        linked = wh.fetch(
            "SELECT erasure_id FROM destination_state WHERE status = 'erased' ORDER BY 1"
        )
        assert len({e for (e,) in linked}) == 2 and all(e for (e,) in linked)
        assert _push(session, "crm")["rows_erased_removed"] == 2
        again = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert (again["removals_pending"], again["removals_pending_all"]) == ({}, {})


def test_an_erasure_while_a_push_sends_the_record_keeps_its_removal(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person is erased while a push is sending their changed record: the push then records
    what the API took, and must not write ``sent`` over the erasure's pending removal — it was
    lost (the record left at the API, the erasure's own removals_pending 0, removed later only
    as one leaving the model, under max_removals). The next push removes it as the erasure's."""
    model = "SELECT customer_id, email, lifecycle_stage FROM customers"
    with _crm_session(warehouse_url, tmp_path, url, model=model, max_removals=0) as session:
        wh = session.warehouse
        assert _push(session, "crm")["rows_sent"] == 3
        wh.execute("UPDATE customers SET lifecycle_stage = 'active'")  # (all three change)
        counts, erased = _push_erasing(session, apis, monkeypatch)
        assert counts["rows_sent"] == 3  # (ann's went before she was erased)
        assert erased["removals_pending"] == {"crm": 1}
        assert _state(session, "crm") == {"sent": 2, "erased": 1}
        again = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert again["status"] == "already_erased" and again["removals_pending"] == {"crm": 1}

        counts = _push(session, "crm")  # (max_removals 0: only an erasure's removal goes)
        assert counts["rows_erased_removed"] == 1 and "ann@x.org" not in apis.pushed
        assert _state(session, "crm") == {"sent": 2}


def test_an_erasure_during_a_persons_first_push_queues_its_removal(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person is erased while the push sending their record for the first time waits for the
    API: the erasure finds no state to mark (nothing recorded yet), so the push's
    acknowledgement must notice it — recorded as that erasure's pending removal, not ``sent``
    (left at the API with no removal queued and no destination named). The next push removes
    it, ``max_removals`` notwithstanding."""
    with _crm_session(warehouse_url, tmp_path, url, max_removals=0) as session:
        wh = session.warehouse
        counts, erased = _push_erasing(session, apis, monkeypatch)
        assert counts["rows_sent"] == 3  # (ann's went before she was erased)
        assert erased["removals_pending"] == {}  # (nothing recorded yet: nothing found)
        # (but the report says a push was running: what it records comes after)
        assert [d["push_running"] for d in erased["destinations"]] == [True]
        assert _state(session, "crm") == {"sent": 2, "erased": 1}
        again = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert again["status"] == "already_erased" and again["removals_pending"] == {"crm": 1}
        (row,) = wh.fetch(
            "SELECT row_hash, error, record_key IS NOT NULL FROM destination_state "
            "WHERE status = 'erased'"
        )
        assert tuple(row) == ("", None, True)  # (only the key hash and the encrypted key)

        counts = _push(session, "crm")  # (max_removals 0: only an erasure's removal goes)
        assert counts["rows_erased_removed"] == 1 and "ann@x.org" not in apis.pushed
        assert _state(session, "crm") == {"sent": 2}


def test_an_erasure_on_a_host_whose_clock_is_behind_still_reaches_a_first_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the push's start and the erasure's record of what it looked for are compared
    by the warehouse server's clock, not each host's — an erasure run on a machine whose clock is
    an hour behind the pushing one's, while the person's first push waits for the API, still
    turns the record into its pending removal (by the hosts' clocks it looked older than the
    push and was ignored)."""
    if warehouse_url.startswith("duckdb"):
        pytest.skip("one process: one clock")
    with _crm_session(warehouse_url, tmp_path, url, max_removals=0) as session:
        real_wall = clock.wall

        def erase_behind() -> Any:  # (the API's thread: "another host", its clock behind)
            monkeypatch.setattr(clock, "wall", lambda: real_wall() - timedelta(hours=1))
            try:
                return erase_subject(session.warehouse, session.project, "ann@x.org")
            finally:
                monkeypatch.setattr(clock, "wall", real_wall)

        counts, _ = _push_erasing(session, apis, monkeypatch, erase_behind)
        assert counts["rows_sent"] == 3
        assert _state(session, "crm") == {"sent": 2, "erased": 1}


def test_an_erasure_before_a_push_began_leaves_a_later_first_push_alone(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """The person erased, then back (new data, same address) before the destination's first
    push: that push began after the erasure, so it records them ``sent`` like anyone."""
    with _crm_session(warehouse_url, tmp_path, url) as session:
        wh = session.warehouse
        erase_subject(wh, session.project, "ann@x.org")
        wh.load(  # (ann again)
            table("customer_records"),
            pa.table(
                {
                    "source": ["crm"],
                    "record_id": ["r9"],
                    "email": ["ann@x.org"],
                    "observed_at": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                    "received_at": pa.array([NOW], pa.timestamp("us", tz="UTC")),
                }
            ),
        )
        with clock.frozen(NOW):
            resolve_batch(wh, session.project.config.identity)
            profiles_stage(session)
        assert _push(session, "crm")["rows_sent"] == 3
        assert _state(session, "crm") == {"sent": 3} and "ann@x.org" in apis.pushed


def test_the_looked_for_rows_of_a_destination_taken_out_of_the_config_go_at_a_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """An erasure leaves the key hashes it looked for at each destination, which that
    destination's next push drops; one taken out of personify.yml has no next push: a push (or
    a run) of the destinations still configured drops them — not a dry run (it writes nothing)
    — and leaves those of configured destinations alone."""
    from personify.destinations.erasures import looked_for_step, prune_unconfigured

    def rows(name: str) -> int:
        sql = "SELECT count(*) FROM erasure_progress WHERE step = ?"
        return int(wh.scalar(sql, [looked_for_step(name)]) or 0)

    with _crm_session(warehouse_url, tmp_path, url) as session:
        wh = session.warehouse
        _push(session, "crm")
        erase_subject(wh, session.project, "ann@x.org")
        assert rows("crm") >= 1
        other = msgspec.structs.replace(crm(url), name="crm2", model=MODEL)
        with session_for(warehouse_url, tmp_path, other) as renamed:
            with clock.frozen(NOW):
                push_destinations(renamed, dry_run=True)
            assert rows("crm") >= 1  # (a dry run writes nothing)
            _push(renamed, "crm2")
            assert rows("crm") == 0
            erase_subject(wh, renamed.project, "bob@x.org")
            kept = rows("crm2")
            assert kept >= 1
            assert prune_unconfigured(wh, ["crm2"]) == (["crm"] if rows("crm") else [])
            assert (rows("crm"), rows("crm2")) == (0, kept)  # (crm2's: for its next push)
            assert prune_unconfigured(wh, ["crm2"]) == []  # (nothing left to drop)


def test_the_looked_for_rows_of_a_destination_pushed_elsewhere_are_left_to_its_push(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str
) -> None:
    """A destination taken out of one process's personify.yml may still be pushed by another
    (a serve not restarted yet): while that push holds the destination's lock, a push of the
    others leaves its looked-for rows alone — dropped, the erasure stamped during that push
    would not reach it (the person recorded as sent, not as a removal pending) — and drops them
    once no push of it runs."""
    from personify.destinations.erasures import looked_for_step, prune_unconfigured
    from personify.destinations.state import run_name
    from personify.sources.schedule import exclusive

    with _crm_session(warehouse_url, tmp_path, url) as session:
        wh = session.warehouse
        _push(session, "crm")
        erase_subject(wh, session.project, "ann@x.org")
        sql = "SELECT count(*) FROM erasure_progress WHERE step = ?"
        before = int(wh.scalar(sql, [looked_for_step("crm")]) or 0)
        assert before >= 1
        with exclusive(run_name("crm"), warehouse=wh):  # a push of crm under way
            assert prune_unconfigured(wh, ["crm2"]) == []
            assert int(wh.scalar(sql, [looked_for_step("crm")]) or 0) == before
        assert prune_unconfigured(wh, ["crm2"]) == ["crm"]
        assert int(wh.scalar(sql, [looked_for_step("crm")]) or 0) == 0


def test_an_erasure_during_a_first_push_that_cannot_remove_names_the_destination(
    warehouse_url: str, tmp_path: Path, apis: MockApis, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race at a destination that removes nothing: the push does not record the erased
    person's record (the erasure forgets records there), and the erasure's step counts it —
    asked again, nothing is pending; the record is the operator's to remove."""
    with _crm_session(warehouse_url, tmp_path, url, on_remove="ignore") as session:
        wh = session.warehouse
        counts, erased = _push_erasing(session, apis, monkeypatch)
        assert counts["rows_sent"] == 3
        assert _state(session, "crm") == {"sent": 2}
        steps = dict(
            wh.fetch(
                "SELECT step, rows FROM erasure_progress WHERE erasure_id = ? AND step LIKE ?",
                [erased["erasure_id"], "destination:crm%"],
            )
        )
        assert steps == {"destination:crm": 1, "destination:crm:pending": 0}


def test_a_first_push_recording_waits_for_an_erasure_step_under_way(
    warehouse_url: str, tmp_path: Path, url: str
) -> None:
    """PostgreSQL, two connections: an erasure's destination step has left what it looked for
    and not yet committed when the push records the API's ``sent`` of that person; the
    recording waits for it (a per-destination transaction lock), then records the erasure's
    pending removal — read before the commit, it would have recorded ``sent``."""
    import hashlib

    from personify.destinations.erasures import looked_for_step
    from personify.destinations.push import key_ring
    from personify.destinations.state import Acks, key_prefix

    with _crm_session(warehouse_url, tmp_path, url, people=False) as session:
        wh = session.warehouse
        (removing,) = session.project.config.destinations
        key_hash = hashlib.md5((key_prefix(wh, "crm") + "ann@x.org").encode()).hexdigest()  # noqa: S324
        acks = Acks(wh, removing, key_ring(session.project, removing))  # (the push began…)
        acks.rows.append((key_hash, "h", "sent", None, "token"))  # (the API took her record)
        with _erasure_step_under_way(session) as other:  # (…before the erasure's step)
            other.execute(
                "INSERT INTO erasure_progress (erasure_id, step, status, rows, finished_at, "
                "erasure_of) VALUES (%s, %s, 'done', 0, now(), 'e1')",
                [key_hash, looked_for_step("crm")],
            )
            _waits_for(other, acks.flush)
        rows = wh.fetch("SELECT status, erasure_id, row_hash FROM destination_state")
        assert [tuple(r) for r in rows] == [("erased", "e1", "")]


def test_forgetting_stranded_removals_waits_for_an_erasure_step_under_way(
    warehouse_url: str, tmp_path: Path, url: str
) -> None:
    """PostgreSQL, two connections: an erasure's destination step holds the destination's
    transaction lock (it marks the state rows, then deletes the identifiers' hashes); dropping
    the stranded removals, which deletes them in the other order, waits for it — without it
    each could hold a row the other waits for."""
    from personify.destinations.erasures import forget_stranded

    with (
        _crm_session(warehouse_url, tmp_path, url, people=False) as session,
        _erasure_step_under_way(session) as other,
    ):
        _waits_for(other, lambda: forget_stranded(session.warehouse, session.project, "crm"))
