"""The Liquid environments templates render in: strict, autoescaped, resource-limited."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import ClassVar

from liquid import Environment, StrictUndefined
from liquid.exceptions import LiquidError, ResourceLimitError, UndefinedError

from personify.messages.errors import RenderError

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


def html_environment() -> Environment:
    """For HTML bodies and layouts: every value is HTML-escaped unless marked safe."""
    return _Guarded(undefined=StrictUndefined, autoescape=True)


def text_environment() -> Environment:
    """For subjects (plain text, never HTML-escaped)."""
    return _Guarded(undefined=StrictUndefined, autoescape=False)


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
    elif isinstance(err, ResourceLimitError):
        hint = "the template loops or writes too much; shorten the lists it renders"
    return RenderError(message, template=template, line=line, variable=variable, hint=hint)
