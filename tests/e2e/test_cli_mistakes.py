"""A user's mistakes get a clear error (what is wrong, what to do) and the README's exit codes
(2: usage or configuration), never a Python traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.cli import CART, RECS, personify


def _usage_error(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


def _one_customer(root: Path, tmp_path: Path) -> None:
    """Ann (customer c-1), imported and resolved as a user would."""
    people = tmp_path / "people.csv"
    people.write_text("id,email,first_name\nc-1,ann@x.org,Ann\n")
    p = ("--project", str(root))
    done = personify("import", str(people), "--table", "customers", "-m", "customer_id=id", *p)
    assert done.returncode == 0, done.stderr
    assert personify("run", *p).returncode == 0


def test_sql_option_mistakes_are_usage_errors(project_dir: Path) -> None:
    p = ("--project", str(project_dir))
    _usage_error(
        personify("sql", "SELECT 1", "--dialect", "klingon", *p),
        "unknown dialect 'klingon'",
        "postgres",
    )
    _usage_error(personify("sql", "SELECT 1", "--max-rows", "-1", *p), "--max-rows")
    _usage_error(personify("sql", "SELECT 1", "--timeout", "-5", *p), "--timeout")
    done = personify("sql", "SELECT 1 AS one", "--dialect", "MySQL", "--json", *p)
    assert done.returncode == 0, done.stderr


def test_out_into_a_folder_not_there_yet_is_created(project_dir: Path, tmp_path: Path) -> None:
    _one_customer(project_dir, tmp_path)
    p = ("--project", str(project_dir))
    new = tmp_path / "not" / "there"
    done = personify("privacy", "export", "c-1", "--out", str(new / "export.json"), *p)
    assert done.returncode == 0, done.stderr
    assert json.loads((new / "export.json").read_text())["customer_id"].startswith("cus_")
    variables = tmp_path / "vars.json"
    discount = {"code": "SAVE-K7Q2", "label": "10% off", "expires_at": "1 March"}
    variables.write_text(
        json.dumps({"cart": CART, "recommendations": RECS, "discount": discount, "currency": "€"})
    )
    done = personify(
        "render", "abandoned_cart", "-c", "c-1", "--vars", str(variables),
        "--out", str(new / "mail" / "cart.html"), *p,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Trail Boot" in (new / "mail" / "cart.html").read_text()
    done = personify("report", "journeys", "--out", str(new / "j" / "report.html"), *p)
    assert done.returncode == 0, done.stderr
    assert (new / "j" / "report.html").is_file()
    done = personify("report", "quality", "--out", str(new / "q" / "quality.html"), *p)
    assert done.returncode == 0, done.stderr
    assert (new / "q" / "quality.html").is_file()


def test_out_that_cannot_be_a_file_is_refused_before_the_work(
    project_dir: Path, tmp_path: Path
) -> None:
    _one_customer(project_dir, tmp_path)
    p = ("--project", str(project_dir))
    _usage_error(personify("privacy", "export", "c-1", "--out", str(tmp_path), *p), "is a folder")
    audit = personify("audit", "--json", *p)
    assert audit.returncode == 0, audit.stderr
    assert "export" not in audit.stdout  # refused before anything was exported
    blocker = tmp_path / "afile"
    blocker.write_text("")
    _usage_error(
        personify("report", "quality", "--out", str(blocker / "q.html"), *p),
        f"{blocker} is a file, not a folder",
    )


def test_render_vars_file_missing_or_not_json(project_dir: Path, tmp_path: Path) -> None:
    p = ("--project", str(project_dir))
    missing = tmp_path / "missing.json"
    _usage_error(
        personify("render", "abandoned_cart", "-c", "c-1", "--vars", str(missing), *p),
        f"cannot read {missing}",
    )
    broken = tmp_path / "broken.json"
    broken.write_text("[1,2")
    _usage_error(
        personify("render", "abandoned_cart", "-c", "c-1", "--vars", str(broken), *p),
        "is not JSON",
        "line 1, column 5",
    )


def test_init_on_a_file_or_a_folder_it_cannot_make(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")
    _usage_error(personify("init", str(afile)), "is a file, not a folder")
    _usage_error(personify("init", "/proc/nope"), "cannot create the folder /proc/nope")


def test_values_outside_the_allowed_ones_are_usage_errors(project_dir: Path) -> None:
    p = ("--project", str(project_dir))
    _usage_error(
        personify("audit", "--action", "bogus", *p),
        "unknown action 'bogus'",
        "profile_read, export, erase, consent",
    )
    _usage_error(
        personify("consent", "set", "c-1", "--purpose", "email_marketing", "--status", "maybe", *p),
        "unknown consent status 'maybe'",
        "granted, revoked",
    )


def test_serve_on_an_address_the_machine_lacks_is_a_usage_error(project_dir: Path) -> None:
    # 192.0.2.0/24 is TEST-NET-1: documentation only, never a local address
    done = personify("serve", "--host", "192.0.2.1", "--port", "0", "--project", str(project_dir))
    _usage_error(done, "--host: 192.0.2.1 is not an address of this machine", "127.0.0.1")


def test_errors_about_the_project_file_name_it(project_dir: Path) -> None:
    p = ("--project", str(project_dir))
    worker = personify("serve", "--role", "worker", *p)
    _usage_error(worker, "error: personify.yml: bus: --role worker needs a message bus")
    rotate = personify("privacy", "rotate-keys", *p)
    _usage_error(rotate, "error: personify.yml: privacy.encryption_keys: no encryption key ring")
    assert "<config>" not in worker.stderr + rotate.stderr


def test_a_key_checked_after_loading_is_named_with_its_line(project_dir: Path) -> None:
    """The key ring is read when a command needs it, after the project loaded: its error still
    names the file's line."""
    config = project_dir / "personify.yml"
    lines = config.read_text().count("\n")
    config.write_text(config.read_text() + '\nprivacy:\n  encryption_keys: "k1:nope"\n')
    done = personify("privacy", "rotate-keys", "--project", str(project_dir))
    _usage_error(done, f"personify.yml:{lines + 3}: privacy.encryption_keys: encryption key #1")


def test_a_token_name_used_twice_is_refused(project_dir: Path) -> None:
    config = project_dir / "personify.yml"
    lines = config.read_text().count("\n")
    config.write_text(
        config.read_text() + "\nadmin_tokens:\n"
        "  - {name: marketing, token: t-1-0123456789abcdefghij, scopes: [console]}\n"
        "  - {name: marketing, token: t-2-0123456789abcdefghij, scopes: [console, profiles:read]}\n"
    )
    done = personify("status", "--project", str(project_dir))
    _usage_error(
        done,
        f"personify.yml:{lines + 4}: admin_tokens[1].name",
        "already named 'marketing'",
        "give this token another name",
    )
