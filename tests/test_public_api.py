"""The curated public API: ``personify.__all__`` matches what the package exports."""

from __future__ import annotations

import subprocess
import sys
import types

import personify


def test_all_matches_public_names() -> None:
    # dir(), not vars(): the names resolve on first use (PEP 562), and getattr must resolve each.
    exported = {
        name
        for name in dir(personify)
        if not name.startswith("_")
        and not isinstance(getattr(personify, name), types.ModuleType)
        and name != "annotations"
    }
    assert set(personify.__all__) == exported - {"__version__"}


def test_every_public_name_has_a_docstring() -> None:
    for name in personify.__all__:
        assert getattr(personify, name).__doc__, name


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from personify import *", namespace)
    assert {name for name in namespace if name != "__builtins__"} == set(personify.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        personify.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("personify.no_such_name resolved")


def test_importing_the_package_does_not_import_the_pipeline() -> None:
    # Every console-script start imports ``personify``; the pipeline (and the warehouse drivers
    # behind it) are loaded by the commands that need them.
    heavy = ("personify.pipeline", "duckdb", "pyarrow")
    code = f"import sys, personify; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_loads_no_warehouse_layer() -> None:
    # ``personify --help`` (and the parsing every command starts with) reads no data: the
    # warehouse drivers, Arrow and the SQL parser load when a command needs them.
    heavy = ("personify.session", "personify.pipeline", "duckdb", "pyarrow", "sqlglot", "numpy")
    code = (
        "import sys\n"
        "from personify.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Usage" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_sql_command_defaults_are_the_query_layers() -> None:
    from personify.cli.commands import sql
    from personify.warehouse import query

    assert (sql.DEFAULT_MAX_ROWS, sql.DEFAULT_TIMEOUT_S) == (
        query.DEFAULT_MAX_ROWS,
        query.DEFAULT_TIMEOUT_S,
    )
