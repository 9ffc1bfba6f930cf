"""The admin-API test world (see the ``admin_api`` fixture in ``tests/unit/conftest.py``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from dotenv import dotenv_values

from personify import clock
from personify.server.app import create_app
from personify.session import Session

API_NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class AdminApi:
    """A project with customers and an in-process client of its server."""

    session: Session
    project_dir: Path

    @property
    def admin_token(self) -> str:
        value = dotenv_values(self.project_dir / ".env").get("PERSONIFY_ADMIN_TOKEN")
        assert value
        return value

    def bearer(self, token: str | None = None) -> dict[str, str]:
        return {"authorization": f"Bearer {token or self.admin_token}"}

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: Any = None,
        *,
        client: str = "127.0.0.1",
    ) -> httpx.Response:
        app = create_app(self.session, instance="inst-1")

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=(client, 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, headers=headers or {}, json=body)

        with clock.frozen(API_NOW):
            return asyncio.run(go())
