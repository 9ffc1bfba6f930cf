"""The warehouse: the only dialect-aware package.

:func:`connect` opens the backend registered for a URL's scheme (DuckDB by default, PostgreSQL)
and brings its schema up to date.
"""

from __future__ import annotations

from pathlib import Path

from personify.warehouse.base import Capabilities, Warehouse, backend_for
from personify.warehouse.migrations import migrate
from personify.warehouse.schema import TABLES, Table, table

__all__ = ["TABLES", "Capabilities", "Table", "Warehouse", "connect", "duckdb_path", "table"]


def duckdb_path(url: str, root: Path | None = None) -> str:
    """The file a ``duckdb:///…`` URL names, relative to ``root`` (``duckdb:////abs``: absolute)."""
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ValueError(f"a DuckDB URL looks like duckdb:///path/to/file.duckdb, not {url!r}")
    path = rest[3:]
    if path in ("", ":memory:"):
        return ":memory:"
    p = Path(path).expanduser()
    if not p.is_absolute() and root is not None:
        p = root / p
    return str(p)


def connect(
    url: str, *, root: Path | None = None, migrate_schema: bool = True, lock_timeout: float = 10.0
) -> Warehouse:
    """Open the warehouse at ``url`` (paths relative to ``root``) and migrate it."""
    cls = backend_for(url)
    wh: Warehouse
    if cls.scheme == "duckdb":
        wh = cls(url, path=duckdb_path(url, root), lock_timeout=lock_timeout)  # type: ignore[call-arg]
    else:
        wh = cls(url)
    if migrate_schema:
        try:
            migrate(wh)
        except BaseException:
            wh.close()
            raise
    return wh
