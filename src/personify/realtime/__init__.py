"""Real time and scale-out: the profile cache (:mod:`.cache`), the message bus between ingest
and worker processes (:mod:`.bus`).

Writers call :func:`invalidate_customers` once their write has committed; readers go through
:func:`profile_cache`. Both find the cache of the project's warehouse (``cache:`` in
``personify.yml``).
"""

from __future__ import annotations

from collections.abc import Iterable

from personify.config import Project
from personify.realtime.cache import ProfileCache, cache_for


def profile_cache(warehouse: object, project: Project) -> ProfileCache:
    """The profile cache of ``warehouse`` in this process (``cache:`` of the project)."""
    return cache_for(warehouse, project.config.cache, f"personify:{project.config.name}")


def invalidate_customers(warehouse: object, project: Project, ids: Iterable[str]) -> None:
    """After a committed write touching ``ids``: no cache serves their old values any more."""
    profile_cache(warehouse, project).invalidate(ids)


def invalidate_all(warehouse: object, project: Project) -> None:
    """After a committed write touching everyone (a batch rebuild)."""
    profile_cache(warehouse, project).clear()


__all__ = ["ProfileCache", "invalidate_all", "invalidate_customers", "profile_cache"]
