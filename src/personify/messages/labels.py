"""Words that templates print: a discount's ``label`` and ``expires_at`` in the email's language.

A journey's discount code carries ``label``, the English ``10% off`` (``5.00 EUR off``) it always
had — as a :class:`DiscountLabel`, a string that also knows what the code takes off. When an
email is rendered (:func:`localize`), the label is written in the **template's language** — its
locale variant's (``welcome.fr.liquid`` → French), else the project's ``email.default_locale``
— with Babel's numbers, in the customer's own locale when it is of that language (``fr-CA``):
``10 % de réduction``, ``5,00 € de réduction``. A language without wording here, and English,
keep the English label unchanged. Its ``expires_at`` (an :class:`Expiry`) printed as it is
writes its day the same way — the day in the customer's ``timezone`` (else the project's), as
``date`` writes an instant: ``08 December 2026`` in English (the text it always printed),
Babel's long date in another language (``8 décembre 2026``, ``8. Dezember 2026``).

Both encode with msgspec through :func:`enc_hook` (the label as its text, the expiry as its
ISO 8601 instant).

A written label or expiry still knows what it was made from, so an email part of another
language (an experiment's ``fr:`` subject line over a German body) writes it again in its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from babel.core import UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, format_percent

from personify.messages.locale import babel_locale, customer_locale, normalize

TEMPLATE_LOCALE = "personify:template_locale"
"""The context key :func:`localize` sets to the locale the email is written in (the template's
language, in the customer's way when it is theirs: :func:`words_locale`; not a Liquid name
templates can read: it has a colon); the ``date``, ``currency`` and ``discount_amount`` filters
write in it, as the label is — one language per email."""

OFF: dict[str, str] = {
    "de": "{} Rabatt",
    "es": "{} de descuento",
    "fr": "{} de réduction",
    "it": "{} di sconto",
    "nl": "{} korting",
    "sv": "{} rabatt",
}
"""A discount's label per language (the languages the demo's customers speak); ``{}`` is what
it takes off, written by Babel (``10 %``, ``5,00 €``). Others are English."""


class DiscountLabel(str):
    """``10% off`` — and what the code takes off, so it can be written in another language;
    ``english``: the English label it was written from (itself when it is that)."""

    value: Decimal
    kind: str
    currency: str
    english: str

    def __new__(
        cls, text: str, value: object, kind: str, currency: str, english: str | None = None
    ) -> DiscountLabel:
        made = super().__new__(cls, text)
        made.value = Decimal(str(value))
        made.kind = kind
        made.currency = currency
        made.english = str(text) if english is None else english
        return made

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep what it knows
        return (DiscountLabel, (str(self), self.value, self.kind, self.currency, self.english))


class Expiry(datetime):
    """A discount code's expiry: the instant (with its zone), so ``| date: 'long'`` and
    ``| date: '%d/%m'`` read it. Printed as it is, its day — in :attr:`zone` (the customer's,
    set by :func:`localize`), else in its own zone (UTC as the warehouse stores it) — in the
    language it is written in (:meth:`written_in`): in English (and unwritten) the text
    templates got before it was a datetime, ``08 December 2026``; else Babel's long date,
    ``8 décembre 2026``. A copy (:meth:`astimezone`, :meth:`replace`, ``±`` a timedelta,
    pickles) keeps its language and zone."""

    locale: str | None = None
    """The (canonical) locale it prints in; None: English."""
    zone: tzinfo | None = None
    """The zone whose day it prints; None: its own."""

    def local_date(self) -> date:
        """The day it prints: in :attr:`zone` when it has one, else in its own zone."""
        return (datetime.astimezone(self, self.zone) if self.zone is not None else self).date()

    def __str__(self) -> str:
        day = self.local_date()
        if self.locale is not None:
            for name in (babel_locale(self.locale), babel_locale(self.locale.split("-")[0])):
                try:
                    return str(format_date(day, "long", locale=name))
                except (UnknownLocaleError, ValueError):
                    continue
        return day.strftime("%d %B %Y")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # copies, pickles: its language
        at = datetime.combine(self.date(), self.timetz())
        return (_expiry, (at, self.locale, self.zone))

    def astimezone(self, tz: tzinfo | None = None) -> Expiry:
        """The same instant in ``tz`` — an Expiry still, printing in its language and zone."""
        return _expiry(datetime.astimezone(self, tz), self.locale, self.zone)

    def replace(self, *args: Any, **kwargs: Any) -> Expiry:
        """``datetime.replace`` — an Expiry still, printing in its language and zone."""
        return self._like(datetime.replace(self, *args, **kwargs))

    def __add__(self, other: Any) -> Any:  # + a timedelta: an Expiry in its language and zone
        made = datetime.__add__(self, other)
        return self._like(made) if isinstance(made, datetime) else made

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:  # - a timedelta: as +; - a datetime: a timedelta
        made = datetime.__sub__(self, other)
        return self._like(made) if isinstance(made, datetime) else made

    def _like(self, at: datetime) -> Expiry:
        """``at`` (of any zone, or none) as an Expiry printing as this one does."""
        made = Expiry.combine(at.date(), at.timetz())
        made.locale, made.zone = self.locale, self.zone
        return made

    @classmethod
    def of(cls, at: datetime, zone: tzinfo | None = None) -> Expiry:
        """``at`` as an Expiry (a naive ``at`` is read as UTC, as the warehouse stores it),
        printing its day in ``zone`` when given."""
        made = cls.combine(at.date(), at.timetz(), at.tzinfo or UTC)
        if zone is not None:
            made.zone = zone
        return made

    def written_in(self, locale: str, zone: tzinfo | None = None) -> Expiry:
        """This instant printing in ``locale`` (canonical) and, when given, the day of ``zone``
        (else the zone it has): itself when it already does."""
        wanted = None if locale.split("-")[0] == "en" else locale
        where = self.zone if zone is None else zone
        if wanted == self.locale and (where is self.zone or str(where) == str(self.zone)):
            return self  # (the same zone: ZoneInfo('UTC') and datetime.UTC are one)
        return _expiry(self, wanted, where)


def _expiry(at: datetime, locale: str | None, zone: tzinfo | None = None) -> Expiry:
    made = Expiry.of(at, zone)
    if locale is not None:
        made.locale = locale
    return made


def enc_hook(value: object) -> object:
    """msgspec's ``enc_hook`` for what :func:`localize` puts in a context: a
    :class:`DiscountLabel` as its text, an :class:`Expiry` as its ISO 8601 instant (in its own
    zone, as a datetime encodes). Raises NotImplementedError for anything else (msgspec's way
    of saying a type is not supported)."""
    if isinstance(value, DiscountLabel):
        return str(value)
    if isinstance(value, Expiry):
        return datetime.combine(value.date(), value.timetz())
    raise NotImplementedError(f"cannot encode {type(value).__name__}")


@functools.lru_cache(maxsize=256)
def _zone_named(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None


def zone_of(customer: Mapping[str, Any] | None, default: object = None) -> ZoneInfo | None:
    """The zone an email writes instants in: the customer's ``timezone`` (an IANA name), else
    ``default`` (the project's ``timezone``); None when neither is one."""
    own = customer.get("timezone") if isinstance(customer, Mapping) else None
    for name in (own, default):
        if isinstance(name, str) and name:
            found = _zone_named(name)
            if found is not None:
                return found
    return None


def amount_off(kind: str, amount: Decimal, currency: str, locale: str) -> str:
    """``15%`` / ``15 %`` for a percentage, ``€5.00`` / ``5,00 €`` for an amount off in
    ``currency``, written for the Babel ``locale``. Raises UnknownLocaleError or ValueError (not
    a currency code)."""
    if kind == "percent":
        return str(format_percent(amount / 100, locale=locale, decimal_quantization=False))
    return str(format_currency(amount, currency, locale=locale))


def words_locale(template_locale: str | None, customer: Mapping[str, Any] | None) -> str:
    """The locale a template's words are written in (canonical, ``fr-CA``): the customer's when
    it is of the template's language, else the template's; English when it has none."""
    language = normalize(template_locale) or "en"
    own = customer_locale(customer)
    if own is not None and own.split("-")[0] == language.split("-")[0]:
        return own
    return language


def label_in(label: DiscountLabel, locale: str) -> DiscountLabel:
    """``label`` in ``locale`` (canonical): its language's wording, else the English label it
    was written from — a DiscountLabel still (itself when the text is the same)."""
    text = _label_in(label.english, label.kind, label.value, label.currency, locale)
    if text == str(label):
        return label
    return _written_label(text, label.value, label.kind, label.currency, label.english)


@functools.lru_cache(maxsize=1024)  # one per campaign's label and language, not per email
def _written_label(
    text: str, value: Decimal, kind: str, currency: str, english: str
) -> DiscountLabel:
    return DiscountLabel(text, value, kind, currency, english)


@functools.lru_cache(maxsize=1024)  # a campaign's few labels, in a few locales: Babel once each
def _label_in(text: str, kind: str, value: Decimal, currency: str, locale: str) -> str:
    wording = OFF.get(locale.split("-")[0])
    if wording is None or kind not in ("percent", "amount") or not value.is_finite():
        return text
    for name in (babel_locale(locale), babel_locale(locale.split("-")[0])):
        try:
            return wording.format(amount_off(kind, value, currency, name))
        except UnknownLocaleError:
            continue
        except (ValueError, InvalidOperation):  # not a currency code Babel reads
            return text
    return text


_NOT_MAPPINGS = frozenset({str, int, float, bool, list, tuple, type(None), Decimal, datetime})


def _mapping(value: object) -> bool:
    return isinstance(value, Mapping)


def localize(
    context: Mapping[str, Any], template_locale: str | None, default_zone: str | None = None
) -> dict[str, Any]:
    """``context`` for a template of ``template_locale`` (its variant's, else the project's
    default): :data:`TEMPLATE_LOCALE` set, and each top-level value's discount ``label`` (a
    :class:`DiscountLabel`) and ``expires_at`` (an :class:`Expiry`) written in the template's
    language (see the module docstring) — also when ``context`` was written in another one —
    the expiry's day in the customer's ``timezone``, else ``default_zone`` (the project's). A
    value with nothing to change is the caller's own (an English email is as it always was)."""
    customer = context.get("customer")
    own = customer if isinstance(customer, Mapping) else None
    locale = words_locale(template_locale, own)
    zone: tzinfo | None = None
    zoned = False  # (the zone is worked out for the first expiry only)
    out = dict(context)
    out[TEMPLATE_LOCALE] = locale
    for name, value in context.items():
        # only a discount (a mapping with a DiscountLabel or an Expiry) is written again; the
        # checks, cheapest first, for every value an email's context has (text, lists, rows)
        if type(value) is not dict and (type(value) in _NOT_MAPPINGS or not _mapping(value)):
            continue
        label, expires = value.get("label"), value.get("expires_at")
        if not isinstance(label, DiscountLabel) and not isinstance(expires, Expiry):
            continue
        changed: dict[str, Any] = {}
        if isinstance(label, DiscountLabel):
            written = label_in(label, locale)
            if written is not label:
                changed["label"] = written
        if isinstance(expires, Expiry):
            if not zoned:
                zone, zoned = zone_of(own, default_zone), True
            moved = expires.written_in(locale, zone)
            if moved is not expires:
                changed["expires_at"] = moved
        if changed:
            out[name] = {**value, **changed}
    return out
