"""Sources (``sources:``): the tracking API, file imports, REST APIs and webhooks; the REST
client (auth, paging, politeness) destinations use too, and sync schedules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from personify.config.base import Duration, Name, Secret, _Base, duration_seconds


class _SourceBase(_Base, frozen=True):
    @property
    def kind(self) -> str:
        """The source's kind (its ``kind:`` in the file)."""
        return str(type(self).__struct_config__.tag)


class TrackingSource(_SourceBase, frozen=True, tag="tracking", tag_field="kind"):
    """Events sent to the Segment-compatible tracking API (``/v1/track`` …)."""

    name: Name
    """Source name, recorded in ``events.source``."""
    write_key: Secret
    """The key clients send as the HTTP Basic user name. Use ``${VAR}``, never the value."""
    tracking_plan: str | None = "tracking-plan"
    """Folder of JSON Schemas, one per event name (relative to the project)."""
    tracking_plan_mode: Literal["enforce", "warn"] = "enforce"
    """What a tracking-plan violation does: ``enforce`` quarantines the event (reason
    ``tracking_plan_violation``; ``personify quarantine replay`` after fixing the plan or the
    sender), ``warn`` stores it and records the violations in ``events.plan_violations``. The
    events of a schema file that cannot be used (not JSON, not a JSON Schema) are quarantined
    as ``tracking_plan_unreadable`` in ``enforce`` mode, stored with a ``not checked`` note in
    ``plan_violations`` in ``warn`` mode."""
    rate_limit: Annotated[float, msgspec.Meta(gt=0)] = 50_000.0
    """Events per second the write key may send, sustained (a token bucket); above it the API
    answers 429 with ``Retry-After``."""
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Events the bucket holds, the burst allowance (default: two seconds of ``rate_limit``)."""
    future_tolerance: Duration = "1d"
    """How far after its receipt an event's timestamp may be (after the ``sentAt`` skew
    correction); further is quarantined as ``future_timestamp`` (a device clock ahead would
    make its customer "seen" for years). Raise it and ``personify quarantine replay`` to take
    such events after all."""


TableName = Literal[
    "customers", "orders", "order_items", "products", "events", "consents", "tickets", "identities"
]
FileFormat = Literal["csv", "jsonl", "parquet"]


class FileSource(_SourceBase, frozen=True, tag="file", tag_field="kind"):
    """Rows imported from CSV, JSON Lines or Parquet files into one modelled table."""

    name: Name
    """Source name, recorded on every row it loads."""
    path: str
    """A file or a glob (``data/orders-*.parquet``), relative to the project folder."""
    table: TableName
    """The modelled table the rows go to."""
    format: FileFormat | None = None
    """``csv``, ``jsonl`` or ``parquet``; by default taken from the file's suffix."""
    mapping: dict[str, str] = {}
    """Target column → source field (``a.b`` reaches into nested JSON). Unmapped target columns
    are taken from a source field of the same name (or its camelCase form, ``messageId`` for
    ``message_id``) when there is one."""
    delimiter: str = ","
    """CSV field delimiter."""
    on_conflict: Literal["ignore", "update"] | None = None
    """A row whose key is already stored: ``update`` overwrites it with the file's values,
    ``ignore`` keeps the stored row. Default: ``ignore`` for the append-only ``events`` and
    ``order_items``, ``update`` for the other tables."""
    schedule: Schedule | None = None
    """When ``personify serve`` syncs it (``every: 15m`` or ``cron: …``)."""
    future_tolerance: Duration = "1d"
    """``events`` only: how far after ``received_at`` (the import's start when the file has
    none) an event's ``timestamp`` may be; further is quarantined as ``future_timestamp``, as
    the tracking API does."""
    corrects: bool = False
    """A changed file at a path imported before is a *corrected version* of it: the earlier
    versions' quarantine rows leave the quarantine (those still bad are quarantined again, once;
    fixed ones loaded). Off: every version's bad rows stay (a daily export written over the
    same name keeps each day's)."""

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise ValueError("delimiter must be a single character")


class Schedule(_Base, frozen=True):
    """When ``personify serve`` syncs a source: ``every: 15m`` or ``cron: "*/15 * * * *"``."""

    every: Duration | None = None
    """A fixed interval between the starts of two runs (``30s``, ``15m``, ``1h``)."""
    cron: str | None = None
    """A five-field cron expression, in UTC."""

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every or cron")
        if self.every is not None and duration_seconds(self.every) <= 0:
            raise ValueError("every must be longer than zero")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"{self.cron!r} is not a valid cron expression")


# ----------------------------------------------------------------------- REST and webhook sources
class BearerAuth(_Base, frozen=True, tag="bearer", tag_field="type"):
    """``Authorization: Bearer <token>``."""

    token: Secret
    """The token. Use ``${VAR}``."""


class ApiKeyAuth(_Base, frozen=True, tag="api_key", tag_field="type"):
    """An API key in a header or a query parameter."""

    api_key: Secret
    """The key. Use ``${VAR}``."""
    name: str = "Authorization"
    """The header or query parameter carrying it."""
    location: Literal["header", "query"] = "header"
    """Where it goes."""


class BasicAuth(_Base, frozen=True, tag="http_basic", tag_field="type"):
    """HTTP Basic authentication (Stripe: the secret key as the user name, no password)."""

    username: Secret
    """User name (or API key)."""
    password: Secret = Secret("")
    """Password (may be empty)."""


class OAuth2ClientCredentials(
    _Base, frozen=True, tag="oauth2_client_credentials", tag_field="type"
):
    """OAuth 2 client credentials grant: a token fetched from ``access_token_url`` and fetched
    again before it expires (or when the API answers 401)."""

    access_token_url: str
    """The token endpoint."""
    client_id: Secret
    """Client id. Use ``${VAR}``."""
    client_secret: Secret
    """Client secret. Use ``${VAR}``."""
    scope: str | None = None
    """Requested scope, if the provider wants one."""
    access_token_request_data: dict[str, str] = {}
    """Extra form fields of the token request (``audience`` …)."""
    default_token_expiration: Annotated[int, msgspec.Meta(ge=1)] = 3600
    """Seconds a token lives when the answer has no ``expires_in``."""


class OAuth2RefreshToken(_Base, frozen=True, tag="oauth2_refresh_token", tag_field="type"):
    """OAuth 2 refresh token grant (Google APIs: the Google Ads API): an access token fetched
    with a long-lived refresh token, fetched again before it expires (or on a 401)."""

    client_id: Secret
    """OAuth client id. Use ``${VAR}``."""
    client_secret: Secret
    """OAuth client secret. Use ``${VAR}``."""
    refresh_token: Secret
    """The refresh token the consent flow gave (``${VAR}``)."""
    access_token_url: str = "https://oauth2.googleapis.com/token"  # noqa: S105  (a URL)
    """The token endpoint (Google's by default)."""
    default_token_expiration: Annotated[int, msgspec.Meta(ge=1)] = 3600
    """Seconds a token lives when the answer has no ``expires_in``."""


Auth = BearerAuth | ApiKeyAuth | BasicAuth | OAuth2ClientCredentials | OAuth2RefreshToken

PaginatorType = Literal[
    "auto",
    "single_page",
    "json_link",
    "header_link",
    "cursor",
    "record_cursor",
    "offset",
    "page_number",
]


class Paginator(_Base, frozen=True):
    """How to get the next page (dlt's paginator names). Stop conditions: no next link or cursor,
    an empty page, ``has_more_path`` false, ``stop_path`` true, ``total_path`` reached,
    ``maximum_page``/``maximum_offset`` reached."""

    type: PaginatorType = "auto"
    """``json_link`` (next URL in the body at ``next_url_path``), ``header_link`` (``Link:
    <…>; rel="next"``), ``cursor`` (a cursor in the body at ``cursor_path`` sent back as
    ``cursor_param``, or into the JSON body at ``cursor_body_path``), ``record_cursor`` (the
    last record's ``record_field`` sent as ``cursor_param``: Stripe's ``starting_after``),
    ``offset`` (``offset``/``limit`` parameters), ``page_number``, ``single_page``; ``auto``
    picks ``header_link`` when a ``Link`` header is present, else ``json_link`` when the body
    has a next URL, else a single page."""
    next_url_path: str = "next"
    """json_link: where the next URL is in the body (dotted path)."""
    links_next_key: str = "next"
    """header_link: the ``rel`` of the next link."""
    cursor_path: str = "cursors.next"
    """cursor: where the next cursor is in the body."""
    cursor_param: str | None = None
    """cursor / record_cursor: the query parameter that carries it (default ``after``)."""
    cursor_body_path: str | None = None
    """cursor: put the cursor into the JSON request body at this key instead (POST searches)."""
    record_field: str = "id"
    """record_cursor: the field of the page's last record that is the cursor."""
    limit: Annotated[int, msgspec.Meta(ge=1)] = 100
    """offset: page size."""
    offset: Annotated[int, msgspec.Meta(ge=0)] = 0
    """offset: the first offset."""
    offset_param: str = "offset"
    """offset: name of the offset parameter."""
    limit_param: str = "limit"
    """offset: name of the limit parameter."""
    base_page: Annotated[int, msgspec.Meta(ge=0)] = 0
    """page_number: number of the first page."""
    page_param: str = "page"
    """page_number: name of the page parameter."""
    total_path: str | None = None
    """offset / page_number: where the total (records or pages) is in the body."""
    maximum_offset: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """offset: stop at this offset."""
    maximum_page: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """page_number: stop after this page."""
    has_more_path: str | None = None
    """Stop when the body's value here is false (``has_more``, ``meta.has_more``)."""
    stop_path: str | None = None
    """Stop when the body's value here is true (``end_of_stream``)."""
    stop_after_empty_page: bool = True
    """Stop at a page without records."""


class RestClient(_Base, frozen=True):
    """The API: where it is, how to authenticate, how it pages, how fast it may be called."""

    base_url: str | None = None
    """The API's root URL (endpoints are relative to it)."""
    auth: Auth | None = None
    """``type``: ``bearer``, ``api_key``, ``http_basic``, ``oauth2_client_credentials``,
    ``oauth2_refresh_token``."""
    headers: dict[str, str] = {}
    """Headers sent with every request."""
    paginator: Paginator | None = None
    """Default paginator of the resources."""
    requests_per_second: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """The request budget (a token bucket, bursts of one second's worth)."""
    timeout: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Seconds to wait for each step of a request: connecting, each read, each write."""
    request_deadline: Annotated[float, msgspec.Meta(gt=0)] | None = 300.0
    """Seconds one request may take in all — connecting, sending, the whole answer read —
    however steadily a server trickles it (``timeout`` bounds each read only). Past it the try
    counts as a timeout (retried, then the sync stops). ``null``: no deadline."""
    max_retries: Annotated[int, msgspec.Meta(ge=0)] = 8
    """Retries of one request on 429, 5xx, timeouts and connection errors."""
    backoff_base: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    """First backoff in seconds (doubled each retry, full jitter, at most ``backoff_max``)."""
    backoff_max: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """Longest wait between two tries (``Retry-After`` included)."""


class Incremental(_Base, frozen=True):
    """Pull only what changed since the last sync (dlt's ``incremental``)."""

    cursor_path: str
    """The record field that grows with every change (``updated_at``, ``updated``)."""
    initial_value: str | int | float | None = None
    """Where the first sync starts."""
    start_param: str | None = None
    """Query parameter carrying the start value (or write ``{incremental.start_value}`` in
    ``params`` or ``json``)."""
    start_format: Literal["auto", "iso", "unix", "unix_ms"] = "auto"
    """How the start value is sent: ``iso`` text, ``unix`` seconds, ``unix_ms``; ``auto``: as the
    records hold it."""
    overlap: Duration = "0s"
    """Start this far before the last cursor, for records updated late (rows are upserted by
    key: the overlap never doubles anything)."""


class Nested(_Base, frozen=True):
    """Rows of another table taken from an array inside each record (Shopify's ``line_items``):
    each element is mapped with ``_parent`` (the record) and ``_index`` (1-based) available."""

    path: str
    """Where the array is in the record."""
    table: TableName
    """The table its elements go to."""
    mapping: dict[str, str] = {}
    """Target column → field of the element (``_parent.id``, ``_index``; see ``mapping``)."""


class Endpoint(_Base, frozen=True):
    """One endpoint of the API (dlt's ``endpoint``)."""

    path: str
    """Relative to ``base_url`` (or a full URL)."""
    method: Literal["GET", "POST"] = "GET"
    """HTTP method."""
    params: dict[str, str | int | float | bool] = {}
    """Query parameters (``{incremental.start_value}`` is replaced)."""
    json: dict[str, Any] | None = None
    """A JSON body (POST searches; ``{incremental.start_value}`` is replaced)."""
    data_selector: str | None = None
    """Where the records are in the body (dotted path); default: the body when it is a list,
    else its first list value."""
    paginator: Paginator | None = None
    """This endpoint's paginator (default: the client's)."""
    incremental: Incremental | None = None
    """Incremental loading."""


class RestResource(_Base, frozen=True):
    """One resource: an endpoint, the table its records go to, and how they map."""

    name: Name
    """Resource name (its state is kept under it)."""
    endpoint: Endpoint
    """Where the records come from."""
    table: TableName
    """The table they go to."""
    primary_key: str | tuple[str, ...] = "id"
    """The record field(s) identifying a record (repeats within one sync keep the last)."""
    mapping: dict[str, str] = {}
    """Target column → record field, as for file sources (``a.b`` reaches into nested JSON);
    plus ``field|unix`` (epoch seconds → timestamp), ``field|unix_ms``, ``field|cents``
    (÷ 100), ``field|string`` and ``=text`` (a constant)."""
    nested: tuple[Nested, ...] = ()
    """Arrays inside each record that go to other tables."""
    max_pages: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Stop a sync after this many pages (a safety net); nothing is skipped: the next sync
    goes on from there — asking again from the largest cursor value read when the records come
    oldest first (a new query: how a search API's result window is kept under), else at the
    page after."""


RestPreset = Literal["hubspot_contacts", "shopify_orders", "zendesk_tickets", "stripe_charges"]


class RestSource(_SourceBase, frozen=True, tag="rest", tag_field="kind"):
    """A REST API pulled page by page, incrementally (dlt ``rest_api`` vocabulary)."""

    name: Name
    """Source name, recorded on every row it loads."""
    client: RestClient = RestClient()
    """The API: ``base_url``, ``auth``, ``paginator``, politeness."""
    resources: tuple[RestResource, ...] = ()
    """What to pull (a preset brings its own)."""
    preset: RestPreset | None = None
    """A ready-made API: ``hubspot_contacts``, ``shopify_orders``, ``zendesk_tickets``,
    ``stripe_charges`` — give ``client.base_url`` and ``client.auth``."""
    initial_value: str | None = None
    """For a preset: where its first sync starts (ISO 8601)."""
    schedule: Schedule | None = None
    """When ``personify serve`` syncs it."""
    batch_rows: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    """Records gathered (over pages) before they are stored, together with the state saying
    which page comes next, in one transaction: fewer, larger transactions; a crash costs at most
    these pages, fetched again by the next sync."""

    def __post_init__(self) -> None:
        if self.preset is None and not self.resources:
            raise ValueError("give resources (or a preset)")
        if self.preset is None and not self.client.base_url:
            raise ValueError("client.base_url is required")


SignatureScheme = Literal["shopify", "stripe", "standard"]


class WebhookSource(_SourceBase, frozen=True, tag="webhook", tag_field="kind"):
    """Deliveries to ``POST /webhooks/{name}``, signed, replay-proof, stored before the 2xx."""

    name: Name
    """Source name: the URL is ``/webhooks/<name>``."""
    scheme: SignatureScheme
    """``shopify`` (``X-Shopify-Hmac-Sha256``), ``stripe`` (``Stripe-Signature``), ``standard``
    (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``)."""
    secrets: tuple[Secret, ...]
    """Signing secrets; during a rotation list the new and the old one. Use ``${VAR}``."""
    table: TableName
    """The table a delivery's record goes to."""
    mapping: dict[str, str] = {}
    """Target column → field of the record (as for REST resources)."""
    data_selector: str | None = None
    """Where the record is in the body (Stripe: ``data.object``); default: the body."""
    nested: tuple[Nested, ...] = ()
    """Arrays inside the record that go to other tables."""
    tolerance: Duration = "300s"
    """Deliveries signed (or triggered) longer ago than this, or this far ahead, are refused."""
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    """Larger deliveries are refused (413)."""

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("give at least one secret")


Source = TrackingSource | FileSource | RestSource | WebhookSource
