"""Every command module registers itself on :data:`personify.cli.app.app` when imported."""

from personify.cli.commands import demo, pipeline, project, serve, sql

__all__ = ["demo", "pipeline", "project", "serve", "sql"]
