"""The marketer console: ``/console``, a read-only, server-rendered web UI in ``personify serve``.

Pages: an overview (``personify status``'s sources, last run, journeys' 7-day figures, firing
alerts), segments (definition, SQL, size, a sample of members, "is this customer in it, and
why"), profile search and the profile (``GET /v1/profiles/…``'s document), and an email preview
for a customer (``personify render``'s email in a sandboxed frame, with the send gate's verdict).

Access: an admin token with the ``console`` scope (or ``admin``), typed once into the sign-in
form (:mod:`.auth`: a signed, HttpOnly, SameSite=Strict session cookie whose session is recorded
in the warehouse, so signing out ends it everywhere). Personal data is shown only to a token that
also has ``profiles:read``; otherwise it is masked (``***@domain``, ``A***``), customers are found
by customer id only (an email's answer does not say whether a customer has it) and email previews
are refused. Profile reads and previews are written to the audit log
(``profile_read``, ``email_preview``) with the actor ``console:<token name>``.

A warehouse that does not answer (every page reads its session there) is a plain 503 page with
``Retry-After``, not a 500.

Pages are HTML from python-liquid templates with autoescape (every value escaped), a stylesheet
served here, no script; every response carries a strict Content-Security-Policy, forbids framing
(except the preview frame, by the console itself) and is ``no-store``.
"""

from __future__ import annotations

from personify.server.console.pages import routes

__all__ = ["routes"]
