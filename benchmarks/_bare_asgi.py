"""A bare ASGI app answering ``/o/…`` with the same transparent GIF and ``/c/…`` with the same 302
as the tracking routes, verifying nothing and recording nothing: the floor of the HTTP stack
(uvicorn, uvloop, httptools) that ``engagement_tracking.py`` measures beside the real routes.

Run: ``python -m uvicorn _bare_asgi:app --app-dir benchmarks --port P``."""

from __future__ import annotations

import base64
from typing import Any

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, private"),
    (b"pragma", b"no-cache"),
]
GIF = [(b"content-type", b"image/gif"), (b"content-length", str(len(PIXEL)).encode()), *NO_STORE]
REDIRECT = [
    (b"location", b"https://shop.example/p/1"),
    (b"content-length", b"0"),
    (b"referrer-policy", b"no-referrer"),
    *NO_STORE,
]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"].startswith("/o/"):
        status, headers, body = 200, GIF, PIXEL
    else:
        status, headers, body = 302, REDIRECT, b""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
