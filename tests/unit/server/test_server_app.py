"""The ASGI app in-process: health, metrics, OpenAPI, errors and the control channel's auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.unit.server.asgi_client import AppClient

from personify.config import load_project
from personify.server.app import create_app
from personify.server.protocol import CONTROL_PATH, INSTANCE_HEADER
from personify.session import Session

TOKEN = "test-control-token"


@pytest.fixture
def session(project_dir: Path) -> Iterator[Session]:
    s = Session(load_project(project_dir))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def client(session: Session) -> AppClient:
    return AppClient(create_app(session, control_token=TOKEN, instance="inst-1"))


def cli(client: AppClient, argv: list[str], cwd: Path, token: str | None = TOKEN) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return client.post(CONTROL_PATH, json={"argv": argv, "cwd": str(cwd)}, headers=headers)


def test_healthz(client: AppClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.headers[INSTANCE_HEADER] == "inst-1"
    body = r.json()
    assert body["status"] == "ok"
    assert body["warehouse"]["backend"] == "duckdb"
    assert body["warehouse"]["reachable"] is True
    assert body["warehouse"]["schema_version"] >= 1


def test_healthz_503_when_the_warehouse_is_gone(session: Session) -> None:
    app = create_app(session)
    session.warehouse.close()  # closed underneath the server
    r = AppClient(app).get("/healthz")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "warehouse_unavailable"


def test_errors_are_json(client: AppClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    r = client.post("/healthz")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_metrics_parse_as_prometheus_text(client: AppClient) -> None:
    client.get("/healthz")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["personify_up"].samples[0].value == 1
    rows = {s.labels["table"]: s.value for s in families["personify_table_rows"].samples}
    assert rows["customers"] == 0
    assert families["personify_build_info"].samples[0].labels["warehouse"] == "duckdb"
    assert families["personify_uptime_seconds"].samples[0].value >= 0
    requests = families["personify_http_requests"].samples  # the parser drops "_total"
    assert any(s.labels["route"] == "/healthz" and s.labels["status"] == "200" for s in requests)
    assert "personify_forwarded_commands" in families


def test_openapi_lists_the_routes(client: AppClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert {"/healthz", "/metrics", "/openapi.json", CONTROL_PATH} <= set(doc["paths"])
    assert doc["paths"][CONTROL_PATH]["post"]["security"] == [{"controlToken": []}]
    assert doc["components"]["securitySchemes"]["controlToken"]["scheme"] == "bearer"
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs
    for ref in refs:
        name = ref.removeprefix("#/components/schemas/")
        assert name in doc["components"]["schemas"], ref


def test_no_control_channel_without_a_token(session: Session) -> None:
    c = AppClient(create_app(session))
    assert CONTROL_PATH not in c.get("/openapi.json").json()["paths"]
    assert c.post(CONTROL_PATH, json={}).status_code == 404


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_control_needs_the_token(client: AppClient, tmp_path: Path, token: str | None) -> None:
    r = cli(client, ["status", "--json"], tmp_path, token=token)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = client.post(
        CONTROL_PATH, json={"argv": [], "cwd": "/"}, headers={"authorization": "Basic x"}
    )
    assert r.status_code == 401


def test_control_answers_loopback_only(session: Session, tmp_path: Path) -> None:
    app = create_app(session, control_token=TOKEN)
    r = cli(AppClient(app, client=("203.0.113.7", 4000)), ["status"], tmp_path)
    assert r.status_code == 403


def test_control_runs_a_command_on_the_open_warehouse(
    client: AppClient, session: Session, project_dir: Path
) -> None:
    opened = session.warehouse
    r = cli(
        client,
        ["sql", "SELECT count(*) AS n FROM customers", "--json", "-p", "project"],
        project_dir.parent,
    )
    assert r.status_code == 200
    result = r.json()
    assert result["exit_code"] == 0, result["stderr"]
    assert json.loads(result["stdout"])["rows"] == [{"n": 0}]
    assert session.warehouse is opened  # borrowed, not closed by the command
    assert opened.scalar("SELECT 1") == 1


def test_control_reports_failures_and_usage_errors(client: AppClient, project_dir: Path) -> None:
    r = cli(client, ["sql", "DROP TABLE customers", "--project", str(project_dir)], project_dir)
    result = r.json()
    assert result["exit_code"] == 1
    assert "only SELECT" in result["stderr"]
    assert result["stdout"] == ""
    r = cli(client, ["sql", "--project", str(project_dir)], project_dir)
    result = r.json()
    assert result["exit_code"] == 2
    assert "Missing argument" in result["stderr"]


@pytest.mark.parametrize(
    "body",
    [
        {"argv": ["serve"], "cwd": "/"},
        {"argv": ["init", "x"], "cwd": "/"},
        {"argv": ["--help"], "cwd": "/"},
        {"argv": [], "cwd": "/"},
        {"argv": ["status", "--bogus"], "cwd": "/"},
        {"argv": ["status", "--project", "/elsewhere"], "cwd": "/"},
        {"argv": ["status"], "cwd": "relative"},
        {"argv": "status", "cwd": "/"},
        {"cwd": "/"},
    ],
)
def test_control_rejects_bad_requests(client: AppClient, body: dict[str, object]) -> None:
    r = client.post(CONTROL_PATH, json=body, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"code", "message"}


def test_control_body_limit(client: AppClient) -> None:
    big = {"argv": ["status", "x" * (2 * 1024 * 1024)], "cwd": "/"}
    r = client.post(CONTROL_PATH, json=big, headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_metrics_say_which_alerts_fire(project_dir: Path) -> None:
    with (project_dir / "personify.yml").open("a") as f:
        f.write(
            "\nalerts:\n  - {name: plan_broken, when: tracking_plan_broken}\n"
            "  - {name: runs, when: run_failed}\n"
        )
    (project_dir / "tracking-plan" / "Signed Up.json").write_text("{not json")
    from personify.alerts import check_alerts

    s = Session(load_project(project_dir))
    try:
        assert check_alerts(s).firing == ["plan_broken"]
        text = AppClient(create_app(s, instance="inst-1")).get("/metrics").text
    finally:
        s.close()
    (family,) = [
        f for f in text_string_to_metric_families(text) if f.name == "personify_alert_firing"
    ]
    assert {(x.labels["alert"], x.labels["signal"], x.value) for x in family.samples} == {
        ("plan_broken", "tracking_plan_broken", 1.0),
        ("runs", "run_failed", 0.0),
    }
