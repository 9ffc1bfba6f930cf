"""Presets: ready-made REST sources for typical CRM, shop, help-desk and payment APIs, built on
the same engine (:mod:`personify.sources.rest`), each with its API's real pagination style.

==================  ===================================  ===============================  =========
preset              endpoint                             pagination                       table
==================  ===================================  ===============================  =========
hubspot_contacts    POST /crm/v3/objects/contacts/search  cursor in the body               customers
                                                         (``paging.next.after`` → body
                                                         ``after``)
shopify_orders      GET /admin/api/2024-10/orders.json   ``Link`` header (``page_info``)   orders,
                                                                                          order_items
zendesk_tickets     GET /api/v2/incremental/tickets/     next URL in the body             tickets
                    cursor.json                          (``after_url``) until
                                                         ``end_of_stream``
stripe_charges      GET /v1/charges                      the last record's id as          orders
                                                         ``starting_after`` while
                                                         ``has_more``
==================  ===================================  ===============================  =========

A user gives the ``base_url`` and ``auth`` (and, optionally, ``initial_value``)::

    - name: shop
      kind: rest
      preset: shopify_orders
      client:
        base_url: https://my-shop.myshopify.com
        auth: {type: api_key, name: X-Shopify-Access-Token, api_key: "${SHOPIFY_TOKEN}"}

Giving ``resources`` replaces the preset's; giving ``client.paginator`` replaces its paginator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from personify.config import (
    Endpoint,
    Incremental,
    Nested,
    Paginator,
    RestResource,
    RestSource,
)

EPOCH: Final = "1970-01-01T00:00:00Z"
HUBSPOT_SEARCH_WINDOW: Final = 10_000
"""Results one HubSpot search pages through at most (a page beyond answers 400)."""


def hubspot_contacts(initial: str) -> tuple[RestResource, ...]:
    """CRM contacts through HubSpot's search API, changed since the last sync."""
    properties = [
        "email", "firstname", "lastname", "phone", "city", "country", "hs_timezone",
        "hs_language", "createdate", "lastmodifieddate",
    ]  # fmt: skip
    return (
        RestResource(
            name="contacts",
            table="customers",
            primary_key="id",
            endpoint=Endpoint(
                path="/crm/v3/objects/contacts/search",
                method="POST",
                json={
                    "filterGroups": [
                        {
                            "filters": [
                                {
                                    "propertyName": "lastmodifieddate",
                                    "operator": "GTE",
                                    "value": "{incremental.start_value}",
                                }
                            ]
                        }
                    ],
                    "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                    "properties": properties,
                    "limit": 100,
                },
                data_selector="results",
                paginator=Paginator(
                    type="cursor", cursor_path="paging.next.after", cursor_body_path="after"
                ),
                incremental=Incremental(
                    cursor_path="updatedAt",
                    initial_value=initial,
                    start_format="unix_ms",
                    overlap="1m",
                ),
            ),
            # one search reads at most the window; the next sync searches again from the
            # newest contact read (oldest first: nothing is skipped)
            max_pages=HUBSPOT_SEARCH_WINDOW // 100,
            mapping={
                "customer_id": "id",
                "email": "properties.email",
                "first_name": "properties.firstname",
                "last_name": "properties.lastname",
                "phone": "properties.phone",
                "city": "properties.city",
                "country": "properties.country",
                "timezone": "properties.hs_timezone",
                "locale": "properties.hs_language",
                "created_at": "createdAt",
                "updated_at": "updatedAt",
            },
        ),
    )


def shopify_orders(initial: str) -> tuple[RestResource, ...]:
    """Shop orders and their line items (Shopify's REST Admin API)."""
    return (
        RestResource(
            name="orders",
            table="orders",
            primary_key="id",
            endpoint=Endpoint(
                path="/admin/api/2024-10/orders.json",
                params={"status": "any", "limit": 250},
                data_selector="orders",
                paginator=Paginator(type="header_link"),
                incremental=Incremental(
                    cursor_path="updated_at",
                    initial_value=initial,
                    start_param="updated_at_min",
                    start_format="iso",
                    overlap="1m",
                ),
            ),
            mapping={
                "order_id": "id|string",
                "email": "email",
                "cart_id": "cart_token",
                "status": "financial_status",
                "currency": "currency",
                "subtotal": "subtotal_price",
                "discount": "total_discounts",
                "total": "total_price",
                "discount_code": "discount_codes.0.code",
                "created_at": "created_at",
                "updated_at": "updated_at",
                "source_customer_id": "customer.id|string",
            },
            nested=(
                Nested(
                    path="line_items",
                    table="order_items",
                    mapping={
                        "order_id": "_parent.id|string",
                        "line_no": "_index",
                        "product_id": "product_id|string",
                        "quantity": "quantity",
                        "price": "price",
                    },
                ),
            ),
        ),
    )


def zendesk_tickets(initial: str) -> tuple[RestResource, ...]:
    """Help-desk tickets through Zendesk's cursor-based incremental export."""
    return (
        RestResource(
            name="tickets",
            table="tickets",
            primary_key="id",
            endpoint=Endpoint(
                path="/api/v2/incremental/tickets/cursor.json",
                data_selector="tickets",
                paginator=Paginator(
                    type="json_link", next_url_path="after_url", stop_path="end_of_stream"
                ),
                incremental=Incremental(
                    cursor_path="updated_at",
                    initial_value=initial,
                    start_param="start_time",
                    start_format="unix",
                    overlap="1m",
                ),
            ),
            mapping={
                "ticket_id": "id|string",
                "subject": "subject",
                "status": "status",
                "priority": "priority",
                "satisfaction": "satisfaction_rating.score",
                "created_at": "created_at",
                "updated_at": "updated_at",
                "source_customer_id": "requester_id|string",
            },
        ),
    )


def stripe_charges(initial: str) -> tuple[RestResource, ...]:
    """Payments (Stripe charges) as orders: amounts in minor units, times in epoch seconds."""
    return (
        RestResource(
            name="charges",
            table="orders",
            primary_key="id",
            endpoint=Endpoint(
                path="/v1/charges",
                params={"limit": 100},
                data_selector="data",
                paginator=Paginator(
                    type="record_cursor",
                    record_field="id",
                    cursor_param="starting_after",
                    has_more_path="has_more",
                ),
                incremental=Incremental(
                    cursor_path="created",
                    initial_value=initial,
                    start_param="created[gte]",
                    start_format="unix",
                ),
            ),
            mapping={
                "order_id": "id",
                "email": "billing_details.email",
                "status": "status",
                "currency": "currency",
                "total": "amount|cents",
                "created_at": "created|unix",
                "updated_at": "created|unix",
                "source_customer_id": "customer",
            },
        ),
    )


PRESETS: Final[dict[str, Callable[[str], tuple[RestResource, ...]]]] = {
    "hubspot_contacts": hubspot_contacts,
    "shopify_orders": shopify_orders,
    "zendesk_tickets": zendesk_tickets,
    "stripe_charges": stripe_charges,
}
"""Preset name → its resources (given the initial value)."""


def resolve_preset(source: RestSource) -> RestSource:
    """``source`` with its preset's resources filled in (unchanged without a preset)."""
    if source.preset is None:
        return source
    resources = source.resources or PRESETS[source.preset](source.initial_value or EPOCH)
    return msgspec.structs.replace(source, resources=resources)
