"""The privacy commands in-process: consent request (double opt-in link), keygen and rotate-keys,
audit, and ``personify sql --mask``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dotenv import dotenv_values
from typer.testing import CliRunner

from personify import clock
from personify.cli.app import _register, app
from personify.config import load_project
from personify.identity import identity_stage
from personify.profiles import profiles_stage
from personify.session import Session
from personify.sources.files import import_file

NOW = "2026-03-01T12:00:00Z"


@pytest.fixture
def project(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _register()
    monkeypatch.setenv("PERSONIFY_NO_FORWARD", "1")
    for key, value in dotenv_values(project_dir / ".env").items():
        if value is not None:
            monkeypatch.setenv(key, value)
    with Session(load_project(project_dir)) as s, clock.frozen(clock.parse_instant(NOW)):
        data = project_dir / "crm.csv"
        data.write_text("id,email,first_name\nc1,ann@example.org,Ann\n", encoding="utf-8")
        import_file(s, data, table="customers", mapping={"customer_id": "id"}, source_name="crm")
        identity_stage(s)
        profiles_stage(s)
    return project_dir


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_request_keygen_rotate_audit_mask(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = str(project)
    asked = json.loads(
        run(
            "consent",
            "request",
            "ann@example.org",
            "--purpose",
            "email_marketing",
            "--project",
            p,
            "--now",
            NOW,
            "--json",
        )
    )
    assert asked["pending"] and "/v1/privacy/confirm/" in asked["confirmation_url"]
    assert asked["email"]["status"] == "sent"
    assert len(list((project / "outbox").glob("*.eml"))) == 1
    shown = json.loads(run("consent", "show", "ann@example.org", "--project", p, "--json"))
    assert shown["current"] == [] and [h["status"] for h in shown["history"]] == ["pending"]

    key = run("privacy", "keygen", "--id", "k9").strip()
    assert key.startswith("k9:") and len(key) > 40
    monkeypatch.setenv("PERSONIFY_ENCRYPTION_KEYS", key)
    with (project / "personify.yml").open("a") as f:
        f.write("privacy:\n  encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS}\n  mask_sql: true\n")
    run(
        "consent",
        "set",
        "ann@example.org",
        "--purpose",
        "email_marketing",
        "--status",
        "granted",
        "--form",
        "https://shop/signup",
        "--project",
        p,
        "--now",
        NOW,
    )
    rotated = json.loads(run("privacy", "rotate-keys", "--project", p, "--json"))
    assert rotated["active_key"] == "k9"
    forms = json.loads(
        run(
            "sql",
            "SELECT form FROM consent_history WHERE form IS NOT NULL",
            "--project",
            p,
            "--json",
        )
    )["rows"]
    assert forms and all(r["form"].startswith("enc1:k9:") for r in forms)

    masked = json.loads(
        run("sql", "SELECT email, first_name FROM customers", "--project", p, "--json")
    )["rows"]
    assert masked == [{"email": "***@example.org", "first_name": "A***"}]
    plain = json.loads(
        run("sql", "SELECT email FROM customers", "--no-mask", "--project", p, "--json")
    )["rows"]
    assert plain == [{"email": "ann@example.org"}]

    audit = json.loads(run("audit", "--project", p, "--json"))["entries"]
    assert [e["detail"]["status"] for e in audit] == ["granted", "pending"]
    human = run("audit", "--project", p)
    assert "consent" in human and "ann@" not in human


def test_audit_verify_masked_export_and_encrypted_fields(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = str(project)
    run(
        "consent",
        "set",
        "ann@example.org",
        "--purpose",
        "p",
        "--status",
        "granted",
        "--project",
        p,
        "--now",
        NOW,
    )
    masked = json.loads(run("privacy", "export", "ann@example.org", "--mask", "--project", p))
    assert masked["masked"] and masked["profile"]["email"] == "***@example.org"
    verified = json.loads(run("audit", "--verify", "--project", p, "--json"))
    assert verified["ok"] and verified["entries"] == 2 and verified["head_hash"]
    assert "intact" in run("audit", "--verify", "--project", p)
    with Session(load_project(project)) as s:  # tampering past Personify's guard
        s.warehouse._cursor().execute(  # type: ignore[attr-defined]
            "UPDATE audit_log SET actor = 'x' WHERE seq = 1"
        )
    broken = CliRunner().invoke(app, ["audit", "--verify", "--project", p])
    assert broken.exit_code == 1 and "altered" in broken.output

    # encrypted customers columns: sealed by `personify run`'s privacy stage, found by email
    monkeypatch.setenv("PERSONIFY_ENCRYPTION_KEYS", run("privacy", "keygen").strip())
    with (project / "personify.yml").open("a") as f:
        f.write(
            "privacy:\n  encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS}\n"
            "  encrypted_fields: [customers.email, customers.first_name]\n"
        )
    rotated = json.loads(run("privacy", "rotate-keys", "--project", p, "--json"))
    assert rotated["rewritten"]["customers.email"] == 1
    assert rotated["rewritten"]["blind index entries"] == 1
    stored = json.loads(
        run("sql", "SELECT email FROM customers", "--no-mask", "--project", p, "--json")
    )["rows"]
    assert stored[0]["email"].startswith("enc1:")
    profile = json.loads(run("profile", "ann@example.org", "--project", p, "--json"))
    assert profile["profile"]["email"] == "ann@example.org"
    assert profile["profile"]["first_name"] == "Ann"
