"""The Segment-compatible tracking API's stage: messages in, ``events`` rows (or quarantine) out.

Modules, in the order an event goes through them: :mod:`~.messages` (the typed shapes),
:mod:`~.normalize` (spec rules, clock skew, payload hash), :mod:`~.plan` (the tracking plan),
:mod:`~.intake` (one request's events: limits, recent ids, results), :mod:`~.store` (one
transaction: insert, detect duplicates and conflicts, quarantine), :mod:`~.writer` (group commit),
:mod:`~.replay` (the quarantine, listed and replayed). The HTTP routes live in
:mod:`personify.server.tracking`.
"""
