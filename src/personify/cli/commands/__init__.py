"""Every command module registers itself on :data:`personify.cli.app.app` when imported."""

from personify.cli.commands import (
    consent,
    demo,
    identity,
    importing,
    journeys,
    pipeline,
    privacy,
    profile,
    project,
    quarantine,
    reconcile,
    render,
    rules,
    segments,
    serve,
    sql,
)

__all__ = [
    "consent",
    "demo",
    "identity",
    "importing",
    "journeys",
    "pipeline",
    "privacy",
    "profile",
    "project",
    "quarantine",
    "reconcile",
    "render",
    "rules",
    "segments",
    "serve",
    "sql",
]
