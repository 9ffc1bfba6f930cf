"""Destinations (reverse ETL): warehouse rows pushed to other tools' APIs, only what changed.

A destination (``destinations:`` in ``personify.yml``, ``kind: rest``) is a SQL model — one row
per record, e.g. each customer's engagement score and lifecycle stage from ``customer_data`` —
and an API endpoint that upserts records by a key. A push:

1. runs the model in the warehouse (checked like any user query: one read-only SELECT, ``NOW()``
   pinned to ``--now``) into a temporary table, with a keyed hash of each row's key and an MD5 of
   the whole row, and compares them there with ``destination_state`` — the hash each record had
   when the API last took it. Only new or changed rows reach Python (a push of an unchanged
   model reads none);
2. sends the changed rows in batches (``batch_size``) through the polite client
   (:mod:`personify.http`: request budget, retries with backoff on 429/5xx/timeouts,
   ``Retry-After``); records go out
   in plain text (encrypted ``customers`` columns decrypted), dotted column names nested;
3. records each batch in ``destination_state`` once the API answered 2xx — acknowledged rows
   only: a push that stops (the API down, a crash) sends the rest next time, and a record sent
   twice is an upsert of the same values. A batch the API refuses (4xx) is split in halves until
   the refused records stand alone; each is kept as ``rejected`` with the API's answer (masked)
   and sent again only when its row changes. A 2xx answer that lists refused records
   (``errors_path``; HubSpot's 207 Multi-Status ``errors``) rejects those, the rest are sent;
   an error naming no record of the batch splits it like a 4xx. A refusal of the credentials
   or the endpoint (401, 403, 404) stops the push;
4. with ``on_remove: delete``, removes at the API the records that left the model (no longer
   selected, or deleted) — after the upserts, so a record whose key changed is upserted under
   the new key before the old one goes. A removal is acknowledged like an upsert: the record's
   state goes once the API took it (a 404 from a ``{key}`` path too: gone already); one the
   API refuses is kept as ``remove_rejected`` and tried again at the next push.

The key is stored as a keyed hash (the customer-id key, from ``signing_key``): the state holds no
email or name in the clear. A destination that removes records must name them, so it keeps each
record's key too, encrypted under ``privacy.encryption_keys`` (:data:`RECORD_KEY`); a key read
back is used only if its keyed hash is its row's. Records pushed before ``on_remove: delete``
was set are sent once more to learn their key. Every push is recorded like a source's run
(``source_state``, as ``destination:NAME``), so ``personify status`` shows it.

A destination of ``kind: events`` forwards the event stream instead (:mod:`.events`): each
stored event in Segment's shape with its ``messageId``, at least once and never doubled by our
retries, a late-committed row still found, consent decided in the warehouse.

Presets: ``hubspot_contacts`` (:mod:`.presets`), and the ad audiences — ``meta_audience``
(:mod:`.meta`) and ``google_ads_audience`` (:mod:`.google`) — whose rows are people named by
identifiers normalized and hashed before they leave (:mod:`.audiences`).
"""

from personify.destinations.erasures import Stranded as Stranded
from personify.destinations.erasures import forget as forget
from personify.destinations.erasures import stranded_removals as stranded_removals
from personify.destinations.presets import refused_inside as refused_inside
from personify.destinations.push import PushResult as PushResult
from personify.destinations.push import destination as destination
from personify.destinations.push import destinations_stage as destinations_stage
from personify.destinations.push import forget_stranded_removals as forget_stranded_removals
from personify.destinations.push import push_destinations as push_destinations
from personify.destinations.push import push_warnings as push_warnings
from personify.destinations.state import RECORD_KEY as RECORD_KEY
from personify.destinations.state import pushed as pushed
from personify.destinations.state import run_name as run_name

__all__ = [
    "RECORD_KEY",
    "PushResult",
    "Stranded",
    "destination",
    "destinations_stage",
    "forget",
    "forget_stranded_removals",
    "push_destinations",
    "push_warnings",
    "pushed",
    "refused_inside",
    "run_name",
    "stranded_removals",
]
