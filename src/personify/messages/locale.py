"""Customers' locales: which variant of a template a recipient gets, and how filters format.

A customer's locale is ``customers.locale`` when the column exists and holds one, else the
``locale`` or ``language`` of ``customers.traits`` (a user trait, ``traits/locale.sql``). It is a
BCP 47 tag as CRMs write it — ``fr``, ``fr-CA``, ``fr_CA``, ``FR-ca`` all read as ``fr-CA``;
anything else (``French``, ``"" ``) is no locale.

A template ``NAME`` may have variants ``NAME.fr.liquid`` and ``NAME.fr-CA.liquid``: a recipient
gets the exact locale's, else the language's, else ``NAME.liquid`` (:func:`candidates`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

_TAG = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{4}))?(?:[-_]([A-Za-z]{2}|[0-9]{3}))?")
"""language, optional script (``zh-Hant``), optional region (``CA``, ``419``)."""
VARIANT = re.compile(r"[a-z]{2,3}(?:-[A-Z][a-z]{3})?(?:-(?:[A-Z]{2}|[0-9]{3}))?")
"""A variant suffix as file names write it: ``fr``, ``fr-CA``, ``zh-Hant-TW``."""


def normalize(value: object) -> str | None:
    """``value`` as a canonical locale tag (``fr_ca`` → ``fr-CA``), or None if it is none."""
    if not isinstance(value, str):
        return None
    return _normalized(value)


@functools.lru_cache(maxsize=1024)  # (each email asks for its customer's: a few tags in all)
def _normalized(value: str) -> str | None:
    match = _TAG.fullmatch(value.strip())
    if match is None:
        return None
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def candidates(locale: str | None) -> list[str]:
    """Variant suffixes to look for, most specific first: ``fr-CA`` → ``fr-CA``, ``fr``."""
    tag = normalize(locale)
    if tag is None:
        return []
    parts = tag.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def customer_locale(customer: Mapping[str, Any] | None) -> str | None:
    """The locale of a ``customers`` row (see the module docstring), canonical, or None."""
    if not isinstance(customer, Mapping):
        return None
    found = normalize(customer.get("locale"))
    if found is not None:
        return found
    traits = customer.get("traits")
    if isinstance(traits, Mapping):
        for key in ("locale", "language"):
            found = normalize(traits.get(key))
            if found is not None:
                return found
    return None


def babel_locale(locale: str | None, default: str = "en") -> str:
    """``fr-CA`` → ``fr_CA`` (Babel's spelling); ``default`` when there is none."""
    return (locale or default).replace("-", "_")


@functools.lru_cache(maxsize=1024)
def is_variant(suffix: str) -> bool:
    """Whether ``suffix`` (the last dotted part of a template's name: ``welcome.fr-CA``) names a
    locale variant: written as :data:`VARIANT` spells it and a locale Babel knows (``fr``,
    ``fr-CA``, ``zh-Hant-TW`` — not ``big``, ``new`` or ``und``)."""
    return bool(VARIANT.fullmatch(suffix)) and suffix != "und" and known_locale(suffix) == suffix


def known_locale(value: object) -> str | None:
    """``value`` canonical when Babel knows the locale (``fr-CA``), else None."""
    from babel import Locale
    from babel.core import UnknownLocaleError

    tag = normalize(value)
    if tag is None:
        return None
    try:
        Locale.parse(babel_locale(tag))
    except (UnknownLocaleError, ValueError):
        return None
    return tag
