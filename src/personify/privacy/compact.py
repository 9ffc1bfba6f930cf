"""Compacting an embedded (DuckDB) warehouse file after erasures.

A ``DELETE`` frees DuckDB's storage blocks but does not overwrite them: an erased address may
still be read from the file's free pages with a hex editor until they are reused. Compacting
copies every table, view and row into a new file (``COPY FROM DATABASE``) and swaps it in, so the
file holds only live data. It needs the file to itself (no ``personify serve`` on the project)
and temporary disk space about the size of the file. PostgreSQL reuses and eventually overwrites
dead tuples itself (``VACUUM``); its backups and WAL archives are out of Personify's reach.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from personify.errors import PersonifyError


def duckdb_path(url: str) -> Path | None:
    """The file of a ``duckdb:///…`` URL (``None`` for other warehouses and ``:memory:``)."""
    if not url.startswith("duckdb:///"):
        return None
    rest = url[len("duckdb:///") :].split("?", 1)[0]
    return None if rest in {"", ":memory:"} else Path(rest)


def compact_file(path: Path) -> tuple[int, int]:
    """Rewrite the DuckDB file ``path`` with live data only; returns ``(bytes before, after)``."""
    if not path.exists():
        raise PersonifyError(f"no warehouse file at {path}")
    before = path.stat().st_size
    tmp = path.with_name(f".{path.name}.compact")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"ATTACH '{_sql_path(path)}' AS old_db (READ_ONLY)")
        con.execute(f"ATTACH '{_sql_path(tmp)}' AS new_db")
        con.execute("COPY FROM DATABASE old_db TO new_db")
        con.execute("DETACH old_db")
        con.execute("DETACH new_db")
    except duckdb.Error as e:
        tmp.unlink(missing_ok=True)
        raise PersonifyError(
            f"could not compact {path}: {e}",
            hint="stop `personify serve` on this project first: compacting needs the file alone",
        ) from None
    finally:
        con.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    return before, path.stat().st_size


def _sql_path(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")
