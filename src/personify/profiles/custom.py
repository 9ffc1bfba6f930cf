"""User-defined traits: SQL in the project, run in the warehouse.

A trait is one read-only SELECT returning ``customer_id`` and ``value`` — in ``traits/NAME.sql``
(a first line ``-- dialect: mysql`` says which dialect it is written in) or declared under
``traits.custom`` in ``personify.yml``. Each is checked like any user query (one SELECT over the
warehouse's tables, nothing that reads files), ``NOW()`` / ``CURRENT_DATE`` pinned to ``--now``,
transpiled, and folded into ``customers.traits`` as a JSON object ``{name: value}``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot import exp

from personify.config import Project
from personify.errors import ConfigError, UnsafeQueryError
from personify.warehouse.base import AUTHORING_DIALECT, Warehouse
from personify.warehouse.query import pin_time
from personify.warehouse.safety import check_select

PROFILE_RELATIONS = frozenset({"customers", "customer_data"})
"""What the profile build writes: a trait reading them runs after the rebuild."""
_DIALECT = re.compile(r"^\s*--\s*dialect:\s*([A-Za-z0-9_]+)", re.M)


@dataclass(frozen=True)
class Trait:
    """A user-defined trait, ready to run: its name and its SQL in the authoring dialect."""

    name: str
    sql: str
    where: str
    reads_profiles: bool = False
    """It reads ``customers`` or ``customer_data``: it runs after the profiles are rebuilt, so
    it sees this build's values, not the previous one's."""


def declared(project: Project) -> list[tuple[str, str, str | None, str]]:
    """``(name, sql, dialect, where)`` for every user trait of the project, sorted by name."""
    traits: dict[str, tuple[str, str, str | None, str]] = {}
    folder = project.path(project.config.traits.folder)
    if folder.is_dir():
        for path in sorted(folder.glob("*.sql")):
            text = path.read_text(encoding="utf-8")
            m = _DIALECT.search(text)
            traits[path.stem] = (path.stem, text, m.group(1) if m else None, str(path))
    for item in project.config.traits.custom:
        if item.file is not None:
            path = project.path(item.file)
            if not path.is_file():
                raise ConfigError(
                    f"trait file {item.file} does not exist",
                    file=str(project.file),
                    key=f"traits.custom.{item.name}.file",
                )
            text = path.read_text(encoding="utf-8")
        else:
            text = item.sql or ""
        traits[item.name] = (item.name, text, item.dialect, f"traits.custom.{item.name}")
    return [traits[k] for k in sorted(traits)]


def compile_traits(wh: Warehouse, project: Project) -> list[Trait]:
    """Check and transpile the project's traits (to the authoring dialect)."""
    out: list[Trait] = []
    allowed = wh.relations()
    for name, sql, dialect, where in declared(project):
        try:
            query = check_select(
                sql, dialect=dialect or wh.dialect, allowed=allowed, what=f"trait {name!r}"
            )
        except UnsafeQueryError as e:
            raise UnsafeQueryError(f"{where}: {e.message}", hint=e.hint) from None
        pinned = pin_time(query)
        reads = any(t.name.lower() in PROFILE_RELATIONS for t in query.find_all(exp.Table))
        out.append(Trait(name, pinned.sql(dialect=AUTHORING_DIALECT), where, reads))
    return out


def traits_sql(traits: list[Trait], scope: str) -> tuple[str, list[object]] | None:
    """SQL giving ``customer_id, traits`` (a JSON object text) for the customers in scope."""
    if not traits:
        return None
    parts = [
        # several rows for a customer: the smallest JSON text by its bytes, on every warehouse
        "SELECT customer_id, CAST(? AS VARCHAR) AS name, "
        'min(CAST(to_json(value) AS VARCHAR) COLLATE "C") '
        f"AS v FROM ({t.sql}) u WHERE customer_id IS NOT NULL AND value IS NOT NULL "
        "GROUP BY customer_id"
        for t in traits
    ]
    sql = (
        "SELECT customer_id, '{' || string_agg(CAST(to_json(name) AS VARCHAR) || ':' || v, ',' "
        f"ORDER BY name) || '}}' AS traits FROM ({' UNION ALL '.join(parts)}) t "
        f"WHERE {scope.format(c='customer_id')} GROUP BY customer_id"
    )
    return sql, [t.name for t in traits]
