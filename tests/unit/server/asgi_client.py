"""A test client that sends requests straight into an ASGI app (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from starlette.applications import Starlette

LOOPBACK = ("127.0.0.1", 50000)


class AppClient:
    """Requests straight into the ASGI app (httpx's ASGI transport; no sockets), from
    ``client`` (the peer address the app sees)."""

    def __init__(self, app: Starlette, client: tuple[str, int] = LOOPBACK) -> None:
        self.app = app
        self.transport = httpx.ASGITransport(app=app, client=client)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)
