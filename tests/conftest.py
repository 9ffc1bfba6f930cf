"""Shared fixtures: warehouses on every backend, projects in temporary folders, services.

Services (PostgreSQL …) are real processes on loopback. When one is missing the tests that need
it skip with the reason — unless PERSONIFY_REQUIRE_SERVICES=1 (as in CI), when they fail.
Each test run gets its own PostgreSQL schema, so runs never see each other's data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from personify import clock
from personify.warehouse import Warehouse, connect

# Property tests run on shared, loaded 2-core machines (CI included): Hypothesis's 200 ms
# deadline and its too-slow health check are timing checks, and they failed tests there that
# were correct. Tests size their own max_examples; PERSONIFY_HYPOTHESIS=quick gives the others
# 20 instead of 100 (local iteration only, never CI).
settings.register_profile(
    "personify", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile("quick", settings.get_profile("personify"), max_examples=20)
settings.load_profile(os.environ.get("PERSONIFY_HYPOTHESIS", "personify"))

PG_BASE = os.environ.get("PERSONIFY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("PERSONIFY_REQUIRE_SERVICES") == "1"
RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(autouse=True)
def _unpinned_clock() -> Iterator[None]:
    """Each test starts and ends on the system clock: a CLI command run in-process with
    ``--now`` pins "now" for the rest of the thread (as it should in a one-command process), and
    must not leak into the next test (a click then looked older than its email)."""
    clock.pin(None)
    yield
    clock.pin(None)


def service_missing(what: str, why: str) -> None:
    """Skip (or, when services are required, fail) a test whose service is unreachable."""
    message = f"{what} is not reachable ({why}); set PERSONIFY_TEST_POSTGRES or start it"
    if REQUIRE_SERVICES:
        pytest.fail(f"PERSONIFY_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


_pg_checked: list[str | None] = []


def _postgres_problem() -> str | None:
    if not _pg_checked:
        try:
            import psycopg

            with psycopg.connect(PG_BASE, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_checked.append(None)
        except Exception as e:  # any failure means: no usable server
            _pg_checked.append(
                str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            )
    return _pg_checked[0]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL warehouse URL with a schema of its own, dropped afterwards."""
    problem = _postgres_problem()
    if problem:
        service_missing("PostgreSQL", problem)
    schema = f"personify_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    sep = "&" if "?" in PG_BASE else "?"
    url = f"{PG_BASE}{sep}schema={schema}"
    yield url
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """One warehouse URL per backend: the same test body runs on DuckDB and on PostgreSQL."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Warehouse]:
    """A migrated warehouse on each backend."""
    wh = connect(warehouse_url)
    try:
        yield wh
    finally:
        wh.close()


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A freshly scaffolded project (``personify init``) in a temporary folder."""
    from personify.scaffold import init_project

    root = tmp_path / "project"
    init_project(root)
    return root
