"""Empty YAML keys in the project file: ``alerts:`` with nothing after it (every entry below
commented out) is YAML's null, and means what a person who emptied it means — none.

:func:`empty_keys` walks the file's data along the model's type (``msgspec.inspect``) before
it is converted: a null where a list is expected becomes ``[]``, where a mapping is expected
``{}``, and a null settings section (a struct with defaults) is left out, so it takes its
defaults. A key whose type takes null keeps it, and so does a list or mapping whose default
is not empty (``identity.blocked:`` — none, or its defaults?): that null, and any other, is
left for msgspec to refuse, naming the line and key.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import msgspec.inspect

_COLLECTIONS: Final = (
    msgspec.inspect.ListType,
    msgspec.inspect.VarTupleType,
    msgspec.inspect.SetType,
    msgspec.inspect.FrozenSetType,
)


def _bare(t: msgspec.inspect.Type) -> msgspec.inspect.Type:
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    return t


def _nullable(t: msgspec.inspect.Type) -> bool:
    t = _bare(t)
    return isinstance(t, msgspec.inspect.NoneType) or (
        isinstance(t, msgspec.inspect.UnionType) and any(_nullable(member) for member in t.types)
    )


def empty_keys(node: Any, t: msgspec.inspect.Type) -> Any:
    """A key written with nothing after it (``alerts:``, every entry below commented out) is
    YAML's null: for a key that holds a list it means an empty list, for one that holds a
    mapping an empty mapping — *none*, as ``[]`` and ``{}`` say — and for a settings section
    (``privacy:``) its defaults, as if the key were left out. Keys that take null themselves
    (``bus: null``) keep it; so do list items (``- `` with nothing is still an error)."""
    t = _bare(t)
    if isinstance(t, msgspec.inspect.UnionType):
        if isinstance(node, dict):
            structs = [m for m in map(_bare, t.types) if isinstance(m, msgspec.inspect.StructType)]
            tagged = [
                m for m in structs if m.tag_field is not None and node.get(m.tag_field) == m.tag
            ]
            found = tagged or (structs if len(structs) == 1 else [])
            return empty_keys(node, found[0]) if found else node
        if isinstance(node, list):
            lists = [m for m in map(_bare, t.types) if isinstance(m, _COLLECTIONS)]
            return empty_keys(node, lists[0]) if lists else node
        return node
    if isinstance(t, _COLLECTIONS) and isinstance(node, list):
        return [empty_keys(item, t.item_type) for item in node]
    if isinstance(t, msgspec.inspect.DictType) and isinstance(node, dict):
        return {k: _empty_value(v, t.value_type) for k, v in node.items()}
    if isinstance(t, msgspec.inspect.StructType) and isinstance(node, dict):
        fields = {f.encode_name: f for f in t.fields}
        out: dict[str, Any] = {}
        for key, value in node.items():
            f = fields.get(key)
            if f is None:
                out[key] = value  # unknown: msgspec names it
            elif value is None and not f.required and _empty(f.type) is _DEFAULT:
                continue
            elif value is None and _has_defaults(f):
                out[key] = None  # none or its defaults? msgspec refuses it, naming the key
            else:
                out[key] = _empty_value(value, f.type)
        return out
    return node


def _has_defaults(f: msgspec.inspect.Field) -> bool:
    """Whether ``f`` holds a list or mapping whose default is not empty (``identity.blocked``,
    ``identity.limits``, ``traits.excluded_order_statuses``, ``discounts`` …). Left empty, such
    a key could mean none or its defaults, and none would drop a safeguard without a word (the
    over-merge protection of ``blocked``'s ``null``, ``unknown`` …): it stays an error, naming
    the key — ``[]`` or ``{}`` says none, leaving the key out its defaults."""
    if isinstance(_bare(f.type), (*_COLLECTIONS, msgspec.inspect.DictType)):
        if f.default_factory is not msgspec.NODEFAULT:
            return bool(f.default_factory())
        return f.default is not msgspec.NODEFAULT and bool(f.default)
    return False


_DEFAULT: Final = object()
"""A null settings section: left out, so it takes its defaults."""


def _empty(t: msgspec.inspect.Type) -> Any:
    """What a null stands for where ``t`` is expected: ``[]``, ``{}``, :data:`_DEFAULT`, or
    ``None`` (kept: msgspec takes it or says what was expected)."""
    if _nullable(t):
        return None
    t = _bare(t)
    if isinstance(t, _COLLECTIONS):
        return []
    if isinstance(t, msgspec.inspect.DictType):
        return {}
    if isinstance(t, msgspec.inspect.StructType) or (
        isinstance(t, msgspec.inspect.UnionType)
        and all(isinstance(_bare(m), msgspec.inspect.StructType) for m in t.types)
    ):
        return _DEFAULT
    return None


def _empty_value(value: Any, t: msgspec.inspect.Type) -> Any:
    if value is not None:
        return empty_keys(value, t)
    empty = _empty(t)
    return {} if empty is _DEFAULT else empty
