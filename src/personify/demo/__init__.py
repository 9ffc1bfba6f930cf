"""The synthetic world behind ``personify demo``: a small web shop, deterministic for a seed.

:func:`build_world` makes it relative to an instant ``now``, from 10 to a million customers, with
numpy and Arrow only (no Python loop per row): the same seed and ``now`` give byte-identical
tables and files. :func:`write_world` writes it as CSV, JSON Lines and Parquet;
:func:`make_demo_project` makes a project wired to those files.

The world's tables (wire form: what each system would export or serve), sizes per 1,000
customers with the default mix (about; the catalogue grows with the square root):

==================  ======  ==========================================================
table               rows    shape
==================  ======  ==========================================================
products            181     Shopify-style: id, sku, title, product_type, price, currency,
                            inventory_quantity (8 % out of stock), url, image_url,
                            created_at (some new arrivals in the last 14 days), updated_at
shop_customers      1,006   Shopify-style customers: 13-digit id (the web ``userId``), email
                            (dirty: case, spaces), names, phone (E.164, national, spaced,
                            00-prefixed), city, country, accepts_email_marketing, created_at,
                            updated_at
crm_contacts        885     HubSpot-style: id (another id for the same person), nested
                            ``properties`` (email dirtied independently, firstname, lastname,
                            phone, city, country, IANA timezone, hs_language, lifecyclestage),
                            updatedAt, archived
crm_updates         59      later CRM edits of some contacts (new phone or last name)
consents            900     customer_id (shop id), email, purpose ``email_marketing``,
                            channel ``email``, status granted/revoked, opted_in_at, updated_at;
                            no row = never opted in
orders              415     id, name (#1001…), customer_id, email, cart_token, financial and
                            fulfillment status, currency, subtotal, discounts, total,
                            discount_code, created_at, updated_at
order_items         620     order_id, line_number, product_id, sku, title, quantity, price
tickets             227     Zendesk-style: id, subject, status, priority, nested ``requester``
                            {name, email, external_id (CRM id)}, satisfaction_rating, via,
                            tags, created_at, updated_at
events              10,800  web tracking (Segment): page, identify, Product Viewed, Product
                            Added (cart_id), Checkout Started, Order Completed
email_events        1,700   Email Opened, Email Link Clicked (the email service's)
==================  ======  ==========================================================

Every table is sorted by its update time with stable ids, so later work can serve them as mock
REST APIs (a CRM paged by ``updatedAt``, shop orders, help-desk tickets) and replay the event logs
as tracking batches or signed webhooks. About 0.5 % of records are invalid on purpose (malformed
email, missing id, negative quantity, unparseable timestamp, malformed JSON line, events without
``messageId`` or identity, Product Added without ``cart_id``) and 0.1 % of events are retried
duplicates. How each part is made: :mod:`~personify.demo.people` (cohorts: vip, active, lapsed,
new, dormant, and anonymous visitors), :mod:`~personify.demo.behaviour` (sessions, login, carts),
:mod:`~personify.demo.commerce`, :mod:`~personify.demo.accounts`, :mod:`~personify.demo.email`,
:mod:`~personify.demo.support`, :mod:`~personify.demo.events` and :mod:`~personify.demo.segment`.
"""

from personify.demo.events import EventLog as EventLog
from personify.demo.files import FILES as FILES
from personify.demo.files import read_manifest as read_manifest
from personify.demo.files import write_world as write_world
from personify.demo.project import DemoProject as DemoProject
from personify.demo.project import make_demo_project as make_demo_project
from personify.demo.world import World as World
from personify.demo.world import build_world as build_world

__all__ = [
    "FILES",
    "DemoProject",
    "EventLog",
    "World",
    "build_world",
    "make_demo_project",
    "read_manifest",
    "write_world",
]
