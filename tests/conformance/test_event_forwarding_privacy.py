"""Event forwarding (``kind: events``) and privacy, on every backend, against a real local
collector API: consent and erasure keep people out — an erased person's events are never
forwarded, the export and the erasure name where they went, and an erasure during a forwarding
wins, whenever it comes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.collector_api import Collector, serve_collector
from tests.conformance.event_forwarding_support import (
    T0,
    _two_people,
    dest,
    forward,
    ingest,
    outcomes,
    session_for,
)
from tests.openapi_check import assert_erase_answer

from personify import clock
from personify.destinations import events as forwarding
from personify.privacy.consent import set_consent


@pytest.fixture
def api() -> Collector:
    return Collector()


@pytest.fixture
def url(api: Collector) -> Iterator[str]:
    with serve_collector(api) as base:
        yield base


def test_consent_keeps_people_out_in_the_warehouse(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    optin = dest(url, name="optin", consent="analytics")
    with session_for(warehouse_url, tmp_path, dest(url), optin) as session:
        wh = session.warehouse
        with clock.frozen(T0 - timedelta(hours=1)):
            set_consent(wh, "cus_out", purpose="data_sharing", status="revoked")
            set_consent(wh, "cus_in", purpose="analytics", status="granted")
        ingest(session, ["a1", "a2"], at=T0, customer="cus_out")
        ingest(session, ["b1"], at=T0, customer="cus_in")
        ingest(session, ["g1"], at=T0, customer="cus_in", context={"gpc": True})
        ingest(session, ["anon1"], at=T0, user="visitor")  # (no person known)
        c = forward(session, T0 + timedelta(seconds=5), "analytics")["counts"]
        assert (c["events_sent"], c["events_without_consent"]) == (2, 3)
        assert sorted(api.ids()) == ["anon1", "b1"]
        api.taken.clear()
        c = forward(session, T0 + timedelta(seconds=5), "optin")["counts"]  # an opt-in
        assert (c["events_sent"], c["events_without_consent"]) == (1, 4)
        assert api.ids() == ["b1"]
        assert forward(session, T0 + timedelta(seconds=9), "optin")["counts"]["events_sent"] == 0


def test_an_erased_persons_events_are_never_forwarded(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    from personify.privacy.erase import erase_subject

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        ann, bob = _two_people(session)
        ingest(session, ["ann0"], at=T0 - timedelta(seconds=9), customer=ann)
        assert forward(session, T0 - timedelta(seconds=5))["counts"]["events_sent"] == 1
        ingest(session, ["ann1", "ann2"], at=T0, customer=ann)
        ingest(session, ["bob1"], at=T0, customer=bob)
        with clock.frozen(T0):
            report = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert forward(session, T0 + timedelta(seconds=5))["counts"]["events_sent"] == 1
        assert api.ids() == ["ann0", "bob1"]
        # what the destination recorded of her events went with them
        steps = {s["step"]: s["rows"] for s in report["steps"]}
        assert steps["event_forwards"] == 1
        forwarded = wh.fetch("SELECT message_id FROM event_forwards ORDER BY 1")
        assert [m for (m,) in forwarded] == ["bob1"]


def test_the_export_and_the_erasure_name_where_a_persons_events_went(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """A data subject request shows the events destinations a person's events went to, with
    how many (names and counts, no payload): those recorded, and those below the floor whose
    record was pruned; the erasure report names them (the events there are the operator's to
    erase) — before, neither said anything about events destinations."""
    from personify.privacy.erase import erase_subject
    from personify.privacy.export import export_subject

    optin = dest(url, name="optin", consent="analytics")
    pages = dest(url, name="pages", types=("page",))
    with session_for(warehouse_url, tmp_path, dest(url), optin, pages) as session:
        wh = session.warehouse
        ann, bob = _two_people(session)
        early = T0 - timedelta(hours=2)
        ingest(session, ["ann0"], at=early, customer=ann)
        ingest(session, ["bob0"], at=early, customer=bob)
        for name in ("analytics", "optin", "pages"):  # ann0: sent; optin: without consent
            assert forward(session, early + timedelta(seconds=5), name)["error"] is None
            # then the floors move past ann0: its records are pruned
            assert forward(session, T0, name)["error"] is None
        assert wh.fetch("SELECT count(*) FROM event_forwards")[0][0] == 0
        ingest(session, ["ann1", "ann2"], at=T0, customer=ann)
        ingest(session, ["bob1"], at=T0, customer=bob)
        assert forward(session, T0 + timedelta(seconds=5), "analytics")["error"] is None
        with clock.frozen(T0 + timedelta(seconds=9)):
            doc = export_subject(wh, session.project, "ann@x.org")
        assert doc["events_forwarded"] == [
            {
                "destination": "analytics",
                "sent": 2,
                "rejected": 0,
                "without_consent": 0,
                "before_floor_sent_or_left_out": 1,
            },
            # (ann0 was left out for consent: pruned, it can only count as "maybe")
            {
                "destination": "optin",
                "sent": 0,
                "rejected": 0,
                "without_consent": 0,
                "before_floor_sent_or_left_out": 1,
            },
        ]
        with clock.frozen(T0 + timedelta(seconds=9)):
            report = erase_subject(wh, session.project, "ann@x.org").as_dict()
        assert_erase_answer(report)  # what POST /v1/privacy/erase answers: as documented
        went = {e["destination"]: (e["events"], e["earlier"]) for e in report["events_forwarded"]}
        assert went == {"analytics": (2, 1), "optin": (0, 1)}
        (analytics, _) = report["events_forwarded"]
        assert analytics["message"] == (
            "2 of the person's events were forwarded to analytics (and up to 1 earlier ones): "
            "erase them there"
        )
        assert "ann" not in json.dumps(report["events_forwarded"])  # no ids, no payload
        assert wh.fetch("SELECT message_id FROM event_forwards")[0][0] == "bob1"
        with clock.frozen(T0 + timedelta(seconds=9)):
            assert export_subject(wh, session.project, "bob@x.org")["events_forwarded"] == [
                {
                    "destination": "analytics",
                    "sent": 1,
                    "rejected": 0,
                    "without_consent": 0,
                    "before_floor_sent_or_left_out": 1,
                },
                {
                    "destination": "optin",
                    "sent": 0,
                    "rejected": 0,
                    "without_consent": 0,
                    "before_floor_sent_or_left_out": 1,
                },
            ]


def test_an_erasure_during_a_forwarding_wins(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure runs after the forwarding read its page (and checked consent), before it
    sends: the erased person's events do not go."""
    from personify.privacy.erase import erase_subject

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        ann, bob = _two_people(session)
        ingest(session, ["ann1", "ann2"], at=T0, customer=ann)
        ingest(session, ["bob1"], at=T0, customer=bob)
        real = forwarding.allowed

        def then_erased(*args: Any) -> set[str]:
            ok = real(*args)
            with clock.frozen(T0):
                erase_subject(wh, session.project, "ann@x.org")
            return ok

        monkeypatch.setattr(forwarding, "allowed", then_erased)
        c = forward(session, T0 + timedelta(seconds=5))["counts"]
        assert c["events_sent"] == 1 and api.ids() == ["bob1"]


def test_an_event_erased_while_the_api_refuses_it_leaves_no_outcome(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The erasure runs after the batch was checked and while it is on its way: the API refuses
    the erased person's event, and no `rejected` outcome (a message id of hers, the answer)
    outlives her erasure — as none `sent` would."""
    from personify.privacy.erase import erase_subject

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        ann, bob = _two_people(session)
        ingest(session, ["ann_bad"], at=T0, customer=ann, properties={"bad": True})
        ingest(session, ["bob1", "bob2"], at=T0, customer=bob)
        real = forwarding.payload
        erased: list[str] = []

        def erasing(row: dict[str, Any]) -> dict[str, Any]:
            if row["message_id"] == "ann_bad" and not erased:
                with clock.frozen(T0):
                    erased.append(erase_subject(wh, session.project, "ann@x.org").status)
            return real(row)

        monkeypatch.setattr(forwarding, "payload", erasing)
        c = forward(session, T0 + timedelta(seconds=5))["counts"]
        assert erased == ["erased"]
        assert (c["events_sent"], c["events_rejected"]) == (2, 1)
        assert sorted(api.ids()) == ["bob1", "bob2"]
        assert outcomes(session) == {"sent": 2}


def test_an_erasure_just_before_the_outcomes_are_recorded_leaves_none_of_hers(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API took the erased person's events; her erasure commits after the forwarding last
    looked at the events and before it records their outcomes: no ``event_forwards`` row (a
    message id of hers) outlives her events — the still-stored check is in the transaction
    recording them, not before it."""
    from personify.privacy.erase import erase_subject

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        ann, bob = _two_people(session)
        ingest(session, ["ann1", "ann2"], at=T0, customer=ann)
        ingest(session, ["bob1"], at=T0, customer=bob)
        real = forwarding._record
        erased: list[str] = []

        def erased_first(*args: Any, **kw: Any) -> None:
            if not erased:
                with clock.frozen(T0):
                    erased.append(erase_subject(wh, session.project, "ann@x.org").status)
            real(*args, **kw)

        monkeypatch.setattr(forwarding, "_record", erased_first)
        c = forward(session, T0 + timedelta(seconds=5))["counts"]
        assert erased == ["erased"] and c["events_sent"] == 3  # (she was sent before)
        forwarded = wh.fetch("SELECT message_id FROM event_forwards ORDER BY 1")
        assert [m for (m,) in forwarded] == ["bob1"]


def test_an_erasure_holding_the_events_is_waited_for_by_the_outcomes(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """PostgreSQL, two connections: an erasure has deleted the person's events and not yet
    committed when a forwarding records their outcomes; the recording waits for it, then finds
    them gone (read before, they were still visible: the row outlived the events)."""
    import threading

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        if wh.capabilities.single_process:
            pytest.skip("one process: no other connection erases meanwhile")
        import psycopg

        from personify.warehouse.postgres.backend import split_url

        ingest(session, ["ann1"], at=T0, customer="cus_ann")
        ingest(session, ["bob1"], at=T0, customer="cus_bob")
        rows = [
            {"message_id": m, "stored": T0} for m in ("ann1", "bob1")
        ]  # (what the forwarding sent)
        conninfo, schema = split_url(wh.url)
        with psycopg.connect(conninfo) as other:
            other.execute(f'SET search_path TO "{schema}"')
            other.execute("DELETE FROM events WHERE message_id = 'ann1'")  # (uncommitted)
            done = threading.Event()

            def record() -> None:
                forwarding._record(wh, dest("http://127.0.0.1:9"), rows, "sent")
                done.set()

            worker = threading.Thread(target=record)
            worker.start()
            assert not done.wait(0.5)  # (waiting for the erasure)
            other.commit()
            worker.join(10)
        assert done.is_set()
        forwarded = wh.fetch("SELECT message_id FROM event_forwards ORDER BY 1")
        assert [m for (m,) in forwarded] == ["bob1"]


def test_an_erasure_stopped_between_outcomes_and_events_keeps_both(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the erasure deleted what the destination recorded of the person's events
    but before it deleted the events would have the next forwarding send them again: the two go
    in one transaction, and the erasure run again finishes."""
    from personify.privacy import erase

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        ann, _ = _two_people(session)
        ingest(session, ["ann1"], at=T0, customer=ann)
        assert forward(session, T0 + timedelta(seconds=5))["counts"]["events_sent"] == 1
        real = erase._erase_table

        def crashing(wh: Any, t: Any, f: Any) -> int:
            if t.name == "events":
                raise RuntimeError("killed")
            return real(wh, t, f)

        monkeypatch.setattr(erase, "_erase_table", crashing)
        with clock.frozen(T0), pytest.raises(RuntimeError, match="killed"):
            erase.erase_subject(wh, session.project, "ann@x.org")
        stored = "SELECT count(*) FROM {} WHERE message_id = 'ann1'"
        assert (wh.scalar(stored.format("events")), wh.scalar(stored.format("event_forwards"))) == (
            1,
            1,
        )
        assert forward(session, T0 + timedelta(seconds=9))["counts"]["events_sent"] == 0
        monkeypatch.setattr(erase, "_erase_table", real)
        with clock.frozen(T0):
            report = erase.erase_subject(wh, session.project, "ann@x.org").as_dict()
        steps = {s["step"]: (s["rows"], s["status"]) for s in report["steps"]}
        assert steps["event_forwards"] == (1, "done") and steps["events"] == (1, "done")
        assert (wh.scalar(stored.format("events")), wh.scalar(stored.format("event_forwards"))) == (
            0,
            0,
        )
        assert api.ids() == ["ann1"]


def test_an_erasure_locks_the_events_in_the_order_a_forwarding_does(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """PostgreSQL, two connections: a forwarding recording outcomes holds one of the person's
    events FOR SHARE (the lowest message id first, as :func:`_record` takes them) when her
    erasure locks them: the erasure waits for that one before it locks any other — taking the
    events in the order they were stored, it held the later one the forwarding asks for next,
    and PostgreSQL broke the deadlock by failing one of the two."""
    import threading

    from personify.privacy.erase import erase_subject

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        if wh.capabilities.single_process:
            pytest.skip("one process: no other connection forwards meanwhile")
        import psycopg

        from personify.warehouse.postgres.backend import split_url

        ann, _ = _two_people(session)
        ingest(session, ["ann2"], at=T0, customer=ann)  # (stored first: read first)
        ingest(session, ["ann1"], at=T0, customer=ann)
        conninfo, schema = split_url(wh.url)
        with psycopg.connect(conninfo) as other:
            other.execute(f'SET search_path TO "{schema}"')
            other.execute("SELECT 1 FROM events WHERE message_id = 'ann1' FOR SHARE")
            done: list[str] = []

            def erase() -> None:
                with clock.frozen(T0):
                    done.append(erase_subject(wh, session.project, "ann@x.org").status)

            worker = threading.Thread(target=erase)
            worker.start()
            try:
                worker.join(1.0)
                assert not done  # (waiting for the forwarding's ann1)
                # the forwarding's next event: not held by the erasure, which waits before it
                got = other.execute(
                    "SELECT message_id FROM events WHERE message_id = 'ann2' FOR SHARE NOWAIT"
                ).fetchall()
                assert got == [("ann2",)]
            finally:
                other.rollback()
                worker.join(20)
        assert done == ["erased"]
        assert wh.fetch("SELECT message_id FROM events WHERE message_id LIKE 'ann%'") == []
