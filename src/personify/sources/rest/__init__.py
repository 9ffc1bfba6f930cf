"""Declarative REST sources (``kind: rest``), in the vocabulary of dlt's ``rest_api``.

A source has a ``client`` (``base_url``, ``auth``, ``paginator``, politeness settings) and
``resources`` (each an ``endpoint`` — ``path``, ``params``, ``data_selector``, ``paginator``,
``incremental`` — the ``table`` its records go to, a ``primary_key`` and a ``mapping``), or a
``preset`` (:mod:`personify.sources.presets`) that brings them.

The engine's parts: :mod:`.paginators`, :mod:`.incremental` (state saved with the rows),
:mod:`.mapping` (records to validated rows), :mod:`.sync`; the polite client it shares with
destinations — budget, retries, clear errors, auth (bearer, API key, basic, OAuth2 client
credentials) — is :mod:`personify.http`.
"""

from __future__ import annotations

from personify.http.errors import RestError as RestError
from personify.http.errors import RestHttpError as RestHttpError
from personify.http.errors import RestResponseError as RestResponseError
from personify.http.errors import RestUnavailable as RestUnavailable
from personify.sources.rest.sync import sync_rest_source as sync_rest_source

__all__ = ["RestError", "RestHttpError", "RestResponseError", "RestUnavailable", "sync_rest_source"]
