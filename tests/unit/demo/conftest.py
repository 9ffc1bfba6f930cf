"""Small worlds, built once per test session (they are deterministic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from personify.demo import World, build_world

NOW = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def world() -> World:
    """1,000 customers, seed 7, at :data:`NOW`."""
    return build_world(1000, seed=7, now=NOW)


@pytest.fixture(scope="session")
def events(world: World):  # type: ignore[no-untyped-def]
    """The web events, rendered (a pyarrow Table)."""
    return world.events.to_table()
