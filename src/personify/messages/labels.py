"""Words that templates print: a discount's ``label`` in the template's language.

A journey's discount code carries ``label``, the English ``10% off`` (``5.00 EUR off``) it always
had — as a :class:`DiscountLabel`, a string that also knows what the code takes off. When an
email is rendered (:func:`localize`), the label is written in the **template's language** — its
locale variant's (``welcome.fr.liquid`` → French), else the project's ``email.default_locale``
— with Babel's numbers, in the customer's own locale when it is of that language (``fr-CA``):
``10 % de réduction``, ``5,00 € de réduction``. A language without wording here, and English,
keep the English label unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.core import UnknownLocaleError
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
    """``10% off`` — and what the code takes off, so it can be written in another language."""

    value: Decimal
    kind: str
    currency: str

    def __new__(cls, text: str, value: object, kind: str, currency: str) -> DiscountLabel:
        made = super().__new__(cls, text)
        made.value = Decimal(str(value))
        made.kind = kind
        made.currency = currency
        return made

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles keep what it knows
        return (DiscountLabel, (str(self), self.value, self.kind, self.currency))


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


def label_in(label: DiscountLabel, locale: str) -> str:
    """``label`` in ``locale`` (canonical): its language's wording, else the English label."""
    return _label_in(str(label), label.kind, label.value, label.currency, locale)


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
    :class:`DiscountLabel`) written in the template's language (see the module docstring)."""
    customer = context.get("customer")
    locale = words_locale(template_locale, customer if isinstance(customer, Mapping) else None)
    out = dict(context)
    out[TEMPLATE_LOCALE] = locale
    if locale.split("-")[0] not in OFF:
        return out
    for name, value in context.items():
        if isinstance(value, Mapping):
            label = value.get("label")
            if isinstance(label, DiscountLabel):
                out[name] = {**value, "label": label_in(label, locale)}
    return out
