"""Offers: what an email proposes — cart contents, recommendations, new arrivals, discount codes.

Every function works on a batch (many carts, customers or requests) with SQL pushed to the
warehouse: a journey asks once for all the emails it is about to decide, never per customer.

- :mod:`.carts` — :func:`cart_contents`: a cart's items from ``Product Added`` / ``Removed``;
- :mod:`.recommendations` — :func:`recommend_for_carts`: co-viewed and co-bought products,
  category and overall best-sellers as the fallback;
- :mod:`.arrivals` — :func:`new_arrivals`: new products from a customer's preferred categories;
- :mod:`.discounts` — :func:`issue_codes` (idempotent per key),
  :func:`preview_codes` (what it would give, writing nothing), :func:`redeem`,
  :func:`redeem_from_orders`;
- :mod:`.snapshot` — :func:`snapshot`: the cart-independent work of a run's batches done once;
- :mod:`.stage` — :func:`offers_stage`, the pipeline step running :func:`redeem_from_orders`.
"""

from personify.offers.arrivals import new_arrivals as new_arrivals
from personify.offers.carts import cart_contents as cart_contents
from personify.offers.discounts import PREVIEW_CODE as PREVIEW_CODE
from personify.offers.discounts import RedeemResult as RedeemResult
from personify.offers.discounts import derive_code as derive_code
from personify.offers.discounts import issue_codes as issue_codes
from personify.offers.discounts import normalize_code as normalize_code
from personify.offers.discounts import preview_codes as preview_codes
from personify.offers.discounts import redeem as redeem
from personify.offers.discounts import redeem_from_orders as redeem_from_orders
from personify.offers.recommendations import recommend_for_carts as recommend_for_carts
from personify.offers.snapshot import snapshot as snapshot
from personify.offers.stage import offers_stage as offers_stage

__all__ = [
    "PREVIEW_CODE",
    "RedeemResult",
    "cart_contents",
    "derive_code",
    "issue_codes",
    "new_arrivals",
    "normalize_code",
    "offers_stage",
    "preview_codes",
    "recommend_for_carts",
    "redeem",
    "redeem_from_orders",
    "snapshot",
]
