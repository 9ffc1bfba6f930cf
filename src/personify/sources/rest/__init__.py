"""Declarative REST sources (``kind: rest``), in the vocabulary of dlt's ``rest_api``.

A source has a ``client`` (``base_url``, ``auth``, ``paginator``, politeness settings) and
``resources`` (each an ``endpoint`` — ``path``, ``params``, ``data_selector``, ``paginator``,
``incremental`` — the ``table`` its records go to, a ``primary_key`` and a ``mapping``), or a
``preset`` (:mod:`personify.sources.presets`) that brings them.

The engine's parts: :mod:`.auth` (bearer, API key, basic, OAuth2 client credentials),
:mod:`.paginators`, :mod:`.client` (budget, retries, clear errors), :mod:`.incremental` (state
saved with the rows), :mod:`.mapping` (records to validated rows), :mod:`.sync`.
"""

from __future__ import annotations

from personify.sources.rest.errors import (
    RestError as RestError,
)
from personify.sources.rest.errors import (
    RestHttpError as RestHttpError,
)
from personify.sources.rest.errors import (
    RestResponseError as RestResponseError,
)
from personify.sources.rest.errors import (
    RestUnavailable as RestUnavailable,
)
from personify.sources.rest.sync import sync_rest_source as sync_rest_source

__all__ = ["RestError", "RestHttpError", "RestResponseError", "RestUnavailable", "sync_rest_source"]
