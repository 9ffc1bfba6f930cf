"""Where each target column's value comes from in a file: the mapping, resolved.

A :class:`FileSource` maps target columns to source fields (``a.b`` reaches into nested JSON).
Unmapped target columns are read from a field of the same name — or its camelCase form, as
Segment exports spell them (``messageId`` for ``message_id``). :func:`resolve` turns that into one
:class:`Field` per target column: a SQL expression over the raw batch (run by the validation
engine) and what kind of value it yields.

Identifiers in the generated SQL are quoted; field names never become SQL string literals, and the
JSON Lines structure (which names the fields to extract) is passed as a query parameter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from personify.errors import FileImportError
from personify.warehouse.base import quote
from personify.warehouse.schema import Column, Table

Kind = Literal["text", "json", "typed", "nested"]
"""``text``: a string to parse; ``json``: JSON text already valid; ``typed``: a stored non-text
value (Parquet); ``nested``: a stored struct, list or map (Parquet), serialized as JSON."""

JSON_ROOT = "__j"
"""The column holding each JSON Lines row parsed into a struct."""

DEFAULTS: dict[str, str] = {
    "source": "$source",
    "received_at": "$now",
    "updated_at": "$now",
    "first_seen": "$now",
    "last_seen": "$now",
}
"""Bookkeeping columns filled when they have no value: ``source`` (always) with the source's name;
the others, when required, with the instant the import started."""
TABLE_DEFAULTS: dict[tuple[str, str], str] = {("events", "type"): "'track'"}
"""Per-table defaults for required columns: an event without a ``type`` is a ``track`` call."""


@dataclass(frozen=True)
class Field:
    """One target column and where its value comes from."""

    column: Column
    sql: str | None
    """SQL over the raw batch giving the source value; ``None`` when the file does not have it."""
    kind: Kind
    explicit: bool
    """Named in the mapping (rather than found by name)."""
    origin: str | None
    """Where the value comes from, for messages: ``field "name"`` or a JSON pointer."""
    default: str | None
    """SQL used when the value is missing (only for required bookkeeping columns)."""

    @property
    def name(self) -> str:
        return self.column.name

    @property
    def required(self) -> bool:
        return not self.column.nullable and self.default is None


@dataclass(frozen=True)
class Resolved:
    fields: list[Field]
    structure: str | None
    """For JSON Lines: the ``json_transform`` structure (a JSON document), else ``None``."""
    params: dict[str, str] = field(default_factory=dict)
    """Query parameters the fields' SQL uses (JSON pointers)."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def pointer(path: tuple[str, ...]) -> str:
    """RFC 6901 JSON pointer for a path of keys."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def resolve(
    table: Table,
    mapping: Mapping[str, str],
    *,
    fmt: str,
    fields: Mapping[str, pa.DataType] | None,
    label: str,
) -> Resolved:
    """One :class:`Field` per column of ``table``, for a file of format ``fmt`` whose top-level
    ``fields`` are known (CSV, Parquet) or not (JSON Lines: ``None``)."""
    unknown = sorted(set(mapping) - set(table.column_names))
    if unknown:
        raise FileImportError(
            f"{label}: the mapping names {', '.join(map(repr, unknown))}, which table "
            f"{table.name} does not have",
            hint=f"map onto its columns: {', '.join(table.column_names)}",
        )
    specs: list[tuple[Column, list[tuple[str, ...]], bool]] = []
    for column in table.columns:
        paths: list[tuple[str, ...]]
        if column.name in mapping:
            paths = [_path(mapping[column.name], fmt)]
        elif column.name == "source":
            paths = []  # the source's own name, unless mapped
        else:
            paths = [(column.name,)]
            if "_" in column.name:
                paths.append((camel(column.name),))
        specs.append((column, paths, column.name in mapping))
    if fields is None:
        return _json_fields(table, specs)
    out = [_file_field(c, p, e, fmt, fields, _default(table, c), label) for c, p, e in specs]
    return Resolved(out, None)


def _json_fields(table: Table, specs: list[tuple[Column, list[tuple[str, ...]], bool]]) -> Resolved:
    """JSON Lines: each line is parsed once into a struct holding the fields the mapping needs.
    A field that is also read deeper (``context`` and ``context.page.url``) is kept as JSON and
    the deeper value extracted from it with a JSON pointer."""
    wanted: dict[tuple[str, ...], bool] = {}  # path -> needed as JSON
    for column, paths, _ in specs:
        for path in paths:
            wanted[path] = wanted.get(path, False) or column.type == "JSON"
    roots = {p for p in wanted if not any(p[:n] in wanted for n in range(1, len(p)))}
    tree: dict[str, Any] = {}
    for root in sorted(roots):
        deeper = any(p != root and p[: len(root)] == root for p in wanted)
        node = tree
        for part in root[:-1]:
            node = node.setdefault(part, {})
        node[root[-1]] = "JSON" if wanted[root] or deeper else "VARCHAR"
    params: dict[str, str] = {}
    out = []
    for column, paths, explicit in specs:
        exprs = [_json_access(column, path, roots, tree, params) for path in paths]
        sql = exprs[0] if len(exprs) == 1 else (f"coalesce({', '.join(exprs)})" if exprs else None)
        origin = pointer(paths[0]) if explicit and paths else None
        kind: Kind = "json" if column.type == "JSON" else "text"
        out.append(Field(column, sql, kind, explicit, origin, _default(table, column)))
    return Resolved(out, json.dumps(tree), params)


def _json_access(
    column: Column,
    path: tuple[str, ...],
    roots: set[tuple[str, ...]],
    tree: dict[str, Any],
    params: dict[str, str],
) -> str:
    root = next(path[:n] for n in range(1, len(path) + 1) if path[:n] in roots)
    access = f"({JSON_ROOT})." + ".".join(quote(p) for p in root)
    if root != path:
        name = f"path{len(params)}"
        params[name] = pointer(path[len(root) :])
        fn = "json_extract" if column.type == "JSON" else "json_extract_string"
        return f"{fn}({access}, ${name})"
    if column.type != "JSON" and _leaf(tree, root) == "JSON":
        return f"({access} ->> '$')"  # the same field also feeds a JSON column
    return access


def _default(table: Table, column: Column) -> str | None:
    if column.name == "source":
        return "$source"  # every loaded row says where it came from
    if column.nullable:
        return None
    return TABLE_DEFAULTS.get((table.name, column.name)) or DEFAULTS.get(column.name)


def _path(spec: str, fmt: str) -> tuple[str, ...]:
    # CSV headers are flat: a dotted name is a column literally called that.
    return (spec,) if fmt == "csv" else tuple(spec.split("."))


def _file_field(
    column: Column,
    paths: list[tuple[str, ...]],
    explicit: bool,
    fmt: str,
    fields: Mapping[str, pa.DataType],
    default: str | None,
    label: str,
) -> Field:
    """A CSV or Parquet field: the first candidate the file has."""
    for path in paths:
        found = _lookup(fields, path)
        if found is not None:
            origin = None
            if explicit:
                origin = f'field "{path[0]}"' if len(path) == 1 else pointer(path)
            return Field(column, _struct_access(path), _kind(found), explicit, origin, default)
    if explicit and fields:  # (an empty file has no fields at all: nothing to map)
        available = ", ".join(list(fields)[:30])
        raise FileImportError(
            f"{label}: the mapping reads {column.name!r} from {'.'.join(paths[0])!r}, "
            "which the file does not have",
            hint=f"fields in the file: {available}",
        )
    return Field(column, None, "text", False, None, default)


def _leaf(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for part in path:
        node = node[part]
    return node


def _struct_access(path: tuple[str, ...]) -> str:
    head = quote(path[0])
    return head if len(path) == 1 else f"({head})." + ".".join(quote(p) for p in path[1:])


def _lookup(fields: Mapping[str, pa.DataType], path: tuple[str, ...]) -> pa.DataType | None:
    current = fields.get(path[0])
    for part in path[1:]:
        if current is None or not pa.types.is_struct(current):
            return None
        index = current.get_field_index(part)
        current = current.field(index).type if index >= 0 else None
    return current


def _kind(dtype: pa.DataType) -> Kind:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    if getattr(pa.types, "is_string_view", lambda _t: False)(dtype):
        return "text"
    if pa.types.is_nested(dtype):
        return "nested"
    return "typed"
