"""``/livez`` and ``/readyz`` in-process: liveness never touches the warehouse; readiness fails,
with its reasons, on a closed or hung warehouse, a schema behind, a plan file that quarantines."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from tests.e2e.cli import project_on
from tests.unit.server.asgi_client import AppClient

from personify.config import load_project
from personify.server import probes
from personify.server.app import create_app
from personify.session import Session
from personify.warehouse.migrations import LEDGER, MIGRATIONS


@pytest.fixture
def session(project_dir: Path) -> Iterator[Session]:
    s = Session(load_project(project_dir))
    try:
        yield s
    finally:
        s.close()


def _checks(body: dict[str, object]) -> dict[str, bool]:
    checks = body["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c["ok"] for c in checks}


def test_ready_and_alive(session: Session) -> None:
    client = AppClient(create_app(session))
    live = client.get("/livez")
    assert live.status_code == 200
    assert live.json()["status"] == "alive" and live.json()["uptime_seconds"] >= 0
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "ready" and "error" not in body and body["problems"] == []
    assert _checks(body) == {"warehouse": True, "schema": True, "tracking_plan": True}
    doc = client.get("/openapi.json").json()
    assert doc["paths"]["/readyz"]["get"]["responses"]["503"]
    assert {"/livez", "/readyz", "/healthz"} <= set(doc["paths"])


def test_a_closed_warehouse_is_not_ready_but_alive(session: Session) -> None:
    client = AppClient(create_app(session))
    session.warehouse.close()  # closed underneath the server
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "not_ready"
    assert _checks(body) == {"warehouse": False, "tracking_plan": True}  # no schema to look at
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("warehouse: the warehouse does not answer")
    assert client.get("/livez").status_code == 200
    assert client.get("/healthz").status_code == 503  # (as before)


def test_a_schema_behind_is_not_ready(session: Session) -> None:
    client = AppClient(create_app(session))
    latest = max(m.version for m in MIGRATIONS)
    # a warehouse restored from a backup older than this Personify
    session.warehouse.execute(f"DELETE FROM {LEDGER} WHERE version = ?", [latest])
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert _checks(ready.json()) == {"warehouse": True, "schema": False, "tracking_plan": True}
    assert f"needs {latest}" in ready.json()["error"]["message"]


def test_tracking_plan_files(project_dir: Path) -> None:
    """A file whose events are quarantined fails readiness, naming it; a live edit that breaks a
    good file keeps its last good version: ready, the file listed in ``problems``."""
    plan = project_dir / "tracking-plan"
    plan.mkdir(exist_ok=True)
    broken = plan / "Order Completed.json"
    broken.write_text('{"type": "object",')
    good = plan / "Signed Up.json"
    good.write_text('{"type": "object"}')
    with Session(load_project(project_dir)) as session:
        client = AppClient(create_app(session))
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert _checks(ready.json())["tracking_plan"] is False
        message = ready.json()["error"]["message"]
        assert "tracking-plan/Order Completed.json" in message and "quarantined" in message
        assert "Signed Up" not in message
        broken.write_text('{"type": "object"}')  # fixed …
        good.write_text('{"type": "object", "required": ')  # … and another broken live
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).status_code != 200:  # (re-read within 2 s)
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.3)
        body = ready.json()
        assert _checks(body)["tracking_plan"] is True
        assert len(body["problems"]) == 1
        assert (
            "Signed Up.json" in body["problems"][0] and "last good version" in body["problems"][0]
        )


@pytest.mark.postgres
def test_a_hung_warehouse_answers_in_time_and_holds_one_thread(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection locks the migrations ledger: the check hangs on it. Probes answer 503
    after READY_TIMEOUT, all waiting on the one check; ready again once the lock goes."""
    project = project_on(tmp_path / "pg", warehouse=postgres_url)
    schema = postgres_url.rsplit("schema=", 1)[1]
    with Session(load_project(project)) as session:
        session.warehouse  # opened and migrated first, as serve does (on a loaded machine
        # the migrations alone took longer than READY_TIMEOUT on the prober's thread)
        client = AppClient(create_app(session))
        assert client.get("/readyz").status_code == 200
        monkeypatch.setattr(probes, "READY_TIMEOUT", 1.0)
        threads = sum(t.name == "personify-readyz" for t in threading.enumerate())
        with psycopg.connect(postgres_url.split("?", 1)[0]) as lock:
            lock.execute(f'LOCK TABLE "{schema}".{LEDGER} IN ACCESS EXCLUSIVE MODE')
            answers = []
            for _ in range(3):
                started = time.monotonic()
                ready = client.get("/readyz")
                answers.append(time.monotonic() - started)
                assert ready.status_code == 503
                assert "did not answer within 1 s" in ready.json()["error"]["message"]
            assert max(answers) < 10
            assert client.get("/livez").status_code == 200
            assert sum(t.name == "personify-readyz" for t in threading.enumerate()) == threads
            lock.rollback()
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.levelno, record.getMessage()))


def test_probes_are_access_logged_at_debug_unless_they_fail(session: Session) -> None:
    """Kubernetes asks every few seconds: a probe that succeeds is a DEBUG line, one that fails
    (503) and every other route stay at INFO."""
    access = logging.getLogger("personify.server.access")
    records = _Records()
    access.addHandler(records)
    level = access.level
    access.setLevel(logging.DEBUG)
    try:
        client = AppClient(create_app(session))
        for path in ("/livez", "/readyz", "/healthz", "/metrics", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        session.warehouse.close()  # not ready any more
        assert client.get("/readyz").status_code == 503
    finally:
        access.removeHandler(records)
        access.setLevel(level)
    levels = {" ".join(message.split(" ")[1:3]): n for n, message in records.seen}
    assert levels == {
        "/livez 200": logging.DEBUG,
        "/readyz 200": logging.DEBUG,
        "/healthz 200": logging.DEBUG,
        "/metrics 200": logging.DEBUG,
        "/openapi.json 200": logging.INFO,
        "/readyz 503": logging.INFO,
    }


def test_shutting_down_is_not_ready_without_checking(session: Session) -> None:
    app = create_app(session)
    client = AppClient(app)
    assert client.get("/readyz").status_code == 200
    app.state.personify.shutting_down = True  # (SIGTERM: set by the runner)
    session.warehouse.close()  # no check runs: answered from memory
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "shutting_down" and body["checks"] == []
    assert body["error"]["code"] == "shutting_down"
    assert client.get("/livez").status_code == 200


def test_healthz_and_readyz_share_one_warehouse_check(session: Session) -> None:
    """``/healthz`` runs ``/readyz``'s warehouse check: the same words when the warehouse does not
    answer, and a schema behind this Personify is ``degraded`` with what to do (it said ``ok``)."""
    client = AppClient(create_app(session))
    latest = max(m.version for m in MIGRATIONS)
    before = max(m.version for m in MIGRATIONS if m.version < latest)  # (numbers have gaps)
    session.warehouse.execute(f"DELETE FROM {LEDGER} WHERE version = ?", [latest])
    health = client.get("/healthz")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "degraded"
    assert body["warehouse"]["schema_version"] == before
    said = client.get("/readyz").json()["checks"][1]["detail"]
    assert body["problems"] == [said] and f"needs {latest}" in said

    session.warehouse.close()  # closed underneath the server
    health = client.get("/healthz")
    ready = client.get("/readyz").json()
    assert health.status_code == 503
    # (the words: the prober's thread has a connection of its own, the engine's may differ)
    for said in (health.json()["error"]["message"], ready["checks"][0]["detail"]):
        assert said.startswith("the warehouse does not answer (") and "closed" in said
