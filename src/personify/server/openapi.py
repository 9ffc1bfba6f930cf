"""The OpenAPI 3.1 document, generated from the routes that exist.

Each endpoint carries an :class:`Operation` (attached with the :func:`operation` decorator):
summary, tags, request and response bodies as msgspec types, security. :func:`openapi_document`
walks the app's routes — paths, methods and path parameters come from Starlette, bodies become
JSON Schema 2020-12 (the dialect of OpenAPI 3.1) through :func:`msgspec.json.schema_components` —
so the document cannot drift from the code. Routes without metadata are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute, Mount, Route

from personify.server.responses import ErrorBody

F = TypeVar("F", bound=Callable[..., Any])
_ATTR: Final = "__personify_openapi__"
_REF: Final = "#/components/schemas/{name}"
_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z_]+)?}")

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "controlToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The control token in the project's .personify/server.json (mode 0600): "
        "only the user who started the server can read it.",
    },
}
"""Security schemes by name; route modules add theirs (admin token, write keys …)."""


@dataclass(frozen=True)
class Content:
    """A request or response body."""

    description: str
    """What it is."""
    schema: Any = None
    """A type msgspec can describe (a Struct, ``dict[str, int]`` …), a JSON Schema ``dict``,
    or ``None`` for no body."""
    media_type: str = "application/json"
    """Its media type."""


ERROR = ErrorBody
"""Use as ``Content("…", ERROR)`` for error answers."""


@dataclass(frozen=True)
class Operation:
    """OpenAPI metadata of one endpoint."""

    summary: str
    """One line."""
    description: str = ""
    """More, in CommonMark."""
    tags: tuple[str, ...] = ()
    """Groups in the rendered documentation (``operations``, ``tracking`` …)."""
    request: Content | None = None
    """The request body, if any."""
    responses: Mapping[int, Content] = field(default_factory=dict)
    """Answers by HTTP status."""
    security: tuple[str, ...] = ()
    """Names in :data:`SECURITY_SCHEMES`; empty: no authentication."""
    internal: bool = False
    """Marked ``x-internal``: used by Personify itself (the CLI), not meant for integrations."""
    operation_id: str | None = None
    """Defaults to the endpoint function's name."""


def operation(op: Operation) -> Callable[[F], F]:
    """Decorator attaching ``op`` to an endpoint."""

    def attach(endpoint: F) -> F:
        setattr(endpoint, _ATTR, op)
        return endpoint

    return attach


def operation_of(endpoint: Any) -> Operation | None:
    """The :class:`Operation` attached to ``endpoint``, if any."""
    op = getattr(endpoint, _ATTR, None)
    return op if isinstance(op, Operation) else None


def _routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Route):
            yield prefix + route.path, route
        elif isinstance(route, Mount):
            yield from _routes(route.routes, prefix + route.path)


def _param_schema(convertor: object) -> dict[str, Any]:
    if isinstance(convertor, IntegerConvertor):
        return {"type": "integer", "minimum": 0}
    if isinstance(convertor, FloatConvertor):
        return {"type": "number"}
    return {"type": "string"}


class _Schemas:
    """Collects body types, then turns them into schemas with shared components."""

    def __init__(self) -> None:
        self.types: list[Any] = []

    def want(self, content: Content | None) -> None:
        schema = content.schema if content is not None else None
        if schema is not None and not isinstance(schema, dict) and schema not in self.types:
            self.types.append(schema)

    def build(self) -> dict[str, Any]:
        """Build the schemas; returns the shared components."""
        if not self.types:
            self.schemas: tuple[dict[str, Any], ...] = ()
            return {}
        self.schemas, components = msgspec.json.schema_components(self.types, ref_template=_REF)
        return components

    def content(self, content: Content) -> dict[str, Any]:
        """The OpenAPI object for one body."""
        out: dict[str, Any] = {"description": content.description}
        if content.schema is not None:
            schema = content.schema
            if not isinstance(schema, dict):
                schema = self.schemas[self.types.index(schema)]
            out["content"] = {content.media_type: {"schema": schema}}
        return out


def openapi_document(
    routes: Sequence[BaseRoute],
    *,
    title: str,
    version: str,
    description: str = "",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` (those carrying an :class:`Operation`)."""
    found: list[tuple[str, Route, Operation]] = []
    schemas = _Schemas()
    for path, route in _routes(routes):
        op = operation_of(route.endpoint)
        if op is None:
            continue
        found.append((path, route, op))
        schemas.want(op.request)
        for content in op.responses.values():
            schemas.want(content)
    components = schemas.build()
    paths: dict[str, dict[str, Any]] = {}
    used_security: set[str] = set()
    for path, route, op in found:
        item = paths.setdefault(_PARAM.sub(r"{\1}", path), {})
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        for method in methods:
            op_id = op.operation_id or getattr(route.endpoint, "__name__", route.name)
            if len(methods) > 1:
                op_id = f"{op_id}_{method.lower()}"
            entry: dict[str, Any] = {"operationId": op_id, "summary": op.summary}
            if op.description:
                entry["description"] = op.description
            if op.tags:
                entry["tags"] = list(op.tags)
            params = [
                {"name": name, "in": "path", "required": True, "schema": _param_schema(conv)}
                for name, conv in route.param_convertors.items()
            ]
            if params:
                entry["parameters"] = params
            if op.request is not None:
                body = schemas.content(op.request)
                body["required"] = True
                entry["requestBody"] = body
            entry["responses"] = {
                str(status): schemas.content(content)
                for status, content in sorted(op.responses.items())
            } or {"default": {"description": "Response"}}
            if op.security:
                entry["security"] = [{name: []} for name in op.security]
                used_security.update(op.security)
            if op.internal:
                entry["x-internal"] = True
            item[method.lower()] = entry
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
    }
    if description:
        document["info"]["description"] = description
    comp: dict[str, Any] = {}
    if components:
        comp["schemas"] = dict(sorted(components.items()))
    if used_security:
        unknown = used_security - SECURITY_SCHEMES.keys()
        if unknown:
            raise ValueError(f"unknown security schemes: {', '.join(sorted(unknown))}")
        comp["securitySchemes"] = {n: SECURITY_SCHEMES[n] for n in sorted(used_security)}
    if comp:
        document["components"] = comp
    return document
