"""Fixtures shared by the unit tests: ``admin_api``, an admin-API world (a scaffolded project with
its ``.env`` exported, a small CRM file imported, identity and profiles built) with an in-process
client (:class:`tests.unit.admin_api.AdminApi`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values
from tests.unit.admin_api import API_NOW, AdminApi

from personify import clock
from personify.config import load_project
from personify.identity import identity_stage
from personify.profiles import profiles_stage
from personify.session import Session
from personify.sources.files import import_file


@pytest.fixture
def admin_api(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., AdminApi]]:
    """``admin_api(crm=CSV, yaml=TEXT, env={...})``: the project's ``.env`` (and ``env``)
    exported, ``yaml`` appended to ``personify.yml``, ``crm`` imported as customers (column
    ``id`` is the customer id), identity and profiles built at :data:`API_NOW`."""
    sessions: list[Session] = []

    def make(crm: str, yaml: str = "", env: dict[str, str] | None = None) -> AdminApi:
        for key, value in {**dotenv_values(project_dir / ".env"), **(env or {})}.items():
            if value is not None:
                monkeypatch.setenv(key, value)
        if yaml:
            with (project_dir / "personify.yml").open("a") as f:
                f.write(yaml)
        s = Session(load_project(project_dir))
        sessions.append(s)
        with clock.frozen(API_NOW):
            data = project_dir / "crm.csv"
            data.write_text(crm, encoding="utf-8")
            import_file(
                s, data, table="customers", mapping={"customer_id": "id"}, source_name="crm"
            )
            identity_stage(s)
            profiles_stage(s)
        return AdminApi(s, project_dir)

    try:
        yield make
    finally:
        for s in sessions:
            s.close()
