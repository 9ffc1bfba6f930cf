"""Words that templates print: a discount's ``label`` and ``expires_at`` in the email's language.

A journey's discount code carries ``label``, the English ``10% off`` (``5.00 EUR off``) it always
had — as a :class:`DiscountLabel`, a string that also knows what the code takes off. When an
email is rendered (:func:`localize`), the label is written in the **template's language** — its
locale variant's (``welcome.fr.liquid`` → French), else the project's ``email.default_locale``
— with Babel's numbers, in the customer's own locale when it is of that language (``fr-CA``):
``10 % de réduction``, ``5,00 € de réduction``. A language without wording here, and English,
keep the English label unchanged. Its ``expires_at`` (an :class:`Expiry`) printed as it is
writes its day the same way: ``08 December 2026`` in English (the text it always printed),
Babel's long date in another language (``8 décembre 2026``, ``8. Dezember 2026``).

A written label or expiry still knows what it was made from, so an email part of another
language (an experiment's ``fr:`` subject line over a German body) writes it again in its own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

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
    ``| date: '%d/%m'`` read it. Printed as it is, its day (in its own zone, UTC as the
    warehouse stores it) in the language it is written in (:meth:`written_in`): in English (and
    unwritten) the text templates got before it was a datetime, ``08 December 2026``; else
    Babel's long date, ``8 décembre 2026``."""

    locale: str | None = None
    """The (canonical) locale it prints in; None: English."""

    def __str__(self) -> str:
        if self.locale is not None:
            for name in (babel_locale(self.locale), babel_locale(self.locale.split("-")[0])):
                try:
                    return str(format_date(self.date(), "long", locale=name))
                except (UnknownLocaleError, ValueError):
                    continue
        return self.strftime("%d %B %Y")

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # copies, pickles: its language
        return (_expiry, (datetime.combine(self.date(), self.timetz()), self.locale))

    @classmethod
    def of(cls, at: datetime) -> Expiry:
        """``at`` as an Expiry (a naive ``at`` is read as UTC, as the warehouse stores it)."""
        return cls.combine(at.date(), at.timetz(), at.tzinfo or UTC)

    def written_in(self, locale: str) -> Expiry:
        """This instant printing in ``locale`` (canonical): itself when it already does."""
        wanted = None if locale.split("-")[0] == "en" else locale
        if wanted == self.locale:
            return self
        return _expiry(self, wanted)


def _expiry(at: datetime, locale: str | None) -> Expiry:
    made = Expiry.of(at)
    if locale is not None:
        made.locale = locale
    return made


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
    return DiscountLabel(text, label.value, label.kind, label.currency, label.english)


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


def localize(context: Mapping[str, Any], template_locale: str | None) -> dict[str, Any]:
    """``context`` for a template of ``template_locale`` (its variant's, else the project's
    default): :data:`TEMPLATE_LOCALE` set, and each top-level value's discount ``label`` (a
    :class:`DiscountLabel`) and ``expires_at`` (an :class:`Expiry`) written in the template's
    language (see the module docstring) — also when ``context`` was written in another one. A
    value with nothing to change is the caller's own (an English email is as it always was)."""
    customer = context.get("customer")
    locale = words_locale(template_locale, customer if isinstance(customer, Mapping) else None)
    out = dict(context)
    out[TEMPLATE_LOCALE] = locale
    for name, value in context.items():
        if not isinstance(value, Mapping):
            continue
        changed: dict[str, Any] = {}
        label, expires = value.get("label"), value.get("expires_at")
        if isinstance(label, DiscountLabel):
            written = label_in(label, locale)
            if written is not label:
                changed["label"] = written
        if isinstance(expires, Expiry) and expires.written_in(locale) is not expires:
            changed["expires_at"] = expires.written_in(locale)
        if changed:
            out[name] = {**value, **changed}
    return out
