"""Encrypted fields as a user runs them: a CRM file imported and `personify run`, then the
warehouse file itself (opened directly, not through Personify) holds none of the people's
addresses, phones or names in any table — records, identity graph and provenance included —
while ``personify profile EMAIL``, ``personify sql`` and ``personify segments preview`` show
plain values to whoever may see them, and masks with ``--mask``."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from personify.privacy.crypto import new_key
from personify.warehouse.schema import TABLES
from tests.e2e.cli import personify, personify_json

NOW = "2026-02-10T00:00:00Z"
ENV = {
    "PERSONIFY_SECRET_KEY": "e2e-secret",
    "PERSONIFY_ADMIN_TOKEN": "adm_e2e-0123456789abcdefghij",
    "PERSONIFY_WRITE_KEY": "w",
    "PERSONIFY_ENCRYPTION_KEYS": f"k1:{new_key()}",
}
PLAIN = ("ann.cipher@", "annabella", "cipherton", "98 76 54", "698765432", "bob.cipher@")


def _plain_in_file(path: Path) -> list[str]:
    found = []
    with duckdb.connect(str(path), read_only=True) as con:
        for t in TABLES:
            cols = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in t.column_names)
            for row in con.execute(f'SELECT {cols} FROM "{t.name}"').fetchall():
                text = " ".join(str(v) for v in row if v is not None).lower()
                found += [f"{t.name}: {p}" for p in PLAIN if p in text]
    return sorted(set(found))


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a hang guard: at load 16 this test passed the suite's 300 s default
def test_encrypted_everywhere_plain_where_allowed(project_dir: Path, tmp_path: Path) -> None:
    p = str(project_dir)
    config = project_dir / "personify.yml"
    config.write_text(
        config.read_text() + "\nprivacy:\n  encryption_keys: ${PERSONIFY_ENCRYPTION_KEYS}\n"
        "  encrypted_fields: [customers.email, customers.phone, customers.first_name, "
        "customers.last_name]\n"
    )
    (project_dir / "segments" / "everyone.sql").write_text(
        "-- name: everyone\nSELECT customer_id, email, first_name FROM customers\n"
    )
    people = tmp_path / "crm.csv"
    people.write_text(
        "id,email,first_name,last_name,phone\n"
        "c-ann,Ann.Cipher@Example.org,Annabella,Cipherton,+33 6 98 76 54 32\n"
        "c-bob,bob.cipher@example.org,Bob,,\n"
    )
    personify_json(
        "import", str(people), "--table", "customers", "--source", "crm", "-m",
        "customer_id=id", "--project", p, "--now", NOW, env=ENV,
    )  # fmt: skip
    done = personify("run", "--project", p, "--now", NOW, env=ENV)
    assert done.returncode == 0, done.stderr
    assert _plain_in_file(project_dir / "warehouse.duckdb") == []

    profile = personify_json("profile", "ann.cipher@example.org", "--project", p, env=ENV)
    assert profile["profile"]["last_name"] == "Cipherton"
    assert {"kind": "email", "value": "ann.cipher@example.org"}.items() <= {
        k: v for i in profile["identities"] if i["kind"] == "email" for k, v in i.items()
    }.items()

    query = "SELECT customer_id, email, phone FROM customers ORDER BY email IS NULL, customer_id"
    rows = personify_json("sql", query, "--project", p, env=ENV)["rows"]
    assert {r["email"] for r in rows} == {"ann.cipher@example.org", "bob.cipher@example.org"}
    masked = personify_json("sql", query, "--mask", "--project", p, env=ENV)["rows"]
    assert {r["email"] for r in masked} == {"***@example.org"}
    observed = personify_json(
        "sql",
        "SELECT DISTINCT value FROM profile_observations WHERE field = 'first_name'",
        "--project",
        p,
        env=ENV,
    )["rows"]
    assert {r["value"] for r in observed} == {"Annabella", "Bob"}

    preview = personify_json("segments", "preview", "everyone", "--project", p, env=ENV)
    assert {r["email"] for r in preview["sample"]} == {
        "ann.cipher@example.org",
        "bob.cipher@example.org",
    }
    assert _plain_in_file(project_dir / "warehouse.duckdb") == []
