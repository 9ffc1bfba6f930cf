"""The public data model: every table and view, as data.

Columns may be added, never renamed (CONTRACT.md). Types are neutral names that each backend maps
(``Capabilities.type_map``): ``VARCHAR``, ``BIGINT``, ``DOUBLE``, ``BOOLEAN``, ``DATE``,
``TIMESTAMPTZ``, ``JSON``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    doc: str = ""
    bulky: bool = False
    """Long, varied text that is written in volume and seldom filtered on (an event's context):
    engines that can store it with general-purpose compression (``Capabilities.bulky_text``),
    which costs less to write than their default for short repeated strings, and takes less
    room for text this varied."""
    rewritten: bool = False
    """Written again in place, in volume (an event's customer id, set by identity resolution
    on every stored event and changed by merges): engines that can store it as it is
    (``Capabilities.rewritten_text``) skip compressing it again at every checkpoint."""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    doc: str = ""
    internal: bool = False
    """Bookkeeping tables that users need not query (still readable with ``personify sql``)."""
    key_by_construction: bool = False
    """Its writers keep ``primary_key`` unique themselves (derived tables written by difference;
    append-mostly tables written only through ``Warehouse.load``, which then checks the key with
    an anti-join under a per-table lock), so engines without cheap keys
    (``Capabilities.cheap_keys``) skip the constraint. Raw ``INSERT … ON CONFLICT`` cannot be used
    on them there."""
    stamped: str | None = None
    """A column every :meth:`~personify.warehouse.base.Warehouse.load` inserting rows sets to the
    load's instant (the real clock: :func:`~personify.warehouse.base.stamp`), unless the data
    carries it — one constant per load, whoever the writer; an update leaves it as it was."""
    column_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_names", tuple(c.name for c in self.columns))

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


def C(  # noqa: N802
    name: str,
    type_: str,
    nullable: bool = True,
    doc: str = "",
    *,
    bulky: bool = False,
    rewritten: bool = False,
) -> Column:
    return Column(name, type_, nullable, doc, bulky, rewritten)


S, INT, F, B, TS, D, J = "VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMPTZ", "DATE", "JSON"

EVENTS = Table(
    "events",
    (
        C("message_id", S, False, "Unique id of the event (Segment messageId); dedup key forever"),
        C("type", S, False, "track, identify, page, screen, group, alias"),
        C("event", S, doc="Event name for track calls (e.g. 'Product Added')"),
        C("anonymous_id", S),
        C("user_id", S),
        C(
            "customer_id",
            S,
            doc="Resolved customer (filled by identity resolution)",
            rewritten=True,
        ),
        C("timestamp", TS, False, "When it happened (clock-skew corrected)"),
        C("received_at", TS, False, "When Personify stored it"),
        C("sent_at", TS),
        C("source", S, False),
        C("properties", J),
        C("context", J, bulky=True),
        C("traits", J),
        C("name", S, doc="Page or screen name"),
        C("group_id", S),
        C("previous_id", S, doc="alias: the previous id"),
        C(
            "payload_hash",
            INT,
            doc="64-bit hash of the event as sent, without sentAt (tracking API): the same hash is "
            "a resend; another hash is compared by content before it is called a conflicting "
            "duplicate",
        ),
        C(
            "plan_violations",
            J,
            doc="Tracking-plan violations of an event stored by a source in warn mode "
            "(JSON array of {pointer, message}); null when it conforms",
        ),
        C(
            "stored_at",
            TS,
            doc="When the row was stored (the real clock, whatever received_at says: a replay "
            "or an old file keeps its old received_at): inserted, or updated because its data "
            "changed (a file imported again with on_conflict: update); null for rows stored "
            "before it existed. Event forwarding reads by coalesce(stored_at, received_at)",
        ),
    ),
    primary_key=("message_id",),
    stamped="stored_at",
    indexes=(("customer_id",), ("user_id",), ("anonymous_id",), ("received_at",)),
    key_by_construction=True,
    doc="The append-only log of behavioural events",
)

CUSTOMERS = Table(
    "customers",
    (
        C("customer_id", S, False),
        C("email", S),
        C("first_name", S),
        C("last_name", S),
        C("phone", S),
        C("timezone", S),
        C("country", S),
        C("city", S),
        C(
            "locale",
            S,
            doc="Language and region to write to the person in (BCP 47: fr, fr-CA); chooses "
            "template variants (templates/NAME.fr.liquid)",
        ),
        C("created_at", TS),
        C("last_purchase_at", TS),
        C("first_purchase_at", TS),
        C("order_count", INT),
        C("total_spent", F),
        C("average_order_value", F),
        C("engagement_score", F, doc="0–100"),
        C("preferred_categories", J, doc="JSON array of category names, most preferred first"),
        C("last_seen_at", TS),
        C("source", S),
        C("updated_at", TS, False),
        C("first_seen", TS, doc="Earliest time any of the customer's identifiers was seen"),
        C("last_seen", TS, doc="Latest event, order or record of the customer"),
        C("days_since_last_purchase", INT, doc="Whole days from last_purchase_at to --now"),
        C("open_tickets", INT),
        C("lifecycle_stage", S, doc="prospect, new, active, at_risk or lapsed"),
        C("traits", J, doc="User-defined traits (traits/*.sql): JSON object name → value"),
        C(
            "p_alive",
            F,
            doc="Predictive (traits.predictive): probability the customer still buys (BG/NBD)",
        ),
        C(
            "expected_orders",
            F,
            doc="Predictive: expected orders in the next traits.predictive.horizon_days",
        ),
        C(
            "predicted_clv",
            F,
            doc="Predictive: expected revenue in the horizon (BG/NBD × Gamma-Gamma spend)",
        ),
    ),
    primary_key=("customer_id",),
    indexes=(("email",),),
    key_by_construction=True,
    doc="One row per resolved customer, with computed traits",
)

IDENTITIES = Table(
    "identities",
    (
        C("customer_id", S, False),
        C("kind", S, False, "email, user_id, anonymous_id, phone, or a source's own id kind"),
        C("value", S, False),
        C("source", S, False),
        C("first_seen", TS, False),
        C("last_seen", TS, False),
    ),
    primary_key=("kind", "value"),
    indexes=(("customer_id",),),
    key_by_construction=True,
)

ORDERS = Table(
    "orders",
    (
        C("order_id", S, False),
        C("customer_id", S),
        C("email", S),
        C("cart_id", S),
        C("status", S),
        C("currency", S),
        C("subtotal", F),
        C("discount", F),
        C("total", F),
        C("discount_code", S),
        C("created_at", TS, False),
        C("updated_at", TS),
        C("source", S, False),
        C("source_customer_id", S, doc="The customer id as the source knows it"),
        C("received_at", TS, doc="When this version was stored (a sync, an import, a webhook)"),
    ),
    primary_key=("order_id",),
    indexes=(("customer_id",),),
)

ORDER_ITEMS = Table(
    "order_items",
    (
        C("order_id", S, False),
        C("line_no", INT, False),
        C("product_id", S, False),
        C("quantity", INT, False),
        C("price", F, False),
        C("source", S, False),
        C("received_at", TS, doc="When this version was stored (a sync, an import, a webhook)"),
    ),
    primary_key=("order_id", "line_no"),
    indexes=(("product_id",),),
    key_by_construction=True,
)

PRODUCTS = Table(
    "products",
    (
        C("product_id", S, False),
        C("sku", S),
        C("name", S, False),
        C("category", S),
        C("price", F),
        C("currency", S),
        C("stock", INT),
        C("url", S),
        C("image_url", S),
        C("created_at", TS, doc="When it was listed (new arrivals)"),
        C("updated_at", TS),
        C("source", S, False),
    ),
    primary_key=("product_id",),
    indexes=(("category",),),
)

TICKETS = Table(
    "tickets",
    (
        C("ticket_id", S, False),
        C("customer_id", S),
        C("email", S),
        C("subject", S),
        C("status", S),
        C("priority", S),
        C("satisfaction", S),
        C("created_at", TS, False),
        C("updated_at", TS),
        C("source", S, False),
        C("source_customer_id", S, doc="The customer id as the source knows it"),
        C("received_at", TS, doc="When this version was stored (a sync, an import, a webhook)"),
    ),
    primary_key=("ticket_id",),
    indexes=(("customer_id",),),
    doc="Support tickets from help-desk sources",
)

CONSENTS = Table(
    "consents",
    (
        C("customer_id", S, False),
        C("purpose", S, False, "email_marketing, transactional, profiling, …"),
        C("channel", S, False, "email, sms, …"),
        C("status", S, False, "granted or revoked"),
        C("source", S, False),
        C("updated_at", TS, False),
    ),
    primary_key=("customer_id", "purpose", "channel"),
)

SEGMENT_MEMBERSHIPS = Table(
    "segment_memberships",
    (
        C("segment", S, False),
        C("customer_id", S, False),
        C("entered_at", TS, False),
        C("exited_at", TS),
    ),
    primary_key=("segment", "customer_id", "entered_at"),
    key_by_construction=True,
)

CUSTOMER_TAGS = Table(
    "customer_tags",
    (
        C("customer_id", S, False),
        C("tag", S, False),
        C("rule", S, False),
        C("assigned_at", TS, False),
        C("expires_at", TS),
        C("variables", J),
    ),
    primary_key=("customer_id", "tag"),
    key_by_construction=True,
)

MESSAGES = Table(
    "messages",
    (
        C("idempotency_key", S, False),
        C("customer_id", S, False),
        C("journey", S),
        C("step", S),
        C("template", S, False),
        C("status", S, False, "queued, sent, skipped_*, failed"),
        C("subject", S),
        C("variant", S),
        C("decided_at", TS, False),
        C("sent_at", TS),
        C("error", S),
        C("trigger_key", S, doc="The journey instance's trigger key (a cart id, an entry instant)"),
        C("purpose", S, doc="Consent purpose checked when decided and again before sending"),
        C("send_after", TS, doc="Held (quiet hours) until this instant; NULL: due when decided"),
        C("transport", S, doc="The transport that took it (outbox, smtp, esp)"),
    ),
    primary_key=("idempotency_key",),
    indexes=(("customer_id",), ("status",)),
    doc="One row per email decided; the idempotency key (journey, step, customer, trigger key) "
    "makes every decision and every send happen once",
)

QUARANTINE = Table(
    "quarantine",
    (
        C("id", S, False, "Deterministic id: retries quarantine the same input once"),
        C("source", S, False),
        C("received_at", TS, False),
        C("reason", S, False, "Machine-readable reason code"),
        C("detail", S, False, "What is wrong and where (file:line, key, JSON pointer)"),
        C("payload", S, doc="The input as received (text)"),
        C("location", S, doc="file:line, request index or JSON pointer"),
    ),
    primary_key=("id",),
    indexes=(("source",),),
)

DISCOUNT_CODES = Table(
    "discount_codes",
    (
        C("code", S, False),
        C("customer_id", S, False),
        C("campaign", S, False),
        C("value", F),
        C("kind", S, doc="percent or amount"),
        C("created_at", TS, False),
        C("expires_at", TS, False),
        C("redeemed_at", TS),
        C(
            "idempotency_key",
            S,
            doc="The request that issued it (journey, step, customer, trigger …): asking again "
            "with the same key returns this code",
        ),
        C("order_id", S, doc="The order that redeemed it"),
    ),
    primary_key=("code",),
    indexes=(("customer_id",), ("idempotency_key",)),
    doc="Personal discount codes: unique, single-use, with an expiry",
)

FILE_IMPORTS = Table(
    "file_imports",
    (
        C("source", S, False),
        C("path", S, False),
        C("sha256", S, False),
        C("table_name", S, False),
        C("rows_read", INT, False),
        C("rows_loaded", INT, False),
        C("rows_quarantined", INT, False),
        C("imported_at", TS, False),
    ),
    primary_key=("source", "sha256"),
    internal=True,
    doc="Files already imported (by content hash): re-importing one loads nothing",
)

SOURCE_STATE = Table(
    "source_state",
    (
        C("source", S, False),
        C("resource", S, False),
        C("state", J),
        C("last_sync_at", TS),
        C("updated_at", TS, False),
    ),
    primary_key=("source", "resource"),
    internal=True,
    doc="Connector cursors and last sync times",
)

WEBHOOK_RECEIPTS = Table(
    "webhook_receipts",
    (
        C("source", S, False),
        C("webhook_id", S, False, "The delivery's id (webhook-id, X-Shopify-Webhook-Id, evt_…)"),
        C("received_at", TS, False),
        C("signed_at", TS, doc="When the sender signed (or triggered) it"),
        C("outcome", S, False, "accepted or quarantined"),
        C("rows_loaded", INT, False),
        C("rows_quarantined", INT, False),
    ),
    primary_key=("source", "webhook_id"),
    internal=True,
    doc="Webhook deliveries stored, one per id: a replayed delivery has no second effect",
)

PIPELINE_RUNS = Table(
    "pipeline_runs",
    (
        C("run_id", S, False),
        C("started_at", TS, False),
        C("finished_at", TS),
        C("now", TS, False, "The instant the run was evaluated at (--now)"),
        C("status", S, False),
        C("stats", J),
    ),
    primary_key=("run_id",),
    internal=True,
)

# ----------------------------------------------------------- identity and profiles (issue 5)
CUSTOMER_RECORDS = Table(
    "customer_records",
    (
        C("source", S, False),
        C("record_id", S, False, "The person's id in the source (CRM id, shop customer id …)"),
        C("observed_at", TS, False, "When the source observed these values (its updated_at)"),
        C("email", S),
        C("first_name", S),
        C("last_name", S),
        C("phone", S),
        C("timezone", S),
        C("country", S),
        C("city", S),
        C(
            "locale",
            S,
            doc="Language and region to write to the person in (BCP 47: fr, fr-CA); chooses "
            "template variants (templates/NAME.fr.liquid)",
        ),
        C("created_at", TS, doc="When the person signed up, as the source says"),
        C("user_id", S, doc="The login id the source knows the person by, if any"),
        C("attributes", J, doc="Other fields of the record"),
        C("received_at", TS, False),
    ),
    primary_key=("source", "record_id", "observed_at"),
    indexes=(("email",),),
    key_by_construction=True,
    doc="Person records from sources, every version kept: the input of identity and profiles",
)

IDENTITY_NODES = Table(
    "identity_nodes",
    (
        C("node_id", INT, False),
        C("kind", S, False),
        C("value", S, False, "Normalized value"),
        C("source", S, False, "The first source that held it"),
        C("first_seen", TS, False),
        C("last_seen", TS, False),
        C("blocked", B, False, "A blocked value: never links anything"),
        C("cluster", INT, False, "Connected component over every edge (smallest node id)"),
        C("part", INT, False, "The customer partition inside the cluster, after merge limits"),
        C("customer_id", S, doc="NULL for blocked values and purely anonymous clusters"),
    ),
    primary_key=("node_id",),
    indexes=(("kind", "value"), ("cluster",), ("customer_id",)),
    key_by_construction=True,
    internal=True,
    doc="Every identifier ever seen, as a node of the identity graph",
)

IDENTITY_EDGES = Table(
    "identity_edges",
    (
        C("a", INT, False, "Node id (the smaller)"),
        C("b", INT, False, "Node id (the larger)"),
        C("source", S, False),
        C("evidence", S, False, "identify, alias, event, record, order, ticket"),
        C("origin", S, False, "The first input that showed the link (message id, record id …)"),
        C("first_seen", TS, False),
        C("last_seen", TS, False),
    ),
    primary_key=("a", "b", "source"),
    indexes=(("b",),),
    key_by_construction=True,
    internal=True,
    doc="Evidence that two identifiers belong to one person",
)

IDENTITY_REFUSALS = Table(
    "identity_refusals",
    (
        C("a", INT, False),
        C("b", INT, False),
        C("source", S, False),
        C("cluster", INT, False),
        C("reason", S, False, "limit_exceeded"),
        C("detail", S, False, "Which limit, without personal data"),
        C("decided_at", TS, False),
    ),
    primary_key=("a", "b", "source"),
    indexes=(("cluster",),),
    doc="Merges that over-merge protection refused, with the reason",
)

CUSTOMER_IDS = Table(
    "customer_ids",
    (
        C("customer_id", S, False),
        C("founder", INT, False, "Node whose cluster first got this id"),
        C("founded_at", TS, False, "first_seen of the founder: the older id wins a merge"),
        C("status", S, False, "active or merged"),
        C("merged_into", S),
        C("merged_at", TS),
    ),
    primary_key=("customer_id",),
    internal=True,
    doc="Every customer id ever given, and where merged ones went",
)

PROFILE_OBSERVATIONS = Table(
    "profile_observations",
    (
        C("node_id", INT, False, "The identifier the observation is about"),
        C("field", S, False),
        C("value", S, False),
        C("source", S, False),
        C("origin", S, False, "Record id, message id or order id"),
        C("observed_at", TS, False, "When the source observed it (not when it arrived)"),
        C("received_at", TS, False),
    ),
    primary_key=("source", "origin", "field", "observed_at"),
    indexes=(("node_id",),),
    key_by_construction=True,
    doc="Every value any source gave for a profile field: the provenance of survivorship",
)

IDENTITY_STATE = Table(
    "identity_state",
    (C("key", S, False), C("value", S, False), C("updated_at", TS, False)),
    primary_key=("key",),
    internal=True,
    doc="Watermarks and the rules fingerprint of identity resolution",
)

SUPPRESSIONS = Table(
    "suppressions",
    (
        C("subject_hash", S, False, "Keyed hash (HMAC-SHA256, hex) of the normalized identifier"),
        C("kind", S, False, "What was hashed: email, phone, customer_id"),
        C("customer_id", S, doc="The customer it applies to, while one exists"),
        C("reason", S, False, "unsubscribed, bounced, complained, erased, manual"),
        C("source", S),
        C("created_at", TS, False),
    ),
    primary_key=("kind", "subject_hash"),
    indexes=(("customer_id",),),
    doc="Tombstones: who must never be emailed (no personal data, only keyed hashes)",
)

AUDIENCE_CHANGES = Table(
    "audience_changes",
    (
        C("kind", S, False, "segment or tag"),
        C("name", S, False, "The segment's name or the tag"),
        C("customer_id", S, False),
        C("change", S, False, "entered or exited"),
        C("changed_at", TS, False, "The instant the refresh was evaluated at (--now)"),
        C("rule", S, doc="For tags: the rule that assigned it"),
        C("recorded_at", TS, False, "Wall-clock time the change was written"),
    ),
    indexes=(("changed_at",), ("customer_id",)),
    doc="Segment entries/exits and tag assignments/removals, append-only: journeys trigger on them "
    "(a log: no key; read the changes with changed_at after your last checkpoint)",
)

SEGMENT_STATE = Table(
    "segment_state",
    (
        C("segment", S, False),
        C("refreshed_at", TS, False, "The instant of the last refresh (--now)"),
        C("finished_at", TS, False, "Wall-clock time it finished"),
        C("seconds", F, False),
        C("members", INT, False),
        C("entered", INT, False),
        C("exited", INT, False),
        C("sql", S, False, "The SQL as run"),
    ),
    primary_key=("segment",),
    internal=True,
    doc="The last refresh of each segment",
)

SEGMENT_ERRORS = Table(
    "segment_errors",
    (
        C("segment", S, False),
        C("file", S, False, "The segment's file, relative to the project"),
        C("error", S, False, "What the warehouse said, masked (no personal data), with a hint"),
        C("failed_at", TS, False, "The instant of the refresh that failed (--now)"),
        C("recorded_at", TS, False, "Wall-clock time it failed"),
        C(
            "kind",
            S,
            False,
            "sql (the warehouse refused its query), cap (a whole refresh over max_members), "
            "timeout (a whole refresh over its timeout) or real-time-timeout (a real-time "
            "refresh over it): a successful real-time refresh clears all but cap and timeout",
        ),
    ),
    primary_key=("segment",),
    internal=True,
    doc="Segments whose last refresh failed on the warehouse (`personify run`, `personify "
    "segments refresh` or the real-time path): they kept their memberships; a row goes when "
    "the segment refreshes",
)

CONSOLE_SESSIONS = Table(
    "console_sessions",
    (
        C(
            "session_hash",
            S,
            False,
            "SHA-256 of the session id the signed console cookie carries (never the id)",
        ),
        C("token_name", S, False, "The admin token signed in with (its name, never the token)"),
        C("started_at", TS, False, "When the token was typed into the sign-in form"),
        C("expires_at", TS, False, "The session ends at this instant at the latest"),
        C(
            "ended_at",
            TS,
            True,
            "When it was signed out (or ended by `personify console sign-out`)",
        ),
    ),
    primary_key=("session_hash",),
    internal=True,
    doc="Marketer console sessions: every `serve` process sharing the warehouse checks a "
    "cookie's session here, so signing out ends it everywhere, even for a copy of the cookie; "
    "rows past their expiry are deleted by the next sign-in",
)

# ------------------------------------------------------------------ privacy and security (issue 8)
CONSENT_PAUSES = Table(
    "consent_pauses",
    (
        C("customer_id", S, False, "The customer (their current id when they paused)"),
        C("purpose", S, False, "The consent purpose paused"),
        C("channel", S, False, "email"),
        C("paused_until", TS, False, "Mail for the purpose resumes after this instant"),
        C("paused_at", TS, False, "When the person asked"),
        C("source", S, False, "Where the pause came from: preference_centre"),
    ),
    primary_key=("customer_id", "purpose", "channel"),
    doc="Pauses a person asked for (the preference page's 'pause for 30/90 days'): until "
    "``paused_until`` the send gate and the ``sendable`` view leave them out for the purpose; "
    "their consent is untouched, so mail resumes by itself",
)

CONSENT_HISTORY = Table(
    "consent_history",
    (
        C(
            "customer_id",
            S,
            False,
            "The subject as ``consents`` keys it: a customer id or a source's id",
        ),
        C("purpose", S, False),
        C("channel", S, False),
        C("status", S, False, "granted or revoked"),
        C(
            "source",
            S,
            False,
            "Where the change came from: tracking, cli, api, unsubscribe, a file …",
        ),
        C("changed_at", TS, False, "When the person changed it (as the source says)"),
        C("recorded_at", TS, False, "When Personify recorded it"),
        C("ip", S, doc="Proof: the IP address the consent was given from"),
        C("user_agent", S, doc="Proof: the browser's user agent"),
        C("form", S, doc="Proof: the form or page that collected it"),
        C("confirmed_at", TS, doc="Proof: when a double opt-in confirmation link was followed"),
        C("proof", J, doc="Other evidence, as sent (JSON object)"),
    ),
    primary_key=("customer_id", "purpose", "channel", "changed_at", "source", "status"),
    indexes=(("customer_id",),),
    doc="Every consent change with its proof, append-only; ``consents`` holds the current state",
)

CONSENT_KINDS = Table(
    "consent_kinds",
    (
        C("source", S, False),
        C("kind", S, False, "The identifier kind of the ids its consent rows carry"),
    ),
    primary_key=("source",),
    internal=True,
    doc="identity.source_kinds as of the last run: how consent rows keyed by a source's own id "
    "find their customer (read by the ``sendable`` view and the send-time consent gate)",
)

ERASURE_PROGRESS = Table(
    "erasure_progress",
    (
        C("erasure_id", S, False, "Keyed hash of the erased customer id (no personal data)"),
        C("step", S, False, "A table name, or outbox / tombstone"),
        C("status", S, False, "done"),
        C("rows", INT, False, "Rows (or files) removed or rewritten"),
        C("finished_at", TS, False),
        C(
            "erasure_of",
            S,
            doc="An alias row's (step alias): the erasure_id of the erasure that erased that "
            "identifier (NULL before migration 40)",
        ),
    ),
    primary_key=("erasure_id", "step"),
    indexes=(("step", "finished_at"),),
    internal=True,
    doc="Erasure progress, a row per finished step: a re-run skips what is done",
)

AUDIT_LOG = Table(
    "audit_log",
    (
        C("id", S, False),
        C("occurred_at", TS, False),
        C("action", S, False, "profile_read, export, erase, consent"),
        C("actor", S, False, "cli, api, tracking, unsubscribe …"),
        C("subject_hash", S, doc="Keyed hash of the subject's customer id (no personal data)"),
        C("detail", J, doc="What was done (counts, purpose, status), without personal data"),
        C("seq", INT, doc="Position in the hash chain (1, 2, …); NULL for entries before it"),
        C("prev_hash", S, doc="entry_hash of the entry before (tamper evidence)"),
        C("entry_hash", S, doc="SHA-256 over prev_hash and this entry's fields"),
    ),
    primary_key=("id",),
    indexes=(("occurred_at",), ("seq",)),
    doc="Append-only log of privacy-relevant actions (reads, exports, erasures, consent changes); "
    "UPDATE and DELETE are refused (a trigger on PostgreSQL, the warehouse layer on DuckDB) and "
    "entries form a hash chain (`personify audit --verify`)",
)

FIELD_INDEX = Table(
    "field_index",
    (
        C("customer_id", S, False),
        C("kind", S, False, "email or phone"),
        C("value_hash", S, False, "Keyed hash (HMAC-SHA256) of the normalized value"),
        C("updated_at", TS, False),
    ),
    primary_key=("customer_id", "kind"),
    indexes=(("value_hash",),),
    internal=True,
    doc="Blind index of encrypted customers columns (privacy.encrypted_fields): equality lookup "
    "by email or phone without decrypting",
)

# ---------------------------------------------------------------------------- journeys (issue 7)
JOURNEY_INSTANCES = Table(
    "journey_instances",
    (
        C("journey", S, False),
        C("customer_id", S, False),
        C("trigger_key", S, False, "What entered it: a cart id, a message id, an entry instant"),
        C("step", INT, False, "Index of the next step to run (0-based)"),
        C("status", S, False, "active, completed or exited"),
        C("wake_at", TS, False, "When the next step is due"),
        C("trigger_at", TS, False, "When the trigger happened (the event's or change's time)"),
        C(
            "waiting_since",
            TS,
            doc="A wait_for step the instance waits at: when its window opened (the step's due "
            "time; wake_at is then the deadline). NULL otherwise",
        ),
        C("entered_at", TS, False, "The run (--now) that entered it"),
        C("updated_at", TS, False),
        C("exited_at", TS),
        C(
            "exit_reason",
            S,
            doc="completed, goal (the goal event happened), left_segment (exit_when: the "
            "customer left the segment), exit (an exit step) or merged",
        ),
    ),
    primary_key=("journey", "customer_id", "trigger_key"),
    indexes=(("journey", "status", "wake_at"), ("customer_id",)),
    doc="One row per customer per journey entry: where they are and when their next step is due",
)

JOURNEY_STATE = Table(
    "journey_state",
    (
        C("journey", S, False),
        C("checkpoint", TS, doc="audience_changes read up to this changed_at"),
        C("last_schedule", TS, doc="The last broadcast occurrence entered"),
        C("updated_at", TS, False),
    ),
    primary_key=("journey",),
    internal=True,
    doc="Per journey: how far its triggers have been read",
)

JOURNEY_TAGS = Table(
    "journey_tags",
    (
        C("customer_id", S, False),
        C("tag", S, False),
        C("journey", S, False),
        C("assigned_at", TS, False),
    ),
    primary_key=("customer_id", "tag"),
    doc="Tags set by journey steps (rule tags live in customer_tags); each assignment is also an "
    "audience_changes row (kind tag), so other journeys can trigger on it",
)

RECONCILIATION_RUNS = Table(
    "reconciliation_runs",
    (
        C("run_id", S, False),
        C("started_at", TS, False),
        C("finished_at", TS),
        C("sources", J, doc="JSON array of the source names compared"),
        C("status", S, False, "clean, discrepancies, repaired or failed"),
        C("source_rows", INT),
        C("warehouse_rows", INT),
        C("matched", INT),
        C("missing_in_warehouse", INT, doc="Keys at the source the warehouse lacks (not pending)"),
        C("missing_at_source", INT, doc="Keys in the warehouse the source no longer has"),
        C("mismatched", INT, doc="Keys on both sides whose compared fields differ (not pending)"),
        C("pending", INT, doc="Differences explained by changes at the source after its last sync"),
        C("repaired", INT, doc="Keys re-synced by --repair"),
        C("flagged", B, doc="Discrepancies beyond quality.reconcile.threshold: for review"),
        C("detail", J, doc="Per source and resource: the counts above and the fields that differ"),
    ),
    primary_key=("run_id",),
    internal=True,
    doc="One row per `personify reconcile`: source versus warehouse, counted",
)

RECONCILIATION_DISCREPANCIES = Table(
    "reconciliation_discrepancies",
    (
        C("run_id", S, False),
        C("source", S, False),
        C("resource", S, False),
        C("table_name", S, False),
        C("record_key", S, False, "The record's key (ids only, never field values)"),
        C("kind", S, False, "missing_in_warehouse, missing_at_source or mismatch"),
        C("fields", J, doc="mismatch: JSON array of the columns that differ"),
        C("pending", B, False, "Changed at the source after the last sync (not an error)"),
        C("repaired", B, False),
    ),
    primary_key=("run_id", "source", "resource", "record_key"),
    internal=True,
    doc="The keys behind a reconciliation run's counts",
)

QUALITY_VIOLATIONS = Table(
    "quality_violations",
    (
        C("checked_at", TS, False),
        C("table_name", S, False),
        C("rule", S, False, "The rule's name (table.column.check unless named)"),
        C("action", S, False, "quarantine, flag or warn"),
        C("violations", INT, False),
        C("checked_rows", INT),
        C("sample", J, doc="JSON array of up to quality.sample_size keys of violating rows"),
        C("trigger", S, doc="sync, run or manual"),
    ),
    primary_key=("checked_at", "table_name", "rule"),
    internal=True,
    doc="Validation rules run in the warehouse after loads and syncs: counts and sample keys",
)

SOURCE_FIELDS = Table(
    "source_fields",
    (
        C("source", S, False),
        C("stream", S, False, "file:<table>, resource:<name> or event:<name>"),
        C("field", S, False, "A file column, a record key or an event property"),
        C("type", S, False, "string, number, boolean, object, array, timestamp … ('|' if mixed)"),
        C("present", B, False, "Seen in the latest observation"),
        C("first_seen", TS, False),
        C("last_seen", TS, False),
    ),
    primary_key=("source", "stream", "field"),
    internal=True,
    doc="The fields each source's records were last seen with (schema drift baseline)",
)

SCHEMA_CHANGES = Table(
    "schema_changes",
    (
        C("detected_at", TS, False),
        C("source", S, False),
        C("stream", S, False),
        C("field", S, False),
        C("change", S, False, "added, removed or type_changed"),
        C("old_type", S),
        C("new_type", S),
    ),
    primary_key=("source", "stream", "field", "change", "detected_at"),
    internal=True,
    doc="Schema drift: fields a source's records gained, lost or changed type",
)

EXPERIMENT_ASSIGNMENTS = Table(
    "experiment_assignments",
    (
        C("experiment", S, False, "The experiment (a journey step's name)"),
        C("customer_id", S, False),
        C("variant", S, False, "The variant, or 'holdout' (receives nothing)"),
        C("assigned_at", TS, False),
    ),
    primary_key=("experiment", "customer_id"),
    doc="Deterministic variant assignment per customer and experiment (first one kept)",
)


DESTINATION_STATE = Table(
    "destination_state",
    (
        C("destination", S, False),
        C("key_hash", S, False, "Keyed hash of the record's key (never the key itself)"),
        C("row_hash", S, False, "MD5 of the row as last pushed: unchanged rows are not sent again"),
        C(
            "status",
            S,
            False,
            "sent, rejected (the API refused the record; sent again once its row changes), or "
            "remove_rejected (the API refused its removal; tried again at the next push), or "
            "erased (the person was erased: removed at the API first by the next push, only the "
            "key hash and the encrypted key kept)",
        ),
        C("error", S, doc="What the API answered a rejected record (personal data masked)"),
        C("pushed_at", TS, False),
        C(
            "record_key",
            S,
            doc="The record's key, encrypted (privacy.encryption_keys), kept only when the "
            "destination removes records that leave its model (on_remove: delete)",
        ),
        C(
            "identifiers_key",
            S,
            doc="An ad audience's: a tag of the key its identifiers' keyed hashes "
            "(destination_identifiers) were made under; NULL while none are kept (a record "
            "stored before migration 36: hashed from record_key at the next removal)",
        ),
        C(
            "erasure_id",
            S,
            doc="A pending removal's (status erased): the erasure that queued it "
            "(erasure_progress.erasure_id, a keyed hash); NULL otherwise and for those queued "
            "before migration 40",
        ),
    ),
    primary_key=("destination", "key_hash"),
    internal=True,
    doc="Destinations (reverse ETL): what each record looked like when its API last took it",
)

EVENT_FORWARDS = Table(
    "event_forwards",
    (
        C("destination", S, False, "The events destination (kind: events)"),
        C("message_id", S, False, "The event forwarded (events.message_id)"),
        C(
            "received_at",
            TS,
            False,
            "When the event was stored (its stored_at, else its received_at — the forwarding's "
            "order): rows below the destination's floor go",
        ),
        C(
            "status",
            S,
            False,
            "sent (the API answered 2xx), rejected (the API refused it: never sent again), or "
            "without_consent (its person may not be shared with the destination)",
        ),
        C("error", S, doc="What the API answered a rejected event (personal data masked)"),
        C("forwarded_at", TS, False),
    ),
    primary_key=("destination", "message_id"),
    indexes=(("destination", "received_at"),),
    internal=True,
    doc="Event forwarding: each event's outcome at each events destination, kept for the "
    "lookback window (rejected ones kept until the destination is reset)",
)

DESTINATION_IDENTIFIERS = Table(
    "destination_identifiers",
    (
        C("destination", S, False),
        C("key_hash", S, False, "The record (destination_state.key_hash)"),
        C(
            "id_hash",
            S,
            False,
            "Keyed hash (HMAC-SHA256 under the blind index key) of one identifier the record "
            "was sent with, as sent (already normalized and hashed): never the value",
        ),
    ),
    indexes=(("destination", "id_hash"), ("destination", "key_hash")),
    internal=True,
    doc="Ad audiences: the identifiers each record was sent with, as keyed hashes — a removal "
    "leaves out those a remaining member shares, found with one join",
)

# --------------------------------------------------------------------- uploaded lists (session 19)
LIST_MEMBERS = Table(
    "list_members",
    (
        C("list", S, False, "The list's name (`personify lists upload NAME FILE`)"),
        C(
            "kind",
            S,
            False,
            "email, phone, user_id, customer_id, or a source's own id kind (as in identities)",
        ),
        C(
            "value",
            S,
            False,
            "The identifier normalized as identity normalizes it (emails lower-cased, phones "
            "E.164) — held as identities holds it: a blind index under encrypted email/phone",
        ),
        C("added_at", TS, False, "The upload that added it"),
        C("file", S, doc="The file it came from (path as given)"),
    ),
    primary_key=("list", "kind", "value"),
    indexes=(("kind", "value"),),
    doc="Uploaded lists: identifiers matched to customers at read time (the list_customers view)",
)

LIST_UPLOADS = Table(
    "list_uploads",
    (
        C("list", S, False),
        C("sha256", S, False, "SHA-256 of the file uploaded"),
        C("file", S, False),
        C("kind", S, False),
        C("form", S, False, "How values are held: plain, or blind:TAG (the blind index's tag)"),
        C("uploaded_at", TS, False),
        C("rows_read", INT, False),
        C("rows_added", INT, False),
        C("rows_duplicate", INT, False, "Already on the list, or repeated in the file"),
        C("rows_quarantined", INT, False),
        C("replaced", B, False, "--replace: the list held only this file's rows after"),
    ),
    primary_key=("list", "sha256", "uploaded_at"),
    internal=True,
    doc="Every upload of a list: what it read, added and quarantined (no identifiers)",
)

ALERT_STATE = Table(
    "alert_state",
    (
        C("alert", S, False, "The alert's name (alerts: in personify.yml)"),
        C("state", S, False, "ok, pending (holds, not yet for its `for:`) or firing"),
        C("pending_since", TS, doc="When the signal began to hold"),
        C("firing_since", TS, doc="When it fired (this episode)"),
        C("resolved_at", TS, doc="When it last resolved"),
        C("last_notified_at", TS, doc="When its notifiers were last told (firing or repeat)"),
        C("subjects", S, doc="What it holds for, as a JSON list (sources, journeys: no people)"),
        C("detail", S, doc="The figures behind it (counts, rates)"),
        C("evaluated_at", TS, doc="When it was last evaluated"),
        C(
            "subject_state",
            S,
            doc="Each subject's own state as JSON: pending or firing, since when, last "
            "notified (for: and repeat: apply per subject)",
        ),
        C(
            "version",
            INT,
            False,
            "Bumped by every change: a change is made only over the "
            "version read (two processes never both fire one alert)",
        ),
    ),
    primary_key=("alert",),
    internal=True,
    doc="Each alert's state: ok, pending or firing, since when, last notified",
)

ALERT_NOTIFICATIONS = Table(
    "alert_notifications",
    (
        C("key", S, False, "alert|notifier[#recipient]|kind|episode: one message each"),
        C("alert", S, False),
        C("notifier", S, False),
        C("recipient", INT, doc="An email notifier's address (index in its to:), one row each"),
        C("kind", S, False, "firing, repeat, grown (one more subject) or resolved"),
        C(
            "status",
            S,
            False,
            "pending, sending, sent, failed (retried after a backoff), given_up (failing for 24 h) "
            "or dropped (its alert was removed from personify.yml)",
        ),
        C("message", S, False, "The message as JSON (counts and names only, no personal data)"),
        C("attempts", INT, False),
        C("created_at", TS, False),
        C("claimed_at", TS, doc="When a process last took it to send"),
        C("sent_at", TS),
        C("error", S, doc="Why the last attempt failed"),
    ),
    primary_key=("key",),
    indexes=(("status",),),
    internal=True,
    doc="Every notification of an alert and what became of it (each sent once)",
)

PREDICTIVE_FITS = Table(
    "predictive_fits",
    (
        C("fitted_at", TS, False, "--now of the fit"),
        C("status", S, False, "fitted, or skipped (too little data: see note)"),
        C("note", S),
        C("horizon_days", INT, False),
        C("customers", INT, False, "Customers with an order (the summary's rows)"),
        C("repeat_customers", INT, False, "Customers with a repeat purchase day"),
        C("params", J, doc="BG/NBD r, alpha, a, b (per day); Gamma-Gamma p, q, gamma"),
        C("quality", J, doc="Log-likelihoods, convergence, fit seconds, totals"),
    ),
    primary_key=("fitted_at",),
    internal=True,
    doc="Every predictive-trait fit: the parameters and how well they fit (no identifiers)",
)

TABLES: tuple[Table, ...] = (
    EVENTS,
    CUSTOMERS,
    IDENTITIES,
    ORDERS,
    ORDER_ITEMS,
    PRODUCTS,
    TICKETS,
    CONSENTS,
    SEGMENT_MEMBERSHIPS,
    CUSTOMER_TAGS,
    MESSAGES,
    QUARANTINE,
    DISCOUNT_CODES,
    FILE_IMPORTS,
    SOURCE_STATE,
    WEBHOOK_RECEIPTS,
    PIPELINE_RUNS,
    CUSTOMER_RECORDS,
    IDENTITY_NODES,
    IDENTITY_EDGES,
    IDENTITY_REFUSALS,
    CUSTOMER_IDS,
    PROFILE_OBSERVATIONS,
    IDENTITY_STATE,
    SUPPRESSIONS,
    AUDIENCE_CHANGES,
    SEGMENT_STATE,
    SEGMENT_ERRORS,
    CONSOLE_SESSIONS,
    CONSENT_HISTORY,
    CONSENT_PAUSES,
    CONSENT_KINDS,
    ERASURE_PROGRESS,
    AUDIT_LOG,
    FIELD_INDEX,
    JOURNEY_INSTANCES,
    JOURNEY_STATE,
    JOURNEY_TAGS,
    RECONCILIATION_RUNS,
    RECONCILIATION_DISCREPANCIES,
    QUALITY_VIOLATIONS,
    EXPERIMENT_ASSIGNMENTS,
    SOURCE_FIELDS,
    SCHEMA_CHANGES,
    DESTINATION_STATE,
    EVENT_FORWARDS,
    DESTINATION_IDENTIFIERS,
    LIST_MEMBERS,
    LIST_UPLOADS,
    ALERT_STATE,
    ALERT_NOTIFICATIONS,
    PREDICTIVE_FITS,
)
TABLES_BY_NAME = {t.name: t for t in TABLES}

CUSTOMER_DATA_VIEW = """
CREATE OR REPLACE VIEW customer_data AS
SELECT
  customer_id,
  email,
  first_name,
  last_name,
  phone,
  timezone,
  country,
  CAST(last_purchase_at AS DATE) AS purchase_date,
  last_purchase_at,
  first_purchase_at,
  order_count,
  total_spent,
  average_order_value,
  engagement_score,
  preferred_categories,
  last_seen_at,
  created_at,
  updated_at,
  days_since_last_purchase,
  first_seen,
  last_seen,
  open_tickets,
  lifecycle_stage,
  traits,
  p_alive,
  expected_orders,
  predicted_clv,
  locale
FROM customers
"""
"""One row per customer, shaped so the seed's SQL runs as written. Columns added later are
appended at the end (PostgreSQL's ``CREATE OR REPLACE VIEW`` only appends): the predictive
traits (migration 32), ``locale`` (migration 33)."""

SENDABLE_VIEW = """
CREATE OR REPLACE VIEW sendable AS
WITH consent_rows AS (
  SELECT coalesce(ci.merged_into, k.customer_id) AS customer_id, k.purpose, k.status, k.updated_at
  FROM consents AS k LEFT JOIN customer_ids AS ci ON ci.customer_id = k.customer_id
  WHERE k.channel = 'email'
  UNION ALL
  SELECT i.customer_id, k.purpose, k.status, k.updated_at
  FROM consents AS k
  LEFT JOIN consent_kinds AS sk ON sk.source = k.source
  JOIN identities AS i ON i.kind = coalesce(sk.kind, k.source || '_id') AND i.value = k.customer_id
  WHERE k.channel = 'email'
),
consent_state AS (
  SELECT
    customer_id,
    purpose,
    max(CASE WHEN status = 'granted' THEN updated_at END) AS granted_at,
    count(CASE WHEN status <> 'granted' THEN 1 END) AS refusals
  FROM consent_rows GROUP BY customer_id, purpose
),
suppressed AS (
  SELECT coalesce(ci.merged_into, s.customer_id) AS customer_id, s.reason, s.created_at
  FROM suppressions AS s LEFT JOIN customer_ids AS ci ON ci.customer_id = s.customer_id
  WHERE s.customer_id IS NOT NULL
)
SELECT
  m.segment,
  m.customer_id,
  c.email,
  k.purpose,
  m.entered_at
FROM segment_memberships AS m
JOIN customers AS c ON c.customer_id = m.customer_id
JOIN consent_state AS k
  ON k.customer_id = m.customer_id AND k.granted_at IS NOT NULL AND k.refusals = 0
WHERE m.exited_at IS NULL
  AND c.email IS NOT NULL
  AND NOT (
    k.purpose <> 'transactional'
    AND EXISTS (
      SELECT 1 FROM suppressed AS s
      WHERE s.customer_id = m.customer_id
        AND NOT (s.reason = 'erased' AND s.created_at < k.granted_at)
    )
  )
  AND NOT EXISTS (
    SELECT 1 FROM consent_pauses AS p LEFT JOIN customer_ids AS pi ON pi.customer_id = p.customer_id
    WHERE coalesce(pi.merged_into, p.customer_id) = m.customer_id
      AND p.purpose = k.purpose AND p.channel = 'email' AND p.paused_until > CURRENT_TIMESTAMP
  )
"""
"""Who may be emailed in each segment, per consent purpose — the same rule as the send-time gate
(:func:`personify.privacy.consent.consented`): current members with an email address and consent
``granted`` for the purpose on the email channel, resolved over every identifier of the customer
(its id, ids merged into it, source ids through ``consent_kinds``) with no revocation among them
(a merge never widens consent); for marketing purposes (all but ``transactional``) no
suppression (unsubscribe, bounce, complaint; an erasure tombstone gives way to consent granted
after it); not paused for the purpose (``consent_pauses``, until now); not erased (an erased
customer has no ``customers`` row)."""

LIST_CUSTOMERS_VIEW = """
CREATE OR REPLACE VIEW list_customers AS
SELECT m.list, i.customer_id
FROM list_members AS m
JOIN identities AS i ON i.kind = m.kind AND i.value = m.value
WHERE m.kind <> 'customer_id'
UNION
SELECT m.list, c.customer_id
FROM list_members AS m
LEFT JOIN customer_ids AS ci ON ci.customer_id = m.value
JOIN customers AS c ON c.customer_id = coalesce(ci.merged_into, m.value)
WHERE m.kind = 'customer_id'
"""
"""Each uploaded list's customers, matched at read time: members by identifier through
``identities`` (so someone who becomes a customer later joins the list), by ``customer_id``
directly (an id merged into another counts as the survivor). One row per list and customer."""

VIEWS: dict[str, str] = {
    "customer_data": CUSTOMER_DATA_VIEW,
    "sendable": SENDABLE_VIEW,
    "list_customers": LIST_CUSTOMERS_VIEW,
}


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}") from None
