"""The whole project file (:class:`ProjectConfig`) with its cross-section checks, and a
loaded project (:class:`Project`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from personify.config.alerts import Alert, Notifier, _check_alerts
from personify.config.base import Duration, Name, Secret, _Base, _FieldError
from personify.config.destinations import Destination, RestDestination
from personify.config.identity import IdentityConfig, SurvivorshipConfig, TraitsConfig
from personify.config.journeys import (
    AudienceSettings,
    DiscountCampaign,
    JourneySettings,
    _default_discounts,
)
from personify.config.messages import Delivery, EmailSettings, EngagementConfig, OutboxDelivery
from personify.config.privacy import (
    AdminToken,
    PrivacyConfig,
    _check_token_lengths,
    _check_token_names,
)
from personify.config.quality import QualityConfig
from personify.config.sources import Source, TrackingSource
from personify.errors import ConfigError


class DemoSettings(_Base, frozen=True):
    """Wiring of a ``personify demo`` project to its synthetic world."""

    seed: int = 7
    """Seed of the synthetic world: the same seed gives the same world."""
    customers: Annotated[int, msgspec.Meta(ge=10)] = 10_000
    """How many customers the world has."""
    data: str = "data"
    """Folder where the world's files are written (relative to the project)."""


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
