"""The HTTP server behind ``personify serve``: thin routes over the stages.

Modules, by what they hold:

- :mod:`~personify.server.app` — :func:`~personify.server.app.create_app`, the ASGI app factory
  (routes grouped by module, JSON errors, request metrics);
- :mod:`~personify.server.ops` — operations routes: ``/healthz``, ``/metrics``, ``/openapi.json``;
- :mod:`~personify.server.probes` — Kubernetes-style probes: ``/livez`` (no I/O) and ``/readyz``;
- :mod:`~personify.server.control` — the control channel other CLI processes forward to;
- :mod:`~personify.server.capture` — per-command capture of stdout/stderr inside the server;
- :mod:`~personify.server.lockfile` — ``.personify/server.json``: who serves a project, and where;
- :mod:`~personify.server.protocol` — the control channel's wire format (shared with the client);
- :mod:`~personify.server.metrics` — a small Prometheus registry and text exposition;
- :mod:`~personify.server.openapi` — the OpenAPI 3.1 document, built from route metadata;
- :mod:`~personify.server.responses` — JSON responses and the ``{"error": …}`` body;
- :mod:`~personify.server.runner` — the long-running process: bind, publish, serve, clean up.

This package's ``__init__`` imports nothing heavy: the CLI client reads
:mod:`~personify.server.lockfile` and :mod:`~personify.server.protocol` on every command.
"""
