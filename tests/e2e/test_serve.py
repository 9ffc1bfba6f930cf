"""``personify serve`` as real processes on loopback, and every other command working meanwhile.

DuckDB lets one process open the warehouse file: while the server holds it, the other commands
must go through the server. Clients run with PERSONIFY_LOCK_TIMEOUT=2, so a command that did not
forward would fail fast with "in use by another process" instead of passing by luck.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from personify.scaffold import init_project
from personify.warehouse.migrations import MIGRATIONS
from tests.e2e.cli import PERSONIFY, Server, free_port, project_on, start_server
from tests.holder import holding

CLIENT_ENV = {"PERSONIFY_LOCK_TIMEOUT": "2", "PERSONIFY_NO_FORWARD": "0"}


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PERSONIFY, *args],
        cwd=cwd,
        env={**os.environ, **CLIENT_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_json(*args: str, **kw: Any) -> Any:
    done = run(*args, "--json", **kw)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module's read-mostly tests, on a scaffolded DuckDB project."""
    root = tmp_path_factory.mktemp("served")
    project = root / "shop"
    init_project(project)
    server = start_server(project, root / "serve.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(project_dir: Path, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own (on the ``project_dir`` fixture), always stopped afterwards."""
    s = start_server(project_dir, tmp_path / "serve.log")
    try:
        yield s
    finally:
        s.stop()


def forwarded(server: Server) -> dict[str, float]:
    text = server.get("/metrics").text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "personify_forwarded_commands":
            for s in family.samples:
                key = f"{s.labels['command']}:{s.labels['outcome']}"
                out[key] = out.get(key, 0) + s.value
    return out


def test_commands_run_through_the_server(served: Server) -> None:
    p = str(served.project)
    before = forwarded(served)
    answer = run_json("sql", "SELECT count(*) AS n FROM customers", "--project", p)
    assert answer["rows"] == [{"n": 0}]
    status = run_json("status", "--project", p)
    assert status["project"] == "my-shop"
    assert status["warehouse"]["backend"] == "duckdb"
    report = run_json("run", "--project", p, "--now", "2026-01-31T09:00:00Z")
    assert report["now"].startswith("2026-01-31T09:00:00")
    assert [s["name"] for s in report["stages"]][0] == "sync"
    human = run("status", "--project", p)  # human output too, on stdout
    assert human.returncode == 0 and "my-shop" in human.stdout
    refused = run("sql", "DROP TABLE customers", "--project", p)
    assert refused.returncode == 1 and "only SELECT" in refused.stderr and refused.stdout == ""
    after = forwarded(served)
    for key, n in {"sql:ok": 1, "status:ok": 2, "run:ok": 1, "sql:error": 1}.items():
        assert after.get(key, 0) - before.get(key, 0) == n, (key, before, after)


def test_concurrent_commands(served: Server) -> None:
    p = str(served.project)
    commands = [
        ["sql", "SELECT count(*) AS n FROM customers", "--json", "--project", p],
        ["status", "--json", "--project", p],
        ["run", "--json", "--project", p],
        ["sql", "SELECT 2 AS two", "--json", "--project", p],
        ["status", "--json", "--project", p],
        ["run", "--json", "--project", p],
    ]
    env = {**os.environ, **CLIENT_ENV}
    procs = [
        subprocess.Popen(
            [PERSONIFY, *c], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for c in commands
    ]
    try:
        results = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    for command, proc, (out, err) in zip(commands, procs, results, strict=True):
        assert proc.returncode == 0, (command, err)
        json.loads(out)
    assert json.loads(results[3][0])["rows"] == [{"two": 2}]


def test_relative_project_from_another_folder(served: Server) -> None:
    parent, name = served.project.parent, served.project.name
    assert run_json("sql", "SELECT 1 AS one", "--project", name, cwd=parent)["rows"] == [{"one": 1}]
    assert run_json("status", env={"PERSONIFY_PROJECT": name}, cwd=parent)["project"] == "my-shop"
    assert run_json("status", cwd=served.project)["root"] == str(served.project.resolve())
    elsewhere = run("status", "--project", "no-such-folder", cwd=parent)
    assert elsewhere.returncode == 2 and "personify.yml" in elsewhere.stderr


def test_metrics_and_openapi(served: Server) -> None:
    run_json("status", "--project", str(served.project))
    r = served.get("/metrics")
    assert r.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["personify_up"].samples[0].value == 1
    assert families["personify_build_info"].samples[0].labels["version"]
    tables = {s.labels["table"] for s in families["personify_table_rows"].samples}
    assert {"customers", "events", "orders"} <= tables
    assert families["personify_uptime_seconds"].samples[0].value > 0
    assert any(s.value >= 1 for s in families["personify_forwarded_commands"].samples)
    doc = served.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {"/healthz", "/metrics", "/openapi.json", "/_personify/cli"} <= set(doc["paths"])
    health = served.get("/healthz").json()
    latest = MIGRATIONS[-1].version
    assert health["warehouse"] == {"backend": "duckdb", "reachable": True, "schema_version": latest}
    assert served.get("/livez").json()["status"] == "alive"
    ready = served.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert {"/livez", "/readyz"} <= set(doc["paths"])


def test_second_serve_is_refused(served: Server) -> None:
    done = run("serve", "--project", str(served.project), "--port", str(free_port()), timeout=60)
    assert done.returncode != 0
    assert f"already served by process {served.proc.pid}" in done.stderr
    assert served.get("/healthz").status_code == 200  # the first one is unharmed


def test_no_forward_runs_locally_and_meets_the_lock(served: Server) -> None:
    done = run("status", "--project", str(served.project), env={"PERSONIFY_NO_FORWARD": "1"})
    assert done.returncode != 0
    assert "in use by another process" in done.stderr
    assert f"`personify serve` runs on this project (process {served.proc.pid}" in done.stderr
    assert "unset it, or stop the server" in done.stderr
    assert "start `personify serve`" not in done.stderr


def test_sigterm_stops_cleanly(server: Server) -> None:
    state = server.project / ".personify" / "server.json"
    assert state.is_file()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    token = json.loads(state.read_text())["token"]
    run_json("status", "--project", str(server.project))
    assert server.stop(signal.SIGTERM) == 0, server.output()
    assert not state.exists()
    log = server.output()
    assert "stopped by SIGTERM" in log
    assert f"on http://127.0.0.1:{server.port}" in log  # its own address is no one's PII
    assert "Traceback" not in log and "ConnectionResetError" not in log  # helpers exit quietly
    assert token not in log  # the control token never reaches the log
    # the warehouse is free again: commands run locally
    assert run_json("status", "--project", str(server.project))["project"] == "my-shop"


def test_stale_server_file_is_ignored(project_dir: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    state = project_dir / ".personify"
    state.mkdir(exist_ok=True)
    stale = {
        "pid": int(dead.stdout),
        "host": "127.0.0.1",
        "port": free_port(),
        "token": "stale",
        "started_at": "2026-01-01T00:00:00+00:00",
        "instance": "gone",
    }
    (state / "server.json").write_text(json.dumps(stale))
    assert run_json("status", "--project", str(project_dir))["project"] == "my-shop"
    assert not (state / "server.json").exists()


def test_busy_warehouse_without_server(project_dir: Path) -> None:
    run_json("status", "--project", str(project_dir))  # creates the warehouse file
    with holding(project_dir / "warehouse.duckdb") as holder:
        # fails instead of waiting for the holder (``run`` gives up after 120 s); how long it
        # waits is timed in-process (tests/unit/warehouse/test_lock_wait.py): a console
        # script's start-up alone took 17 s at load 13 on the shared machine
        done = run("status", "--project", str(project_dir), env={"PERSONIFY_LOCK_TIMEOUT": "1"})
        assert done.returncode != 0
        assert "in use by another process" in done.stderr
        assert f"process {holder.pid}" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_postgres_projects_are_not_forwarded(postgres_url: str, tmp_path: Path) -> None:
    """PostgreSQL takes any number of processes: no server.json, no control channel."""
    project = project_on(tmp_path / "pg-shop", warehouse=postgres_url)
    server = start_server(project, tmp_path / "serve.log")
    try:
        assert not (project / ".personify" / "server.json").exists()
        status = run_json("status", "--project", str(project))
        assert status["warehouse"]["backend"] == "postgresql"
        assert forwarded(server) == {}
        assert server.get("/healthz").json()["warehouse"]["backend"] == "postgresql"
        r = httpx.post(server.url + "/_personify/cli", json={}, timeout=10, trust_env=False)
        assert r.status_code == 404
        assert server.stop() == 0
    finally:
        server.stop()


CART_JOURNEY = """name: cart_now
trigger: {event: Product Added, key: properties.cart_id, within: 24h}
purpose: email_marketing
steps:
  - wait: 2s
  - send: cart_now
"""


@pytest.mark.timeout(180)
def test_continuous_mode_enters_journeys_and_sends_after_the_wait(
    project_dir: Path, tmp_path: Path
) -> None:
    """A served project: a Product Added enters its journey in the event's real-time pass, and
    the server's tick sends the email once the wait expired — no `personify run`."""
    (project_dir / "journeys" / "cart_now.yml").write_text(CART_JOURNEY)
    (project_dir / "templates" / "cart_now.liquid").write_text(
        '---\nsubject: "Your cart"\nlayout: none\n---\n<p>Hi {{ customer.first_name }}</p>\n'
    )
    env = dict(
        line.split("=", 1) for line in (project_dir / ".env").read_text().splitlines() if line
    )
    server = start_server(project_dir, tmp_path / "serve.log")
    try:
        auth = (env["PERSONIFY_WRITE_KEY"], "")
        with httpx.Client(base_url=server.url, auth=auth, timeout=30, trust_env=False) as http:
            http.post(
                "/v1/identify",
                json={
                    "userId": "u-9",
                    "messageId": "m-identify",
                    "traits": {"email": "ann@example.com", "first_name": "Ann"},
                },
            ).raise_for_status()
            p = str(project_dir)
            deadline = time.monotonic() + 30
            while not run_json("sql", "SELECT customer_id FROM customers", "--project", p)["rows"]:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
            consent = ["consent", "set", "ann@example.com", "--purpose", "email_marketing"]
            assert run(*consent, "--status", "granted", "--project", p).returncode == 0
            added = time.monotonic()
            http.post(
                "/v1/track",
                json={
                    "userId": "u-9",
                    "messageId": "m-added",
                    "event": "Product Added",
                    "properties": {"cart_id": "c-1", "product_id": "p1"},
                },
            ).raise_for_status()
        outbox = project_dir / "outbox"
        while not list(outbox.glob("*.eml")):
            assert time.monotonic() - added < 60, server.output()
            time.sleep(0.1)
        assert time.monotonic() - added >= 2  # not before the wait
        families = {f.name: f for f in text_string_to_metric_families(server.get("/metrics").text)}
        reactions = {
            s.labels["kind"]: s.value for s in families["personify_realtime_reactions"].samples
        }
        assert reactions.get("journey_entered") == 2  # cart_now and the scaffold's abandoned_cart
        assert len(list(outbox.glob("*.eml"))) == 1  # abandoned_cart still waits its hour
        assert families["personify_event_to_profile_seconds"].samples
        status = run_json("status", "--project", p)
        assert status["queues"]["server"]["continuous"] is True
        assert status["queues"]["server"]["applied"] >= 2
        assert "hit_ratio" in status["queues"]["server"]["cache"]
    finally:
        server.stop()
