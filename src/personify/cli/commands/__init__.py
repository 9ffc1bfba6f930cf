"""Every command module registers itself on :data:`personify.cli.app.app` when imported."""

from personify.cli.commands import pipeline, project, sql

__all__ = ["pipeline", "project", "sql"]
