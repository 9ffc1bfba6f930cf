"""The vocabulary shared by the expression checker's parts: kinds, typed nodes, errors."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlglot import exp


class Kind(enum.StrEnum):
    """The type of an expression, as far as rules care."""

    NUM = "number"
    TEXT = "text"
    BOOL = "boolean"
    TS = "timestamp"
    DATE = "date"
    INTERVAL = "interval"
    JSON = "json"
    NULL = "null"


@dataclass(frozen=True)
class Typed:
    """A normalized node and its kind."""

    node: exp.Expr
    kind: Kind


class ExpressionError(Exception):
    """An expression is not allowed; ``line``/``col`` locate it inside the expression."""

    def __init__(self, message: str, node: exp.Expr | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.start = start_of(node) if node is not None else None
        """Offset of the offending node in the expression's text, when sqlglot placed it."""
        self.line: int | None = None
        self.col: int | None = None

    def locate(self, text: str) -> ExpressionError:
        """Set ``line`` and ``col`` (1-based) from ``start`` within ``text``; returns self."""
        if self.start is not None and 0 <= self.start <= len(text):
            line_start = text.rfind("\n", 0, self.start) + 1
            self.line = text.count("\n", 0, self.start) + 1
            self.col = self.start - line_start + 1
        return self


def start_of(node: exp.Expr) -> int | None:
    """Offset where ``node`` (or the first descendant sqlglot placed) starts, if known."""
    for candidate in node.walk(bfs=False):
        meta = candidate._meta
        if meta and isinstance(meta.get("start"), int):
            return int(meta["start"])
    return None


class Checker(Protocol):
    """What a handler may ask of the checker walking the tree."""

    columns: Mapping[str, Kind]
    """The names the expression may read (lower case) and their kinds."""

    def check(self, node: exp.Expr) -> Typed:
        """Check and normalize ``node``."""
        ...

    def kinds(self, node: exp.Expr, *allowed: Kind, what: str) -> Typed:
        """Check ``node`` and require one of ``allowed`` (or NULL)."""
        ...

    def use(self, column: str) -> Kind:
        """Record a read of profile ``column``; its kind (raises for an unknown column)."""
        ...


Handler = Callable[[Checker, exp.Expr], Typed]

DOUBLE = exp.DataType.build("DOUBLE")
BIGINT = exp.DataType.build("BIGINT")
TIMESTAMPTZ = exp.DataType.build("TIMESTAMPTZ")
DATE = exp.DataType.build("DATE")
