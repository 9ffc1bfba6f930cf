"""Destinations (``destinations:``): warehouse rows pushed to an API (reverse ETL, ad
audiences) and the event stream forwarded.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

import msgspec

from personify.config.base import Duration, Name, Secret, _Base, duration_seconds
from personify.config.sources import RestClient, Schedule

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
