"""``personify import``: one file into a table from the command line."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.cli import personify, personify_json


def test_import_a_csv_then_again(project_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "crm.csv"
    data.write_text("id,mail\nc1,ann@example.org\nc2,not-an-email\n")
    args = (
        "import",
        "crm.csv",
        "--table",
        "customers",
        "--map",
        "customer_id=id",
        "-m",
        "email=mail",
        "--source",
        "crm",
        "--project",
        str(project_dir),
    )
    shown = personify(*args[:-4], "--source", "crm2", "--project", str(project_dir), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "in customer_records;" in " ".join(shown.stdout.split())
    first = personify_json(*args, cwd=tmp_path)
    assert first["counts"]["rows_loaded"] == 1 and first["counts"]["rows_quarantined"] == 1
    again = personify_json(*args, cwd=tmp_path)
    assert again["counts"]["files_skipped"] == 1 and again["counts"]["rows_read"] == 0
    rows = personify_json(
        "sql",
        "SELECT reason, location FROM quarantine WHERE source = 'crm'",
        "--project",
        str(project_dir),
    )["rows"]
    assert rows == [{"reason": "invalid_email", "location": f"{data}:3"}]


def test_import_mistakes_name_the_problem(project_dir: Path, tmp_path: Path) -> None:
    done = personify(
        "import", str(tmp_path / "nope.csv"), "--table", "customers", "--project", str(project_dir)
    )
    assert done.returncode == 1 and "nope.csv: no such file" in done.stderr
    done = personify("import", str(tmp_path), "--table", "customers", "--project", str(project_dir))
    assert done.returncode == 1 and f"{tmp_path} is a folder, not a file" in done.stderr
    done = personify(
        "import", "x.csv", "--table", "customers", "--map", "oops", "--project", str(project_dir)
    )
    assert done.returncode == 2 and "COLUMN=FIELD" in done.stderr
