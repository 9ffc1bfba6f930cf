"""Ad audiences: a model's identifier columns normalized the way the ad platform documents and
SHA-256 hashed before anything leaves (the platform matches hashes with its own users').

A model row is one person; its columns name what identifies them (``email``, ``phone``,
``first_name`` …, or the platform's own names ``EMAIL``, ``FN`` …). The row's ``customer_id``
(whose row it is, for the consent check) and its key are not sent unless they are one of these.
A row with none of the identifiers that single a person out (email, phone, mobile advertiser id,
external id) is not sent: it is kept as ``rejected`` with the reason, naming no value.

Google's (Customer Match) are Meta's for email — plus the dots before the ``@`` of a
``gmail.com`` / ``googlemail.com`` address removed — and E.164 with its ``+`` for phones; and a
postal address (``addressInfo``) when the model selects all four of ``first_name``,
``last_name``, ``country`` and ``postal_code``: names lower-cased, trimmed, without punctuation,
inner spaces single, then hashed; the country the ISO 3166-1 alpha-2 code in capitals and the
postal code trimmed, both unhashed (Google's rule). A row missing one of the four (or with one
unreadable) goes without its address (:func:`google_identifiers`).

Meta's rules (Custom Audiences, "Hashing and normalizing data"): email trimmed and lower-cased;
phone digits only, with the country code, no ``+`` and no leading zeros (read here with
``phonenumbers``: the row's ``country`` or ``phone_region`` for a national number); first and last
name and city lower-cased, without punctuation or spaces (letters of any script kept); state and
zip lower-cased without spaces (a US zip: its first five digits); country the ISO 3166-1 alpha-2
code lower-cased; gender ``m`` or ``f``; birth year ``YYYY``, month and day two digits. The
external id and the mobile advertiser id are not hashed (Meta's rule).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Final

from personify.config import RestDestination
from personify.destinations.state import KEY, opened
from personify.identity.normalize import normalize_phone, phone_region
from personify.privacy.crypto import KeyRing
from personify.warehouse.base import UNNEST, Warehouse

Normalizer = Callable[[Any, Mapping[str, Any], RestDestination], str | None]

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_US_ZIP: Final = re.compile(r"^(\d{5})(?:-?\d{4})?$")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _email(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    text = _text(value)
    if text is None:
        return None
    text = text.lower()
    return text if _EMAIL.match(text) else None


def _phone(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """Digits with the country code, no ``+``, no leading zeros (E.164 without its ``+``)."""
    text = _text(value)
    if text is None:
        return None
    country = next((v for k, v in row.items() if k.lower() == "country"), None)
    e164 = normalize_phone(text, phone_region(country, d.phone_region))
    return e164[1:] if e164 else None


def _word(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """Lower-cased, letters and digits only (``Mary-Ann`` → ``maryann``, ``Zoë`` → ``zoë``)."""
    text = _text(value)
    if text is None:
        return None
    word = "".join(ch for ch in text.lower() if ch.isalnum())
    return word or None


def _zip(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    text = _text(value)
    if text is None:
        return None
    us = _US_ZIP.match(text)
    if us:
        return us.group(1)
    return "".join(text.lower().split()) or None


def _country(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    text = _text(value)
    if text is None:
        return None
    code = text.lower()
    code = "gb" if code == "uk" else code
    return code if re.fullmatch("[a-z]{2}", code) else None


def _gender(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    text = _text(value)
    first = text.lower()[:1] if text else ""
    return first if first in ("m", "f") else None


def _digits(width: int, low: int, high: int) -> Normalizer:
    def normalize(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
        text = _text(value)
        if text is None or not text.isdigit() or not low <= int(text) <= high:
            return None
        return f"{int(text):0{width}d}"

    return normalize


def _plain(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    return _text(value)


def _lower(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    text = _text(value)
    return text.lower() if text else None


META_FIELDS: Final[dict[str, tuple[str, Normalizer, bool]]] = {
    # Meta's key: (what it is, its normalizer, hashed)
    "EMAIL": ("email address", _email, True),
    "PHONE": ("phone number", _phone, True),
    "FN": ("first name", _word, True),
    "LN": ("last name", _word, True),
    "CT": ("city", _word, True),
    "ST": ("state", _word, True),
    "ZIP": ("zip code", _zip, True),
    "COUNTRY": ("country", _country, True),
    "GEN": ("gender", _gender, True),
    "DOBY": ("birth year", _digits(4, 1900, 2100), True),
    "DOBM": ("birth month", _digits(2, 1, 12), True),
    "DOBD": ("birth day", _digits(2, 1, 31), True),
    "EXTERN_ID": ("external id", _plain, False),
    "MADID": ("mobile advertiser id", _lower, False),
}
"""Meta's multi-key schema names, with how each value is normalized and whether it is hashed."""

ALIASES: Final = {
    "email": "EMAIL",
    "phone": "PHONE",
    "first_name": "FN",
    "last_name": "LN",
    "city": "CT",
    "state": "ST",
    "zip": "ZIP",
    "zip_code": "ZIP",
    "postal_code": "ZIP",
    "country": "COUNTRY",
    "gender": "GEN",
    "birth_year": "DOBY",
    "birth_month": "DOBM",
    "birth_day": "DOBD",
    "external_id": "EXTERN_ID",
}
"""Model column names (any case) read as Meta's keys; Meta's own names (``fn``, ``doby`` …)
work too."""

MATCHING: Final = frozenset({"EMAIL", "PHONE", "MADID", "EXTERN_ID"})
"""Keys that single a person out: a row needs one (names and places alone do not)."""


def _google_email(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """Google's rule: trimmed, lower-cased, and for ``gmail.com`` / ``googlemail.com`` the dots
    before the ``@`` removed."""
    email = _email(value, row, d)
    if email is None:
        return None
    local, _, domain = email.partition("@")
    return f"{local.replace('.', '')}@{domain}" if domain in GMAIL else email


def _e164(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """E.164 with its ``+`` (Google's rule)."""
    digits = _phone(value, row, d)
    return "+" + digits if digits else None


def _google_name(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """Google's rule for names: lower-cased, trimmed, no punctuation, no extra spaces
    (``" O'Brien-Smith "`` → ``obriensmith``, ``Anne  Marie`` → ``anne marie``)."""
    text = _text(value)
    if text is None:
        return None
    kept = "".join(ch for ch in text.lower() if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split()) or None


def _country_code(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """The ISO 3166-1 alpha-2 code in capitals (``uk`` read as ``GB``), sent unhashed."""
    code = _country(value, row, d)
    return code.upper() if code else None


def _postal(value: Any, row: Mapping[str, Any], d: RestDestination) -> str | None:
    """Trimmed, inner spaces single (``WC2H 8LG``), sent unhashed."""
    text = _text(value)
    return " ".join(text.split()) if text else None


GMAIL: Final = frozenset({"gmail.com", "googlemail.com"})
GOOGLE_FIELDS: Final[dict[str, tuple[str, Normalizer, bool]]] = {
    "EMAIL": ("email address", _google_email, True),
    "PHONE": ("phone number", _e164, True),
    "FN": ("first name", _google_name, True),
    "LN": ("last name", _google_name, True),
    "COUNTRY": ("country", _country_code, False),
    "ZIP": ("postal code", _postal, False),
}
"""What Customer Match takes here: ``hashedEmail``, ``hashedPhoneNumber`` and ``addressInfo``
(the last four, together)."""
ADDRESS: Final = ("FN", "LN", "COUNTRY", "ZIP")
"""The keys of Google's ``addressInfo``: all four, or none is sent."""


def fields_of(d: RestDestination) -> dict[str, tuple[str, Normalizer, bool]]:
    return GOOGLE_FIELDS if d.preset == "google_ads_audience" else META_FIELDS


def schema_key(column: str, d: RestDestination) -> str | None:
    """The platform's key for a model column, or ``None`` for a column that is no identifier
    of it."""
    fields = fields_of(d)
    upper = column.upper()
    key = upper if upper in fields else ALIASES.get(column.lower())
    return key if key in fields else None


def not_identifiers(d: RestDestination, columns: list[str]) -> list[str]:
    """The model's columns that are no identifier the audience matches on (the key and
    ``customer_id`` aside: they are not sent; for Google, ``country`` is one: the phone's region,
    and part of a postal address)."""
    from personify.destinations.consent import WHOSE

    skip = {d.key, WHOSE}
    return [c for c in columns if c not in skip and schema_key(c, d) is None]


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def identifiers(d: RestDestination, row: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The row's identifiers as sent (Meta's key → normalized value, hashed where Meta hashes)
    and, for the values given that could not be read, what they are (never the value)."""
    from personify.destinations.consent import WHOSE

    out: dict[str, str] = {}
    unreadable: list[str] = []
    fields = fields_of(d)
    for column, value in row.items():
        if column == WHOSE and column != d.key:
            continue
        key = schema_key(column, d)
        if key is None or value is None or (isinstance(value, str) and not value.strip()):
            continue
        what, normalize, hashed = fields[key]
        normal = normalize(value, row, d)
        if normal is None:
            unreadable.append(what)
            continue
        out[key] = sha256(normal) if hashed else normal
    return out, unreadable


def address_columns(d: RestDestination, columns: Any) -> set[str]:
    """The keys of Google's ``addressInfo`` among ``columns`` (a model's, or a row's)."""
    keys = {schema_key(str(c), d) for c in columns}
    return {k for k in ADDRESS if k in keys}


def google_identifiers(
    d: RestDestination, row: Mapping[str, Any]
) -> tuple[dict[str, str], list[str], bool]:
    """:func:`identifiers` for Google: the address keys only when the model selects all four
    and the row has all four readable — else left out (``country`` is then only the phone's
    region); and whether a whole-address model's row went without its address."""
    ids, unreadable = identifiers(d, row)
    if len(address_columns(d, row)) < len(ADDRESS):
        address = [k for k in ADDRESS if k in ids]
        for k in address:
            del ids[k]
        names = {GOOGLE_FIELDS[k][0] for k in ADDRESS}
        return ids, [u for u in unreadable if u not in names], False
    if all(k in ids for k in ADDRESS):
        return ids, unreadable, False
    for k in ADDRESS:
        ids.pop(k, None)
    return ids, unreadable, True


def unmatchable(unreadable: list[str], *, google: bool = False) -> str:
    """Why a row with no matching identifier is not sent (names no value)."""
    said = f" ({', '.join(unreadable)} could not be read)" if unreadable else ""
    other = (
        "or a whole postal address (first name, last name, country and postal code)"
        if google
        else "a mobile advertiser id or an external id"
    )
    return (
        "no identifier the ad platform can match: the row needs an email address, a phone "
        f"number with its country code (select a country column or set phone_region), {other}"
        f"{said}"
    )


Sets = list[tuple[tuple[str, ...], tuple[str, ...]]]
"""A record's identifier rows as sent: (schema, values) pairs."""
KEPT_SETS: Final = 10
"""The most distinct identifier rows a record keeps for its removal."""


def to_keep(key: str, sets: Sets) -> str:
    """What a record of an ad audience keeps (encrypted) to be removed later: its key, a line
    break, the identifier rows it was sent with (JSON) — :func:`~.state.kept_key`."""
    return key + "\n" + json.dumps([[list(s), list(v)] for s, v in sets])


def never_added(kept: str) -> bool:
    """Whether what a record kept (:func:`to_keep`) says it was never in the audience: kept
    with no identifier rows (rejected before any was sent) — not a bare key (kept before the
    destination was an audience, whose identifiers are unknown)."""
    return kept.partition("\n")[1:] == ("\n", "[]")


def sets_of(kept: str) -> Sets:
    """The identifier rows inside what :func:`to_keep` made (none for a bare key)."""
    _, _, text = kept.partition("\n")
    try:
        raw = json.loads(text) if text else []
    except ValueError:
        return []
    return [(tuple(s), tuple(v)) for s, v in raw]


def merged(before: Sets, now: tuple[tuple[str, ...], tuple[str, ...]]) -> Sets:
    """The identifier rows a record keeps: the one just sent first, then those sent before (the
    audience still holds them), at most :data:`KEPT_SETS`."""
    return list(dict.fromkeys([now, *before]))[:KEPT_SETS]


def previous(
    wh: Warehouse,
    d: RestDestination,
    ring: KeyRing,
    rows: list[dict[str, Any]],
    unknown: set[str] | None = None,
) -> dict[str, Sets]:
    """The identifier rows each of ``rows`` (by key hash) was sent with before, if any (kept
    by a record refused since, too: the audience still holds them). ``unknown`` gets the key
    hashes of records kept before whose identifiers are not known (a bare key, kept before the
    destination was an audience; or a kept key that does not decrypt): maybe in the audience
    (:func:`refused_keep`)."""
    hashes = [str(r[KEY]) for r in rows]
    found = wh.fetch(
        "SELECT key_hash, row_hash, record_key FROM destination_state WHERE destination = ? "
        f"AND record_key IS NOT NULL AND key_hash IN (SELECT {UNNEST})",
        [d.name, hashes],
    )
    states = [(str(h), str(r), str(k)) for h, r, k in found]
    out: dict[str, Sets] = {}
    for h, _, k in opened(wh, d, ring, states):
        if (k is None or "\n" not in k) and unknown is not None:
            unknown.add(h)
        if k is not None:
            out[h] = sets_of(k)
    return out


def refused_keep(key: str, key_hash: str, before: dict[str, Sets], unknown: set[str]) -> str:
    """What a record the platform refused (or that has no identifier it takes) keeps: the
    identifier rows it was sent with before (the audience still holds them); none when it was
    never sent (:func:`never_added`: nothing to remove when it leaves); a bare key when what it
    was sent with is not known (:func:`previous`'s ``unknown``: its removal says so, not
    dropped as never added)."""
    if key_hash in unknown and not before.get(key_hash):
        return key
    return to_keep(key, before.get(key_hash, []))


HEX64: Final = re.compile(r"\b[0-9a-fA-F]{64}\b")


def masked_hashes(text: str) -> str:
    """``text`` with every SHA-256 hex digest shortened to ``sha256:ab12…`` (a hash of an email
    is personal data too: never whole in a message or a log)."""
    return HEX64.sub(lambda m: f"sha256:{m.group(0)[:4].lower()}…", text)
