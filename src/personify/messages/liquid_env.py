"""The Liquid environments templates render in: strict, autoescaped, resource-limited."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

import dateutil.parser  # type: ignore[import-untyped]  # (python-liquid's dependency)
from babel.core import UnknownLocaleError
from babel.dates import format_date, format_datetime, get_day_names, get_month_names
from babel.numbers import format_currency
from liquid import BoundTemplate, Environment, Markup, RenderContext, StrictUndefined
from liquid.builtin.expressions import KeywordArgument, StringLiteral
from liquid.exceptions import (
    FilterArgumentError,
    LiquidError,
    ResourceLimitError,
    TemplateNotFoundError,
    UndefinedError,
)
from liquid.filter import with_context, with_environment
from liquid.loader import BaseLoader, TemplateSource

from personify import clock
from personify.messages.errors import RenderError
from personify.messages.files import TextFiles
from personify.messages.labels import TEMPLATE_LOCALE, amount_off, words_locale, zone_of
from personify.messages.locale import babel_locale, normalize

K = TypeVar("K")
V = TypeVar("V")
_CENTS = re.compile(r"-?(?:0|[1-9][0-9]{0,17})\.[0-9]{2}")
"""A price already written with two decimals (no leading zero, no exponent, no sign but -)."""
LOOP_ITERATION_LIMIT = 10_000
OUTPUT_STREAM_LIMIT = 2_000_000
LOCAL_NAMESPACE_LIMIT = 1_000_000


class _Guarded(Environment):
    """User-authored templates cannot loop or write without bound."""

    loop_iteration_limit: ClassVar[int | None] = LOOP_ITERATION_LIMIT
    output_stream_limit: ClassVar[int | None] = OUTPUT_STREAM_LIMIT
    local_namespace_limit: ClassVar[int | None] = LOCAL_NAMESPACE_LIMIT

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        self.filters["money"] = money
        self.filters["currency"] = currency
        self.filters["date"] = date
        self.filters["discount_amount"] = discount_amount


def money(value: object, places: object = 2) -> str:
    """``{{ price | money }}`` → ``52.00``: a number with a fixed count of decimals (default 2,
    rounded half to even as accounting does); text that is not a number is returned unchanged,
    nil gives an empty string."""
    if places == 2:  # the common cases, as the Decimal path below gives them
        if type(value) is str and _CENTS.fullmatch(value):
            return value
        if type(value) is int:
            return f"{value}.00"
    if value is None:
        return ""
    try:
        amount = Decimal(str(value))
        digits = max(0, min(int(str(places)), 6))
    except (InvalidOperation, ValueError):
        return str(value)
    if not amount.is_finite():
        return str(value)
    try:
        return f"{amount.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN):f}"
    except InvalidOperation:  # more digits than the context's precision (1e30 with 2 places)
        return str(value)


_DATE_STYLES = ("short", "medium", "long", "full")
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def email_locale(context: RenderContext) -> str:
    """The one locale an email is written in (canonical, ``fr-CA``): its words and, when the
    customer's locale is of the same language, their way with numbers — the template's language
    (:data:`~personify.messages.labels.TEMPLATE_LOCALE`, set by
    :func:`~personify.messages.render`), else worked out as it does (the project's
    ``email.default_locale`` for a template rendered on its own)."""
    found = context.globals.get(TEMPLATE_LOCALE)
    if isinstance(found, str) and found:
        return found
    customer = context.globals.get("customer")
    default = getattr(context.env, "default_locale", None)
    return words_locale(default, customer if isinstance(customer, Mapping) else None)


def _locales(context: RenderContext, explicit: object) -> list[str]:
    """Babel locales to write in, first known wins: the filter's argument, else the email's
    locale (:func:`email_locale`: the template's language, in the customer's way when it is
    theirs), then that locale's language (``fr-ZZ`` → ``fr``); then the project's
    ``email.default_locale``; then English."""
    wanted = normalize(explicit) if explicit is not None else email_locale(context)
    default = getattr(context.env, "default_locale", None)
    tags = (wanted, wanted.split("-")[0] if wanted else None, normalize(default))
    found = [babel_locale(t) for t in tags if t]
    return list(dict.fromkeys([*found, "en"]))


def _zone(context: RenderContext) -> ZoneInfo | None:
    """The zone an instant is written in: the customer's ``timezone`` (an IANA name), else the
    project's ``timezone`` (``default_timezone``, set on the environment by the template store);
    None when neither is one (:func:`~personify.messages.labels.zone_of`)."""
    customer = context.globals.get("customer")
    return zone_of(
        customer if isinstance(customer, Mapping) else None,
        getattr(context.env, "default_timezone", None),
    )


@with_context
def currency(
    value: object, code: object = "USD", locale: object = None, *, context: RenderContext
) -> str:
    """``{{ total | currency: 'EUR' }}`` → ``€52.00`` (English), ``52,00 €`` (French): the
    amount in the email's locale (:func:`email_locale`: the template's language, the
    customer's way when it is theirs; a third argument overrides it); nil gives an empty
    string, text that is not a number is returned unchanged."""
    if value is None:
        return ""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not amount.is_finite():
        return str(value)
    for name in _locales(context, locale):
        try:
            return str(format_currency(amount, str(code).upper(), locale=name))
        except UnknownLocaleError:
            continue
        except ValueError:  # not a currency code Babel reads
            return str(value)
    return str(value)


@with_context
def discount_amount(value: object, locale: object = None, *, context: RenderContext) -> str:
    """``{{ discount | discount_amount }}`` → what a discount code takes off, in the email's
    locale (:func:`email_locale`; a second argument overrides it): ``15%`` (English), ``15 %``
    (French) for a percentage, ``€5.00`` / ``5,00 €`` for an amount off (in the code's
    ``currency``, EUR when it has none). Nil gives an empty string; anything else than a
    discount (a mapping with a numeric ``value`` and ``kind`` ``percent`` or ``amount``) is an
    error naming what it got."""
    if value is None:
        return ""
    if not isinstance(value, Mapping):
        raise FilterArgumentError(
            f"discount_amount expects a discount ({{code, value, kind}}), got {_kind(value)}",
            token=None,
        )
    kind, number = value.get("kind"), value.get("value")
    try:
        amount = Decimal(str(number))
    except InvalidOperation:
        amount = Decimal("NaN")
    if kind not in ("percent", "amount") or isinstance(number, bool) or not amount.is_finite():
        raise FilterArgumentError(
            "discount_amount expects a discount with a numeric value and kind 'percent' or "
            f"'amount', got value {_kind(number)} and kind {kind!r}",
            token=None,
        )
    code = str(value.get("currency") or "EUR").upper()
    for name in _locales(context, locale):
        try:
            return amount_off(str(kind), amount, code, name)
        except UnknownLocaleError:
            continue
        except ValueError as e:  # not a currency code Babel reads
            raise FilterArgumentError(
                f"discount_amount: {code!r} is not a currency code ({e})", token=None
            ) from None
    return str(number)


def _kind(value: object) -> str:
    """What a filter got, without showing the value (it may be personal)."""
    return "nil" if value is None else f"a {type(value).__name__}"


class UnknownZoneError(FilterArgumentError):
    """``date``'s zone argument is no IANA time zone name."""


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)+|UTC|GMT")
"""How a zone is told from a locale among ``date``'s arguments: ``Europe/Paris``, ``UTC``."""
_NAMES = re.compile(r"%([%AaBb])")


def _explicit_zone(name: object) -> ZoneInfo | None:
    """``date``'s ``zone`` argument as a zone (None when nil or empty: the default). Raises
    :class:`UnknownZoneError` naming what is not a zone."""
    if name is None or name == "":
        return None
    if isinstance(name, str):
        try:
            return ZoneInfo(str(name).strip())
        except (ValueError, KeyError, OSError):
            pass
    shown = repr(str(name)[:64]) if isinstance(name, str) else _kind(name)
    raise UnknownZoneError(f"date: {shown} is not a time zone", token=None)


def _named(fmt: str, when: dt.datetime, locales: list[str]) -> str:
    """``fmt`` with ``%B %b %A %a`` replaced by the names of ``when``'s month and day in the
    first of ``locales`` Babel knows (English: ``fmt`` unchanged, strftime's own)."""
    names: dict[str, str] | None = None
    for name in locales:
        if name.split("_")[0] == "en":
            return fmt
        try:
            names = {
                "B": get_month_names("wide", "format", name)[when.month],
                "b": get_month_names("abbreviated", "format", name)[when.month],
                "A": get_day_names("wide", "format", name)[when.weekday()],
                "a": get_day_names("abbreviated", "format", name)[when.weekday()],
            }
            break
        except (UnknownLocaleError, ValueError):
            continue
    if names is None:
        return fmt
    found = names
    return _NAMES.sub(lambda m: found.get(m.group(1), "%").replace("%", "%%"), fmt)


def check_zones(template: BoundTemplate) -> None:
    """Raise :class:`UnknownZoneError` (at its line) for a ``date`` filter whose time zone is
    written in the template and is no zone (``date: 'long', 'Europe/Pariss'``): found when the
    template is loaded — by ``journeys check`` and before a send — not at each render."""
    static = RenderContext(template)
    nodes: list[Any] = list(template.nodes)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children(static, include_partials=False))
        expressions: list[Any] = list(node.expressions())
        while expressions:
            expression = expressions.pop()
            expressions.extend(expression.children())
            for found in (
                *(getattr(expression, "filters", None) or ()),
                *(getattr(expression, "tail_filters", None) or ()),
            ):
                if found.name == "date":
                    _check_date_arguments(found)


def _check_date_arguments(found: Any) -> None:
    for argument in found.args:
        value = argument.value
        if not isinstance(value, StringLiteral):
            continue
        keyword = isinstance(argument, KeywordArgument)
        if (keyword and argument.name == "zone") or (
            not keyword and _ZONE_NAME.fullmatch(value.value.strip())
        ):
            try:
                _explicit_zone(value.value)
            except UnknownZoneError as e:
                raise UnknownZoneError(str(e.message), token=argument.token) from None


@with_context
@with_environment
def date(
    value: Any,
    fmt: Any,
    *args: object,
    locale: object = None,
    zone: object = None,
    context: RenderContext,
    environment: Environment,
) -> str:
    """``{{ at | date: '%d %B %Y' }}`` as Liquid's own ``date`` (strftime), month and day names
    (``%B %b %A %a``) in the email's language; ``date: 'short'``, ``'medium'``, ``'long'`` or
    ``'full'`` — the date and time written in the email's language (Babel; in the customer's
    ``timezone``, else the project's — a value without a zone is read as UTC; a plain date
    without time). The email's language is the template's (its variant's, else
    ``email.default_locale``), in the customer's way when their locale is of that language
    (``fr-CA``): see :func:`email_locale`.

    More arguments, in any order: a locale (``'fr'``) instead of the email's; a time zone
    (``'Europe/Paris'``, ``'UTC'`` — an IANA name, or ``zone: customer.timezone``) to write the
    instant in, for both forms (a value without a zone is read as UTC; a plain date stays that
    date). A zone that is not one fails the render. Nil gives an empty string, text or a number
    that is no date is written as it is, anything else fails the render."""
    for extra in args:  # a zone has a slash (or is UTC/GMT); a locale tag never has
        if isinstance(extra, str) and _ZONE_NAME.fullmatch(extra.strip()):
            zone = extra
        elif locale is None:
            locale = extra
        else:
            raise FilterArgumentError(
                "date takes a format, then a locale and a time zone (IANA, e.g. "
                f"'Europe/Paris'), got {len(args) + 1} arguments",
                token=None,
            )
    explicit = _explicit_zone(zone)
    today = isinstance(value, str) and value == "today"
    if isinstance(value, str) and value in ("now", "today"):
        value = clock.now()  # Liquid's own reads the wall clock: --now pins this one
    when = instant(value)
    if when is None:
        if value is None:
            return ""
        if isinstance(value, (str, int, float, Decimal)) and not isinstance(value, bool):
            return str(value)  # as Liquid's: text that is no date is written as it is
        raise FilterArgumentError(f"date expects a date or time, got {_kind(value)}", token=None)
    plain = (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
        isinstance(value, str) and _ISO_DAY.fullmatch(value.strip()) is not None
    )
    if fmt not in _DATE_STYLES:
        if not isinstance(fmt, str):
            raise FilterArgumentError(
                f"date expects a format ('%d %B %Y', 'long'), got {_kind(fmt)}", token=None
            )
        if explicit is not None and not plain:
            when = _utc(when).astimezone(explicit)
        named = _named(fmt, when, _locales(context, locale))
        try:
            written = when.strftime(named)
        except ValueError as e:
            raise FilterArgumentError(str(e), token=None) from None
        return Markup(written) if environment.autoescape and isinstance(fmt, Markup) else written
    day: dt.date | None = None  # a date without a time: written without one
    if today:  # the recipient's date (in their zone, or the one given), written without a time
        zone_now = explicit or _zone(context)
        day = (when.astimezone(zone_now) if zone_now is not None else when).date()
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        day = value
    elif plain:
        day = when.date()
    else:  # an instant: in the zone given, else the customer's (else the project's)
        target = explicit or _zone(context)
        when = _utc(when) if target is None else _utc(when).astimezone(target)
    for name in _locales(context, locale):
        try:
            if day is not None:
                return str(format_date(day, fmt, locale=name))
            return str(format_datetime(when, fmt, tzinfo=when.tzinfo, locale=name))
        except (UnknownLocaleError, ValueError):
            continue
    return str(value)


def _utc(when: dt.datetime) -> dt.datetime:
    """``when``, read as UTC when it has no zone (as the warehouse stores instants)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def instant(value: object) -> dt.datetime | None:
    """What ``date`` reads ``value`` as — the values Liquid's own reads, not through its parser
    (it caches by equality: an equal instant in another zone would come back from its cache):
    a datetime as it is, a date at midnight, a number (or digits) as a Unix time (UTC), text
    as ISO 8601 or as ``dateutil`` reads it (``March 1, 2026``; a part missing is today's, the
    run's ``--now``). None when it is none of these."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time.min)
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        try:
            return dt.datetime.fromtimestamp(value, dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    today = clock.now().replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    return _text_instant(str(value).strip(), today)


@functools.lru_cache(maxsize=256)  # (text is itself: equal texts read as the same instant)
def _text_instant(text: str, today: dt.datetime) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        found = dateutil.parser.parse(text, default=today)
    except (ValueError, OverflowError):  # (dateutil's ParserError is a ValueError)
        return None
    return found if isinstance(found, dt.datetime) else None


PARTIALS_DIR = "partials"
_PARTIAL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


PARSED_PARTIALS_LIMIT = 512
"""Parsed partial versions a loader keeps (per environment and content; the least recently used
go first) — a long-running ``serve`` whose partials are edited keeps a bounded cache."""
PARTIAL_SOURCES_LIMIT = 2_048
"""Partial texts :func:`translate` can name the file of (the least recently parsed go first)."""


class _Recent(Generic[K, V]):
    """A dict bounded to ``size`` entries, the least recently used dropped first (not
    thread-safe: callers hold their lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


_PARTIAL_SOURCES: _Recent[str, str] = _Recent(PARTIAL_SOURCES_LIMIT)
"""A partial's text → its file (``partials/footer.liquid``): an error raised while rendering
a partial holds the partial's text, so :func:`translate` names the partial and its line."""
_PARTIAL_SOURCES_LOCK = threading.Lock()


class PartialPathError(TemplateNotFoundError):
    """A partial's name that would read outside ``templates/partials`` (``../``, ``/etc``)."""


class PartialsLoader(BaseLoader):
    """``{% render 'footer' %}`` / ``{% include 'footer' %}`` read ``partials/footer.liquid``
    of the templates folder — never outside it (no ``..``, no absolute path, no symlink out).

    Parsed partials are cached by their content (one parse per version and environment); the
    store :meth:`refresh`-es the partials a template names when it checks that template, so
    rendering reads no file for them; a partial named by a variable is read at render time.
    Reading an unchanged partial again costs a ``stat``
    (:class:`~personify.messages.files.TextFiles`; the checks of :meth:`path` are redone when
    the name leads to another file, e.g. a symlink retargeted)."""

    def __init__(self, folder: Path, files: TextFiles | None = None) -> None:
        super().__init__()
        self.folder = folder / PARTIALS_DIR
        self.files = files or TextFiles()
        """The partials' texts, read again only when they changed."""
        self._parsed: _Recent[tuple[int, str, str], BoundTemplate] = _Recent(PARSED_PARTIALS_LIMIT)
        self._current: dict[tuple[int, str], tuple[str, BoundTemplate]] = {}
        self._located: dict[str, tuple[Path, tuple[int, int]]] = {}
        """Partial name → its checked file and that file's (inode, device)."""
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The file of partial ``name``. Raises PartialPathError or TemplateNotFoundError."""
        if not _PARTIAL_NAME.fullmatch(name) or ".." in PurePosixPath(name).parts:
            raise PartialPathError(
                f"partial {name!r} is not a name inside templates/{PARTIALS_DIR}/ "
                "(no '..', no absolute path, no backslash)"
            )
        stem = name.removesuffix(".liquid")
        path = self.folder / f"{stem}.liquid"
        root = self.folder.resolve()
        if not path.is_file():
            raise TemplateNotFoundError(
                f"partial {name!r} not found (looked for templates/{PARTIALS_DIR}/{stem}.liquid)"
            )
        if not path.resolve().is_relative_to(root):
            raise PartialPathError(f"partial {name!r} leads outside templates/{PARTIALS_DIR}/")
        return path

    def _locate(self, name: str) -> tuple[Path, os.stat_result]:
        """:meth:`path` and its ``stat``; the checks of :meth:`path` are skipped when the name
        leads to the very file they passed before (same inode and device, a regular file)."""
        with self._lock:
            hit = self._located.get(name)
        if hit is not None:
            try:
                st = os.stat(hit[0])
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and (st.st_ino, st.st_dev) == hit[1]:
                return hit[0], st
        path = self.path(name)
        st = os.stat(path)
        with self._lock:
            if len(self._located) >= PARSED_PARTIALS_LIMIT:
                self._located.clear()
            self._located[name] = (path, (st.st_ino, st.st_dev))
        return path, st

    def source(self, name: str) -> str:
        """The text of partial ``name`` now (see :meth:`path`): read again only when the file
        changed."""
        path, st = self._locate(name)
        return self.files.read(path, st)

    def get_source(
        self,
        env: Environment,
        template_name: str,
        *,
        context: RenderContext | None = None,
        **kwargs: object,
    ) -> TemplateSource:
        text = self.source(template_name)
        return TemplateSource(text, f"{PARTIALS_DIR}/{template_name}.liquid", None)

    def _parse(self, env: Environment, name: str, text: str) -> BoundTemplate:
        key = (id(env), name, hashlib.sha256(text.encode()).hexdigest())
        with self._lock:
            hit = self._parsed.get(key)
        if hit is not None:
            with _PARTIAL_SOURCES_LOCK:  # still in use: its file stays known to translate()
                _PARTIAL_SOURCES.get(text)
            return hit
        stem = name.removesuffix(".liquid")
        parsed = env.from_string(text, name=f"{PARTIALS_DIR}/{stem}.liquid")
        try:
            check_zones(parsed)
        except UnknownZoneError as e:  # (its file: translate() names it, not the caller's)
            e.template_name = f"{PARTIALS_DIR}/{stem}.liquid"
            raise
        with self._lock:
            self._parsed.put(key, parsed)
        with _PARTIAL_SOURCES_LOCK:
            _PARTIAL_SOURCES.put(text, f"{PARTIALS_DIR}/{stem}.liquid")
        return parsed

    def refresh(self, env: Environment, sources: dict[str, str]) -> None:
        """Make ``sources`` (name → text, read by the store) what ``env`` renders. A partial
        that does not parse raises a RenderError naming its file and line."""
        parsed: dict[str, tuple[str, BoundTemplate]] = {}
        for name, text in sources.items():
            with self._lock:
                current = self._current.get((id(env), name))
            if current is not None and current[0] is text:  # (unchanged: TextFiles' string)
                continue
            try:
                parsed[name] = (text, self._parse(env, name, text))
            except LiquidError as e:
                shown = f"{PARTIALS_DIR}/{name.removesuffix('.liquid')}.liquid"
                raise translate(e, shown, 0, text) from None
        with self._lock:
            for name, entry in parsed.items():
                self._current[(id(env), name)] = entry

    def load(
        self,
        env: Environment,
        name: str,
        *,
        globals: Any = None,  # noqa: A002 - python-liquid's signature
        context: RenderContext | None = None,
        **kwargs: object,
    ) -> BoundTemplate:
        with self._lock:
            hit = self._current.get((id(env), name))
        if hit is not None:
            return hit[1]
        return self._parse(env, name, self.source(name))


def html_environment(folder: Path | None = None, files: TextFiles | None = None) -> Environment:
    """For HTML bodies and layouts: every value is HTML-escaped unless marked safe. With
    ``folder`` (the templates folder), partials load from its ``partials/`` (read through
    ``files`` when given)."""
    env = _Guarded(undefined=StrictUndefined, autoescape=True)
    if folder is not None:
        env.loader = PartialsLoader(folder, files)
    return env


def text_environment(folder: Path | None = None, files: TextFiles | None = None) -> Environment:
    """For subjects (plain text, never HTML-escaped)."""
    env = _Guarded(undefined=StrictUndefined, autoescape=False)
    if folder is not None:
        env.loader = PartialsLoader(folder, files)
    return env


_TAG = re.compile(r"\{%-?\s*(\w+)")
_EXPECTED_END = re.compile(r"expected tag (end\w+)")


def _unclosed(source: str, end: str) -> int | None:
    """Offset in ``source`` of the last block tag still open at its end that ``end`` closes
    (``endif`` closes ``if``), if any."""
    opened = end.removeprefix("end")
    stack: list[int] = []
    for match in _TAG.finditer(source):
        if match.group(1) == opened:
            stack.append(match.start())
        elif match.group(1) == end and stack:
            stack.pop()
    return stack[-1] if stack else None


def translate(
    err: LiquidError, template: str, line_offset: int = 0, source: str | None = None
) -> RenderError:
    """A Liquid error as a :class:`RenderError` naming the template, line and variable.
    ``source``: the text parsed, to place an error at its end (a block never closed) on the
    line of the block's opening tag."""
    token = err.token
    caller = template
    where = err.template_name
    if not (isinstance(where, str) and where.startswith(f"{PARTIALS_DIR}/")):
        with _PARTIAL_SOURCES_LOCK:
            where = _PARTIAL_SOURCES.get(getattr(token, "source", None) or "")
        if where is not None and source is not None and token is not None:
            where = None if token.source == source else where
    if where is not None and where.startswith(f"{PARTIALS_DIR}/"):
        template, line_offset = where, 0  # the error is in a partial: its own lines
    line: int | None = None
    if token is not None and getattr(token, "source", None) is not None:
        line = token.source.count("\n", 0, token.start_index) + 1 + line_offset
    expected = _EXPECTED_END.search(str(err.message or ""))
    if token is not None and token.start_index < 0 and source is not None and expected:
        start = _unclosed(source, expected.group(1))
        if start is not None:
            line = source.count("\n", 0, start) + 1 + line_offset
    message = str(err.message or type(err).__name__)
    variable: str | None = None
    hint: str | None = None
    if isinstance(err, UndefinedError):
        named = re.match(r"^'?(.+?)'? is undefined", message)
        variable = named.group(1) if named else (token.value if token is not None else None)
        message = f"undefined variable {variable!r}" if variable else message
        hint = "pass it to the render (--var NAME=VALUE) or guard it with {% if %}"
    elif isinstance(err, TemplateNotFoundError):
        if not isinstance(err, PartialPathError) and not message.startswith("partial "):
            message = f"partial {message!r} not found"
        hint = (
            f"partials are files templates/{PARTIALS_DIR}/NAME.liquid, named without the "
            "folder or extension: {% render 'footer' %}"
        )
    elif isinstance(err, UnknownZoneError):
        hint = "name an IANA time zone: 'Europe/Paris', 'America/New_York', 'UTC'"
        if where is not None and where != caller and where.startswith(f"{PARTIALS_DIR}/"):
            # a partial read as the email renders (named by a variable): not checked before
            message = f"{message} (in {where}, rendered by {caller})"
            hint = f"{hint} in {where}; `personify journeys check` then finds it"
    elif isinstance(err, ResourceLimitError):
        hint = "the template loops or writes too much; shorten the lists it renders"
    return RenderError(message, template=template, line=line, variable=variable, hint=hint)
