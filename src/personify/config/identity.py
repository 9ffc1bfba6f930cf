"""Identity and profiles (``identity:``, ``survivorship:``, ``traits:``): how people are
resolved, which value a profile field keeps, and the computed traits.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from personify.config.base import Name, Secret, _Base


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
