"""The project file (``personify.yml``) as typed, documented, immutable objects.

A project is a folder: ``personify.yml`` plus SQL, rules and templates beside it.
:func:`load_project` reads the file, interpolates ``${VAR}`` (and ``${VAR:-default}``) from
the environment — and from a ``.env`` file in the project folder, the environment winning — and
converts it into the structs below. Any mistake raises :class:`~personify.errors.ConfigError`
naming the file, the line, the key and what was expected.

Secrets (write keys, tokens, passwords) are :class:`Secret`: they never show in ``repr``, logs or
error messages.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import msgspec.inspect

from personify._emptykeys import empty_keys
from personify._yamlmarks import MarkedDocument, parse_marked
from personify.errors import ConfigError

PROJECT_FILE: Final = "personify.yml"

_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$"
Name = Annotated[str, msgspec.Meta(pattern=_NAME_PATTERN)]
"""An identifier-like name: letters, digits, ``_`` and ``-``, starting with a letter or ``_``."""


class Secret:
    """A string that hides itself: ``repr``/``str`` show ``**********``.

    Call :meth:`reveal` where the value is really needed (an HTTP header, a connection).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself. Never log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class _FieldError(Exception):
    """Raised by cross-field checks with the path of the offending key."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


# --------------------------------------------------------------------------------------- sources
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


_DURATION_PATTERN: Final = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
Duration = Annotated[str, msgspec.Meta(pattern=_DURATION_PATTERN)]
"""A duration: ``30s``, ``5m``, ``2h``, ``1d`` or plain seconds (``90``)."""


def duration_seconds(text: str | float) -> float:
    """Seconds in a :data:`Duration` (``"5m"`` → 300.0)."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    return float(m.group(1)) * unit


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


DestinationPreset = Literal["hubspot_contacts", "meta_audience", "google_ads_audience"]
AD_AUDIENCE_PRESETS: Final = frozenset({"meta_audience", "google_ads_audience"})
"""Presets that send people to an ad platform's audience (hashed identifiers, an advertising
use: their consent default is stricter, see :attr:`RestDestination.consent`)."""
META_GRAPH_URL: Final = "https://graph.facebook.com"
META_API_VERSION: Final = "v24.0"
GOOGLE_ADS_URL: Final = "https://googleads.googleapis.com"
GOOGLE_ADS_API_VERSION: Final = "v26"


class DestinationConsent(_Base, frozen=True):
    """Whose rows a destination may send: people with consent for ``purpose`` on ``channel``."""

    purpose: str
    """``data_sharing`` (the CCPA opt-out: everyone but those who opted out) or another purpose
    (an opt-in: only people who granted it and are not suppressed, as for sending email)."""
    channel: str = "email"
    """The channel an opt-in purpose is looked up on (``data_sharing``: any)."""


class RestDestination(_Base, frozen=True, tag="rest", tag_field="kind"):
    """Rows of a SQL model pushed to a REST API (reverse ETL): traits, segments or tags sent to
    a CRM or another tool, only the rows that changed since their last successful push."""

    name: Name
    """Destination name (``personify push NAME``)."""
    model: str
    """A ``SELECT`` over the warehouse, one row per record to push (``customer_data``,
    ``customer_tags``, ``segment_memberships`` …). A column named ``a.b`` becomes the field
    ``b`` inside the object ``a`` of the record sent."""
    key: str = "customer_id"
    """The model's column identifying a record (unique, not empty); the API should upsert by it,
    so a record sent again (a retry after a timeout) changes nothing."""
    client: RestClient = RestClient()
    """The API: ``base_url``, ``auth``, ``headers``, request budget and retries."""
    path: str | None = None
    """The endpoint records are sent to (relative to ``client.base_url``)."""
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    """The request method."""
    records_key: str | None = None
    """Send each batch as ``{records_key: [records]}``; default: a JSON array of records."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    """Records per request (default 100; ``meta_audience``: 10,000, Meta's most)."""
    preset: DestinationPreset | None = None
    """A ready-made API: ``hubspot_contacts`` (``POST /crm/v3/objects/contacts/batch/upsert``,
    records ``{idProperty: <key column>, id, properties: {the other columns}}``, 100 a
    request; removals to ``POST /crm/v3/objects/contacts/batch/archive`` by HubSpot's record
    ids, read first by the key through ``…/batch/read``; a 207 answer's
    ``errors`` name the records refused) — give ``model``, ``key`` (``email``) and ``client``;
    ``meta_audience`` (a Meta Custom Audience: ``POST /{api_version}/{audience_id}/users`` with the
    model's identifier columns normalized and SHA-256 hashed, 10,000 a request, removals with
    ``DELETE`` on the same path) — give ``model``, ``audience_id`` and ``access_token``;
    ``google_ads_audience`` (a Google Ads Customer Match list, through an OfflineUserDataJob:
    ``:create``, ``:addOperations`` with hashed email, phone and postal address, ``:run``) —
    give ``model``, ``ads_customer_id``, ``user_list_id``, ``developer_token`` and ``client.auth``
    (``oauth2_refresh_token``)."""
    audience_id: str | None = None
    """``meta_audience``: the Custom Audience's id (digits)."""
    access_token: Secret | None = None
    """``meta_audience``: a system user's access token with ``ads_management`` (``${VAR}``),
    sent as ``Authorization: Bearer`` (never in a URL); or give ``client.auth``."""
    api_version: str | None = None
    """``meta_audience``: the Graph API version (default ``v24.0``); ``google_ads_audience``:
    the Google Ads API version (default ``v26``)."""
    ads_customer_id: str | None = None
    """``google_ads_audience``: the Google Ads account (customer id, dashes allowed)."""
    user_list_id: str | None = None
    """``google_ads_audience``: the Customer Match user list's id."""
    developer_token: Secret | None = None
    """``google_ads_audience``: the Google Ads API developer token (``${VAR}``), sent as the
    ``developer-token`` header."""
    login_customer_id: str | None = None
    """``google_ads_audience``: the manager account the credentials act through, if any
    (``login-customer-id`` header)."""
    phone_region: str | None = None
    """``meta_audience``: the ISO 3166 country a phone number without a country code is read in
    when the row has no ``country`` column of its own (``FR``); without either, such a number is
    not sent (Meta needs the country code)."""
    on_remove: Literal["ignore", "delete"] = "ignore"
    """A record that leaves the model (no longer selected, or deleted): ``ignore`` (it stays in
    the tool as last pushed) or ``delete`` (removed there, through ``delete_path``). ``delete``
    keeps each pushed record's key encrypted under ``privacy.encryption_keys`` (it needs them)."""
    delete_path: str | None = None
    """Where removals go (``on_remove: delete``). With ``{key}`` in it (``/contacts/{key}``):
    one request per record, the key in the path (a 404 means it is gone already); without:
    batches of ``{<key column>: value}`` objects, wrapped like upserts (``records_key``)."""
    delete_method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    """The removal request's method (``DELETE`` for a ``{key}`` path, usually)."""
    max_removals: int | str = "10%"
    """The most records one push may remove (``on_remove: delete``): a number, or a share of the
    records the destination holds (``10%``, never fewer than 100). A push that would remove more
    — a model that lost its rows to a broken filter — sends its upserts, removes nothing and
    stops with an error; ``personify push NAME --allow-removals`` removes them once checked."""
    errors_path: str | None = None
    """Records refused inside a 2xx answer: the dotted path of a list in its JSON body
    (``errors``, ``data.failures``). Each item names its record by ``index`` (position in the
    batch), by the key column, ``id`` or ``context.ids``; its ``message`` (or ``error``) is kept,
    masked. Those records are ``rejected``, the others sent. (``hubspot_contacts``: ``errors``.)"""
    schedule: Schedule | None = None
    """When ``personify serve`` pushes it (``every: 15m`` or ``cron``)."""
    consent: str | DestinationConsent | None = None
    """Whose rows go out (the model's ``customer_id`` column says whose a row is; it is not sent
    unless it is the key): ``data_sharing`` (the default) — everyone but the people who opted
    out of data sharing (CCPA "do not sell or share", Global Privacy Control); a purpose, or
    ``{purpose, channel}`` — only people who granted it and are not suppressed; ``none`` — no
    check (a model that is no person's data, or a tool of your own). An ad audience preset
    (``meta_audience``, ``google_ads_audience``) defaults to ``{purpose: advertising, channel:
    email}``, an opt-in, and also leaves out whoever opted out of data sharing, whatever purpose
    it names."""

    @property
    def ad_audience(self) -> bool:
        """Whether the destination is an ad platform's audience (a preset of
        :data:`AD_AUDIENCE_PRESETS`)."""
        return self.preset in AD_AUDIENCE_PRESETS

    @property
    def consent_rule(self) -> DestinationConsent | None:
        """The consent check in force (``None``: ``consent: none``)."""
        if isinstance(self.consent, DestinationConsent):
            return self.consent
        if self.consent is None:
            if self.ad_audience:
                return DestinationConsent("advertising", channel="email")
            return DestinationConsent("data_sharing")
        return None if self.consent == "none" else DestinationConsent(self.consent)

    def __post_init__(self) -> None:
        if isinstance(self.consent, str) and not self.consent.strip():
            raise ValueError("consent must name a purpose (data_sharing, …) or be none")
        if self.preset == "meta_audience":
            if not self.audience_id or not self.audience_id.strip().isdigit():
                raise ValueError("meta_audience needs audience_id: the Custom Audience's id")
            if self.access_token is None and self.client.auth is None:
                raise ValueError("meta_audience needs access_token: ${VAR} (or client.auth)")
            if self.api_version is not None and not re.fullmatch(r"v\d+\.\d+", self.api_version):
                raise ValueError(f"api_version: {self.api_version!r} is not like v24.0")
        elif self.preset == "google_ads_audience":
            for name in ("ads_customer_id", "user_list_id"):
                value = getattr(self, name)
                if not value or not value.replace("-", "").strip().isdigit():
                    raise ValueError(f"google_ads_audience needs {name} (digits)")
            if self.developer_token is None:
                raise ValueError("google_ads_audience needs developer_token: ${VAR}")
            if self.client.auth is None:
                raise ValueError(
                    "google_ads_audience needs client.auth: {type: oauth2_refresh_token, "
                    "client_id, client_secret, refresh_token}"
                )
            if self.api_version is not None and not re.fullmatch(r"v\d+", self.api_version):
                raise ValueError(f"api_version: {self.api_version!r} is not like v26")
        elif not self.client.base_url:
            raise ValueError("client.base_url is required")
        if self.preset is None and not self.path:
            raise ValueError("path is required (or a preset)")
        if not self.model.strip():
            raise ValueError("model must be a SELECT")
        if self.on_remove == "delete" and self.preset is None and not self.delete_path:
            raise ValueError("on_remove: delete needs delete_path (or a preset)")
        self.removal_limit(0)  # (a malformed max_removals fails when the file loads)

    def removal_limit(self, held: int) -> int:
        """The most records one push may remove when the destination holds ``held``."""
        limit = self.max_removals
        if isinstance(limit, int):
            if limit < 0:
                raise ValueError("max_removals must be 0 or more")
            return limit
        text = limit.strip()
        if not text.endswith("%"):
            raise ValueError(f"max_removals: {limit!r} is not a number or a share (10%)")
        try:
            share = float(text[:-1])
        except ValueError:
            raise ValueError(f"max_removals: {limit!r} is not a share (10%)") from None
        if not 0 <= share <= 100:
            raise ValueError("max_removals: a share from 0% to 100%")
        return max(math.ceil(held * share / 100), 100)


EVENT_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
"""The Segment call types an ``events`` destination may filter on (``types:``)."""


class EventsDestination(_Base, frozen=True, kw_only=True, tag="events", tag_field="kind"):
    """The event stream forwarded to an API (event forwarding): every stored event — tracking
    calls, and events from files and webhooks in the ``events`` table — posted in Segment's
    shape within seconds of its arrival, each with its ``messageId`` (the receiving tool's
    idempotency key), at least once and never doubled by Personify's own retries."""

    name: Name
    """Destination name (``personify push NAME``)."""
    path: str
    """The endpoint batches are posted to (relative to ``client.base_url``): ``/v1/batch``."""
    client: RestClient = RestClient()
    """The API: ``base_url``, ``auth``, ``headers``, request budget and retries."""
    method: Literal["POST", "PUT"] = "POST"
    """The request method."""
    records_key: str = "batch"
    """Each batch goes as ``{records_key: [events]}`` (Segment's ``/v1/batch``: ``batch``); an
    empty string sends a bare JSON array."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    """Events per request."""
    events: tuple[str, ...] | None = None
    """Only ``track`` events of these names (``[Order Completed, Product Viewed]``); other
    types pass unless ``types`` leaves them out. Default: every event."""
    types: tuple[Literal["track", "identify", "page", "screen", "group", "alias"], ...] | None = (
        None
    )
    """Only calls of these types (``[track, identify]``). Default: every type."""
    sources: tuple[str, ...] | None = None
    """Only events stored by these sources (``[web]``). Default: every source."""
    consent: str | DestinationConsent | None = None
    """Whose events go out: ``data_sharing`` (the default) — everyone but the people who opted
    out of data sharing (and no event that itself carries a Global Privacy Control signal); a
    purpose, or ``{purpose, channel}`` — only events of people who granted it (an event of no
    known person does not go); ``none`` — no check (a tool of your own)."""
    schedule: Schedule | None = None
    """When ``personify serve`` forwards (``every: 5s`` for real time)."""
    start: str = "now"
    """Where the first forwarding starts: ``now`` (events stored from then on: a new destination
    does not flood a tool with history), ``all`` (every stored event), or an ISO 8601 instant."""
    lookback: Duration = "15m"
    """How long after it was stamped as stored (``events.stored_at``) an event may still appear
    (a writer committing late: a long file import, another process): each forwarding looks this
    far back for events it has not forwarded yet, by message id. An event's ``received_at`` does
    not matter: one stored now with an old one (a replay, a backlog, a file carrying its own) is
    forwarded by the next forwarding."""

    @property
    def consent_rule(self) -> DestinationConsent | None:
        """The consent check in force (``None``: ``consent: none``)."""
        if isinstance(self.consent, DestinationConsent):
            return self.consent
        if self.consent is None:
            return DestinationConsent("data_sharing")
        return None if self.consent == "none" else DestinationConsent(self.consent)

    def start_at(self, now: datetime) -> datetime:
        """The instant the first forwarding starts from (:attr:`start`)."""
        if self.start == "now":  # (never ahead of the real clock: a --now in the future)
            return min(now, datetime.now(UTC))
        if self.start == "all":
            return datetime(1970, 1, 1, tzinfo=UTC)
        from personify.clock import parse_instant

        return parse_instant(self.start)

    def __post_init__(self) -> None:
        if not self.client.base_url:
            raise ValueError("client.base_url is required")
        if isinstance(self.consent, str) and not self.consent.strip():
            raise ValueError("consent must name a purpose (data_sharing, …) or be none")
        if self.start not in ("now", "all"):
            try:
                self.start_at(datetime.now(UTC))
            except ValueError:
                raise ValueError(
                    f"start: {self.start!r} is not now, all or an ISO 8601 instant"
                ) from None
        if duration_seconds(self.lookback) <= 0:
            raise ValueError("lookback must be longer than zero")
        if self.events is not None and self.types is not None and "track" not in self.types:
            raise ValueError("events names track events, but types leaves track out")


Destination = RestDestination | EventsDestination


# -------------------------------------------------------------------------------------- delivery
EspProvider = Literal["sendgrid", "postmark", "standard"]
WebhookScheme = Literal["standard", "sendgrid", "basic"]


class EspWebhook(_Base, frozen=True):
    """Bounce and complaint events an ESP posts to ``/webhooks/esp/{provider}``."""

    provider: EspProvider
    """Payload format: ``sendgrid`` (event array), ``postmark`` (one bounce or spam-complaint
    object) or ``standard`` (either, signed the Standard Webhooks way)."""
    secret: Secret
    """What proves the ESP sent it (``${VAR}``): the Standard Webhooks secret (``whsec_…``),
    SendGrid's signed-webhook verification key (base64 public key), or ``user:password`` for
    ``basic`` (Postmark's webhook URL credentials)."""
    verify: WebhookScheme | None = None
    """How the request is authenticated: ``standard`` (``webhook-signature`` HMAC),
    ``sendgrid`` (ECDSA ``X-Twilio-Email-Event-Webhook-Signature``) or ``basic`` (HTTP Basic).
    Default: ``sendgrid`` for SendGrid, ``basic`` for Postmark, ``standard`` otherwise."""
    tolerance_seconds: Annotated[int, msgspec.Meta(ge=1)] = 300
    """Signed timestamps older or newer than this are refused (replays)."""

    @property
    def scheme(self) -> WebhookScheme:
        """The verification scheme in force."""
        if self.verify is not None:
            return self.verify
        if self.provider == "sendgrid":
            return "sendgrid"
        return "basic" if self.provider == "postmark" else "standard"


DKIM_HEADERS: Final = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
"""Headers a DKIM signature covers unless ``delivery.dkim.headers`` says otherwise."""


class DkimSettings(_Base, frozen=True):
    """DKIM-sign every message (SMTP): a selector, a domain and an RSA or Ed25519 key."""

    selector: str
    """The DNS selector: the public key is published at ``SELECTOR._domainkey.DOMAIN``."""
    domain: str
    """The signing domain (``d=``), normally the ``From`` address's domain."""
    private_key: Secret | None = None
    """The PEM private key itself, from the environment (``${DKIM_PRIVATE_KEY}``)."""
    private_key_path: str | None = None
    """Or a file holding the PEM private key, relative to the project."""
    headers: tuple[str, ...] = DKIM_HEADERS
    """Headers the signature covers."""

    def __post_init__(self) -> None:
        if (self.private_key is None) == (self.private_key_path is None):
            raise ValueError("give exactly one of private_key or private_key_path")


class _DeliveryBase(_Base, frozen=True):
    rate_limit: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Messages per second this transport may hand over, sustained (a token bucket);
    ``None``: no limit."""
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Messages the bucket holds, the burst allowance (default: one second of
    ``rate_limit``, at least 1)."""
    webhooks: tuple[EspWebhook, ...] = ()
    """ESP event webhooks (bounces, complaints → suppressions), one per provider."""

    @property
    def kind(self) -> str:
        """The delivery's kind (its ``kind:`` in the file)."""
        return str(type(self).__struct_config__.tag)

    def __post_init__(self) -> None:
        providers = [w.provider for w in self.webhooks]
        for i, provider in enumerate(providers):
            if provider in providers[:i]:
                raise _FieldError(
                    ("delivery", "webhooks", i, "provider"),
                    f"two webhooks for {provider!r}; one per provider",
                )


class OutboxDelivery(_DeliveryBase, frozen=True, tag="outbox", tag_field="kind"):
    """Write each email as an ``.eml`` file in a folder (the default: safe for trying things)."""

    path: str = "outbox"
    """Folder for the ``.eml`` files, relative to the project."""


class SmtpDelivery(_DeliveryBase, frozen=True, kw_only=True, tag="smtp", tag_field="kind"):
    """Hand each email to an SMTP server (a relay, Postfix, an ESP's SMTP endpoint)."""

    host: str
    """The server's host name or address."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    """Default: 465 with ``tls: implicit``, 587 with ``starttls``, 25 with ``none``."""
    tls: Literal["starttls", "implicit", "none"] = "starttls"
    """``starttls`` (upgrade after connecting; refused if the server cannot), ``implicit``
    (TLS from the first byte, SMTPS) or ``none`` (plain text: only on a trusted network)."""
    username: str | None = None
    """User name for SMTP AUTH (none: no authentication)."""
    password: Secret | None = None
    """Password for SMTP AUTH. Use ``${VAR}``."""
    verify_certificates: bool = True
    """Check the server's TLS certificate and host name."""
    ca_file: str | None = None
    """A PEM bundle of certificate authorities to trust instead of the system's (a private
    relay's own CA), relative to the project."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Connect and per-command timeout."""
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    """Connections kept open and reused; also how many messages are in flight at once."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    """Extra attempts after a dropped connection or a temporary (4xx) refusal."""
    envelope_from: str | None = None
    """``MAIL FROM`` (where bounces go); default: the ``From`` address."""
    local_hostname: str | None = None
    """Name sent in ``EHLO``; default: this machine's."""
    dkim: DkimSettings | None = None
    """Sign messages with DKIM before handing them over."""


class EspDelivery(_DeliveryBase, frozen=True, kw_only=True, tag="esp", tag_field="kind"):
    """Post each email to an ESP's HTTP API (SendGrid v3 ``/v3/mail/send`` JSON, or Postmark's
    ``/email`` JSON with ``api: postmark``)."""

    api_key: Secret
    """The API key, sent as ``Authorization: Bearer …`` (Postmark: ``X-Postmark-Server-Token``).
    Use ``${VAR}``."""
    url: str = "https://api.sendgrid.com/v3/mail/send"
    """The send endpoint (Postmark: ``https://api.postmarkapp.com/email``)."""
    api: Literal["sendgrid", "postmark"] = "sendgrid"
    """The body's shape: SendGrid's (the message named in ``custom_args``) or Postmark's (in
    ``Metadata``), so the ESP's webhooks name the message either way."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Connect and read timeout of one request."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 4
    """Extra attempts after a 429, a 5xx or a network error (jittered exponential backoff,
    ``Retry-After`` honoured)."""
    backoff_seconds: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    """First backoff; each retry doubles it (with full jitter)."""
    max_backoff_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """Longest single wait, ``Retry-After`` included."""
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    """Requests in flight at once in a batch send."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.url.startswith(("https://", "http://")):
            raise _FieldError(("delivery", "url"), "the ESP url must be an http(s) URL")


Delivery = OutboxDelivery | SmtpDelivery | EspDelivery


class Topic(_Base, frozen=True):
    """A consent purpose offered on the preference page (``email.topics``)."""

    label: str
    """What the person reads next to the checkbox."""
    description: str = ""
    """An optional line under the label."""


class EmailSettings(_Base, frozen=True):
    """The sender of every email and where its unsubscribe links point."""

    from_address: str = "shop@example.com"
    """The ``From`` address."""
    from_name: str = ""
    """The ``From`` display name (may be empty)."""
    reply_to: str | None = None
    """A ``Reply-To`` address, if replies should go elsewhere."""
    unsubscribe_url: str = "http://127.0.0.1:8787/unsubscribe/"
    """Base of the one-click unsubscribe link; the signed token is appended
    (``personify serve`` answers ``/unsubscribe/{token}``)."""
    unsubscribe_mailto: str | None = None
    """An address for ``mailto:`` unsubscribes (``List-Unsubscribe``), if any."""
    unsubscribe_scope: Literal["all", "purpose"] = "all"
    """What an unsubscribe link stops. ``all``: every marketing email (a suppression of the
    customer and their address). ``purpose``: only the consent purpose of the email the link
    came in (e.g. ``newsletter``) is revoked, with proof; mail of other purposes keeps going.
    Bounces, complaints and erasures suppress everything either way."""
    preferences_url: str | None = None
    """Base of the preference page link (``{{ preferences_url }}`` in templates); the signed
    token is appended (``personify serve`` answers ``/preferences/{token}``). Default: the
    scheme and host of ``unsubscribe_url`` with ``/preferences/``."""
    topics: dict[str, Topic] = msgspec.field(default_factory=dict)
    """The marketing purposes a person may choose on the preference page, by purpose:
    ``{newsletter: {label: "Weekly newsletter"}}``. Each is a consent purpose journeys send
    under (``journeys.purpose`` or a journey's ``purpose``)."""
    connected_allow: tuple[str, ...] = ()
    """Networks (``10.1.2.0/24``, ``127.0.0.1``) or host names that templates' connected
    content may reach although they are not public; everything else must resolve to public
    addresses (no loopback, private, link-local or reserved ones)."""
    test_recipients: tuple[str, ...] = ()
    """Who ``personify send-test`` (and ``POST /v1/test-sends``) may send a test email to:
    addresses (``qa@shop.example``) or whole domains (``*@shop.example``); any other recipient
    is refused, so a typo cannot mail a customer. Empty: test sends are off."""
    default_locale: str = "en"
    """How templates' ``currency`` and ``date: 'medium'`` filters write for customers without a
    locale (``customers.locale``): a BCP 47 tag such as ``fr`` or ``en-GB``. Their template is
    still ``NAME.liquid`` (locale variants are chosen by the customer's own locale)."""

    def __post_init__(self) -> None:
        from babel import Locale
        from babel.core import UnknownLocaleError

        try:
            Locale.parse(self.default_locale.strip().replace("-", "_"))
            known = True
        except (UnknownLocaleError, ValueError, TypeError):
            known = False
        if not known:
            raise ValueError(
                f"default_locale: {self.default_locale!r} is not a locale (write a BCP 47 tag "
                "such as fr, fr-CA or en-GB)"
            )
        for entry in self.test_recipients:
            local, _, domain = entry.rpartition("@")
            if local == "*":
                local = "any"  # *@domain: every address of the domain
            bad = set(' <>,;*"\r\n\t') & set(local + domain)
            if not local or not domain or "@" in local or bad:
                raise ValueError(
                    f"test_recipients: {entry!r} is neither an address (qa@shop.example) nor "
                    "a domain pattern (*@shop.example)"
                )

    @property
    def preferences_base(self) -> str:
        """Where preference page links point, the token to be appended: ``preferences_url``,
        by default the scheme and host of ``unsubscribe_url`` with ``/preferences/``."""
        if self.preferences_url:
            return self.preferences_url
        scheme, sep, rest = self.unsubscribe_url.partition("://")
        return f"{scheme}{sep}{rest.split('/', 1)[0]}/preferences/" if sep else "/preferences/"


# ------------------------------------------------------------------------------------------ demo
class DemoSettings(_Base, frozen=True):
    """Wiring of a ``personify demo`` project to its synthetic world."""

    seed: int = 7
    """Seed of the synthetic world: the same seed gives the same world."""
    customers: Annotated[int, msgspec.Meta(ge=10)] = 10_000
    """How many customers the world has."""
    data: str = "data"
    """Folder where the world's files are written (relative to the project)."""


# -------------------------------------------------------------------- identity, profiles, traits
def _default_blocked() -> dict[str, tuple[str, ...]]:
    return {
        "*": ("null", "none", "undefined", "unknown", "n/a", "na", "-", "0", "anonymous", "guest"),
        "email": ("test@example.com", "test@test.com", "noreply@example.com", "email@example.com"),
    }


class EmailRules(_Base, frozen=True):
    """How emails are normalized before matching (always: trimmed and lower-cased)."""

    strip_plus_tags: bool = False
    """Drop ``+tag`` from the local part (``ann+shop@x.org`` → ``ann@x.org``)."""
    gmail_dots: bool = False
    """Ignore dots in Gmail local parts (``a.nn@gmail.com`` → ``ann@gmail.com``)."""


class IdentityConfig(_Base, frozen=True):
    """Identity resolution: which identifiers link people, and what may never be merged."""

    id_key: Secret | None = None
    """Key of new customer ids (``cus_`` + a keyed hash of the founding identifier, so an id
    cannot be tested against a guessed address), e.g. ``${PERSONIFY_ID_KEY}``; default: derived
    from ``signing_key`` (none: unkeyed ids). Changing it changes only the ids of customers
    founded afterwards. Set it to keep ids apart from ``signing_key`` rotations, or — as the demo
    does — to make a world's ids reproducible."""
    priority: tuple[str, ...] = ("user_id", "email", "phone", "*", "anonymous_id")
    """Identifier kinds, strongest first; ``*`` stands for every kind not named. A record's
    identifiers link to its strongest one, strong links are applied before weak ones when a
    limit is at stake, and ties in customer ids go to the stronger kind."""
    limits: dict[str, Annotated[int, msgspec.Meta(ge=1)]] = msgspec.field(
        default_factory=lambda: {"user_id": 1}
    )
    """Most identifiers of a kind one customer may hold (``user_id: 1``: two accounts are two
    people). A merge that would break a limit is refused and recorded in ``identity_refusals``."""
    blocked: dict[str, tuple[str, ...]] = msgspec.field(default_factory=_default_blocked)
    """Values that never link anything (shared test addresses, placeholder ids), per kind;
    ``*`` applies to every kind. Compared after normalization."""
    anonymous_kinds: tuple[str, ...] = ("anonymous_id",)
    """Kinds that alone do not make a customer: a cluster of only these has no customer id
    until it is linked to a known identifier (a login, an email)."""
    source_kinds: dict[str, str] = {}
    """Source name → kind of the ids it holds (e.g. ``shop_orders: shop_customer_id`` so that
    orders link to the shop's customer records). Default: ``<source>_id``."""
    email: EmailRules = EmailRules()
    """Provider-specific email rules (off by default)."""
    phone_region: str | None = None
    """Region for phone numbers written without a country code (``FR``, ``US`` …); without it
    such numbers are not used as identifiers."""
    max_rounds: Annotated[int, msgspec.Meta(ge=1)] = 64
    """Iteration bound of the connected-components computation."""

    def kind_for_source(self, source: str) -> str:
        """The kind of the ids ``source`` holds."""
        return self.source_kinds.get(source, f"{source}_id")


SurvivorshipRuleName = Literal[
    "last_write_wins", "source_priority", "first_non_empty", "most_frequent"
]


class FieldRule(_Base, frozen=True):
    """How one profile field's value is chosen among the sources' observations."""

    rule: SurvivorshipRuleName = "last_write_wins"
    """``last_write_wins`` (latest observation time), ``source_priority`` (first source of
    ``sources``, then latest), ``first_non_empty`` (earliest observation) or ``most_frequent``
    (most observations, then latest). Remaining ties go to the smaller value, then source."""
    sources: tuple[str, ...] = ()
    """For ``source_priority``: sources, most trusted first; unlisted sources come after."""


class SurvivorshipConfig(_Base, frozen=True):
    """Field conflicts: one rule per profile field, a default for the others."""

    default: FieldRule = FieldRule()
    """The rule for fields not listed in ``fields``."""
    fields: dict[str, FieldRule] = {}
    """Field name (``email``, ``first_name``, ``phone``, ``country`` …) → its rule."""


class EngagementWeights(_Base, frozen=True):
    """``engagement_score``: 0–100 from recency-weighted activity."""

    open: float = 1.0
    """Weight of an email open."""
    click: float = 3.0
    """Weight of an email click."""
    session: float = 2.0
    """Weight of a day with web or app activity (page, screen or track events; not an ESP's
    ``Email Delivered``, ``Email Unsubscribed`` or ``Email Marked as Spam``)."""
    purchase: float = 10.0
    """Weight of an order."""
    half_life_days: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """Activity loses half its weight every this many days."""
    window_days: Annotated[int, msgspec.Meta(ge=1)] = 365
    """Activity older than this is ignored."""
    saturation: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    """Weighted activity giving a score of 50 (score = 100 · a / (a + saturation))."""
    open_events: tuple[str, ...] = ("Email Opened",)
    """Track event names that count as opens."""
    click_events: tuple[str, ...] = ("Email Link Clicked", "Email Clicked")
    """Track event names that count as clicks."""


class CategoryWeights(_Base, frozen=True):
    """``preferred_categories``: top categories by weighted views, carts and purchases."""

    view: float = 1.0
    """Weight of a product view."""
    cart: float = 3.0
    """Weight of an add to cart."""
    purchase: float = 5.0
    """Weight of a purchased item (per unit)."""
    top: Annotated[int, msgspec.Meta(ge=1)] = 3
    """How many categories to keep."""
    view_events: tuple[str, ...] = ("Product Viewed",)
    """Track event names that are product views (``properties.category`` or ``product_id``)."""
    cart_events: tuple[str, ...] = ("Product Added",)
    """Track event names that are adds to cart."""


class LifecycleRules(_Base, frozen=True):
    """``lifecycle_stage``: prospect (no order), new, active, at_risk, lapsed."""

    new_days: Annotated[int, msgspec.Meta(ge=0)] = 30
    """One order within this many days: ``new``."""
    active_days: Annotated[int, msgspec.Meta(ge=0)] = 90
    """Last order within this many days: ``active``."""
    at_risk_days: Annotated[int, msgspec.Meta(ge=0)] = 180
    """Last order within this many days: ``at_risk``; older: ``lapsed``."""


class PredictiveTraits(_Base, frozen=True):
    """Predictive traits (opt-in): ``p_alive``, ``expected_orders`` and ``predicted_clv``, from a
    BG/NBD purchase model and a Gamma-Gamma spend model fit on the project's orders."""

    enabled: bool = False
    """Fit the models and fill the columns on every full profile build (needs ``scipy``:
    ``pip install 'personify[predictive]'``)."""
    horizon_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 90
    """``expected_orders`` and ``predicted_clv`` cover this many days after ``--now``."""
    min_customers: Annotated[int, msgspec.Meta(ge=10)] = 500
    """Fewer customers with an order than this: no fit, the columns stay NULL (a note says why)."""
    min_repeat_customers: Annotated[int, msgspec.Meta(ge=1)] = 50
    """Fewer customers with a repeat purchase than this: no fit either (nothing to learn from)."""


class CustomTrait(_Base, frozen=True):
    """A user-defined trait: a SELECT returning ``customer_id`` and ``value``."""

    name: Name
    """Trait name: the key in ``customers.traits``."""
    sql: str | None = None
    """The query itself (one read-only SELECT; ``NOW()`` follows ``--now``)."""
    file: str | None = None
    """Or a ``.sql`` file holding it, relative to the project."""
    dialect: str | None = None
    """Dialect the query is written in (default: the warehouse's); ``-- dialect: X`` in the
    file works too."""

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.file is None):
            raise ValueError("give exactly one of sql or file")


class TraitsConfig(_Base, frozen=True):
    """Computed traits (SQL in the warehouse, relative to ``--now``) and user-defined ones."""

    excluded_order_statuses: tuple[str, ...] = ("cancelled", "canceled", "refunded", "failed")
    """Orders with these statuses are not purchases."""
    open_ticket_statuses: tuple[str, ...] = ("new", "open", "pending")
    """Ticket statuses that count as open."""
    engagement: EngagementWeights = EngagementWeights()
    """Weights of ``engagement_score``."""
    categories: CategoryWeights = CategoryWeights()
    """Weights of ``preferred_categories``."""
    lifecycle: LifecycleRules = LifecycleRules()
    """Thresholds of ``lifecycle_stage``."""
    folder: str = "traits"
    """Folder of user-defined traits: every ``NAME.sql`` in it is the trait ``NAME``."""
    custom: tuple[CustomTrait, ...] = ()
    """User-defined traits declared here instead of (or besides) the folder."""
    predictive: PredictiveTraits = PredictiveTraits()
    """Predictive traits (off by default): purchase probability and expected value."""


# ------------------------------------------------------------------------------------- audiences
class AudienceSettings(_Base, frozen=True):
    """Segments (``segments/*.sql``) and rules (``rules/*.yml``): where they live, the limits
    their SQL runs under."""

    segments: str = "segments"
    """Folder of segment files (``*.sql``), relative to the project."""
    rules: str = "rules"
    """Folder of rule files (``*.yml``), relative to the project."""
    dialect: str = "duckdb"
    """SQL dialect of segments and rule conditions whose file does not name one
    (``mysql``, ``postgres``, ``bigquery``, ``snowflake``, …)."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """A segment query running longer than this is stopped (and the refresh fails)."""
    max_members: Annotated[int, msgspec.Meta(ge=1)] = 50_000_000
    """A segment returning more customers than this is refused (its memberships are kept)."""
    sample_size: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 10
    """Rows shown by ``personify segments preview``."""
    purpose: str = "email_marketing"
    """Consent purpose counted as *sendable* in segment reports (see the ``sendable`` view)."""

    def __post_init__(self) -> None:
        if self.dialect == "duckdb":  # the default: no need to load sqlglot (~0.5 s) to know it
            return
        import sqlglot

        try:
            sqlglot.Dialect.get_or_raise(self.dialect)
        except ValueError:
            raise ValueError(
                f"unknown SQL dialect {self.dialect!r} (e.g. duckdb, mysql, postgres, bigquery, "
                "snowflake)"
            ) from None


# ------------------------------------------------------------------------------------- discounts
class DiscountTier(_Base, frozen=True):
    """One step of a campaign's value ladder: customers at or above ``min_engagement`` get it."""

    min_engagement: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.0
    """Lowest ``customers.engagement_score`` (0–100) this tier applies to; a customer without a
    score counts as 0."""
    percent: Annotated[float, msgspec.Meta(gt=0, le=100)] | None = None
    """A percentage off the order (``10`` for 10 % off)."""
    amount: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Or a fixed amount off, in the campaign's ``currency``."""

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("give exactly one of percent or amount")


_DISCOUNT_DURATION = re.compile(
    r"^\s*0*[1-9][0-9]*\s*(s|sec|secs|m|min|mins|h|hour|hours|d|day|days|w|week|weeks)\s*$"
)
"""A duration (``expires_in``, ``per`` …): a positive whole number of seconds, minutes, hours,
days or weeks, as :func:`personify.audiences.schedule.parse_duration` reads it."""


def _default_tiers() -> tuple[DiscountTier, ...]:
    return (
        DiscountTier(min_engagement=70, percent=5),
        DiscountTier(min_engagement=30, percent=10),
        DiscountTier(percent=15),
    )


class DiscountCampaign(_Base, frozen=True):
    """A kind of personal discount code (e.g. ``cart_rescue``): how long its codes live and what
    they are worth."""

    expires_in: str = "7d"
    """How long a code stays valid after it is issued (``48h``, ``7d``, ``2w``)."""
    tiers: tuple[DiscountTier, ...] = msgspec.field(default_factory=_default_tiers)
    """The value ladder, checked in order: the first tier whose ``min_engagement`` the customer's
    ``engagement_score`` reaches wins. The last tier should have no ``min_engagement`` so that
    everyone gets a code."""
    currency: str = "EUR"
    """Currency of ``amount`` tiers (shown in the code's label): an ISO 4217 code (``EUR``,
    ``USD``), checked against Babel's list."""
    renew_within: str = "24h"
    """A code asked for again (an email retried after its server deferred it for days) that has
    expired, or expires within this (at most half of ``expires_in``), gets ``expires_in`` more
    from then — the same code: an email never goes out carrying a dead one."""

    def __post_init__(self) -> None:
        for name in ("expires_in", "renew_within"):
            value = getattr(self, name)
            if not _DISCOUNT_DURATION.match(value.strip().lower()):
                raise ValueError(f"{name}: {value!r} is not a duration: write e.g. 48h, 7d or 2w")
        if not self.tiers:
            raise ValueError("a campaign needs at least one tier")
        _check_currency(self.currency)


def _check_currency(code: str) -> None:
    """Refuse ``code`` unless it is an ISO 4217 currency code Babel knows (``EUR``): a wrong one
    would only fail when a code's label is first written, mid-send."""
    from babel.numbers import list_currencies

    known = list_currencies()
    if code in known:
        return
    said = f"currency: {code!r} is not an ISO 4217 currency code"
    if code.strip().upper() in known:
        raise ValueError(f"{said}: write it {code.strip().upper()!r} (capitals)")
    raise ValueError(f"{said}: write a three-letter code such as EUR, USD or GBP")


def _default_discounts() -> dict[str, DiscountCampaign]:
    return {"cart_rescue": DiscountCampaign()}


# -------------------------------------------------------------------------------------- journeys
_CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class FrequencyCap(_Base, frozen=True):
    """At most ``max`` emails of capped journeys per customer within ``per`` (across journeys)."""

    max: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Emails allowed in the window."""
    per: str = "24h"
    """The sliding window (``24h``, ``7d``)."""

    def __post_init__(self) -> None:
        if not _DISCOUNT_DURATION.match(self.per.strip().lower()):
            raise ValueError(f"{self.per!r} is not a duration: write e.g. 24h or 7d")


class QuietHours(_Base, frozen=True):
    """Hours of the customer's local day when no email is sent: it waits until they end."""

    start: Annotated[str, msgspec.Meta(pattern=_CLOCK_TIME)] = "21:00"
    """Local time (``HH:MM``) the quiet period starts."""
    end: Annotated[str, msgspec.Meta(pattern=_CLOCK_TIME)] = "08:00"
    """Local time (``HH:MM``) it ends (may be on the next day)."""


class JourneySettings(_Base, frozen=True):
    """Journeys (``journeys/*.yml``) and the send loop: caps, quiet hours, batch size."""

    folder: str = "journeys"
    """Folder of journey files (``*.yml``), relative to the project."""
    purpose: str = "email_marketing"
    """Consent purpose of journey emails whose journey does not name one."""
    lookback: str = "24h"
    """Default ``trigger.within``: how far back a trigger event or audience change may lie for
    a customer to enter (so a new project does not email about carts abandoned months ago)."""
    frequency_cap: FrequencyCap | None = FrequencyCap()
    """Across journeys, per customer (journeys with ``capped: false`` neither count nor obey);
    ``null``: no cap."""
    quiet_hours: QuietHours | None = None
    """In the customer's time zone (``customers.timezone``, else the project's): emails due in
    them are held and sent when they end. Absent: none."""
    batch_size: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 500
    """Messages decided, rendered and sent per batch; statuses are committed per batch."""

    def __post_init__(self) -> None:
        if not _DISCOUNT_DURATION.match(self.lookback.strip().lower()):
            raise ValueError(f"{self.lookback!r} is not a duration: write e.g. 24h or 7d")


# --------------------------------------------------------------------------------------- privacy
class AdminToken(_Base, frozen=True):
    """A bearer token for admin endpoints, limited to some scopes."""

    name: Name
    """Who holds it (shown in the audit log, never the token)."""
    token: Secret
    """Use ``${VAR}``."""
    scopes: tuple[
        Literal["profiles:read", "privacy", "privacy:masked", "console", "admin"], ...
    ] = ("profiles:read",)
    """``profiles:read`` (profile API), ``privacy`` (export, erase, consent API), ``privacy:masked``
    (the export API only, personal data masked), ``console`` (the marketer console at
    ``/console``; personal data shown only with ``profiles:read`` too), ``admin`` (everything)."""


EncryptedField = Literal[
    "customers.email", "customers.phone", "customers.first_name", "customers.last_name"
]


class PrivacyConfig(_Base, frozen=True):
    """Protection at rest (see README, "Privacy")."""

    encryption_keys: Secret | None = None
    """Key ring for field-level encryption (AES-256-GCM): ``ID:BASE64,…`` of 32-byte keys, the
    first encrypts, every one decrypts (rotation). Use ``${PERSONIFY_ENCRYPTION_KEYS}``; make a key
    with ``personify privacy keygen``. Without it nothing is encrypted."""
    mask_sql: bool = False
    """``personify sql`` masks personal data (emails, phones, names, IPs) in its results unless
    run with ``--no-mask`` — for shared analyst set-ups."""
    confirm_url: str = "http://127.0.0.1:8787/v1/privacy/confirm/"
    """Base of double-opt-in confirmation links (the token is appended); ``personify serve``
    answers them."""
    encrypted_fields: tuple[EncryptedField, ...] = ()
    """``customers`` columns stored encrypted under ``encryption_keys`` (sealed by the privacy
    stage of every run, decrypted where the value is used: rendering and sending, profiles,
    exports); ``email`` and ``phone`` also get a blind index for lookups. Consent proof (IP, user
    agent, form) is always encrypted when there is a key ring. See README, "Privacy"."""
    blind_index_key: Secret | None = None
    """Key of the blind index (HMAC-SHA256 of the normalized email or phone), e.g.
    ``${PERSONIFY_BLIND_INDEX_KEY}``; default: a key derived from ``signing_key``. After changing
    it run ``personify privacy rotate-keys`` (every index is recomputed)."""


# --------------------------------------------------------------------------------------- quality
QualityCheck = Literal["not_null", "unique", "format", "range", "accepted_values", "references"]
QualityAction = Literal["quarantine", "flag", "warn"]


class QualityRule(_Base, frozen=True):
    """One validation rule on a column, run as SQL in the warehouse after every load and sync."""

    column: str
    """The column checked (``order_id``; for ``unique`` several: ``a,b``)."""
    check: QualityCheck
    """``not_null``, ``unique``, ``format`` (see ``format``), ``range`` (``min``/``max``),
    ``accepted_values`` (``values``) or ``references`` (``to``: ``table.column``)."""
    format: Literal["email", "phone", "currency"] | None = None
    """For ``check: format``: ``email``, ``phone`` (E.164-like) or ``currency`` (ISO 4217 code)."""
    min: float | None = None
    """For ``check: range``: the smallest value allowed."""
    max: float | None = None
    """For ``check: range``: the largest value allowed."""
    values: tuple[str, ...] = ()
    """For ``check: accepted_values``: the values allowed."""
    to: str | None = None
    """For ``check: references``: ``table.column`` every non-null value must exist in."""
    action: QualityAction = "warn"
    """``warn`` (logged, recorded), ``flag`` (recorded and shown for review in ``personify
    status``) or ``quarantine`` (the violating rows are also copied to the quarantine)."""
    name: str | None = None
    """The rule's name in reports (default ``table.column.check``)."""

    def __post_init__(self) -> None:
        if self.check == "format" and self.format is None:
            raise ValueError("check: format needs format: email, phone or currency")
        if self.check == "range" and self.min is None and self.max is None:
            raise ValueError("check: range needs min, max or both")
        if self.check == "accepted_values" and not self.values:
            raise ValueError("check: accepted_values needs values: [...]")
        if self.check == "references" and (self.to is None or "." not in self.to):
            raise ValueError("check: references needs to: table.column")


class ReconcileSettings(_Base, frozen=True):
    """``personify reconcile``: how much difference is tolerated."""

    threshold: Annotated[int, msgspec.Meta(ge=0)] = 0
    """Discrepancies (not pending) a run may find before ``personify status`` flags it for
    review."""
    sample_size: Annotated[int, msgspec.Meta(ge=0)] = 20
    """Discrepant keys shown per resource in the report (all are stored)."""


class QualityConfig(_Base, frozen=True):
    """Data quality: validation rules, freshness, reconciliation (README, "Data quality and
    reconciliation")."""

    rules: dict[TableName, tuple[QualityRule, ...]] = {}
    """Validation rules per table (``customers``, ``orders`` …)."""
    freshness: dict[Name, Duration] = {}
    """Per source: the longest time since its last sync (or event) before it is flagged."""
    sample_size: Annotated[int, msgspec.Meta(ge=0, le=100)] = 5
    """Keys of violating rows kept per rule (keys only, never other field values)."""
    run_after_sync: bool = True
    """Run the rules after every ``personify sync``, ``personify import`` and ``personify
    run``."""
    reconcile: ReconcileSettings = ReconcileSettings()
    """Reconciliation settings."""


class EngagementConfig(_Base, frozen=True):
    """Open and click tracking, machine-open detection and attribution (README, "Engagement and
    measurement")."""

    tracking: bool = True
    """Rewrite links and add the open pixel to every email (``tracking: false`` in a template's
    front matter turns it off for that template)."""
    base_url: str | None = None
    """Where ``personify serve`` answers ``/o/…`` and ``/c/…`` (default: ``email.unsubscribe_url``
    without its path)."""
    machine_open_seconds: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    """An open this soon after the message was sent is a machine's (prefetch)."""
    scanner_click_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    """A click this soon after the message was sent is a link scanner's."""
    attribution_window: Duration = "3d"
    """Orders placed this long after a touch are attributed to the message."""
    attribution_touch: Literal["click", "open"] = "click"
    """Which touches attribute: clicks only, or opens and clicks."""
    attribution_rule: Literal["last_touch", "first_touch"] = "last_touch"
    """Which touch of the window wins an order."""
    max_complaint_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.003
    """Spam complaints per delivered email (a fraction: ``0.003`` is 0.3 %, the most Gmail and
    Yahoo accept of bulk senders) above which ``personify status`` flags a journey's last 7
    days."""
    max_bounce_rate: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.05
    """Emails not delivered (bounced) per email sent (a fraction: ``0.05`` is 5 %) above which
    the ``bounce_rate`` alert holds for a journey's last 7 days (an alert's ``over:`` sets its
    own)."""


# ---------------------------------------------------------------------------------------- alerts
ALERT_SIGNALS: Final[dict[str, str]] = {
    "source_failed": "a source's (or destination's) last sync or push failed",
    "source_stale": "a source's lag is over `over` (a duration; default: its "
    "quality.freshness limit)",
    "quarantine_growth": "more than `over` rows (default 0) were quarantined in the last hour",
    "run_failed": "the last `personify run` ended failed",
    "delivery_failures": "more than `over` emails (default 0) failed in the last hour",
    "complaint_rate": "a journey's spam complaint rate over its last 7 days is over `over` "
    "(default engagement.max_complaint_rate)",
    "bounce_rate": "a journey's bounce rate over its last 7 days is over `over` "
    "(default engagement.max_bounce_rate)",
    "tracking_plan_broken": "a tracking plan file cannot be used",
    "anomaly": "a volume or null-rate anomaly is flagged",
    "quality_flagged": "a validation rule with action flag or quarantine is broken",
    "reconcile_flagged": "the last reconciliation found more discrepancies than "
    "quality.reconcile.threshold",
    "removals_stranded": "erased people's records a destination can never remove (on_remove no "
    "longer delete, the destination gone, or its keys lost)",
    "forwarding_lag": "an events destination's oldest event not yet forwarded is older than "
    "`over` (a duration; default 5m)",
}
"""The signals an alert can watch (``when:``), each computed from what ``personify status``
shows, and what makes it hold."""
ALERT_THRESHOLDS: Final[dict[str, str]] = {
    "source_stale": "duration",
    "forwarding_lag": "duration",
    "quarantine_growth": "count",
    "delivery_failures": "count",
    "complaint_rate": "rate",
    "bounce_rate": "rate",
}
"""Signals that take ``over:``, and what it is."""


class Alert(_Base, frozen=True):
    """One alert: a signal watched at the end of every ``personify run``, on ``personify serve``'s
    schedule and by ``personify alerts check``, notified when it fires and when it resolves."""

    name: Name
    """Its name in messages and ``personify alerts list``."""
    when: str
    """The signal (see :data:`ALERT_SIGNALS`): ``source_failed``, ``source_stale`` …"""
    over: float | str | None = None
    """The signal's threshold, for those that take one: a duration (``source_stale``), a count
    per hour (``quarantine_growth``, ``delivery_failures``) or a fraction (``complaint_rate``,
    ``bounce_rate``)."""
    only: tuple[str, ...] = ()
    """Only these sources, destinations or journeys (default: all)."""
    hold: Duration | None = msgspec.field(default=None, name="for")
    """``for:``: a subject (source, journey …) fires only when the signal has held this long for
    it (``15m``); default at once."""
    repeat: Duration | None = None
    """Notify again about each firing subject this often after it was last told (``4h``);
    default: once per episode."""
    notify: tuple[Name, ...] = ()
    """Notifiers (names under ``notifiers:``) told when it fires and when it resolves."""


class WebhookNotifier(_Base, frozen=True, tag="webhook", tag_field="kind"):
    """POSTs a JSON message to a URL (a Slack incoming webhook, a chat bot, a pager)."""

    url: Secret
    """Where to POST; use ``${VAR}`` (webhook URLs are secrets)."""
    format: Literal["slack", "json"] = "json"
    """``slack``: ``{"text": …, "blocks": […]}`` as Slack incoming webhooks take it; ``json``:
    the alert as fields (``alert``, ``status``, ``signal``, ``subjects`` …)."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How long one POST may take."""

    def __post_init__(self) -> None:
        if not self.url.reveal().startswith(("http://", "https://")):
            raise ValueError("url: expected an http:// or https:// URL")


class EmailNotifier(_Base, frozen=True, tag="email", tag_field="kind"):
    """Emails the alert through the project's delivery (outbox, SMTP or ESP), from
    ``email.from_address``."""

    to: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    """Who gets it (staff addresses)."""
    subject_prefix: str = ""
    """Put before each subject (which starts ``[PROJECT] alert NAME FIRING``)."""

    def __post_init__(self) -> None:
        for address in self.to:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                raise ValueError(f"to: {address!r} is not an email address")


Notifier = WebhookNotifier | EmailNotifier


def _check_alerts(
    alerts: tuple[Alert, ...], notifiers: dict[str, WebhookNotifier | EmailNotifier]
) -> None:
    """Alert names are unique; each names a known signal, a threshold fit for it and
    notifiers that exist."""
    seen: set[str] = set()
    for i, alert in enumerate(alerts):
        if alert.name in seen:
            raise _FieldError(
                ("alerts", i, "name"), f"two alerts are named {alert.name!r}; names must be unique"
            )
        seen.add(alert.name)
        if alert.when not in ALERT_SIGNALS:
            raise _FieldError(
                ("alerts", i, "when"),
                f"unknown signal {alert.when!r}: use one of {', '.join(ALERT_SIGNALS)} "
                '(README, "Alerts")',
            )
        kind = ALERT_THRESHOLDS.get(alert.when)
        if alert.over is not None:
            _check_threshold(i, alert, kind)
        for j, name in enumerate(alert.notify):
            if name not in notifiers:
                known = ", ".join(notifiers) or "none: add a notifiers: section"
                raise _FieldError(
                    ("alerts", i, "notify", j),
                    f"unknown notifier {name!r} (notifiers: {known})",
                )


def _check_threshold(i: int, alert: Alert, kind: str | None) -> None:
    where = ("alerts", i, "over")
    over = alert.over
    if kind is None:
        raise _FieldError(where, f"signal {alert.when!r} takes no threshold: remove over")
    if kind == "duration":
        if isinstance(over, bool) or not re.fullmatch(_DURATION_PATTERN, str(over)):
            raise _FieldError(where, f"{over!r}: expected a duration like 30m, 2h or 1d")
        return
    if isinstance(over, str | bool) or over is None or over < 0:
        raise _FieldError(where, f"{over!r}: expected a number of at least 0")
    if kind == "rate" and over > 1:
        raise _FieldError(where, f"{over!r}: expected a fraction from 0 to 1 (0.003 is 0.3 %)")


# --------------------------------------------------------------------------------------- project
class ProjectConfig(_Base, frozen=True):
    """The whole ``personify.yml``."""

    name: Name = "personify"
    """Project name, used in reports and as a prefix for shared resources."""
    warehouse: str = "duckdb:///warehouse.duckdb"
    """Warehouse URL: ``duckdb:///relative/path.duckdb``, ``duckdb:////absolute/path.duckdb``,
    ``duckdb:///:memory:`` or ``postgresql://user@host:5432/db?schema=name``."""
    timezone: str = "UTC"
    """Default time zone for customers who have none (IANA name, e.g. ``Europe/Paris``)."""
    admin_token: Secret | None = None
    """Bearer token for the admin endpoints (profiles, privacy). Use ``${VAR}``."""
    admin_tokens: tuple[AdminToken, ...] = ()
    """More admin tokens, each with a name and scopes (``admin_token`` has every scope)."""
    sources: tuple[Source, ...] = ()
    """Where data comes from (``kind``: ``tracking``, ``file``, ``rest``, ``webhook``)."""
    destinations: tuple[Destination, ...] = ()
    """Where warehouse rows are pushed (reverse ETL: ``kind: rest``) and the event stream is
    forwarded (``kind: events``), by ``personify push``, ``personify run`` and ``serve``'s
    schedule."""
    delivery: Delivery = OutboxDelivery()
    """Where email goes (``kind``: ``outbox``, ``smtp`` or ``esp``)."""
    email: EmailSettings = EmailSettings()
    """Sender and unsubscribe links of every email."""
    signing_key: Secret | None = None
    """Key signing unsubscribe tokens (and other links). Use ``${PERSONIFY_SECRET_KEY}``."""
    demo: DemoSettings | None = None
    """Present in projects made by ``personify demo``."""
    identity: IdentityConfig = IdentityConfig()
    """Identity resolution rules: kind priority, limits per kind, blocked values."""
    survivorship: SurvivorshipConfig = SurvivorshipConfig()
    """Which source's value a profile field takes when sources disagree."""
    traits: TraitsConfig = TraitsConfig()
    """Computed and user-defined traits."""
    audiences: AudienceSettings = AudienceSettings()
    """Segments and rules: folders, default SQL dialect, limits."""
    relations: dict[Name, str] = {}
    """The team's own tables that segments (and ``personify sql``) may read under a local name:
    ``crm_scores: analytics.crm_scores`` — ``schema.table`` in the warehouse (DuckDB: a schema
    of the warehouse file; PostgreSQL: a schema of the same database), or
    ``database.schema.table`` naming the warehouse's own database. Tables are checked when a
    segment runs: a missing one is an error naming this key."""
    journeys: JourneySettings = JourneySettings()
    """Journeys: folder, consent purpose, trigger lookback, frequency cap, quiet hours."""
    discounts: dict[Name, DiscountCampaign] = msgspec.field(default_factory=_default_discounts)
    """Personal discount code campaigns by name (journeys ask for codes of a campaign). Default:
    ``cart_rescue`` — 7 days, 5 % / 10 % / 15 % off by engagement (≥ 70 / ≥ 30 / below)."""
    privacy: PrivacyConfig = PrivacyConfig()
    """Protection at rest: the encryption key ring."""
    quality: QualityConfig = QualityConfig()
    """Data quality: validation rules per table, freshness per source, reconciliation."""
    engagement: EngagementConfig = EngagementConfig()
    """Open/click tracking, machine opens and attribution."""
    cache: str = "memory"
    """Profile cache of send-time and API lookups: ``memory`` (in-process LRU) or
    ``redis://host:6379/0`` (shared by every process, invalidated by pub/sub); settings in the
    query: ``?ttl=300&size=100000&prefix=NAME`` (``prefix`` of the Redis keys, default the
    project name)."""
    bus: str | None = None
    """Message bus between ingest and worker processes: none (embedded: the warehouse's durable
    log) or ``nats://host:4222?stream=NAME`` (NATS JetStream; ``personify serve --role``)."""
    recompute: Duration | None = None
    """How often ``personify serve`` rebuilds every profile the batch way and reports how it
    differs from the real-time results (``1h``; default: never — ``personify run`` does)."""
    alerts: tuple[Alert, ...] = ()
    """Alerts: signals watched after every run, on ``personify serve``'s schedule and by
    ``personify alerts check``, and who is told (README, "Alerts")."""
    notifiers: dict[Name, Notifier] = {}
    """Where alerts go, by name (``kind``: ``webhook`` or ``email``)."""
    alerts_every: Duration = "1m"
    """How often ``personify serve`` evaluates the alerts."""

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _FieldError(
                ("timezone",), f"unknown time zone {self.timezone!r} (use an IANA name)"
            ) from None
        scheme = self.warehouse.split(":", 1)[0]
        if scheme not in {"duckdb", "postgresql", "postgres"}:
            raise _FieldError(
                ("warehouse",),
                f"unsupported warehouse URL scheme {scheme!r}: use duckdb:/// or postgresql://",
            )
        _check_relations(self.relations)
        _check_alerts(self.alerts, self.notifiers)
        _check_token_names(self.admin_tokens, has_admin_token=self.admin_token is not None)
        _check_token_lengths(self.admin_token, self.admin_tokens)
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            if source.name in seen:
                raise _FieldError(
                    ("sources", i, "name"),
                    f"two sources are named {source.name!r}; names must be unique",
                )
            seen.add(source.name)
        named: set[str] = set()
        for i, destination in enumerate(self.destinations):
            if destination.name in named:
                raise _FieldError(
                    ("destinations", i, "name"),
                    f"two destinations are named {destination.name!r}; names must be unique",
                )
            named.add(destination.name)
            if (
                isinstance(destination, RestDestination)
                and destination.on_remove == "delete"
                and self.privacy.encryption_keys is None
            ):
                raise _FieldError(
                    ("destinations", i, "on_remove"),
                    f"destination {destination.name!r} removes records (on_remove: delete): it "
                    "keeps their keys encrypted, which needs privacy.encryption_keys "
                    "(`personify privacy keygen` makes a key)",
                )
        keys: dict[str, str] = {}
        for i, source in enumerate(self.sources):
            if isinstance(source, TrackingSource) and source.write_key:
                other = keys.setdefault(source.write_key.reveal(), source.name)
                if other != source.name:
                    raise _FieldError(
                        ("sources", i, "write_key"),
                        f"sources {other!r} and {source.name!r} share a write key: a write key "
                        "belongs to one source (its events are recorded as that source's)",
                    )


def _check_token_names(tokens: tuple[AdminToken, ...], *, has_admin_token: bool) -> None:
    """Admin token names are unique, and none takes ``admin`` — ``admin_token``'s name — while
    ``admin_token`` is set: the audit log (``api:<name>``, ``console:<name>``) and console
    sessions tell tokens apart by name, so a second token of a name would act as the first."""
    seen = {"admin"} if has_admin_token else set()
    for i, token in enumerate(tokens):
        if token.name in seen:
            whose = (
                "admin_token's name (it has every scope)"
                if token.name == "admin" and has_admin_token
                else "another token's name"
            )
            raise _FieldError(
                ("admin_tokens", i, "name"),
                f"an admin token is already named {token.name!r} ({whose}): names must be "
                "unique — give this token another name, or remove the older entry if this one "
                "replaces it",
            )
        seen.add(token.name)


MIN_TOKEN_LENGTH = 20
"""The fewest characters an admin token may have: a short one can be guessed (the wrong-token
limits slow a guess, they do not stop it). ``personify init``'s tokens have 36."""

NEW_TOKEN_COMMAND = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a token
"""A command that prints a new random token (43 characters), as the errors suggest."""


def _check_token_lengths(admin_token: Secret | None, tokens: tuple[AdminToken, ...]) -> None:
    """Every admin token (``admin_token``, ``admin_tokens[].token``) set has at least
    :data:`MIN_TOKEN_LENGTH` characters, whether written in the file or read from the
    environment (``${VAR}``); an empty one (``${VAR:-}``) is no token and is not checked. The
    error names the token and its key, never its value nor its length."""
    named: list[tuple[tuple[str | int, ...], str, Secret | None]] = [
        (("admin_token",), "admin", admin_token)
    ]
    named += [(("admin_tokens", i, "token"), t.name, t.token) for i, t in enumerate(tokens)]
    for path, name, secret in named:
        if secret and len(secret.reveal().strip()) < MIN_TOKEN_LENGTH:
            raise _FieldError(
                path,
                f"the admin token {name!r} is shorter than {MIN_TOKEN_LENGTH} characters: a "
                "short token can be guessed. Put a long random token where this one comes from "
                "(its ${VAR} in the environment or the project's .env), e.g. the output of: "
                f"{NEW_TOKEN_COMMAND}",
            )


_RELATION_TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){1,2}$")


def _check_relations(relations: dict[str, str]) -> None:
    """``relations:`` names a qualified table each, under a name that is not one of the
    warehouse's own tables or views (a relation would hide it)."""
    from personify.warehouse.schema import TABLES_BY_NAME, VIEWS

    for name, target in relations.items():
        if name.lower() in TABLES_BY_NAME or name.lower() in VIEWS:
            raise _FieldError(
                ("relations", name),
                f"{name!r} is a Personify table or view: give the relation another name",
            )
        if not _RELATION_TARGET.match(target):
            raise _FieldError(
                ("relations", name),
                f"{target!r} is not a qualified table name: write schema.table (DuckDB also "
                "database.schema.table), e.g. analytics.crm_scores",
            )


@dataclass(frozen=True)
class Project:
    """A loaded project: its configuration and the folder it lives in."""

    config: ProjectConfig
    root: Path
    file: Path

    def path(self, relative: str | Path) -> Path:
        """A path from the project file, resolved against the project folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.root / p

    def source(self, name: str) -> Source:
        for s in self.config.sources:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.config.sources) or "none"
        raise ConfigError(f"no source named {name!r} (sources: {known})", file=str(self.file))

    @property
    def state_dir(self) -> Path:
        """``.personify/`` in the project: locks, the running server's address, local state."""
        return self.root / ".personify"


# --------------------------------------------------------------------------------------- loading
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _env_file(root: Path) -> dict[str, str]:
    path = root / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _interpolate(doc: MarkedDocument, env: dict[str, str], file: str) -> Any:
    def sub(value: str, path: tuple[str | int, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            var, default = m.group(1), m.group(2)
            if var in env and env[var] != "":
                return env[var]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {var} is not set",
                file=file,
                line=doc.line(path),
                key=_dotted(path),
                hint=f"export {var}=… (or put it in .env in the project folder)",
            )

        return _VAR.sub(one, value)

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "$" in node:
            return sub(node, path)
        return node

    return walk(doc.data, ())


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]")
_FIELD = re.compile(r"field `([^`]+)`")
_OWN_KEY = re.compile(r"^([a-z_][a-z0-9_]*): ")
"""A ``__post_init__`` check's message that starts by naming the key it is about."""
_PATTERNS: Final = {
    _NAME_PATTERN: "expected a name of letters, digits, '_' and '-', starting with a letter or '_'",
    _DURATION_PATTERN: "expected a duration like 300s, 5m or 1h (units ms, s, m, h, d; a bare "
    "number is seconds)",
    _CLOCK_TIME: "expected a time of day like 21:00 (HH:MM, 24-hour clock)",
}
"""What a value refused by each ``Meta(pattern=…)`` of the model should look like."""


def _pin_elided(text: str, data: Any) -> str:
    """msgspec writes a mapping's key as ``[...]`` in error paths (``$.discounts[...].tiers``):
    find the entry at fault — the one that fails the same way when its mapping holds only it —
    and put its key back (``$.discounts["winback"].tiers``), so the error names line and key."""
    while (m := _AT.match(text)) and "[...]" in (raw := m.group("path") or ""):
        prefix = raw[: raw.index("[...]")]
        tokens = [int(t[1]) if t[1] else (t[0] or t[2]) for t in _TOKEN.findall(prefix)]
        mapping = _get_in(data, tokens)
        if not isinstance(mapping, dict):
            break
        culprit = None
        for name, value in mapping.items():
            try:
                msgspec.convert(
                    _set_in(data, tokens, {name: value}), ProjectConfig, dec_hook=_dec_hook
                )
            except msgspec.ValidationError as e:
                if (again := _AT.match(str(e))) and again.group("msg") == m.group("msg"):
                    culprit = name
                    break
            except _FieldError:
                continue
        if not isinstance(culprit, str):
            break
        text = text.replace("[...]", "[" + json.dumps(culprit) + "]", 1)
    return text


def _get_in(data: Any, path: list[str | int]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _set_in(data: Any, path: list[str | int], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = list(data) if isinstance(data, list) else dict(data)
    copy[head] = _set_in(data[head], rest, value)  # type: ignore[index]
    return copy


def _translate(
    err: msgspec.ValidationError, doc: MarkedDocument, file: str, text: str | None = None
) -> ConfigError:
    m = _AT.match(str(err) if text is None else text)
    assert m is not None
    msg, raw = m.group("msg"), m.group("path") or ""
    path: tuple[str | int, ...] = tuple(
        int(t[1]) if t[1] else (t[0] or t[2]) for t in _TOKEN.findall(raw)
    )
    line = doc.line(path)
    key = _dotted(path)
    field = _FIELD.search(msg)
    hint = None
    if field and "unknown field" in msg:
        bad = (*path, field.group(1))
        line, key = doc.line(bad), _dotted(bad)
        msg = f"unknown key {field.group(1)!r}"
        hint = "check the spelling; see the configuration reference in README.md"
    elif field and "missing required field" in msg:
        msg = f"missing required key {field.group(1)!r}"
    elif (own := _OWN_KEY.match(msg)) and (*path, own.group(1)) in doc.marks:
        # a check of the mapping that names one of its keys ("currency: 'XYZ' is not …"):
        # that key's line, not the mapping's
        path = (*path, own.group(1))
        line, key, msg = doc.line(path), _dotted(path), msg[own.end() :]
    msg = msg.replace("Expected", "expected").replace("Invalid enum value", "invalid value")
    if "matching regex" in msg:  # msgspec quotes the pattern as Python's repr
        found = [said for pattern, said in _PATTERNS.items() if f"regex {pattern!r}" in msg]
        msg = found[0] if found else msg
    return ConfigError(msg, file=file, line=line, key=key, hint=hint)


def parse_config(text: str, *, file: str = PROJECT_FILE, root: Path | None = None) -> ProjectConfig:
    """Parse the text of a project file. Raises :class:`ConfigError` on any mistake."""
    doc = parse_marked(text, file=file)
    if doc.data is None:
        doc = MarkedDocument({}, doc.marks)
    if not isinstance(doc.data, dict):
        raise ConfigError("the project file must be a mapping of keys to values", file=file, line=1)
    env = {**(_env_file(root) if root else {}), **os.environ}
    data = _default_kinds(empty_keys(_interpolate(doc, env, file), _MODEL))
    try:
        return msgspec.convert(data, ProjectConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _translate(e, doc, file, _pin_elided(str(e), data)) from None
    except _FieldError as e:
        raise ConfigError(
            e.message, file=file, line=doc.line(e.path), key=_dotted(e.path)
        ) from None


_MODEL: Final = msgspec.inspect.type_info(ProjectConfig)


def _default_kinds(data: Any) -> Any:
    """A destination without ``kind`` is ``kind: rest`` (reverse ETL, the only kind before
    ``events``): projects written then keep loading."""
    destinations = data.get("destinations") if isinstance(data, dict) else None
    if not isinstance(destinations, list):
        return data
    kinds = [
        {"kind": "rest", **d} if isinstance(d, dict) and "kind" not in d else d
        for d in destinations
    ]
    return {**data, "destinations": kinds}


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret and isinstance(obj, str):
        return Secret(obj)
    raise NotImplementedError


def find_project_file(directory: Path) -> Path:
    file = directory / PROJECT_FILE
    if not file.is_file():
        raise ConfigError(
            f"no {PROJECT_FILE} in {directory}",
            file=str(file),
            hint="run `personify init DIR` to make a project, or pass --project DIR",
        )
    return file


_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def key_line(file: Path, key: str) -> int | None:
    """The line of ``key`` (``relations.crm_scores``, ``alerts[0].threshold``: a
    :class:`~personify.errors.ConfigError`'s ``key``) in the YAML file ``file``; ``None`` when the
    file cannot be read or parsed or does not hold that key. For checks made after loading (a
    warehouse table that is missing, a bus that is down), whose errors must still name the line.
    The file is parsed once while it is unchanged (the real-time path asks at every event)."""
    try:
        stat = file.stat()
    except OSError:
        return None
    path = tuple(int(index) if index else name for name, index in _KEY_PART.findall(key))
    return _marks(file, stat.st_mtime_ns, stat.st_size).get(path)


@functools.lru_cache(maxsize=16)
def _marks(file: Path, mtime_ns: int, size: int) -> dict[tuple[str | int, ...], int]:
    """:func:`key_line`'s parse of ``file``, cached by its modification time and size."""
    try:
        return parse_marked(file.read_text(encoding="utf-8"), file=str(file)).marks
    except (ConfigError, OSError, UnicodeDecodeError):
        return {}


def locate(error: ConfigError, file: Path) -> ConfigError:
    """``error`` with the line of its key in the project file ``file`` when it names a key of that
    file but no line; unchanged when it has a line, names another file, or the key is not found."""
    if not error.key or error.line is not None:
        return error
    if error.file and Path(error.file).name != file.name:
        return error
    line = key_line(file, error.key)
    if line is None:
        return error
    return ConfigError(error.reason, file=str(file), line=line, key=error.key, hint=error.hint)


def load_project(directory: str | Path = ".") -> Project:
    """Load the project in ``directory`` (which holds ``personify.yml``)."""
    root = Path(directory).expanduser().resolve()
    file = find_project_file(root)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason})", file=str(file)) from None
    config = parse_config(text, file=str(file), root=root)
    return Project(config=config, root=root, file=file)
