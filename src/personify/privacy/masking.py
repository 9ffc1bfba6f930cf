"""Masking personal data in sight: log records, and values shown to people who must not see them.

:class:`PiiFilter` is a logging filter (the server's log handler carries it) that rewrites every
record before it is written: email addresses become ``***@domain``, phone numbers ``+***5678``
(international ones, with or without separators, and bare runs of 10–15 digits). Personify's own
log calls already avoid personal data (they log counts, names of sources and exception *types*);
the filter is the net under them — a driver message or a third-party library that quotes a row.

:func:`mask_value` masks one value by column name (``email``, ``phone``, names, addresses, IPs),
for reports and exports shown to roles without access to raw PII; :func:`mask_document` a whole
JSON document (a subject access export for a ``privacy:masked`` token).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@((?:[\w-]{1,63}\.)+[A-Za-z]{2,24})\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d(?:[\s.\-()]{0,2}\d){7,14}|\d{10,15})(?![\w])")
IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])")

PII_COLUMNS: dict[str, str] = {
    "email": "email",
    "phone": "phone",
    "first_name": "name",
    "last_name": "name",
    "city": "name",
    "ip": "ip",
    "user_agent": "name",
}
"""Column name → how its values are masked."""

_ALIASES: dict[str, str] = {
    "firstname": "first_name",
    "lastname": "last_name",
    "full_name": "last_name",
    "fullname": "last_name",
    "surname": "last_name",
    "given_name": "first_name",
    "family_name": "last_name",
    "phone_number": "phone",
    "mobile": "phone",
    "email_address": "email",
    "ip_address": "ip",
    "street": "city",
    "address1": "city",
    "address2": "city",
    "address_line_1": "city",
    "address_line_2": "city",
}
"""Other spellings of :data:`PII_COLUMNS` seen in traits and source records (after camelCase
is snake-cased: ``firstName`` → ``first_name``); mapped to a column masked the same way."""

log = logging.getLogger(__name__)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PRIORITY = ("email", "phone", "first_name", "ip")
"""When a result column derives from several PII columns, the mask of the first kind here."""


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return ("+" if match.group(0).startswith("+") else "") + "***" + digits[-2:]


def mask_text(text: str) -> str:
    """``text`` with email addresses, phone numbers and IPv4 addresses masked (but loopback
    ``127.…`` and ``0.0.0.0``: a server's own listen address, never a person's)."""
    if not text:
        return text
    text = EMAIL.sub(lambda m: f"***@{m.group(1)}", text)
    text = PHONE.sub(_phone, text)
    return IPV4.sub(_ipv4, text)


def _ipv4(match: re.Match[str]) -> str:
    address = match.group(0)
    # loopback and "any": a server's own address, never a person's
    if match.group(1) == "127" or address == "0.0.0.0":  # noqa: S104
        return address
    return f"{match.group(1)}.x.x.x"


def mask_value(column: str, value: Any) -> Any:
    """``value`` masked as column ``column`` requires (unchanged for other columns)."""
    how = PII_COLUMNS.get(column)
    if value is None or how is None:
        return value
    text = str(value)
    if how == "email":
        _, at, domain = text.partition("@")
        return f"***@{domain}" if at else "***"
    if how == "phone":
        digits = re.sub(r"\D", "", text)
        return "***" + digits[-2:] if digits else "***"
    if how == "ip":
        head = text.split(".", 1)[0] if "." in text else text.split(":", 1)[0]
        return f"{head}.x.x.x" if "." in text else f"{head}:…"
    return text[:1] + "***" if text else text


class PiiFilter(logging.Filter):
    """Masks the message (arguments merged in) and any traceback text of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        record.msg, record.args = mask_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        return True


FILTER_CONFIG: dict[str, Any] = {"pii": {"()": "personify.privacy.masking.PiiFilter"}}
"""The ``filters`` entry of a :func:`logging.config.dictConfig` (handlers list ``"pii"``)."""


def mask_rows(
    columns: list[str],
    rows: list[tuple[Any, ...]],
    *,
    sql: str | None = None,
    dialect: str | None = None,
) -> list[tuple[Any, ...]]:
    """Rows of a query result as a role without PII access sees them: PII columns by name
    (:data:`PII_COLUMNS`, also ``customers.email`` aliased to ``c_email`` …) or, given the
    query, by what they derive from (:func:`result_kinds`); the ``value`` of an observation row
    whose ``field`` is a PII column; and emails, phones, IPs and PII keys inside any other text
    and JSON. Numbers and times are never masked (``count(email)`` stays a count)."""
    kinds = result_kinds(columns, sql, dialect)
    pairs = [i for i, c in enumerate(columns) if c.lower() in ("field", "kind")]
    value_at = next((i for i, c in enumerate(columns) if c.lower() == "value"), None)
    out = []
    for row in rows:
        masked = []
        pair = None
        if value_at is not None:
            pair = next(
                (k for i in pairs if isinstance(row[i], str) and (k := _column_kind(row[i]))),
                None,
            )
        for i, (kind, value) in enumerate(zip(kinds, row, strict=True)):
            if i == value_at and pair is not None:
                kind = pair
            if kind is not None and not isinstance(value, dict | list):
                value = _apply(kind, value)
            elif isinstance(value, str):
                value = _mask_string(value)
            elif isinstance(value, list | dict):
                value = _mask_nested(value)
            masked.append(value)
        out.append(tuple(masked))
    return out


def _column_kind(column: str) -> str | None:
    """The :data:`PII_COLUMNS` key a column or JSON key names (``c_email``, ``firstName``,
    ``traits.lastName``, ``phone_number`` …), or ``None``."""
    name = _CAMEL.sub("_", column).lower()
    name = _ALIASES.get(name.rpartition(".")[2], name)
    for key in PII_COLUMNS:
        if name == key or name.endswith(f"_{key}") or name.endswith(f".{key}"):
            return key
    for alias, key in _ALIASES.items():
        if name.endswith(f"_{alias}") or name.endswith(f".{alias}"):
            return key
    return None


def _masked_pair(doc: dict[str, Any]) -> str | None:
    """For a ``{"kind": K, "value": V}`` identifier or a ``{"field": F, "value": V}`` observation
    of a PII field: how ``value`` is masked."""
    for label in ("kind", "field"):
        named = doc.get(label)
        if isinstance(named, str) and (kind := _column_kind(named)) is not None:
            return kind
    return None


def _apply(kind: str, value: Any) -> Any:
    """``value`` masked as ``kind``; flags, and numbers but phone numbers, are left alone
    (``is_mobile``, ``count(email)``)."""
    if isinstance(value, bool) or (isinstance(value, int | float) and kind != "phone"):
        return value
    return mask_value(kind, value)


def _mask_nested(value: Any) -> Any:
    if isinstance(value, dict):
        pair = _masked_pair(value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            kind = pair if k == "value" and pair else _column_kind(str(k))
            out[k] = (
                _apply(kind, v)
                if kind is not None and not isinstance(v, dict | list)
                else _mask_nested(v)
            )
        return out
    if isinstance(value, list):
        return [_mask_nested(v) for v in value]
    return _mask_string(value) if isinstance(value, str) else value


def _mask_string(text: str) -> str:
    """Text masked by content; JSON text (an object or array: a ``traits`` or ``properties``
    column read as text) masked by its keys as well, and written back as JSON."""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(_mask_nested(parsed), ensure_ascii=False)
    return mask_text(text)


def result_kinds(columns: list[str], sql: str | None, dialect: str | None) -> list[str | None]:
    """Per result column, the PII column it derives from: by name (``email``, ``c_phone``), or
    through the query (``SELECT first_name AS fn``, a subquery's or CTE's alias, a function of
    PII columns: ``concat(first_name, ' ', last_name)``), traced with sqlglot's lineage."""
    kinds = [_column_kind(c) for c in columns]
    if not sql:
        return kinds
    from sqlglot import parse_one
    from sqlglot.lineage import lineage

    try:
        tree = parse_one(sql, read=dialect)
    except Exception:  # (the warehouse ran it; a dialect sqlglot reads otherwise: by name)
        return kinds
    for i, column in enumerate(columns):
        if kinds[i] is not None:
            continue
        try:
            node = lineage(column, tree, {}, dialect=dialect)
        except Exception as e:  # (a star over an unknown schema: its columns keep their names)
            log.debug("masking: column %d not traced (%s); masked by content", i, type(e).__name__)
            continue
        found = {_column_kind(n.name.rpartition(".")[2]) for n in node.walk()} - {None}
        kinds[i] = next((k for k in _PRIORITY if k in found), next(iter(found), None))
    return kinds


def mask_document(doc: Any) -> Any:
    """``doc`` (dicts, lists, scalars) with personal data masked: values under PII keys
    (:data:`PII_COLUMNS`, ``c_email``, ``firstName`` …) by kind, an identifier's ``value`` by its
    ``kind`` and an observation's by its ``field``, and emails, phones and IPs inside any other
    text. Ids, counts and times are left as they are."""
    return _mask_nested(doc)
