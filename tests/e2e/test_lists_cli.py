"""``personify lists`` and ``relations:`` from the command line: upload a list, read it from a
segment, see the quarantined rows, upload again (nothing changes), replace, delete; a segment over
a relation of the team's own table."""

from __future__ import annotations

from pathlib import Path

import duckdb

from tests.e2e.cli import personify, personify_json


def test_upload_a_list_and_segment_on_it(project_dir: Path, tmp_path: Path) -> None:
    p = ("--project", str(project_dir))
    data = tmp_path / "vip.csv"
    data.write_text("Email,Name\nann@example.org,Ann\nnope,X\nBOB@example.org,Bob\n")
    first = personify_json("lists", "upload", "vip_2026", "vip.csv", "--column", "Email", *p,
                           cwd=tmp_path)  # fmt: skip
    assert first["counts"]["rows_added"] == 2 and first["counts"]["rows_quarantined"] == 1
    again = personify_json("lists", "upload", "vip_2026", str(data), "-c", "Email", *p)
    assert again["counts"]["rows_added"] == 0 and again["counts"]["already_uploaded"] == 1

    shown = personify("lists", "upload", "vip_2026", str(data), "-c", "Email", *p)
    assert shown.returncode == 0 and "rows quarantined" in shown.stdout
    bad = personify_json(
        "sql", "SELECT location, reason FROM quarantine WHERE source = 'list:vip_2026'", *p
    )["rows"]
    assert bad == [{"location": f"{data}:3", "reason": "invalid_email"}]

    (project_dir / "segments" / "vip.sql").write_text(
        "-- dialect: mysql\nSELECT customer_id FROM list_customers WHERE list = 'vip_2026'\n"
    )
    preview = personify_json("segments", "preview", "vip", *p)
    assert preview["size"] == 0  # nobody is a customer yet: matched when read

    listed = personify_json("lists", "list", *p)["lists"]
    assert [(r["list"], r["members"], r["quarantined"]) for r in listed] == [("vip_2026", 2, 1)]
    info = personify_json("lists", "show", "vip_2026", *p)
    assert info["by_kind"] == {"email": 2} and len(info["uploads"]) == 1

    other = tmp_path / "other.csv"
    other.write_text("email\ncarl@example.org\n")
    replaced = personify_json("lists", "upload", "vip_2026", str(other), "--replace", *p)
    assert replaced["counts"]["rows_removed"] == 2 and replaced["counts"]["members"] == 1

    deleted = personify_json("lists", "delete", "vip_2026", *p)
    assert deleted["deleted"]["members"] == 1 and deleted["deleted"]["quarantined"] == 1
    assert personify_json("lists", "list", *p)["lists"] == []


def test_list_mistakes_name_the_problem(project_dir: Path, tmp_path: Path) -> None:
    p = ("--project", str(project_dir))
    data = tmp_path / "two.csv"
    data.write_text("a,b\nx,y\n")
    done = personify("lists", "upload", "l", str(data), *p)
    assert done.returncode != 0 and "which column holds the emails? (columns: a, b)" in done.stderr
    done = personify("lists", "upload", "l", str(data), "--column", "c", *p)
    assert done.returncode != 0 and "no column 'c' (columns: a, b)" in done.stderr
    done = personify("lists", "upload", "l", str(data), "--column", "a", "--kind", "shoe", *p)
    assert done.returncode != 0 and "unknown identifier kind 'shoe'" in done.stderr
    done = personify("lists", "show", "nope", *p)
    assert done.returncode != 0 and "no list named 'nope'" in done.stderr


def test_a_json_lines_list_with_blocked_values(project_dir: Path, tmp_path: Path) -> None:
    p = ("--project", str(project_dir))
    data = tmp_path / "vip.ndjson"
    data.write_text(
        '{"email": "ann@example.org"}\n{"email": "test@example.com"}\n{oops\n'
        '{"email": "bob@example.org"}\n'
    )
    done = personify_json("lists", "upload", "vip", str(data), *p)["counts"]
    assert (done["rows_read"], done["rows_added"], done["rows_quarantined"]) == (4, 2, 2)
    assert done["rows_blocked"] == 1
    bad = personify_json(
        "sql", "SELECT location, reason FROM quarantine WHERE source = 'list:vip' ORDER BY 1", *p
    )["rows"]
    assert bad == [
        {"location": f"{data}:2", "reason": "blocked_value"},
        {"location": f"{data}:3", "reason": "malformed_json"},
    ]
    shown = personify("lists", "upload", "vip", str(data), *p)
    assert "rows_blocked" in shown.stdout and "rows quarantined" in shown.stdout
    helped = personify("lists", "upload", "--help")
    assert ".jsonl" in helped.stdout and "identity.blocked" in " ".join(helped.stdout.split())


def test_a_segment_reads_a_relation(project_dir: Path) -> None:
    p = ("--project", str(project_dir))
    con = duckdb.connect(str(project_dir / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA analytics")
    con.execute("CREATE TABLE analytics.crm_scores (customer_id VARCHAR, score DOUBLE)")
    con.execute("INSERT INTO analytics.crm_scores VALUES ('c1', 0.9), ('c2', 0.1)")
    con.close()
    config = project_dir / "personify.yml"
    config.write_text(
        config.read_text() + "relations:\n  crm_scores: analytics.crm_scores\n  gone: x.y\n"
    )
    rows = personify_json("sql", "SELECT customer_id FROM crm_scores WHERE score > 0.5", *p)
    assert rows["rows"] == [{"customer_id": "c1"}]
    (project_dir / "segments" / "likely.sql").write_text(
        "SELECT customer_id FROM crm_scores WHERE score > 0.5\n"
    )
    preview = personify_json("segments", "preview", "likely", *p)
    assert preview["size"] == 1 and "analytics.crm_scores" in preview["sql"]
    (project_dir / "segments" / "gone.sql").write_text("SELECT customer_id FROM gone\n")
    done = personify("segments", "preview", "gone", *p)
    assert done.returncode != 0
    assert "relations.gone: relation 'gone' names x.y, which the warehouse does not have" in (
        " ".join(done.stderr.split())
    )
