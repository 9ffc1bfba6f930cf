"""``personify consent``, ``privacy export``, ``privacy erase`` and ``audit`` as a user runs them:
after the erasure ``personify sql`` finds no trace of the person in any table, no project file
(the compacted warehouse file included) holds their address or name, and re-importing their CRM
row does not make them sendable. The demo, logged at DEBUG, logs no address or phone."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.warehouse.schema import TABLES
from tests.e2e.cli import personify, personify_json

NOW = "2026-02-10T00:00:00Z"
LATER = "2026-02-11T00:00:00Z"
ENV = {
    "PERSONIFY_SECRET_KEY": "e2e-secret",
    "PERSONIFY_ADMIN_TOKEN": "adm_e2e-0123456789abcdefghij",
    "PERSONIFY_WRITE_KEY": "w",
}
MARKERS = ("zorblatt", "ann.privacy@example.org")


def _import(project: Path, path: Path, table: str) -> None:
    mapping = ["-m", "customer_id=id"] if table == "customers" else []
    personify_json(
        "import",
        str(path),
        "--table",
        table,
        "--source",
        "crm",
        *mapping,
        "--project",
        str(project),
        env=ENV,
    )


def _traces(project: Path) -> list[dict[str, object]]:
    """One ``personify sql`` query counting, per table, rows whose text holds a marker."""
    parts = []
    for t in TABLES:
        text = " || '|' || ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '')" for c in t.column_names)
        hit = " OR ".join(f"strpos(lower({text}), '{m}') > 0" for m in MARKERS)
        parts.append(f"SELECT '{t.name}' AS t, count(*) AS n FROM \"{t.name}\" WHERE {hit}")
    query = "SELECT t, n FROM (" + " UNION ALL ".join(parts) + ") x WHERE n > 0"
    return list(personify_json("sql", query, "--project", str(project), env=ENV)["rows"])


@pytest.mark.slow
def test_consent_export_erase_reimport(project_dir: Path, tmp_path: Path) -> None:
    p = str(project_dir)
    (project_dir / "segments" / "everyone.sql").write_text(
        "-- name: everyone\nSELECT customer_id FROM customers\n"
    )
    people = tmp_path / "crm.csv"
    people.write_text(
        "id,email,first_name\nc-ann,Ann.Privacy@example.org,Zorblatt\nc-bob,bob@example.org,Bob\n"
    )
    consents = tmp_path / "consents.csv"
    consents.write_text(
        "customer_id,purpose,channel,status,source,updated_at\n"
        "c-ann,email_marketing,email,granted,crm,2026-01-01T00:00:00Z\n"
        "c-bob,email_marketing,email,granted,crm,2026-01-01T00:00:00Z\n"
    )
    _import(project_dir, people, "customers")
    _import(project_dir, consents, "consents")
    personify_json("run", "--project", p, "--now", NOW, env=ENV)
    sendable = "SELECT email FROM sendable WHERE segment = 'everyone' ORDER BY email"
    rows = personify_json("sql", sendable, "--project", p, env=ENV)["rows"]
    assert [r["email"] for r in rows] == ["ann.privacy@example.org", "bob@example.org"]

    changed = personify_json(
        "consent",
        "set",
        "bob@example.org",
        "--purpose",
        "email_marketing",
        "--status",
        "revoked",
        "--project",
        p,
        "--now",
        NOW,
        env=ENV,
    )
    assert changed["changed"] and not changed["allowed"]
    shown = personify_json("consent", "show", "bob@example.org", "--project", p, env=ENV)
    assert [h["status"] for h in shown["history"]] == ["granted", "revoked"]

    doc = personify_json("privacy", "export", "ann.privacy@example.org", "--project", p, env=ENV)
    assert doc["profile"]["first_name"] == "Zorblatt"
    assert doc["counts"]["customer_records"] == 1 and doc["counts"]["consents"] == 1
    assert "bob@" not in str(doc)

    human = personify(
        "privacy", "erase", "ann.privacy@example.org", "--compact", "--project", p, env=ENV
    )
    assert human.returncode == 0, human.stderr
    assert "customer_records" in human.stdout and "Erased" in human.stdout
    assert _traces(project_dir) == []
    again = personify_json("privacy", "erase", "ann.privacy@example.org", "--project", p, env=ENV)
    assert again["status"] == "already_erased"
    audit = personify_json("audit", "--project", p, env=ENV)["entries"]
    assert [e["action"] for e in audit] == ["erase", "export", "consent"]
    for path in project_dir.rglob("*"):  # the warehouse file too: compacted, no free pages
        if path.is_file():
            data = path.read_bytes().lower()
            assert not any(m.encode() in data for m in MARKERS), path

    # their CRM row comes back in a later export: a customer again, but not sendable
    people2 = tmp_path / "crm-2.csv"
    people2.write_text("id,email,first_name\nc-ann,ann.privacy@example.org,Ann\n")
    _import(project_dir, people2, "customers")
    personify_json("run", "--project", p, "--now", LATER, env=ENV)
    rows = personify_json("sql", sendable, "--project", p, env=ENV)["rows"]
    assert rows == []
    count = (
        "SELECT count(*) AS n FROM segment_memberships m JOIN customers c "
        "ON c.customer_id = m.customer_id WHERE c.email = 'ann.privacy@example.org' "
        "AND m.exited_at IS NULL"
    )
    assert personify_json("sql", count, "--project", p, env=ENV)["rows"] == [{"n": 1}]


@pytest.mark.slow
def test_demo_logs_hold_no_address_or_phone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo run with every logger at DEBUG, unfiltered: not one of the demo's email
    addresses or phone numbers appears in any log record (the log calls themselves are clean;
    the masking filter of ``personify serve`` is only the net under them)."""
    import logging
    import re

    from typer.testing import CliRunner

    from personify.cli.app import _register, app
    from personify.warehouse import connect

    _register()
    monkeypatch.setenv("PERSONIFY_NO_FORWARD", "1")
    caplog.set_level(logging.DEBUG)
    levels = {n: logging.getLogger(n).level for n in list(logging.root.manager.loggerDict)}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    project = tmp_path / "demo"
    try:
        result = CliRunner().invoke(
            app, ["demo", str(project), "--customers", "150", "--now", NOW, "--json"]
        )
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert result.exit_code == 0, result.output
    with connect(f"duckdb:///{project / 'warehouse.duckdb'}") as wh:
        rows = wh.fetch(
            "SELECT email FROM customer_records WHERE email IS NOT NULL UNION "
            "SELECT phone FROM customer_records WHERE phone IS NOT NULL"
        )
    values = {str(r[0]).strip().lower() for r in rows}
    digits = {re.sub(r"\D", "", v)[-9:] for v in values if "@" not in v}
    assert len(values) > 100 and caplog.records
    texts = [f"{r.getMessage()} {r.exc_text or ''}".lower() for r in caplog.records]
    text = "\n".join(texts)
    assert not [v for v in values if "@" in v and v in text]
    flat = [re.sub(r"\D", "", t) for t in texts]
    assert not [d for d in digits if len(d) >= 8 and any(d in f for f in flat)]
