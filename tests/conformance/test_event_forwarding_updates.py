"""Event forwarding and events updated in place, on every backend, against a real local
collector API: an event whose stored copy *changes* (a file imported again with
``on_conflict: update``, a reconciliation's repair) is stored again — a new ``stored_at`` — and
reaches the destination once more, once; the same copy arriving again changes nothing and goes
nowhere; identity stitching setting an event's ``customer_id`` (not in what is sent) does not
send it again."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.collector_api import Collector, serve_collector
from tests.conformance.event_forwarding_support import T0, _two_people, dest, forward, session_for

from personify import clock
from personify.session import Session
from personify.sources.files import import_file


@pytest.fixture
def api() -> Collector:
    return Collector()


@pytest.fixture
def url(api: Collector) -> Iterator[str]:
    with serve_collector(api) as base:
        yield base


def _events_file(path: Path, totals: dict[str, Any], *, user: str = "u1") -> Path:
    """Events ``message id → total`` (or → their properties) in a JSON Lines file."""
    lines = [
        json.dumps(
            {
                "messageId": m,
                "type": "track",
                "event": "Order Completed",
                "userId": user,
                "timestamp": "2026-06-01T11:00:00Z",
                "receivedAt": "2026-06-01T11:00:01Z",
                "properties": total if isinstance(total, dict) else {"total": total},
            }
        )
        for m, total in totals.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _import(session: Session, path: Path, policy: str | None = "update") -> dict[str, int]:
    with clock.frozen(T0):
        result = import_file(
            session,
            path,
            table="events",
            source_name="shop_events",
            on_conflict=policy,  # type: ignore[arg-type]
        )
    return dict(result.counts)


def _sent(api: Collector, message_id: str) -> list[dict[str, Any]]:
    return [e for e in api.taken if e["messageId"] == message_id]


def test_a_changed_event_stored_again_is_forwarded_again_once(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        first = _events_file(tmp_path / "v1.jsonl", {"f1": 10, "f2": 20})
        assert _import(session, first)["rows_loaded"] == 2
        assert forward(session, None)["counts"]["events_sent"] == 2
        (stored,) = session.warehouse.fetch("SELECT stored_at FROM events WHERE message_id = 'f1'")
        # a corrected export: f1's total changed, f2 the same
        second = _events_file(tmp_path / "v2.jsonl", {"f1": 11, "f2": 20})
        counts = _import(session, second)
        assert (counts["rows_loaded"], counts["rows_duplicate"]) == (1, 1)
        (again,) = session.warehouse.fetch("SELECT stored_at FROM events WHERE message_id = 'f1'")
        assert again[0] > stored[0]  # stored again: the load's stamp
        status = session.warehouse.fetch(
            "SELECT message_id, stored_at FROM events WHERE message_id = 'f2'"
        )
        assert status[0][1] <= stored[0]  # the unchanged one keeps its stamp
        c = forward(session, None)["counts"]
        assert c["events_sent"] == 1
        assert [e["properties"]["total"] for e in _sent(api, "f1")] == [10, 11]
        assert len(_sent(api, "f2")) == 1
        # once: the next forwardings send nothing, and one outcome per event is kept
        assert forward(session, None)["counts"]["events_sent"] == 0
        outcomes = session.warehouse.fetch(
            "SELECT message_id, status FROM event_forwards ORDER BY 1"
        )
        assert [(str(m), str(s)) for m, s in outcomes] == [("f1", "sent"), ("f2", "sent")]
        # the same rows from another file: nothing changed, nothing stored, nothing sent
        third = _events_file(tmp_path / "v3.jsonl", {"f2": 20, "f1": 11})
        assert _import(session, third)["rows_loaded"] == 0
        assert forward(session, None)["counts"]["events_sent"] == 0
        assert Counter(api.ids()) == {"f1": 2, "f2": 1}


@pytest.mark.parametrize("pruned", [False, True])
def test_a_corrected_event_sent_again_counts_as_a_second_send(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, pruned: bool
) -> None:
    """``status``'s lifetime totals count sends: a corrected event sent again is two sends,
    whether the first outcome was still recorded (replaced: it is added to the totals then) or
    already pruned below the floor (added when pruned) — it was once one or two by that."""
    from personify.destinations import events

    d = dest(url, lookback="1s" if pruned else "15m")
    with session_for(warehouse_url, tmp_path, d) as session:
        wh = session.warehouse
        _import(session, _events_file(tmp_path / "v1.jsonl", {"f1": 10, "f2": 20}))
        assert forward(session, None)["counts"]["events_sent"] == 2
        if pruned:
            time.sleep(1.2)  # (the next forwarding's floor passes the outcomes: pruned)
            assert forward(session, None)["counts"]["events_sent"] == 0
        assert int(wh.scalar("SELECT count(*) FROM event_forwards") or 0) == (0 if pruned else 2)
        assert events.totals(wh, d.name) == {"sent": 2}
        _import(session, _events_file(tmp_path / "v2.jsonl", {"f1": 11, "f2": 20}))
        assert forward(session, None)["counts"]["events_sent"] == 1
        assert events.totals(wh, d.name) == {"sent": 3}
        assert forward(session, None)["counts"]["events_sent"] == 0
        assert events.totals(wh, d.name) == {"sent": 3}  # (and stays so, pruned or not)
        assert Counter(api.ids()) == {"f1": 2, "f2": 1}


def test_the_append_only_default_keeps_the_first_copy_and_sends_nothing_again(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        _import(session, _events_file(tmp_path / "v1.jsonl", {"f1": 10}), None)
        assert forward(session, None)["counts"]["events_sent"] == 1
        counts = _import(session, _events_file(tmp_path / "v2.jsonl", {"f1": 99}), None)
        assert (counts["rows_loaded"], counts["rows_duplicate"]) == (0, 1)
        assert forward(session, None)["counts"]["events_sent"] == 0
        assert [e["properties"]["total"] for e in api.taken] == [10]


def test_a_rejected_event_corrected_is_sent_again(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """An event the API refused is kept ``rejected`` and never sent again — until a corrected
    copy of it is stored: then it goes, and its outcome is the new one."""
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        bad = {"total": 10, "bad": True}  # (the collector refuses it)
        _import(session, _events_file(tmp_path / "v1.jsonl", {"f1": bad, "f2": 20}))
        c = forward(session, None)["counts"]
        assert (c["events_sent"], c["events_rejected"]) == (1, 1)
        assert forward(session, None)["counts"]["events_sent"] == 0  # (rejected: kept so)
        _import(session, _events_file(tmp_path / "v2.jsonl", {"f1": 12, "f2": 20}))
        assert forward(session, None)["counts"]["events_sent"] == 1
        assert [e["properties"] for e in _sent(api, "f1")] == [{"total": 12}]
        status = session.warehouse.scalar(
            "SELECT status FROM event_forwards WHERE message_id = 'f1'"
        )
        assert status == "sent"


def test_identity_stitching_an_event_does_not_send_it_again(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """Stitching sets ``customer_id``, which the destination never receives (it gets the
    event's userId and anonymousId, as sent): the event is not sent again."""
    from personify.identity import resolve_batch

    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        wh = session.warehouse
        _two_people(session)
        _import(session, _events_file(tmp_path / "v1.jsonl", {"s1": 10}, user="ann_web"))
        assert forward(session, None)["counts"]["events_sent"] == 1
        assert wh.scalar("SELECT customer_id FROM events WHERE message_id = 's1'") is None
        # the user id tied to Ann (an identify with her email), then an identity pass
        wh.execute(
            "INSERT INTO events (message_id, type, user_id, timestamp, received_at, stored_at, "
            "source, traits) VALUES ('id1', 'identify', 'ann_web', ?, ?, ?, 'web', ?)",
            [T0, T0, clock.wall(), json.dumps({"email": "ann@x.org"})],
        )
        with clock.frozen(T0):
            resolve_batch(wh, session.project.config.identity)
        assert wh.scalar("SELECT customer_id FROM events WHERE message_id = 's1'") is not None
        assert _sent(api, "s1") and len(_sent(api, "s1")) == 1
        c = forward(session, None)["counts"]
        assert c["events_sent"] == 1 and api.ids().count("s1") == 1  # (id1 only)
