"""The package layout: a stage's private modules (``_name.py``) are its own."""

from __future__ import annotations

import ast
from pathlib import Path

import personify

ROOT = Path(personify.__file__).parent

KNOWN: set[tuple[str, str]] = set()
"""Cross-package private imports not yet moved to a shared module (none left: keep it so)."""


def _private_imports() -> set[tuple[str, str]]:
    found = set()
    for path in ROOT.rglob("*.py"):
        package = path.relative_to(ROOT).parts[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts = name.split(".")
                private = any(part.startswith("_") for part in parts[2:])
                if parts[0] == "personify" and len(parts) > 2 and private and parts[1] != package:
                    found.add((package, name))
    return found


def test_no_package_imports_another_packages_private_module() -> None:
    assert _private_imports() <= KNOWN, "move shared helpers to a public module (warehouse/sqltext)"


def test_journeys_read_sql_text_helpers_from_the_warehouse() -> None:
    assert ("journeys", "personify.offers._sql") not in _private_imports()
