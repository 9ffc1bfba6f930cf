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

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from personify._yamlmarks import MarkedDocument, parse_marked
from personify.errors import ConfigError

PROJECT_FILE: Final = "personify.yml"

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")]
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
    sender), ``warn`` stores it and records the violations in ``events.plan_violations``."""
    rate_limit: Annotated[float, msgspec.Meta(gt=0)] = 50_000.0
    """Events per second the write key may send, sustained (a token bucket); above it the API
    answers 429 with ``Retry-After``."""
    rate_burst: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Events the bucket holds, the burst allowance (default: two seconds of ``rate_limit``)."""


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

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise ValueError("delimiter must be a single character")


Source = TrackingSource | FileSource


# -------------------------------------------------------------------------------------- delivery
class OutboxDelivery(_Base, frozen=True, tag="outbox", tag_field="kind"):
    """Write each email as an ``.eml`` file in a folder (the default: safe for trying things)."""

    path: str = "outbox"
    """Folder for the ``.eml`` files, relative to the project."""


Delivery = OutboxDelivery


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
    """Weight of a day with web or app activity (page, screen or track events)."""
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


_DISCOUNT_DURATION = re.compile(r"^[1-9][0-9]*\s*(s|m|h|d|w)$")
"""``expires_in``: a positive whole number of seconds, minutes, hours, days or weeks."""


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
    """Currency of ``amount`` tiers (shown in the code's label)."""

    def __post_init__(self) -> None:
        if not _DISCOUNT_DURATION.match(self.expires_in.strip().lower()):
            raise ValueError(f"{self.expires_in!r} is not a duration: write e.g. 48h, 7d or 2w")
        if not self.tiers:
            raise ValueError("a campaign needs at least one tier")


def _default_discounts() -> dict[str, DiscountCampaign]:
    return {"cart_rescue": DiscountCampaign()}


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
    sources: tuple[Source, ...] = ()
    """Where data comes from (``kind``: ``tracking``, ``file``)."""
    delivery: Delivery = OutboxDelivery()
    """Where email goes (``kind``: ``outbox``)."""
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
    discounts: dict[Name, DiscountCampaign] = msgspec.field(default_factory=_default_discounts)
    """Personal discount code campaigns by name (journeys ask for codes of a campaign). Default:
    ``cart_rescue`` — 7 days, 5 % / 10 % / 15 % off by engagement (≥ 70 / ≥ 30 / below)."""

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
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            if source.name in seen:
                raise _FieldError(
                    ("sources", i, "name"),
                    f"two sources are named {source.name!r}; names must be unique",
                )
            seen.add(source.name)


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


def _translate(err: msgspec.ValidationError, doc: MarkedDocument, file: str) -> ConfigError:
    m = _AT.match(str(err))
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
    msg = msg.replace("Expected", "expected").replace("Invalid enum value", "invalid value")
    if "matching regex" in msg:
        msg = "expected a name of letters, digits, '_' and '-', starting with a letter or '_'"
    return ConfigError(msg, file=file, line=line, key=key, hint=hint)


def parse_config(text: str, *, file: str = PROJECT_FILE, root: Path | None = None) -> ProjectConfig:
    """Parse the text of a project file. Raises :class:`ConfigError` on any mistake."""
    doc = parse_marked(text, file=file)
    if doc.data is None:
        doc = MarkedDocument({}, doc.marks)
    if not isinstance(doc.data, dict):
        raise ConfigError("the project file must be a mapping of keys to values", file=file, line=1)
    env = {**(_env_file(root) if root else {}), **os.environ}
    data = _interpolate(doc, env, file)
    try:
        return msgspec.convert(data, ProjectConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _translate(e, doc, file) from None
    except _FieldError as e:
        raise ConfigError(
            e.message, file=file, line=doc.line(e.path), key=_dotted(e.path)
        ) from None


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
