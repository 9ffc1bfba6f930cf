"""Reading a journey file's YAML: checks of keys and values that raise errors naming the file,
line and key (shared by :mod:`personify.journeys.definitions` and
:mod:`personify.journeys._sends`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from personify._yamlmarks import MarkedDocument
from personify.audiences.schedule import parse_duration
from personify.config import _dotted
from personify.errors import DefinitionError

Where = tuple[str | int, ...]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
_KEY = re.compile(r"^(properties|context)\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


class _Reader:
    """Checks one document's keys and values, raising errors that name file, line and key."""

    def __init__(self, doc: MarkedDocument, file: str) -> None:
        self.doc, self.file = doc, file

    def fail(self, where: Where, message: str, hint: str | None = None) -> DefinitionError:
        return DefinitionError(
            message,
            file=self.file,
            line=self.doc.line(where),
            key=_dotted(where) or None,
            hint=hint,
        )

    def mapping(self, value: Any, where: Where, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    (*where, key),
                    f"unknown key {key!r}",
                    hint="allowed here: " + ", ".join(sorted(allowed)),
                )
        return value

    def text(self, value: Any, where: Where, *, name: bool = False) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"expected text, got {_kind(value)}")
        if name and not _NAME.match(value):
            raise self.fail(where, f"{value!r} is not a name (letters, digits, _ and -)")
        return value.strip()

    def duration(self, value: Any, where: Where) -> timedelta:
        try:
            return parse_duration(str(value))
        except ValueError as e:
            raise self.fail(where, str(e)) from None

    def key(self, value: Any, where: Where) -> str:
        text = self.text(value, where)
        if not _KEY.match(text):
            raise self.fail(
                where,
                f"{text!r} is not an event field",
                hint="write properties.NAME (e.g. properties.cart_id) or context.NAME",
            )
        return text


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
