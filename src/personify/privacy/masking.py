"""Masking personal data in sight: log records, and values shown to people who must not see them.

:class:`PiiFilter` is a logging filter (the server's log handler carries it) that rewrites every
record before it is written: email addresses become ``***@domain``, phone numbers ``+***5678``
(international ones, with or without separators, and bare runs of 10–15 digits). Personify's own
log calls already avoid personal data (they log counts, names of sources and exception *types*);
the filter is the net under them — a driver message or a third-party library that quotes a row.

:func:`mask_value` masks one value by column name (``email``, ``phone``, names, addresses, IPs),
for reports and exports shown to roles without access to raw PII; :func:`mask_document` a whole
JSON document (a subject access export for a ``privacy:masked`` token); :func:`mask_rows` a
query's result (``personify sql --mask``), by what each column derives from, failing closed.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from typing import Any

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@((?:[\w-]{1,63}\.)+[A-Za-z]{2,24})\b")
PHONE = re.compile(r"(?<![\w+])(?:\+\d(?:[\s.\-()]{0,2}\d){7,14}|\d{10,15})(?![\w])")
IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])")
URL_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]{1,64}%40((?:[\w-]{1,63}\.)+[A-Za-z]{2,24})\b")
URL_PHONE = re.compile(r"(?<![\w%])%2[Bb](\d{7,15})(?![\w])")
"""The same, percent-encoded in a URL (``/contacts/ann%40example.org``, ``%2B33612345678``):
a destination that removes records one by one puts their key in the path."""

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
    text = URL_EMAIL.sub(lambda m: f"***%40{m.group(1)}", text)
    text = URL_PHONE.sub(lambda m: f"%2B***{m.group(1)[-2:]}", text)
    text = PHONE.sub(_phone, text)
    return IPV4.sub(_ipv4, text)


_SQL_LITERAL = re.compile(r"'(?:[^']|'')*'")
_DOUBLE_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_NAMES_WHAT_FOLLOWS = re.compile(
    r"\b(?:column|columns|relation|table|view|schema|database|catalog|function|type|"
    r"constraint|index|sequence|operator|collation|extension|role|near|mean|specifier|"
    r"bindings:)\s*$",
    re.IGNORECASE,
)
"""Words after which a database quotes an identifier (``column "emial" does not exist``,
``syntax error at or near "FROM"``, ``Candidate bindings: "order_count", "orders.id"``,
``format specifier "%Y"``): what to fix, not a value."""


def mask_engine_message(text: str) -> str:
    """A database's error message as it may be shown: :func:`mask_text`, and the values it
    quotes hidden — a failed cast or parse names the value it could not read (DuckDB ``Could
    not convert string 'Ann' to INT32``, ``invalid date field format: "Ann"``, ``Could not parse
    string "Ann" according to format specifier "%Y"``; PostgreSQL ``invalid input syntax for
    type integer: "Ann"``, ``invalid value "Ann" for "YYYY"``, ``malformed array literal:
    "Ann"``), which may be a person's name. Every single-quoted string is hidden, and every
    double-quoted one but those that follow a word naming an identifier
    (:data:`_NAMES_WHAT_FOLLOWS`: ``column "emial"``, ``relation "x"``, a list after
    ``bindings:``): they say what to fix. Failing closed: an unknown message's quoted text is
    hidden."""
    if not text:
        return text
    text = _SQL_LITERAL.sub("'…'", mask_text(text))
    out: list[str] = []
    kept_until = -1  # the end of the last identifier kept (a list "a", "b"; "schema"."table")
    last = 0
    for match in _DOUBLE_QUOTED.finditer(text):
        before = text[last : match.start()]
        out.append(before)
        listed = kept_until == last and re.fullmatch(r",\s*|\.", before) is not None
        if listed or _NAMES_WHAT_FOLLOWS.search(text[: match.start()]):
            out.append(match.group(0))
            kept_until = match.end()
        else:
            out.append('"…"')
        last = match.end()
    out.append(text[last:])
    return "".join(out)


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
    """Masks the message (arguments merged in) and any traceback text of every record — but the
    texts a record lists in its ``not_personal`` attribute (``log.info(…, extra={"not_personal":
    ("10.0.0.5:8787",)})``: the server's own listen address, which the IPv4 rule would mask)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler
            return True
        kept = [k for k in getattr(record, "not_personal", ()) if isinstance(k, str) and k]
        for i, text in enumerate(kept):
            message = message.replace(text, f"\x00{i}\x00")
        message = mask_text(message)
        for i, text in enumerate(kept):
            message = message.replace(f"\x00{i}\x00", text)
        record.msg, record.args = message, None
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
    query, by what they derive from (:func:`result_kinds`), failing closed: text that derives
    from a column that may hold personal data, or whose origin cannot be traced, is masked
    unless it is clearly not personal; the ``value`` of an observation or identifier row by its
    ``field`` or ``kind``; and emails, phones, IPs and PII keys inside any other text and JSON.
    Numbers, flags and times are never masked (``count(email)`` stays a count)."""
    kinds, pairs = _trace(columns, sql, dialect)
    out = []
    for row in rows:
        masked = []
        for i, (kind, value) in enumerate(zip(kinds, row, strict=True)):
            if i in pairs:
                label = row[pairs[i]]
                kind = _label_kind(label) if isinstance(label, str) else PERSONAL
            masked.append(_mask_cell(kind, value))
        out.append(tuple(masked))
    return out


PERSONAL = "personal"
"""The kind of a result column that may hold personal data of no known kind (a JSON key, an
observation's value, a column traced nowhere): text masked as a name (``A***``), or, when the
whole value is an email address, phone number or IP, as that."""

_NOT_PERSONAL = re.compile(
    r"^n$|(?:^|_)(?:id|ids|uuid|key|hash|count|total|sum|avg|amount|price|quantity|qty|revenue"
    r"|score|rank|at|date|day|week|month|year|time|timestamp|type|kind|status|stage|source"
    r"|event|segment|journey|step|category|sku|currency|plan|tier|country|timezone|locale"
    r"|language|channel|purpose|variant|campaign|reason|rule|tag|version)$"
)
"""Names (of columns, JSON keys, observed fields, identifier kinds) that say a value is not
personal: ids (pseudonymous: ``customer_id``, ``user_id``, ``anonymous_id``), counts, amounts,
dates, categories. They decide only where the origin does not: a column traced to
``first_name`` is masked whatever its alias."""

_PERSONAL_TEXT: dict[str, frozenset[str]] = {
    "profile_observations": frozenset({"value"}),
    "identities": frozenset({"value"}),
    "identity_nodes": frozenset({"value"}),
    "quarantine": frozenset({"payload"}),
    "tickets": frozenset({"subject"}),
    "messages": frozenset({"subject"}),
}
"""Text columns of the data model that may hold personal data of any kind (besides the JSON
columns): every observed value and identifier, inputs as received, subject lines."""

_IMPERSONAL_JSON = frozenset(
    {
        ("audit_log", "detail"),
        ("pipeline_runs", "stats"),
        ("reconciliation_runs", "sources"),
        ("reconciliation_runs", "detail"),
        ("reconciliation_discrepancies", "fields"),
        ("customers", "preferred_categories"),
    }
)
"""JSON columns documented to hold no personal data (counts, column and category names); every
other JSON column (traits, properties, context, attributes, proof …) may."""

_PAIRED = {"profile_observations": "field", "identities": "kind", "identity_nodes": "kind"}
"""Tables whose ``value`` is masked by the same row's label column, when the result has it."""

_VIEW_BASES = {"customer_data": "customers", "sendable": "customers"}
"""Views of the data model, and the table whose same-named columns they show."""


def _label_kind(label: str) -> str | None:
    """How an observation's or identifier's ``value`` is masked, given its ``field`` or
    ``kind``: by that kind for PII fields (``email``), shown for fields and kinds that are not
    personal (``order_count``, ``user_id``), masked for any other."""
    if (kind := _column_kind(label)) is not None:
        return kind
    return None if _not_personal(label) else PERSONAL


def _not_personal(name: str) -> bool:
    return bool(_NOT_PERSONAL.search(_CAMEL.sub("_", name).lower().rpartition(".")[2]))


def _mask_cell(kind: str | None, value: Any) -> Any:
    if kind is None:
        if isinstance(value, str):
            return _mask_string(value)
        return _mask_nested(value) if isinstance(value, list | dict) else value
    if isinstance(value, list | tuple):
        return [_mask_cell(kind, v) for v in value]
    if isinstance(value, dict):
        return _mask_nested(value, strict=True)
    if kind == PERSONAL:
        return _mask_personal(value)
    return _apply(kind, value)


def _mask_personal(value: Any) -> Any:
    """A value that may be personal: text as a name, or as the email address, phone number or
    IP it is; JSON text by its keys, every other text in it too (:func:`_mask_nested`, strict).
    Numbers, flags, times and ids (UUIDs) are not text and stay."""
    if not isinstance(value, str | bytes):
        return value
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if text.lstrip()[:1] in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError:
            pass
        else:
            return json.dumps(_mask_nested(parsed, strict=True), ensure_ascii=False)
    bare = text.strip()
    for kind, pattern in (("email", EMAIL), ("phone", PHONE), ("ip", IPV4)):
        if pattern.fullmatch(bare):
            return mask_value(kind, bare)
    return text[:1] + "***" if text else text


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


def _mask_nested(value: Any, *, strict: bool = False) -> Any:
    """``value`` with the values under PII keys masked by kind and emails, phones and IPs in any
    other text; ``strict`` (a document that may hold personal data under any key: ``traits``)
    masks all its text but under keys that say it is not personal (``order_id``, ``plan``)."""
    if isinstance(value, dict):
        pair = _masked_pair(value)
        out: dict[str, Any] = {}
        for k, v in value.items():
            kind = pair if k == "value" and pair else _column_kind(str(k))
            if kind is not None and not isinstance(v, dict | list):
                out[k] = _apply(kind, v)
            else:
                out[k] = _mask_nested(v, strict=strict and not _not_personal(str(k)))
        return out
    if isinstance(value, list):
        return [_mask_nested(v, strict=strict) for v in value]
    if strict:
        return _mask_personal(value)
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
    """Per result column, how it is masked: as the PII column it derives from — by name
    (``email``, ``c_phone``), or through the query (``SELECT first_name AS fn``, a subquery's or
    CTE's alias, a function of PII columns: ``concat(first_name, ' ', last_name)``, a JSON key:
    ``traits->>'firstName'``), traced with sqlglot's lineage over the data model —,
    :data:`PERSONAL` when it derives from a column that may hold personal data
    (:func:`_sources`) or cannot be traced (unless its name says it is not personal), or
    ``None``: by content only."""
    return _trace(columns, sql, dialect)[0]


def _trace(
    columns: list[str], sql: str | None, dialect: str | None
) -> tuple[list[str | None], dict[int, int]]:
    """:func:`result_kinds`, and which columns are ``value`` columns masked by the ``field`` or
    ``kind`` column at another index of the same row."""
    kinds = [_column_kind(c) for c in columns]
    if not sql:  # by name only; an observation's value by its field
        at = {c.lower(): i for i, c in enumerate(columns)}
        label = next((at[k] for k in ("field", "kind") if k in at), None)
        pairs = {at["value"]: label} if "value" in at and label is not None else {}
        return kinds, pairs
    from sqlglot import parse_one
    from sqlglot.lineage import lineage

    untraced = [
        k or (None if _not_personal(c) else PERSONAL) for k, c in zip(kinds, columns, strict=True)
    ]
    try:
        tree = parse_one(sql, read=dialect)
        names = _name_projections(tree, columns)
    except Exception as e:  # (the warehouse ran it; a dialect sqlglot reads otherwise)
        log.debug("masking: query not parsed (%s); text masked", type(e).__name__)
        return untraced, {}
    schema = _schema()
    leaves: list[list[tuple[str, str, str]] | None] = []
    for i, name in enumerate(names):
        if kinds[i] is not None:
            leaves.append(None)
            continue
        try:
            node = lineage(name, tree, schema, dialect=dialect)
        except Exception as e:  # untraceable: masked unless its name says it is not personal
            log.debug("masking: column %d not traced (%s); masked", i, type(e).__name__)
            kinds[i] = untraced[i]
            leaves.append(None)
            continue
        kinds[i], found = _lineage_kind(node, columns[i])
        leaves.append(found)
    return kinds, _pairs(kinds, leaves)


def _name_projections(tree: Any, columns: list[str]) -> list[str]:
    """The name to trace each result column by: its own, or — for an unnamed expression
    (``traits->>'firstName'``, which the engine names after its text) or a name the result
    repeats — a name given to the projection at its position (of a union's first branch)."""
    from sqlglot import exp

    top = tree
    while isinstance(top, exp.SetOperation):
        top = top.this
    names = list(columns)
    if not isinstance(top, exp.Select):
        return names
    projections = top.expressions
    if len(projections) != len(columns) or any(p.is_star for p in projections):
        return names  # (a star: sqlglot expands it by name, from the data model)
    lowered = [c.lower() for c in columns]
    for i, p in enumerate(projections):
        if p.alias_or_name.lower() != lowered[i] or lowered.count(lowered[i]) > 1:
            names[i] = f"_personify_{i}"
            p.replace(exp.alias_(p.unalias(), names[i]))
    return names


def _lineage_kind(node: Any, column: str) -> tuple[str | None, list[tuple[str, str, str]]]:
    """How a traced column is masked, and the ``(alias, table, column)`` it reads."""
    from sqlglot import exp

    found: list[str] = []
    personal = untraced = json_read = False
    leaves: set[tuple[str, str, str]] = set()
    keys: list[str | None] = []
    for n in node.walk():
        if isinstance(n.source, exp.Table) and not n.downstream:
            table, name = n.source.name.lower(), n.name.rpartition(".")[2]
            leaves.add((n.source.alias_or_name, table, name))
            if (kind := _column_kind(name)) is not None:
                found.append(kind)
                continue
            held = _holds(table, name)
            if held == "unknown":  # a table outside the data model: only its name says
                personal = personal or not _not_personal(name)
            json_read = json_read or held == "json"
            personal = personal or held == "personal"
            continue
        expression = n.expression
        if isinstance(expression, exp.Expr):
            if expression.find(exp.Anonymous) or (
                not n.downstream and expression.find(exp.Column, exp.Subquery)
            ):
                untraced = True  # an unknown function, or a column sqlglot did not follow
            for path in _outer_extracts(expression):
                keys.append(path[-1] if path else None)
                found.extend(k for key in path if (k := _column_kind(key)) is not None)
    # a JSON column is personal but for keys that say otherwise (properties->>'order_id')
    personal = personal or (json_read and not (keys and all(k and _not_personal(k) for k in keys)))
    if found:
        return next((k for k in _PRIORITY if k in found), found[0]), sorted(leaves)
    if personal or (untraced and not _not_personal(column)):
        return PERSONAL, sorted(leaves)
    return None, sorted(leaves)


_EXTRACTS = ("JSONExtract", "JSONExtractScalar", "JSONBExtract", "JSONBExtractScalar", "Bracket")


def _outer_extracts(expression: Any) -> list[list[str]]:
    """The keys of each outermost JSON extraction in ``expression`` (``context->'page'->>'path'``:
    ``["page", "path"]``); an empty list for one whose keys are not literal."""
    from sqlglot import exp

    paths = []
    for e in expression.find_all(exp.Func, exp.Bracket):
        if type(e).__name__ not in _EXTRACTS:
            continue
        parent = e.parent
        if parent is not None and type(parent).__name__ in _EXTRACTS and parent.this is e:
            continue
        keys: list[str] = []
        inner = e
        while type(inner).__name__ in _EXTRACTS:
            step = _path_keys(inner)
            if step is None:
                keys = []
                break
            keys[:0] = step
            inner = inner.this
        paths.append(keys)
    return paths


def _path_keys(extract: Any) -> list[str] | None:
    from sqlglot import exp

    path = extract.expressions[0] if isinstance(extract, exp.Bracket) else extract.expression
    if isinstance(path, exp.JSONPath):
        keys = [p.this for p in path.expressions if isinstance(p, exp.JSONPathKey)]
        return [k for k in keys if isinstance(k, str)] or None
    if isinstance(path, exp.Literal) and path.is_string:  # postgres: '{a,b}'
        text = path.this.strip("{}")
        return [k.strip().strip('"') for k in text.split(",")] if text else None
    return None


def _holds(table: str, column: str) -> str:
    """What a column of the data model may hold: ``personal`` data of any kind, a ``json``
    document that may, ``plain`` values, or ``unknown`` (a table or column outside the model)."""
    from personify.warehouse.schema import TABLES_BY_NAME

    base = _VIEW_BASES.get(table, table)
    if (model := TABLES_BY_NAME.get(base)) is None:
        return "unknown"
    if column in _PERSONAL_TEXT.get(base, ()):
        return "personal"
    try:
        kind = model.column(column).type
    except KeyError:  # a view's own column (purchase_date, segment)
        return "plain" if table in _VIEW_BASES else "unknown"
    return "json" if kind == "JSON" and (base, column) not in _IMPERSONAL_JSON else "plain"


@functools.cache
def _schema() -> dict[str, dict[str, str]]:
    """The data model's tables and views as sqlglot reads a schema (to expand stars and follow
    scalar subqueries)."""
    from sqlglot import exp, parse_one

    from personify.warehouse.schema import TABLES, VIEWS

    schema = {t.name: {c.name: c.type for c in t.columns} for t in TABLES}
    for name, sql in VIEWS.items():
        select = parse_one(sql).find(exp.Select)
        if select is not None:
            schema[name] = {p.alias_or_name: "VARCHAR" for p in select.expressions}
    return schema


def _pairs(
    kinds: list[str | None], leaves: list[list[tuple[str, str, str]] | None]
) -> dict[int, int]:
    """``value`` columns of observations or identifiers (masked :data:`PERSONAL`) whose row's
    ``field`` or ``kind`` the result has too, read from the same row: value index → label index."""
    pairs = {}
    for i, read in enumerate(leaves):
        if kinds[i] != PERSONAL or read is None or len(read) != 1:
            continue
        alias, table, column = read[0]
        if column != "value" or table not in _PAIRED:
            continue
        label = [(alias, table, _PAIRED[table])]
        j = next((j for j, other in enumerate(leaves) if other == label), None)
        if j is not None:
            pairs[i] = j
    return pairs


def mask_document(doc: Any) -> Any:
    """``doc`` (dicts, lists, scalars) with personal data masked: values under PII keys
    (:data:`PII_COLUMNS`, ``c_email``, ``firstName`` …) by kind, an identifier's ``value`` by its
    ``kind`` and an observation's by its ``field``, and emails, phones and IPs inside any other
    text. Ids, counts and times are left as they are."""
    return _mask_nested(doc)


def mask_strict(doc: Any) -> Any:
    """``doc`` masked failing closed, for a reader without access to personal data who sees a
    whole profile (the console): every text is masked (as a name, or as the email, phone or IP it
    is) but under keys that say it is not personal (ids, counts, dates, ``source``, ``segment``,
    ``tag`` …); numbers, flags and times stay. Stricter than :func:`mask_document`, which masks
    by key and by content only."""
    return _mask_nested(doc, strict=True)
