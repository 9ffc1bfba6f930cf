"""JSON responses (encoded with msgspec) and the one error shape every route answers with:
``{"error": {"code": "…", "message": "…"}}``.

Routes raise :class:`ApiError`; the app's handlers turn it — and Starlette's own 404/405 and
any unexpected exception — into that body. Read bodies with :func:`read_body` / :func:`read_json`
(their 413 is an :class:`ApiError` too; Starlette's ``max_body_size`` answers in plain text).
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ErrorDetail(msgspec.Struct, frozen=True):
    """What went wrong."""

    code: str
    """Stable, machine-readable error code (``unauthorized``, ``warehouse_unavailable`` …)."""
    message: str
    """Human-readable explanation; never holds personal data or secrets."""


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """Raise in a route to answer ``status`` with an error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or default_code(status)
        self.message = message
        self.headers = dict(headers or {})


def default_code(status: int) -> str:
    """The error code used for an HTTP status when a route names none."""
    return _CODES.get(status, "error" if status < 500 else "server_error")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, dt.datetime | dt.date | dt.time):  # (a discount's Expiry too)
        return obj.isoformat()
    if isinstance(obj, str):  # a str subclass: a discount's DiscountLabel, as its text
        return str(obj)
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__} as JSON")


_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


class JSONResponse(Response):
    """A JSON response encoded with msgspec (Structs, dicts, datetimes, Decimals)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encoder.encode(content)


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error answer: ``{"error": {"code": …, "message": …}}``."""
    body = ErrorBody(ErrorDetail(code or default_code(status), message))
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def decode_json(body: bytes, type_: type[T]) -> T:
    """``body`` decoded and validated as ``type_``; a 400 :class:`ApiError` naming the problem
    (with its JSON path) otherwise."""
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as e:
        raise ApiError(400, f"invalid request body: {e}", code="invalid_request") from None
    except msgspec.DecodeError as e:
        raise ApiError(400, f"the request body is not JSON: {e}", code="invalid_json") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, type_: type[T], *, limit: int) -> T:
    """The request body (at most ``limit`` bytes, else 413) decoded as ``type_`` (else 400)."""
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() not in {"application/json", ""}:
        raise ApiError(415, "send the body as application/json")
    return decode_json(await read_body(request, limit), type_)
