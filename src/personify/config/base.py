"""The building blocks every section of ``personify.yml`` uses: names, secrets, durations,
the strict frozen struct base, and the error a cross-field check raises.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

PROJECT_FILE: Final = "personify.yml"

_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$"
Name = Annotated[str, msgspec.Meta(pattern=_NAME_PATTERN)]
"""An identifier-like name: letters, digits, ``_`` and ``-``, starting with a letter or ``_``."""


class Secret:
    """A string that hides itself: ``repr``/``str`` show ``**********``.

    Call :meth:`reveal` where the value is really needed (an HTTP header, a connection).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value itself. Never log it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class _FieldError(Exception):
    """Raised by cross-field checks with the path of the offending key."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


_DURATION_PATTERN: Final = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$"
Duration = Annotated[str, msgspec.Meta(pattern=_DURATION_PATTERN)]
"""A duration: ``30s``, ``5m``, ``2h``, ``1d`` or plain seconds (``90``)."""


def duration_seconds(text: str | float) -> float:
    """Seconds in a :data:`Duration` (``"5m"`` → 300.0)."""
    if isinstance(text, int | float):
        return float(text)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 2h, 1d)")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]
    return float(m.group(1)) * unit
