"""Dotted paths into JSON: ``paging.next.after``, ``data.0.id``, ``line_items``."""

from __future__ import annotations

from typing import Any

_MISSING: Any = object()


def get_path(obj: Any, path: str | None, default: Any = None) -> Any:
    """The value at ``path`` in ``obj`` (``None``, ``""`` or ``$``: ``obj`` itself); ``default``
    when a step is missing. Integer steps index lists (``-1`` is the last element)."""
    if path is None or path in ("", "$"):
        return obj
    if "." not in path and isinstance(obj, dict):  # the common case, fast
        return obj.get(path, default)
    current = obj
    for step in path.removeprefix("$.").split("."):
        if isinstance(current, dict):
            current = current.get(step, _MISSING)
        elif isinstance(current, list):
            try:
                current = current[int(step)]
            except (ValueError, IndexError):
                current = _MISSING
        else:
            current = _MISSING
        if current is _MISSING:
            return default
    return current


def find_records(body: Any, selector: str | None) -> list[Any] | None:
    """The records of a page: at ``selector``, else the body when it is a list, else the first
    list value of the body (``{"results": [...]}``). ``None`` when there is no list."""
    if selector:
        found = get_path(body, selector)
        return found if isinstance(found, list) else None
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for value in body.values():
            if isinstance(value, list):
                return value
    return None
