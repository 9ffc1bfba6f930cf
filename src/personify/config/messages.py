"""Email (``delivery:``, ``email:``, ``engagement:``): the transports, ESP webhooks, DKIM, the
sender and unsubscribe settings, and open/click tracking and attribution.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from personify.config.base import Duration, Secret, _Base, _FieldError

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
