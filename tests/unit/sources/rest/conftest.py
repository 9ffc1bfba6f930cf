"""Fixtures: the mock APIs on a loopback port, and a session on an embedded warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from personify.config import Project, ProjectConfig
from personify.demo.mock_apis import MockApis, sample_apis, serve_mock_apis
from personify.session import Session


@pytest.fixture
def apis() -> MockApis:
    return sample_apis(57)


@pytest.fixture
def api_url(apis: MockApis) -> Iterator[str]:
    with serve_mock_apis(apis) as url:
        yield url


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    root = tmp_path / "project"
    root.mkdir()
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    with Session(Project(ProjectConfig(warehouse=url), root, root / "personify.yml")) as s:
        yield s
