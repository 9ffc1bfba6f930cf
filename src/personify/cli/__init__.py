"""The ``personify`` command line: thin commands over the stages."""

from personify.cli.app import app, main

__all__ = ["app", "main"]
