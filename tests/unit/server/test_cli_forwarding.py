"""Forwarding decisions and argv rewriting (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main

from personify.cli import forward
from personify.cli.forward import plan_forward, rewrite_argv, scan_argv

CWD = Path("/work/here")


def plan(*argv: str, env: dict[str, str] | None = None) -> forward.Plan | None:
    return plan_forward(list(argv), CWD, env or {})


@pytest.mark.parametrize(
    "argv",
    [
        ["sql", "SELECT 1", "--project", "shop"],
        ["sql", "SELECT 1", "-p", "shop"],
        ["sql", "SELECT 1", "--project=shop"],
        ["sql", "SELECT 1", "-pshop"],
        ["sql", "--project", "shop", "SELECT 1", "--json"],
    ],
)
def test_project_becomes_absolute_in_every_spelling(argv: list[str]) -> None:
    p = plan(*argv)
    assert p is not None
    assert p.command == "sql"
    assert p.project == Path("/work/here/shop")
    assert "shop" not in p.argv
    assert any(a.endswith("/work/here/shop") for a in p.argv)
    assert "SELECT 1" in p.argv  # the query is not a path: untouched


def test_missing_project_is_written_out_from_cwd() -> None:
    p = plan("status", "--json")
    assert p is not None
    assert p.argv == ["status", "--project", "/work/here", "--json"]
    assert p.project == Path("/work/here")


def test_project_from_the_environment_is_written_out() -> None:
    p = plan("run", env={"PERSONIFY_PROJECT": "sub/shop"})
    assert p is not None
    assert p.argv == ["run", "--project", "/work/here/sub/shop"]


def test_absolute_and_home_paths_are_kept() -> None:
    p = plan("status", "--project", "/abs/shop")
    assert p is not None and p.argv == ["status", "--project", "/abs/shop"]


def test_positional_list_and_double_dash() -> None:
    p = plan("sync", "a", "b", "--json")
    assert p is not None
    assert p.argv == ["sync", "--project", "/work/here", "a", "b", "--json"]
    p = plan("sql", "--json", "--", "--not-an-option")
    assert p is not None
    assert p.argv[-1] == "--not-an-option"
    assert p.argv[:3] == ["sql", "--project", "/work/here"]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["sql", "--help"],
        ["init", "x"],
        ["serve", "--port", "1"],
        ["demo"],
        ["no-such-command"],
        ["status", "--no-such-option"],
        ["sql", "SELECT 1", "--project"],  # value missing: let the local run say so
    ],
)
def test_never_forwarded(argv: list[str]) -> None:
    assert plan(*argv) is None


def test_forward_if_served_respects_no_forward(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    called: list[Any] = []
    monkeypatch.setattr(forward, "plan_forward", lambda *a, **k: called.append(a))
    monkeypatch.setenv("PERSONIFY_NO_FORWARD", "1")
    assert forward.forward_if_served(["status"]) is None
    assert called == []


def test_forward_if_served_without_server_runs_locally(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PERSONIFY_NO_FORWARD", raising=False)
    monkeypatch.chdir(tmp_path)
    assert forward.forward_if_served(["status", "--json"]) is None


# A command tree of its own, to pin the generic rules (path arguments, flags, groups).
demo_app = typer.Typer()
nested = typer.Typer()
demo_app.add_typer(nested, name="segments")


@demo_app.command("render")
def _render(
    template: Annotated[Path, typer.Argument()],
    customer: Annotated[str, typer.Option("--customer", "-c")],
    out: Annotated[Path | None, typer.Option("--out", "-o")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    project: Annotated[Path, typer.Option("--project", "-p", envvar="X_PROJECT")] = Path("."),
) -> None:
    """Render."""


@nested.command("show")
def _show(name: str, project: Annotated[Path, typer.Option("--project", "-p")] = Path(".")) -> None:
    """Show."""


ROOT = typer.main.get_command(demo_app)


def test_every_path_argument_is_resolved_against_cwd() -> None:
    argv = ["render", "t.liquid", "-c", "a@b.c", "-vo", "out/x.eml"]
    assert rewrite_argv(argv, CWD, root=ROOT) == [
        "render",
        "--project",
        "/work/here",
        "/work/here/t.liquid",
        "-c",
        "a@b.c",
        "-vo",
        "/work/here/out/x.eml",
    ]
    attached = rewrite_argv(["render", "t", "-c", "c", "-oout.eml"], CWD, root=ROOT)
    assert attached is not None and attached[-1] == "-o/work/here/out.eml"
    assert rewrite_argv(["render", "t", "-c", "c", "--out=o.eml"], CWD, root=ROOT)[-1] == (
        "--out=/work/here/o.eml"
    )


def test_env_option_and_nested_groups() -> None:
    argv = ["render", "t", "--customer", "c"]
    out = rewrite_argv(argv, CWD, environ={"X_PROJECT": "p"}, root=ROOT)
    assert out is not None and out[1:3] == ["--project", "/work/here/p"]
    scan = scan_argv(["segments", "show", "vip"], ROOT)
    assert scan is not None and scan.names == ["segments", "show"]
    p = plan_forward(["segments", "show", "vip"], CWD, {}, root=ROOT)
    assert p is not None
    assert p.argv == ["segments", "show", "--project", "/work/here", "vip"]
    assert p.command == "segments show"
