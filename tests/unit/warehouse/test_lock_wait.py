"""A DuckDB file held by another process: a session waits ``PERSONIFY_LOCK_TIMEOUT`` seconds, not
the default 10, then raises :class:`WarehouseBusy` naming the holder. Timed in-process, where
no interpreter start-up (seconds on a loaded machine) blurs the wait; the e2e test
``test_busy_warehouse_without_server`` checks what the console script prints."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tests.holder import holding

from personify.config import load_project
from personify.errors import WarehouseBusy
from personify.session import DEFAULT_LOCK_TIMEOUT, Session


def test_a_held_file_fails_after_the_configured_wait(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Session(load_project(project_dir)).close()  # the warehouse file exists, migrated
    with holding(project_dir / "warehouse.duckdb") as holder:
        monkeypatch.setenv("PERSONIFY_LOCK_TIMEOUT", "0.5")
        session = Session(load_project(project_dir))
        started = time.monotonic()
        with pytest.raises(WarehouseBusy, match=f"in use by another process.*{holder.pid}"):
            session.warehouse  # noqa: B018 — opening is what is tested
        waited = time.monotonic() - started
        assert 0.5 <= waited < DEFAULT_LOCK_TIMEOUT / 2, waited
