"""Run a command through the project's running ``personify serve``."""

from __future__ import annotations


def forward_if_served(args: list[str]) -> int | None:
    """If a server owns this project's single-process warehouse, run ``args`` there and return the
    exit code; otherwise ``None`` (run locally)."""
    return None
