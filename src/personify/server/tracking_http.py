"""HTTP details of the tracking API: write-key authentication, bounded (gzip) bodies, CORS.

Authentication is HTTP Basic with a tracking source's write key as the user name (the password is
empty), as the Segment and RudderStack SDKs send it; a body ``writeKey`` is accepted when there is
no ``Authorization`` header (``navigator.sendBeacon`` cannot set one). The key is compared with
every source's key in constant time (:func:`hmac.compare_digest`, no early exit), so response
times tell nothing about how much of a key was right. Keys are never logged.

Bodies are read as a stream and refused with 413 as soon as they pass the limit — a declared
``Content-Length`` over it is refused before reading anything. ``Content-Encoding: gzip`` is
inflated incrementally with the same limit on the *output*, so a small bomb that would inflate to
gigabytes is stopped after the limit (plus one chunk), never buffered.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import zlib
from collections.abc import Mapping, Sequence
from typing import Final

from starlette.requests import Request

from personify.config import TrackingSource
from personify.server.responses import ApiError

CORS_HEADERS: Final[dict[str, str]] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Retry-After",
}
"""On every tracking response: pages on any origin may send events and read the answer."""
PREFLIGHT_HEADERS: Final[dict[str, str]] = {
    **CORS_HEADERS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
_INFLATE_STEP: Final = 64 * 1024


def error(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> ApiError:
    """An :class:`ApiError` carrying the CORS headers."""
    return ApiError(status, message, code=code, headers={**CORS_HEADERS, **(headers or {})})


class KeyRing:
    """The write keys of the project's tracking sources."""

    def __init__(self, sources: Sequence[TrackingSource]) -> None:
        self._keys = [(s.write_key.reveal().encode(), s) for s in sources if s.write_key]

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, key: str) -> TrackingSource | None:
        """The source whose write key is ``key`` (compared with every key, in constant time)."""
        candidate = key.encode("utf-8", "replace")
        found: TrackingSource | None = None
        for stored, source in self._keys:
            if hmac.compare_digest(candidate, stored) and found is None:
                found = source
        return found

    def from_header(self, header: str | None) -> TrackingSource | None:
        """The source named by an ``Authorization: Basic`` header; ``None`` when there is no
        header; 401 when there is one and it names no source."""
        if header is None:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            raise error(401, "use HTTP Basic auth with the write key as user name", "unauthorized")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise error(
                401, "the Authorization header is not valid Basic auth", "unauthorized"
            ) from None
        source = self.match(decoded.partition(":")[0])
        if source is None:
            raise error(401, "unknown write key", "unauthorized")
        return source


def _too_large(limit: int, code: str, what: str = "the request body") -> ApiError:
    return error(413, f"{what} is larger than {limit} bytes", code)


def _inflater(encoding: str) -> zlib._Decompress | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise error(
        415, f"unsupported Content-Encoding {encoding!r}: send gzip or none", "unsupported_encoding"
    )


def _inflate(
    inflater: zlib._Decompress, chunk: bytes, out: list[bytes], size: int, limit: int, code: str
) -> int:
    """Feed ``chunk``; append the output; the new output size (413 past ``limit``)."""
    data = chunk
    while True:
        try:
            piece = inflater.decompress(data, min(_INFLATE_STEP, limit - size + 1))
        except zlib.error:
            raise error(400, "the body is not valid gzip", "invalid_gzip") from None
        size += len(piece)
        if size > limit:
            raise _too_large(limit, code, "the decompressed body")
        out.append(piece)
        data = inflater.unconsumed_tail
        if not data:
            return size


async def read_body(request: Request, limit: int, *, code: str = "payload_too_large") -> bytes:
    """The request body, decompressed, at most ``limit`` bytes both as sent and once inflated."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    inflater = _inflater(encoding)
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit, code)
    out: list[bytes] = []
    received = produced = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, code)
        if inflater is None:
            out.append(chunk)
        elif chunk:
            produced = _inflate(inflater, chunk, out, produced, limit, code)
    if inflater is not None and not inflater.eof:
        raise error(400, "the gzip body is truncated", "invalid_gzip")
    return b"".join(out)


def check_utf8(body: bytes) -> None:
    """400 ``invalid_utf8`` unless ``body`` is UTF-8 text."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(400, f"the body is not UTF-8 (byte {e.start})", "invalid_utf8") from None


def client_ip(request: Request) -> str | None:
    """The sender's address (the socket peer; put a proxy's forwarding in front if needed)."""
    return request.client.host if request.client else None
