"""The team's own tables, readable by segments under a local name (``relations:``).

``personify.yml``::

    relations:
      crm_scores: analytics.crm_scores      # schema.table in the warehouse

A segment writes ``SELECT customer_id FROM crm_scores WHERE score > 0.8``: the guard
(:func:`personify.warehouse.safety.check_select`) accepts ``crm_scores`` as it accepts the public
tables, then :func:`qualify` rewrites every reference to it in the checked tree into the
qualified name (``analytics.crm_scores AS crm_scores``) — no view is created, so no DDL and no
lock on the warehouse; what runs is sqlglot's rendering of the rewritten tree. A relation whose
table does not exist fails the segment naming the key in ``personify.yml`` that declares it
(:func:`check_relations` before a refresh, :meth:`Relation.missing` on the engine's refusal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlglot import exp

from personify.config import Project, key_line
from personify.errors import ConfigError, WarehouseError
from personify.warehouse.base import Warehouse


@dataclass(frozen=True)
class Relation:
    """One entry of ``relations:``: a local name for a table of the team's own."""

    name: str
    target: str
    """``schema.table`` or ``database.schema.table``."""
    file: str = "personify.yml"
    line: int | None = None

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.target.split("."))

    def table(self) -> exp.Table:
        """The qualified table, aliased to the local name."""
        parts = self.parts
        catalog, db, name = (None, *parts) if len(parts) == 2 else parts
        return exp.Table(
            this=exp.to_identifier(name),
            db=exp.to_identifier(db),
            catalog=exp.to_identifier(catalog) if catalog else None,
        )

    def missing(self, detail: str = "") -> ConfigError:
        """The error for a relation whose table the warehouse does not have."""
        said = f" ({detail})" if detail else ""
        return ConfigError(
            f"relation {self.name!r} names {self.target}, which the warehouse does not have{said}",
            file=self.file,
            line=self.line,
            key=f"relations.{self.name}",
            hint="create the table, or correct the schema.table name in personify.yml "
            "(PostgreSQL: a schema of the same database; DuckDB: a schema in the warehouse "
            "file)",
        )


def project_relations(project: Project) -> tuple[Relation, ...]:
    """The project's ``relations:``, each with the line of ``personify.yml`` declaring it."""
    relations = project.config.relations
    if not relations:
        return ()
    file = project.file
    return tuple(
        Relation(name, target, file.name, key_line(file, f"relations.{name}"))
        for name, target in relations.items()
    )


def qualify(query: exp.Expr, relations: Iterable[Relation]) -> exp.Expr:
    """``query`` with every table reference to a relation's local name replaced by the
    qualified table, keeping the local name as its alias (so ``crm_scores.score`` still
    resolves). Names a CTE defines are the CTE's, not the relation's. In place; returned."""
    by_name = {r.name.lower(): r for r in relations}
    if not by_name:
        return query
    ctes = {c.alias_or_name.lower() for c in query.find_all(exp.CTE)}
    for table in list(query.find_all(exp.Table)):
        name = table.name.lower()
        if (
            name not in by_name
            or name in ctes
            or table.args.get("db")
            or not isinstance(table.this, exp.Identifier)
        ):
            continue
        qualified = by_name[name].table()
        alias = table.args.get("alias")
        qualified.set("alias", alias.copy() if alias else exp.TableAlias(this=table.this.copy()))
        table.replace(qualified)
    return query


def used(query: exp.Expr, relations: Iterable[Relation]) -> tuple[Relation, ...]:
    """The relations ``query`` (already :func:`qualify`-ed) reads."""
    targets = {r.target.lower(): r for r in relations}
    found: dict[str, Relation] = {}
    for table in query.find_all(exp.Table):
        parts = [p for p in (table.catalog, table.db, table.name) if p]
        key = ".".join(parts).lower()
        if key in targets:
            found[key] = targets[key]
    return tuple(found.values())


def check_relations(wh: Warehouse, relations: Iterable[Relation]) -> None:
    """Raise :meth:`Relation.missing` for the first of ``relations`` whose table the warehouse
    does not have (a ``SELECT … WHERE FALSE`` each: nothing is read)."""
    for relation in relations:
        probe = exp.select(exp.Literal.number(1)).from_(relation.table()).where(exp.false())
        try:
            wh.fetch(probe)
        except WarehouseError as e:
            raise relation.missing(e.message.splitlines()[0][:200]) from None


def missing_in(error: WarehouseError, relations: Mapping[str, Relation]) -> Relation | None:
    """The relation an engine's "no such table" refusal is about, if it is about one."""
    text = error.message.lower()
    if "does not exist" not in text:  # DuckDB's catalog and PostgreSQL's "relation … does not"
        return None
    for relation in relations.values():
        if any(f"name {p.lower()} " in text or f'"{p.lower()}' in text for p in relation.parts):
            return relation
    return None
