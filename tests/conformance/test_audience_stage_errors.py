"""A segment the warehouse refuses when it runs, in the pipeline and in ``personify segments
refresh``, on every backend: the other segments, the rules and the next stages go on; the run
records and reports the error (the file, the engine's message) and ends failed; ``status``
shows it until the segment refreshes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conformance.audience_data import load_customers

from personify import clock, pipeline
from personify.audiences import audiences_stage
from personify.audiences.stage import failed_segments, find_segment, project_segments, refresh
from personify.scaffold import init_project
from personify.session import Session, open_session
from personify.status import status_report
from personify.warehouse import Warehouse

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
BUYERS = "-- name: buyers\nSELECT customer_id FROM customers WHERE order_count > 1\n"


def _project(tmp_path: Path, warehouse_url: str) -> Path:
    root = tmp_path / "shop"
    init_project(root)
    file = root / "personify.yml"
    text = file.read_text(encoding="utf-8")
    file.write_text(text.replace("duckdb:///warehouse.duckdb", warehouse_url), encoding="utf-8")
    (root / "segments" / "buyers.sql").write_text(BUYERS, encoding="utf-8")
    return root


def test_a_broken_segment_keeps_its_members_and_fails_the_run_after_the_rest(
    tmp_path: Path, warehouse_url: str
) -> None:
    root = _project(tmp_path, warehouse_url)
    ran: list[str] = []

    def after(session: Session) -> dict[str, int]:
        ran.append("after")
        return {"done": 1}

    stages = (("audiences", audiences_stage), ("after", after))
    with open_session(root) as session:
        wh = session.warehouse
        load_customers(
            wh,
            [
                {
                    "customer_id": c,
                    "order_count": 2,
                    "engagement_score": 90.0,
                    "last_purchase_at": NOW - timedelta(days=1),
                }
                for c in ("ann", "bob")
            ],
        )
        with clock.frozen(NOW):
            first = pipeline.run(session, stages=stages)
        assert first.problems == [] and ran == ["after"]
        buyers = root / "segments" / "buyers.sql"
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        load_customers(
            wh,
            [
                {
                    "customer_id": "cy",
                    "order_count": 3,
                    "engagement_score": 95.0,
                    "last_purchase_at": NOW,
                }
            ],
        )
        with clock.frozen(NOW + timedelta(hours=1)):
            report = pipeline.run(session, stages=stages)
        assert ran == ["after", "after"]  # the next stage ran
        (stage, _) = report.stages
        assert stage.counts["segments_failed"] == 1 and stage.counts["segments_refreshed"] == 1
        (problem,) = report.problems
        assert problem.startswith(
            "audiences: segments/buyers.sql: segment 'buyers' failed on the warehouse: "
        )
        assert "ordr_count" in problem and "hint: fix the query in segments/buyers.sql" in problem
        members = wh.fetch(
            "SELECT segment, customer_id FROM segment_memberships WHERE exited_at IS NULL "
            "ORDER BY 1, 2"
        )
        assert [tuple(r) for r in members] == [
            ("buyers", "ann"),  # as the last good refresh left them
            ("buyers", "bob"),
            ("high_value_recent", "ann"),
            ("high_value_recent", "bob"),
            ("high_value_recent", "cy"),  # the other segment was refreshed
        ]
        status = status_report(session)
        assert status["last_run"]["status"] == "failed"
        assert status["last_run"]["errors"] == [problem]
        with clock.frozen(NOW + timedelta(hours=2)):  # fixed: the run succeeds again
            buyers.write_text(BUYERS, encoding="utf-8")
            fixed = pipeline.run(session, stages=stages)
        assert fixed.problems == [] and status_report(session)["last_run"]["errors"] == []
        assert (
            wh.scalar(
                "SELECT count(*) FROM segment_memberships WHERE segment = 'buyers' "
                "AND exited_at IS NULL"
            )
            == 3
        )


QUOTING = [
    "CAST(first_name AS INTEGER) > 0",  # DuckDB 'Zorblatt', PostgreSQL: "Zorblatt"
    "CAST(first_name AS DATE) > DATE '2020-01-01'",  # DuckDB: format: "Zorblatt"
    "CAST(first_name AS DECIMAL(10, 2)) > 0",  # DuckDB: string "Zorblatt"
    "CAST(first_name AS TIMESTAMP) > TIMESTAMP '2020-01-01 00:00:00'",
    "strptime(first_name, '%Y') > TIMESTAMP '2020-01-01 00:00:00'",  # PostgreSQL: to_timestamp
]


@pytest.mark.parametrize("condition", QUOTING)
def test_a_value_the_engine_quotes_in_its_error_is_not_reported(
    tmp_path: Path, warehouse_url: str, condition: str
) -> None:
    """A failed cast or parse names the value it could not read — here a person's first name,
    single- or double-quoted as each engine does: the run's problem and the status show the
    engine's message without it."""
    root = _project(tmp_path, warehouse_url)
    (root / "segments" / "buyers.sql").write_text(
        f"-- name: buyers\nSELECT customer_id FROM customers WHERE {condition}\n",
        encoding="utf-8",
    )
    with open_session(root) as session:
        load_customers(session.warehouse, [{"customer_id": "z1", "first_name": "Zorblatt"}])
        with clock.frozen(NOW):
            report = pipeline.run(session, stages=(("audiences", audiences_stage),))
        (problem,) = report.problems
        assert "segment 'buyers' failed on the warehouse" in problem
        assert "Zorblatt" not in problem and "…" in problem, problem
        assert "Zorblatt" not in str(status_report(session)["last_run"])


def test_segments_refresh_isolates_a_broken_segment_as_the_run_does(
    tmp_path: Path, warehouse_url: str
) -> None:
    """``personify segments refresh`` (:func:`refresh`): the other segments are refreshed, the
    broken one keeps its memberships and is named in the same words as the run's; ``status``
    shows it until it refreshes — by either command."""
    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        rows = [
            {"customer_id": c, "order_count": 2, "engagement_score": 90.0, "last_purchase_at": NOW}
            for c in ("ann", "bob")
        ]
        load_customers(wh, rows)
        with clock.frozen(NOW):
            results, failed = refresh(session, project_segments(session.project), force=True)
        assert [r.segment for r in results] == ["buyers", "high_value_recent"] and failed == []
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        load_customers(wh, [{**rows[0], "customer_id": "cy"}])
        later = NOW + timedelta(hours=1)
        with clock.frozen(later):
            results, failed = refresh(session, project_segments(session.project), force=True)
        assert [(r.segment, r.entered) for r in results] == [("high_value_recent", 1)]
        assert [(f.segment, f.file) for f in failed] == [("buyers", "segments/buyers.sql")]
        (problem,) = failed_segments(failed, {}).problems
        assert problem.startswith("segments/buyers.sql: segment 'buyers' failed on the warehouse: ")
        assert "ordr_count" in problem and "hint: fix the query in segments/buyers.sql" in problem
        assert _open(wh, "buyers") == ["ann", "bob"]  # kept: not emptied, not updated
        assert _open(wh, "high_value_recent") == ["ann", "bob", "cy"]

        (failing,) = status_report(session)["segments_failing"]
        assert failing == {
            "segment": "buyers",
            "file": "segments/buyers.sql",
            "failed_at": later.isoformat(),
            "kind": "sql",
            "error": problem,
        }
        # the run's audiences stage records (and the run reports) the same words
        with clock.frozen(later + timedelta(hours=1)):
            report = pipeline.run(session, stages=(("audiences", audiences_stage),))
        assert report.problems == [f"audiences: {problem}"]
        assert [f["error"] for f in status_report(session)["segments_failing"]] == [problem]

        buyers.write_text(BUYERS, encoding="utf-8")  # fixed: refreshed, no longer failing
        with clock.frozen(later + timedelta(hours=2)):
            results, failed = refresh(session, [find_segment(session.project, "buyers")])
        assert [(r.segment, r.entered) for r in results] == [("buyers", 1)] and failed == []
        assert status_report(session)["segments_failing"] == []

        # a failing segment removed from the project is forgotten by the next run
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        with clock.frozen(later + timedelta(hours=3)):
            refresh(session, [find_segment(session.project, "buyers")], force=True)
        assert len(status_report(session)["segments_failing"]) == 1
        buyers.unlink()
        with clock.frozen(later + timedelta(hours=4)):
            assert pipeline.run(session, stages=(("audiences", audiences_stage),)).problems == []
        assert status_report(session)["segments_failing"] == []


def _open(wh: Warehouse, segment: str) -> list[str]:
    return [
        str(r[0])
        for r in wh.fetch(
            "SELECT customer_id FROM segment_memberships WHERE segment = ? AND exited_at IS NULL "
            "ORDER BY 1",
            [segment],
        )
    ]


def test_the_real_time_path_isolates_a_broken_segment_as_the_batch_does(
    tmp_path: Path, warehouse_url: str
) -> None:
    """Continuous mode's reaction (:func:`react`) and its batch recompute: a real-time segment
    the warehouse refuses keeps its memberships and is recorded in ``segment_errors`` (the
    engine's words masked) — ``status`` shows it — while the other segments move; before, the
    error stopped every segment, rule and journey entry of the pass."""
    from personify.realtime.drift import recompute
    from personify.realtime.reactions import react

    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        rows = [
            {"customer_id": c, "order_count": 2, "engagement_score": 90.0, "last_purchase_at": NOW}
            for c in ("ann", "bob")
        ]
        load_customers(wh, rows)
        with clock.frozen(NOW):
            refresh(session, project_segments(session.project), force=True)
        assert _open(wh, "buyers") == ["ann", "bob"]
        # a value the engine quotes in its error: the first name must not be recorded
        buyers.write_text(
            "-- name: buyers\nSELECT customer_id FROM customers WHERE order_count > 1 "
            "AND CAST(first_name AS INTEGER) > 0\n",
            encoding="utf-8",
        )
        load_customers(wh, [{**rows[0], "customer_id": "cy", "first_name": "Zorblatt"}])
        later = NOW + timedelta(minutes=5)
        done = react(session, ["cy"], now=later)
        assert done.segments_failed == ["buyers"]
        assert done.entered == 1  # cy entered high_value_recent: the other segment moved
        assert _open(wh, "buyers") == ["ann", "bob"]
        assert _open(wh, "high_value_recent") == ["ann", "bob", "cy"]
        (failing,) = status_report(session)["segments_failing"]
        assert failing["segment"] == "buyers" and failing["file"] == "segments/buyers.sql"
        assert failing["failed_at"] == later.isoformat()
        assert failing["error"].startswith(
            "segments/buyers.sql: segment 'buyers' failed on the warehouse: "
        )
        assert "Zorblatt" not in str(failing)
        again = react(session, ["cy"], now=later)  # idempotent: nothing moves twice
        assert (again.entered, again.exited, again.segments_failed) == (0, 0, ["buyers"])

        # the batch recompute isolates it too (and the rest of its work is done)
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        with clock.frozen(later + timedelta(minutes=5)):
            drift = recompute(session)
        assert drift.segments_failed == ["buyers"]
        assert "ordr_count" in status_report(session)["segments_failing"][0]["error"]
        assert _open(wh, "buyers") == ["ann", "bob"]

        buyers.write_text(BUYERS, encoding="utf-8")  # fixed: its next refresh clears it
        with clock.frozen(later + timedelta(minutes=10)):
            assert recompute(session).segments_failed == []
        assert status_report(session)["segments_failing"] == []


def test_a_real_time_refresh_that_succeeds_clears_the_recorded_failure(
    tmp_path: Path, warehouse_url: str
) -> None:
    """A segment the batch refresh recorded as failing, its file fixed since: the next real-time
    refresh runs its query and succeeds — ``status`` no longer shows the old error (it did until
    the next batch refresh). A failure only a full refresh can judge — over the cap — stays."""
    from personify.audiences.memberships import refresh_isolated
    from personify.realtime.reactions import react

    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        rows = [
            {"customer_id": c, "order_count": 2, "engagement_score": 90.0, "last_purchase_at": NOW}
            for c in ("ann", "bob")
        ]
        load_customers(wh, rows)
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        with clock.frozen(NOW):
            _, failed = refresh(session, project_segments(session.project), force=True)
        assert [f.segment for f in failed] == ["buyers"]
        assert [f["segment"] for f in status_report(session)["segments_failing"]] == ["buyers"]

        buyers.write_text(BUYERS, encoding="utf-8")  # fixed; no batch refresh since
        load_customers(wh, [{**rows[0], "customer_id": "cy"}])
        done = react(session, ["cy"], now=NOW + timedelta(minutes=1))
        assert done.segments_failed == [] and "cy" in _open(wh, "buyers")
        assert status_report(session)["segments_failing"] == []

        # over the cap on a full refresh: a real-time success for one customer does not clear it
        segment = find_segment(session.project, "buyers")
        _, failed = refresh_isolated(
            wh, [segment], now=NOW + timedelta(minutes=2), timeout_s=30, max_members=1
        )
        assert [f.segment for f in failed] == ["buyers"]
        assert react(session, ["cy"], now=NOW + timedelta(minutes=3)).segments_failed == []
        (failing,) = status_report(session)["segments_failing"]
        assert failing["segment"] == "buyers" and "more than the cap" in failing["error"]


def test_a_full_refresh_failing_during_a_real_time_pass_stays_recorded(
    tmp_path: Path, warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's full refresh records the segment over the cap while a real-time pass
    (which read the old, clearable error before refreshing) runs: the pass clears only what it
    can judge, so the cap failure it never read stays — it deleted the segment's row whatever
    the row said by then."""
    from personify.audiences import memberships
    from personify.audiences.memberships import refresh_isolated
    from personify.realtime.reactions import react

    root = _project(tmp_path, warehouse_url)
    buyers = root / "segments" / "buyers.sql"
    with open_session(root) as session:
        wh = session.warehouse
        rows = [
            {"customer_id": c, "order_count": 2, "engagement_score": 90.0, "last_purchase_at": NOW}
            for c in ("ann", "bob")
        ]
        load_customers(wh, rows)
        buyers.write_text(BUYERS.replace("order_count", "ordr_count"), encoding="utf-8")
        with clock.frozen(NOW):
            _, failed = refresh(session, project_segments(session.project), force=True)
        assert [f.segment for f in failed] == ["buyers"]  # a clearable failure, recorded
        buyers.write_text(BUYERS, encoding="utf-8")
        segment = find_segment(session.project, "buyers")
        real = memberships.refresh_for_isolated

        def meanwhile(wh: Warehouse, seg: Any, *args: Any, **kw: Any) -> Any:
            got = real(wh, seg, *args, **kw)
            if seg.name == "buyers":  # (another serve, or personify run, at this moment: its
                # full refresh is over the cap)
                _, over = refresh_isolated(
                    wh, [segment], now=NOW + timedelta(minutes=1), timeout_s=30, max_members=1
                )
                assert [f.segment for f in over] == ["buyers"]
            return got

        monkeypatch.setattr(memberships, "refresh_for_isolated", meanwhile)
        load_customers(wh, [{**rows[0], "customer_id": "cy"}])
        assert react(session, ["cy"], now=NOW + timedelta(minutes=2)).segments_failed == []
        (failing,) = status_report(session)["segments_failing"]
        assert failing["segment"] == "buyers" and "more than the cap" in failing["error"]
