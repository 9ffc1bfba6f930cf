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


def _phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return ("+" if match.group(0).startswith("+") else "") + "***" + digits[-2:]


def mask_text(text: str) -> str:
    """``text`` with email addresses, phone numbers and IPv4 addresses masked."""
    if not text:
        return text
    text = EMAIL.sub(lambda m: f"***@{m.group(1)}", text)
    text = PHONE.sub(_phone, text)
    return IPV4.sub(lambda m: f"{m.group(1)}.x.x.x", text)


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


def mask_rows(columns: list[str], rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows of a query result as a role without PII access sees them: PII columns by name
    (:data:`PII_COLUMNS`, also ``customers.email`` aliased to ``c_email`` …), and emails, phones
    and IPs inside any other text (aliases, concatenations, JSON)."""
    kinds = [_column_kind(c) for c in columns]
    out = []
    for row in rows:
        masked = []
        for kind, value in zip(kinds, row, strict=True):
            if kind is not None:
                value = mask_value(kind, value)
            elif isinstance(value, str):
                value = mask_text(value)
            elif isinstance(value, list | dict):
                value = _mask_nested(value)
            masked.append(value)
        out.append(tuple(masked))
    return out


def _column_kind(column: str) -> str | None:
    name = column.lower()
    for key in PII_COLUMNS:
        if name == key or name.endswith(f"_{key}") or name.endswith(f".{key}"):
            return key
    return None


def _mask_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: mask_value(k, v) if k in PII_COLUMNS else _mask_nested(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_nested(v) for v in value]
    return mask_text(value) if isinstance(value, str) else value


def mask_document(doc: Any) -> Any:
    """``doc`` (dicts, lists, scalars) with personal data masked: values under PII keys
    (:data:`PII_COLUMNS`, ``c_email`` …) by kind, an identifier's ``value`` by its ``kind``, and
    emails, phones and IPs inside any other text. Ids, counts and times are left as they are."""
    if isinstance(doc, dict):
        kind = doc.get("kind")
        out: dict[str, Any] = {}
        for key, value in doc.items():
            column = _column_kind(str(key))
            if key == "value" and isinstance(kind, str) and kind in PII_COLUMNS:
                out[key] = mask_value(kind, value)
            elif column is not None and not isinstance(value, dict | list):
                out[key] = mask_value(column, value)
            else:
                out[key] = mask_document(value)
        return out
    if isinstance(doc, list):
        return [mask_document(v) for v in doc]
    return mask_text(doc) if isinstance(doc, str) else doc
