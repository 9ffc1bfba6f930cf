"""Event forwarding (``kind: events``) on every backend, against a real local collector API:
each event goes once, with its messageId, filtered; a refused batch is halved until the refused
event stands alone; 5xx are ridden out and a stopped forwarding resumes where it was; a crash
between the API's 2xx and the record sends that one batch again and nothing else; a row
committed late (stamped before the last forwarding) is still forwarded, and so is one stored long
after its received_at; and any interleaving of ingest and forwarding forwards each event exactly
once. Consent and erasure: ``test_event_forwarding_privacy.py``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conformance.collector_api import Collector, serve_collector
from tests.conformance.event_forwarding_support import (
    LAG,
    T0,
    dest,
    forward,
    ingest,
    outcomes,
    session_for,
    status_at,
)
from tests.conformance.lock_support import lock_thief
from tests.loopback import QuietHandler, serve

from personify import clock
from personify.config import (
    BasicAuth,
    EventsDestination,
    OAuth2ClientCredentials,
    Project,
    ProjectConfig,
    RestClient,
    Secret,
)
from personify.destinations import events as forwarding
from personify.destinations import push_destinations, run_name
from personify.session import Session
from personify.sources.schedule import last_runs


@pytest.fixture
def api() -> Collector:
    return Collector()


@pytest.fixture
def url(api: Collector) -> Iterator[str]:
    with serve_collector(api) as base:
        yield base


def test_events_go_once_filtered_in_segments_shape(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    d = dest(url, events=("Order Completed",), types=("track", "identify"))
    with session_for(warehouse_url, tmp_path, d) as session:
        ingest(session, [f"m{i:02}" for i in range(25)], at=T0)
        ingest(session, ["v1", "v2"], at=T0, event="Product Viewed")  # (not named: filtered)
        ingest(session, ["p1"], at=T0, type_="page")  # (a type left out)
        ingest(session, ["i1"], at=T0, type_="identify")
        first = forward(session, T0 + timedelta(seconds=5))
        assert first["error"] is None
        c = first["counts"]
        assert (c["events_sent"], c["events_rejected"], c["requests"]) == (26, 0, 3)
        assert sorted(api.ids()) == sorted([f"m{i:02}" for i in range(25)] + ["i1"])
        m0 = next(e for e in api.taken if e["messageId"] == "m00")
        assert m0 == {
            "messageId": "m00",
            "type": "track",
            "event": "Order Completed",
            "userId": "u_m00",
            "timestamp": (T0 - timedelta(seconds=1)).isoformat(),
            "receivedAt": T0.isoformat(),
            "properties": {"total": 10},
            "context": {"ip": "203.0.113.9"},
        }
        # again: nothing waits, nothing goes
        again = forward(session, T0 + timedelta(seconds=10))
        assert again["counts"]["events_sent"] == 0 and len(api.taken) == 26
        # new events go, the old ones do not
        ingest(session, ["m99"], at=T0 + timedelta(seconds=12))
        assert forward(session, T0 + timedelta(seconds=15))["counts"]["events_sent"] == 1
        assert Counter(api.ids()).most_common(1)[0][1] == 1 and len(api.taken) == 27
        run = last_runs(session.warehouse)[run_name("analytics")]
        assert run.status == "succeeded" and run.counts["events_sent"] == 1
        report = status_at(session, T0 + timedelta(seconds=15))
        (shown,) = report["destinations"]
        assert shown["kind"] == "events" and shown["records"] == {"sent": 27}
        assert (shown["events_pending"], shown["lag_seconds"]) == (0, 0)


def test_a_new_destination_starts_now_and_status_shows_its_lag(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, dest(url, start="now")) as session:
        ingest(session, ["old1", "old2"], at=T0 - timedelta(days=3))
        assert forward(session, T0)["counts"]["events_sent"] == 0 and api.taken == []
        # stored 30 s ago by the real clock (stored_at is the real clock's: the lag too), and
        # asked at a --now months before that (T0): the lag read 0 there, as if none waited
        ingest(session, ["new1"], at=T0 + timedelta(seconds=1), stored=clock.wall() - LAG)
        report = status_at(session, T0 + timedelta(seconds=31))
        (shown,) = report["destinations"]
        assert shown["events_pending"] == 1 and 30 <= shown["lag_seconds"] < 40
        dry = forward_dry(session, T0 + timedelta(seconds=31))
        assert dry["counts"] == {"events_pending": 1} and dry["sample"][0]["messageId"] == "new1"
        assert api.requests == 0
        assert forward(session, T0 + timedelta(seconds=32))["counts"]["events_sent"] == 1
        assert api.ids() == ["new1"]


def test_a_forwarding_at_a_future_now_skips_nothing_that_arrives_later(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """`personify run --now` a month ahead must not move the floor past what arrives until
    then: neither the start nor the floor runs ahead of the real clock."""
    with session_for(warehouse_url, tmp_path, dest(url, start="now")) as session:
        assert forward(session, clock.wall() + timedelta(days=30))["error"] is None
        assert forward(session, clock.wall() + timedelta(days=31))["error"] is None
        ingest(session, ["real1"], at=clock.wall())
        assert forward(session, None)["counts"]["events_sent"] == 1
        assert api.ids() == ["real1"]


def test_the_forwarding_lag_alert_holds_while_events_wait(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    from personify.alerts import check_alerts
    from personify.config import Alert

    root = tmp_path / "project"
    root.mkdir()
    config = ProjectConfig(
        warehouse=warehouse_url,
        signing_key=Secret("fwd-test-key"),
        destinations=(dest(url, start="now"),),
        alerts=(Alert(name="lagging", when="forwarding_lag", over="2m"),),
    )
    with Session(Project(config, root, root / "personify.yml")) as session:
        forward(session, T0)
        ingest(
            session,
            ["w1"],
            at=T0 + timedelta(seconds=1),
            stored=clock.wall() - timedelta(minutes=1),
        )
        at = T0 + timedelta(minutes=1)
        with clock.frozen(at):
            assert check_alerts(session, now=at).firing == []
        # (time passes: the event was stored 239 s ago by the real clock, whatever --now says)
        session.warehouse.execute(
            "UPDATE events SET stored_at = ?", [clock.wall() - timedelta(seconds=239)]
        )
        at = T0 + timedelta(minutes=4)
        with clock.frozen(at):
            (lagging,) = check_alerts(session, now=at).alerts
        assert 239 <= lagging.subjects["destination:analytics"] < 250
        forward(session, at)
        with clock.frozen(at):
            assert check_alerts(session, now=at).firing == []


def forward_dry(session: Session, at: datetime) -> dict[str, Any]:
    with clock.frozen(at):
        (result,) = push_destinations(session, dry_run=True)
    return {"counts": result.counts, "error": result.error, "sample": result.sample}


def test_a_refused_batch_is_halved_until_the_refused_event_stands_alone(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        ingest(session, [f"m{i:02}" for i in range(10)], at=T0)
        ingest(session, ["zbad"], at=T0, properties={"bad": True})
        ingest(session, [f"n{i:02}" for i in range(9)], at=T0)  # (after zbad in the order)
        c = forward(session, T0 + timedelta(seconds=5))["counts"]
        assert (c["events_sent"], c["events_rejected"]) == (19, 1)
        assert 2 < c["requests"] <= 2 + 2 * 4
        assert len(api.ids()) == 19 and "zbad" not in api.ids()
        ((status, error),) = session.warehouse.fetch(
            "SELECT status, error FROM event_forwards WHERE message_id = 'zbad'"
        )
        assert status == "rejected" and "answered 400" in error and "invalid event zbad" in error
        assert "ann@x.org" not in error  # (masked)
        assert forward(session, T0 + timedelta(seconds=9))["counts"]["requests"] == 0


def test_a_batch_refused_event_by_event_stops_the_forwarding_and_rejects_nothing(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """An API that refuses every request (a field it requires, the wrong records_key) is not
    refusing events: the forwarding stops with the answer, records no outcome, and the events
    go once the destination is fixed."""
    ids = [f"m{i:02}" for i in range(12)]
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        ingest(session, ids, at=T0)
        api.refuse_all = True
        stopped = forward(session, T0 + timedelta(seconds=5))
        assert (
            stopped["error"] is not None
            and "refused each of a batch's 10 events" in stopped["error"]
        ), stopped["error"]
        assert "context.library is required" in stopped["error"]
        assert outcomes(session) == {} and api.taken == []
        api.refuse_all = False
        resumed = forward(session, T0 + timedelta(seconds=9))
        assert resumed["error"] is None and resumed["counts"]["events_sent"] == 12
        assert sorted(api.ids()) == ids


def test_server_errors_are_retried(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    ids = [f"m{i:02}" for i in range(30)]
    with session_for(warehouse_url, tmp_path, dest(url, client={"max_retries": 3})) as session:
        ingest(session, ids, at=T0)
        api.fail_next = 2
        first = forward(session, T0 + timedelta(seconds=5))
        assert first["error"] is None and first["counts"]["retries"] >= 2
        assert sorted(api.ids()) == ids


def test_a_forwarding_the_api_stops_resumes_where_it_was(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    ids = [f"m{i:02}" for i in range(30)]
    with session_for(warehouse_url, tmp_path, dest(url, client={"max_retries": 0})) as session:
        ingest(session, ids, at=T0)
        api.fail_from = 2  # the second request on: 500, and no retry allowed
        stopped = forward(session, T0 + timedelta(seconds=5))
        assert stopped["error"] is not None and "500" in stopped["error"]
        assert stopped["counts"]["events_sent"] == 10 and len(api.taken) == 10
        assert last_runs(session.warehouse)[run_name("analytics")].status == "failed"
        # much later (past the lookback): the position was kept, so nothing waiting is skipped
        api.fail_from = None
        resumed = forward(session, T0 + timedelta(hours=2))
        assert resumed["error"] is None and resumed["counts"]["events_sent"] == 20
        assert sorted(api.ids()) == ids


def test_refused_credentials_stop_the_forwarding(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    wrong = EventsDestination(
        name="analytics",
        path="/v1/batch",
        start="all",
        client=RestClient(base_url=url, auth=BasicAuth(username=Secret("nope"))),
    )
    with session_for(warehouse_url, tmp_path, wrong) as session:
        ingest(session, ["m1"], at=T0)
        result = forward(session, T0 + timedelta(seconds=5))
        assert result["error"] is not None and "401" in result["error"]
        assert outcomes(session) == {} and api.taken == []


class _RevokedGrant(QuietHandler):
    """A token endpoint refusing the grant with 400, as Google's does for a revoked refresh
    token (RFC 6749 §5.2: invalid_grant)."""

    def do_POST(self) -> None:  # noqa: N802
        self.body()
        self.answer(400, {"error": "invalid_grant"})


def test_a_refused_oauth_grant_stops_the_forwarding_and_rejects_no_event(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    # the token endpoint's 400 is about the credentials, not an event: halving the batch and
    # keeping every event as rejected (never sent again) lost the whole stream
    with serve(_RevokedGrant) as token_url:
        auth = OAuth2ClientCredentials(
            access_token_url=f"{token_url}/token",
            client_id=Secret("id"),
            client_secret=Secret("revoked"),
        )
        d = EventsDestination(
            name="analytics",
            path="/v1/batch",
            start="all",
            batch_size=2,
            client=RestClient(base_url=url, auth=auth, backoff_base=0.01),
        )
        with session_for(warehouse_url, tmp_path, d) as session:
            ingest(session, ["m1", "m2", "m3"], at=T0)
            result = forward(session, T0 + timedelta(seconds=5))
            assert result["error"] is not None and "token endpoint" in result["error"]
            assert outcomes(session) == {} and api.taken == []


def test_a_crash_between_the_2xx_and_its_record_sends_that_batch_again_only(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"m{i:02}" for i in range(35)]
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        ingest(session, ids, at=T0)
        real = forwarding._record
        calls = {"sent": 0}

        def dies_on_the_third_sent_batch(*args: Any, **kw: Any) -> None:
            if args[3] == "sent":
                calls["sent"] += 1
                if calls["sent"] == 3:
                    raise SystemExit("the process dies after the API took the batch")
            real(*args, **kw)

        monkeypatch.setattr(forwarding, "_record", dies_on_the_third_sent_batch)
        monkeypatch.setattr(forwarding._Outcomes, "EVERY_EVENTS", 10)  # a record per batch
        with pytest.raises(SystemExit):
            forward(session, T0 + timedelta(seconds=5))
        monkeypatch.setattr(forwarding, "_record", real)
        assert len(api.taken) == 30
        c = forward(session, T0 + timedelta(seconds=9))["counts"]
        assert c["events_sent"] == 15
        seen = Counter(api.ids())
        assert set(seen) == set(ids)
        assert sorted(m for m, n in seen.items() if n > 1) == ids[20:30]  # the one batch


def test_outcomes_are_recorded_by_the_thousand_not_per_batch(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit per batch cost more than its request: the outcomes of a forwarding's batches
    are recorded together (by the thousand events or the second, and at the end)."""
    ids = [f"m{i:02}" for i in range(35)]
    with session_for(warehouse_url, tmp_path, dest(url)) as session:
        ingest(session, ids, at=T0)
        real = forwarding._record
        recorded: list[int] = []

        def counted(*args: Any, **kw: Any) -> None:
            recorded.append(len(args[2]))
            real(*args, **kw)

        monkeypatch.setattr(forwarding, "_record", counted)
        monkeypatch.setattr(forwarding._Outcomes, "EVERY_SECONDS", 3600.0)
        assert forward(session, T0 + timedelta(seconds=5))["counts"]["events_sent"] == 35
        assert recorded == [35]  # four batches, one statement
        assert outcomes(session) == {"sent": 35}
        assert forward(session, T0 + timedelta(seconds=9))["counts"]["events_sent"] == 0


def test_a_row_committed_late_is_not_skipped(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    with session_for(warehouse_url, tmp_path, dest(url, lookback="10m")) as session:
        ingest(session, ["early"], at=T0)
        assert forward(session, T0 + timedelta(minutes=1))["counts"]["events_sent"] == 1
        assert forward(session, T0 + timedelta(minutes=30))["counts"]["events_sent"] == 0
        # another process stamped these at T0 + 25 min and commits them only now, after a
        # forwarding at T0 + 30 min: within the lookback, still found
        ingest(session, ["late1", "late2"], at=T0 + timedelta(minutes=25))
        # (an insert stamped further back than the lookback when it commits is not found: the
        # README says so — a transaction open that long)
        ingest(session, ["ancient"], at=T0 + timedelta(minutes=5))
        c = forward(session, T0 + timedelta(minutes=31))["counts"]
        assert c["events_sent"] == 2 and sorted(api.ids()) == ["early", "late1", "late2"]
        # the record of what went is pruned below the lookback, so it stays small
        assert session.warehouse.scalar("SELECT count(*) FROM event_forwards") == 2


def test_an_event_stored_long_after_it_was_received_is_forwarded_once(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """A replay, a bus backlog, an old file: received days ago, stored now — after a forwarding
    moved the floor far past its received_at. The load stamps stored_at; the next forwarding
    sends it, once."""
    with session_for(warehouse_url, tmp_path, dest(url, lookback="10m")) as session:
        wh = session.warehouse
        ingest(session, ["before"], at=clock.wall() - timedelta(hours=1), stored=None)
        assert forward(session, None)["counts"]["events_sent"] == 1
        floor = forwarding.position(wh, "analytics")
        assert floor is not None
        assert clock.parse_instant(floor.floor) > clock.wall() - timedelta(minutes=11)
        days_ago = clock.wall() - timedelta(days=3)
        t0 = clock.wall()
        ingest(session, ["replayed1", "replayed2"], at=days_ago, stored="now")
        (stamped,) = wh.fetch(
            "SELECT min(stored_at), max(stored_at) FROM events WHERE message_id LIKE 'replayed%'"
        )
        assert stamped[0] == stamped[1] and t0 <= stamped[0] <= clock.wall()
        shown = status_at(session, clock.wall())["destinations"][0]
        assert shown["events_pending"] == 2
        assert forward(session, None)["counts"]["events_sent"] == 2
        assert forward(session, None)["counts"]["events_sent"] == 0
        # (a forwarding at a --now in the past sends nothing again either)
        assert forward(session, days_ago)["counts"]["events_sent"] == 0
        assert sorted(api.ids()) == ["before", "replayed1", "replayed2"]
        (sent_at,) = wh.fetch(
            "SELECT received_at FROM event_forwards WHERE message_id = 'replayed1'"
        )[0]
        assert sent_at == stamped[0]  # (its outcome kept until the floor passes when it was stored)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("ingest"), st.integers(1, 25), st.integers(0, 900)),
            st.tuples(st.just("forward"), st.just(0), st.integers(1, 120)),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_any_interleaving_forwards_each_event_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, int]]
) -> None:
    """Ingests (some stamped up to the lookback in the past: late commits) and forwardings in
    any order, then a last forwarding: every event reached the API exactly once."""
    api = Collector()
    tmp = tmp_path_factory.mktemp("fwd")
    with serve_collector(api) as url, pytest.MonkeyPatch.context() as mp:
        mp.setattr(forwarding, "READ", 6)  # (pages of 6 events: a forwarding reads several)
        d = dest(url, start="all", lookback="15m", batch_size=7)
        with session_for(f"duckdb:///{tmp / 'w.duckdb'}", tmp, d) as session:
            now, n, made = T0, 0, []
            for kind, count, seconds in steps:
                if kind == "ingest":
                    ids = [f"e{n + i:04}" for i in range(count)]
                    n += count
                    ingest(session, ids, at=now - timedelta(seconds=seconds))
                    made += ids
                else:
                    now += timedelta(seconds=seconds)
                    assert forward(session, now)["error"] is None
            forward(session, now + timedelta(seconds=1))
            assert Counter(api.ids()) == Counter(made)


def test_a_forwarding_whose_lock_went_with_its_connection_sends_nothing_more(
    warehouse_url: str, tmp_path: Path, api: Collector, url: str
) -> None:
    """PostgreSQL: the session holding the forwarding's advisory lock is terminated while the
    API takes its first batch, and another forwarding takes the lock: the first sends no other
    batch and records nothing more, saying so; once the lock is free the next one sends what
    was not recorded (that first batch again: at least once) and the rest."""
    with (
        session_for(warehouse_url, tmp_path, dest(url)) as session,
        lock_thief(session.warehouse, run_name("analytics")) as other,
    ):
        ids = [f"m{i:02}" for i in range(30)]  # three batches of 10
        ingest(session, ids, at=T0)

        class Taken(list[dict[str, Any]]):
            def __iadd__(self, batch: Any) -> Any:  # (the API's thread, taking a batch)
                if not self:
                    other.steal()  # (and another one starts)
                return super().__iadd__(batch)

        api.taken = Taken()
        first = forward(session, T0 + timedelta(seconds=5))
        assert first["error"] is not None and "lost its lock" in first["error"]
        assert len(api.taken) == 10  # the first batch alone
        assert outcomes(session) == {}  # recorded nothing without the lock
        other.release()
        second = forward(session, T0 + timedelta(seconds=10))
        assert second["error"] is None and second["counts"]["events_sent"] == 30
        assert sorted(set(api.ids())) == ids and outcomes(session) == {"sent": 30}
