"""init, sql, status: the first commands a newcomer runs."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import personify, personify_json


def test_init_then_status_and_sql(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    done = personify("init", str(project))
    assert done.returncode == 0, done.stderr
    assert (project / "personify.yml").is_file()
    assert personify("init", str(project)).returncode != 0  # never overwrites silently

    status = personify_json("status", "--project", str(project))
    assert status["warehouse"]["backend"] == "duckdb"
    assert [s["name"] for s in status["sources"]] == ["web"]
    assert status["tables"]["customers"] == 0

    answer = personify_json("sql", "SELECT count(*) AS n FROM customers", "--project", str(project))
    assert answer["rows"] == [{"n": 0}]
    # relative --project from another folder
    answer = personify_json("sql", "SELECT 1 AS one", "--project", "shop", cwd=tmp_path)
    assert answer["rows"] == [{"one": 1}]


def test_sql_refuses_writes_and_file_reads(project_dir: Path) -> None:
    for query, words in [
        ("DROP TABLE customers", "only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT 1; SELECT 2", "statements"),
    ]:
        done = personify("sql", query, "--project", str(project_dir))
        assert done.returncode != 0
        assert words in done.stderr
        assert done.stdout == ""
    assert personify_json(
        "sql", "SELECT count(*) AS n FROM customers", "--project", str(project_dir)
    )


def test_sql_dialect_and_now(project_dir: Path) -> None:
    seed = (
        "SELECT customer_id, email, purchase_date, engagement_score FROM customer_data "
        "WHERE purchase_date >= DATE_SUB(CURRENT_DATE, INTERVAL 30 DAY) AND engagement_score > 80;"
    )
    answer = personify_json(
        "sql",
        seed,
        "--dialect",
        "mysql",
        "--now",
        "2026-01-31T00:00:00Z",
        "--project",
        str(project_dir),
    )
    assert answer["columns"] == ["customer_id", "email", "purchase_date", "engagement_score"]
    assert "2026-01-31" in answer["sql"]


def test_bad_project_file_is_reported_with_line(project_dir: Path) -> None:
    (project_dir / "personify.yml").write_text("name: shop\nsourcez: []\n")
    done = personify("status", "--project", str(project_dir))
    assert done.returncode == 2
    assert "personify.yml:2: sourcez: unknown key 'sourcez'" in done.stderr


def test_help_is_there_for_newcomers() -> None:
    done = personify("--help")
    assert done.returncode == 0
    for command in ("init", "demo", "run", "sql", "status", "sync", "serve"):
        assert command in done.stdout
    bad_now = personify("status", "--now", "yesterday")
    assert bad_now.returncode == 2 and "ISO 8601" in bad_now.stderr


def test_piped_tables_never_cut_values(project_dir: Path) -> None:
    """Output to a pipe or file is not cut at 80 columns (``8,7…``): a table is as wide as its
    values."""
    columns = ", ".join(
        f"'{n:,}' AS count_number_{i}" for i, n in enumerate(range(9_000_001, 9_000_009))
    )
    done = personify("sql", f"SELECT {columns}", "--project", str(project_dir), env={"COLUMNS": ""})
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    for i, n in enumerate(range(9_000_001, 9_000_009)):
        assert f"{n:,}" in done.stdout and f"count_number_{i}" in done.stdout


def test_status_says_quarantine_reasons_in_words(project_dir: Path, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("id,email\nc-1,ann@x.org\nc-2,not-an-email\nc-3,bob@\n")
    p = ("--project", str(project_dir))
    done = personify("import", str(people), "--table", "customers", "-m", "customer_id=id", *p)
    assert done.returncode == 0, done.stderr
    done = personify("status", *p)
    assert done.returncode == 0, done.stderr
    assert "quarantine: 2 row(s) — invalid_email 2\n" in done.stdout  # not {'invalid_email': 2}


def test_flags_show_no_value_type() -> None:
    """``--json`` takes no value: its help line says nothing like ``<bool>`` (Typer 0.29 did)."""
    done = personify("status", "--help", env={"COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    assert "--json" in done.stdout and "<bool>" not in done.stdout
    assert "<path>" in done.stdout  # an option that takes a value keeps its type


def test_every_command_takes_project(tmp_path: Path) -> None:
    """CONTRACT: every command takes --project — those that create a project as their DIR."""
    made = personify("init", "--project", str(tmp_path / "a"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "a" / "personify.yml").is_file()
    both = personify("init", str(tmp_path / "b"), "--project", str(tmp_path / "c"))
    assert both.returncode == 2 and "name two folders" in both.stderr
    assert personify("init").returncode == 2
    demo = personify("demo", str(tmp_path / "d"), "--project", str(tmp_path / "e"))
    assert demo.returncode == 2 and not (tmp_path / "d").exists()
    key = personify("privacy", "keygen", "--project", str(tmp_path / "a"))
    assert key.returncode == 0 and ":" in key.stdout
