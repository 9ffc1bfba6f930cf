"""The project file (``personify.yml``) as typed, documented, immutable objects.

A project is a folder: ``personify.yml`` plus SQL, rules and templates beside it.
:func:`load_project` reads the file, interpolates ``${VAR}`` (and ``${VAR:-default}``) from
the environment — and from a ``.env`` file in the project folder, the environment winning — and
converts it into the structs below. Any mistake raises :class:`~personify.errors.ConfigError`
naming the file, the line, the key and what was expected.

Secrets (write keys, tokens, passwords) are :class:`Secret`: they never show in ``repr``, logs or
error messages.

The model is split by theme — :mod:`.base` (names, secrets, durations), :mod:`.sources`,
:mod:`.destinations`, :mod:`.messages` (delivery, sender, engagement), :mod:`.identity`
(identity, survivorship, traits), :mod:`.journeys` (audiences, discounts, journeys),
:mod:`.privacy`, :mod:`.quality`, :mod:`.alerts`, :mod:`.project` (the whole file) and
:mod:`.loader` (reading it) — and every name is imported from here:
``from personify.config import RestSource``.
"""

from __future__ import annotations

from personify.config.alerts import (
    ALERT_SIGNALS,
    ALERT_THRESHOLDS,
    Alert,
    EmailNotifier,
    Notifier,
    WebhookNotifier,
)
from personify.config.base import PROJECT_FILE, Duration, Name, Secret, duration_seconds
from personify.config.destinations import (
    AD_AUDIENCE_PRESETS,
    EVENT_TYPES,
    GOOGLE_ADS_API_VERSION,
    GOOGLE_ADS_URL,
    META_API_VERSION,
    META_GRAPH_URL,
    Destination,
    DestinationConsent,
    DestinationPreset,
    EventsDestination,
    RestDestination,
)
from personify.config.identity import (
    CategoryWeights,
    CustomTrait,
    EmailRules,
    EngagementWeights,
    FieldRule,
    IdentityConfig,
    LifecycleRules,
    PredictiveTraits,
    SurvivorshipConfig,
    SurvivorshipRuleName,
    TraitsConfig,
)
from personify.config.journeys import (
    AudienceSettings,
    DiscountCampaign,
    DiscountTier,
    FrequencyCap,
    JourneySettings,
    QuietHours,
)
from personify.config.loader import _dotted as _dotted
from personify.config.loader import _translate as _translate
from personify.config.loader import find_project_file, key_line, load_project, locate, parse_config
from personify.config.messages import (
    DKIM_HEADERS,
    Delivery,
    DkimSettings,
    EmailSettings,
    EngagementConfig,
    EspDelivery,
    EspProvider,
    EspWebhook,
    OutboxDelivery,
    SmtpDelivery,
    Topic,
    WebhookScheme,
)
from personify.config.privacy import (
    MIN_TOKEN_LENGTH,
    NEW_TOKEN_COMMAND,
    AdminToken,
    EncryptedField,
    PrivacyConfig,
)
from personify.config.project import DemoSettings, Project, ProjectConfig
from personify.config.quality import (
    QualityAction,
    QualityCheck,
    QualityConfig,
    QualityRule,
    ReconcileSettings,
)
from personify.config.sources import (
    ApiKeyAuth,
    Auth,
    BasicAuth,
    BearerAuth,
    Endpoint,
    FileFormat,
    FileSource,
    Incremental,
    Nested,
    OAuth2ClientCredentials,
    OAuth2RefreshToken,
    Paginator,
    PaginatorType,
    RestClient,
    RestPreset,
    RestResource,
    RestSource,
    Schedule,
    SignatureScheme,
    Source,
    TableName,
    TrackingSource,
    WebhookSource,
)

__all__ = [
    "AD_AUDIENCE_PRESETS",
    "ALERT_SIGNALS",
    "ALERT_THRESHOLDS",
    "AdminToken",
    "Alert",
    "ApiKeyAuth",
    "AudienceSettings",
    "Auth",
    "BasicAuth",
    "BearerAuth",
    "CategoryWeights",
    "CustomTrait",
    "DKIM_HEADERS",
    "Delivery",
    "DemoSettings",
    "Destination",
    "DestinationConsent",
    "DestinationPreset",
    "DiscountCampaign",
    "DiscountTier",
    "DkimSettings",
    "Duration",
    "EVENT_TYPES",
    "EmailNotifier",
    "EmailRules",
    "EmailSettings",
    "EncryptedField",
    "Endpoint",
    "EngagementConfig",
    "EngagementWeights",
    "EspDelivery",
    "EspProvider",
    "EspWebhook",
    "EventsDestination",
    "FieldRule",
    "FileFormat",
    "FileSource",
    "FrequencyCap",
    "GOOGLE_ADS_API_VERSION",
    "GOOGLE_ADS_URL",
    "IdentityConfig",
    "Incremental",
    "JourneySettings",
    "LifecycleRules",
    "META_API_VERSION",
    "META_GRAPH_URL",
    "MIN_TOKEN_LENGTH",
    "NEW_TOKEN_COMMAND",
    "Name",
    "Nested",
    "Notifier",
    "OAuth2ClientCredentials",
    "OAuth2RefreshToken",
    "OutboxDelivery",
    "PROJECT_FILE",
    "Paginator",
    "PaginatorType",
    "PredictiveTraits",
    "PrivacyConfig",
    "Project",
    "ProjectConfig",
    "QualityAction",
    "QualityCheck",
    "QualityConfig",
    "QualityRule",
    "QuietHours",
    "ReconcileSettings",
    "RestClient",
    "RestDestination",
    "RestPreset",
    "RestResource",
    "RestSource",
    "Schedule",
    "Secret",
    "SignatureScheme",
    "SmtpDelivery",
    "Source",
    "SurvivorshipConfig",
    "SurvivorshipRuleName",
    "TableName",
    "Topic",
    "TrackingSource",
    "TraitsConfig",
    "WebhookNotifier",
    "WebhookScheme",
    "WebhookSource",
    "duration_seconds",
    "find_project_file",
    "key_line",
    "load_project",
    "locate",
    "parse_config",
]
