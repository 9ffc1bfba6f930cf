"""Checking a real answer against ``/openapi.json``: the schema the document gives for the route's
answer (``$ref``s into its components resolved), validated with :mod:`jsonschema` — a key the
route returns that the model does not list, or one the model requires that the route leaves out,
fails, so a response model cannot drift from its route."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator


def answer_schema(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON Schema of ``method path``'s ``status`` answer in the OpenAPI document ``doc``,
    standalone (its components alongside, for the ``$ref``s)."""
    answer = doc["paths"][path][method.lower()]["responses"][str(status)]
    schema = answer["content"]["application/json"]["schema"]
    return {**schema, "components": doc.get("components", {})}


def assert_matches(doc: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """``body`` (a decoded JSON answer) is valid against the document's schema for it."""
    validator = Draft202012Validator(answer_schema(doc, path, method, status))
    problems = [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(body)
    ]
    assert not problems, f"{method} {path} {status} answer does not match /openapi.json: {problems}"


def privacy_document() -> dict[str, Any]:
    """The OpenAPI document of the privacy routes, as ``/openapi.json`` renders them (for tests
    that erase through :func:`~personify.privacy.erase.erase_subject`, whose report the erase
    route answers as it is)."""
    from personify.server import privacy
    from personify.server.openapi import openapi_document

    return openapi_document(privacy.routes(), title="t", version="0")


def assert_erase_answer(report: dict[str, Any]) -> None:
    """``report`` (an erasure's ``as_dict()``, the erase route's answer) matches its schema."""
    assert_matches(privacy_document(), "/v1/privacy/erase", "post", 200, report)
