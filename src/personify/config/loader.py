"""Reading ``personify.yml``: ``${VAR}`` interpolation, conversion into the model, and errors
that name the file, the line and the key.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Final

import msgspec
import msgspec.inspect

from personify._yamlmarks import MarkedDocument, parse_marked
from personify.config._emptykeys import empty_keys
from personify.config.base import (
    _DURATION_PATTERN,
    _NAME_PATTERN,
    PROJECT_FILE,
    Secret,
    _FieldError,
)
from personify.config.journeys import _CLOCK_TIME
from personify.config.project import Project, ProjectConfig
from personify.errors import ConfigError

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _env_file(root: Path) -> dict[str, str]:
    path = root / ".env"
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _interpolate(doc: MarkedDocument, env: dict[str, str], file: str) -> Any:
    def sub(value: str, path: tuple[str | int, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            var, default = m.group(1), m.group(2)
            if var in env and env[var] != "":
                return env[var]
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {var} is not set",
                file=file,
                line=doc.line(path),
                key=_dotted(path),
                hint=f"export {var}=… (or put it in .env in the project folder)",
            )

        return _VAR.sub(one, value)

    def walk(node: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, (*path, i)) for i, v in enumerate(node)]
        if isinstance(node, str) and "$" in node:
            return sub(node, path)
        return node

    return walk(doc.data, ())


def _dotted(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]")
_FIELD = re.compile(r"field `([^`]+)`")
_OWN_KEY = re.compile(r"^([a-z_][a-z0-9_]*): ")
"""A ``__post_init__`` check's message that starts by naming the key it is about."""
_PATTERNS: Final = {
    _NAME_PATTERN: "expected a name of letters, digits, '_' and '-', starting with a letter or '_'",
    _DURATION_PATTERN: "expected a duration like 300s, 5m or 1h (units ms, s, m, h, d; a bare "
    "number is seconds)",
    _CLOCK_TIME: "expected a time of day like 21:00 (HH:MM, 24-hour clock)",
}
"""What a value refused by each ``Meta(pattern=…)`` of the model should look like."""


def _pin_elided(text: str, data: Any) -> str:
    """msgspec writes a mapping's key as ``[...]`` in error paths (``$.discounts[...].tiers``):
    find the entry at fault — the one that fails the same way when its mapping holds only it —
    and put its key back (``$.discounts["winback"].tiers``), so the error names line and key."""
    while (m := _AT.match(text)) and "[...]" in (raw := m.group("path") or ""):
        prefix = raw[: raw.index("[...]")]
        tokens = [int(t[1]) if t[1] else (t[0] or t[2]) for t in _TOKEN.findall(prefix)]
        mapping = _get_in(data, tokens)
        if not isinstance(mapping, dict):
            break
        culprit = None
        for name, value in mapping.items():
            try:
                msgspec.convert(
                    _set_in(data, tokens, {name: value}), ProjectConfig, dec_hook=_dec_hook
                )
            except msgspec.ValidationError as e:
                if (again := _AT.match(str(e))) and again.group("msg") == m.group("msg"):
                    culprit = name
                    break
            except _FieldError:
                continue
        if not isinstance(culprit, str):
            break
        text = text.replace("[...]", "[" + json.dumps(culprit) + "]", 1)
    return text


def _get_in(data: Any, path: list[str | int]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _set_in(data: Any, path: list[str | int], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = list(data) if isinstance(data, list) else dict(data)
    copy[head] = _set_in(data[head], rest, value)  # type: ignore[index]
    return copy


def _translate(
    err: msgspec.ValidationError, doc: MarkedDocument, file: str, text: str | None = None
) -> ConfigError:
    m = _AT.match(str(err) if text is None else text)
    assert m is not None
    msg, raw = m.group("msg"), m.group("path") or ""
    path: tuple[str | int, ...] = tuple(
        int(t[1]) if t[1] else (t[0] or t[2]) for t in _TOKEN.findall(raw)
    )
    line = doc.line(path)
    key = _dotted(path)
    field = _FIELD.search(msg)
    hint = None
    if field and "unknown field" in msg:
        bad = (*path, field.group(1))
        line, key = doc.line(bad), _dotted(bad)
        msg = f"unknown key {field.group(1)!r}"
        hint = "check the spelling; see the configuration reference in README.md"
    elif field and "missing required field" in msg:
        msg = f"missing required key {field.group(1)!r}"
    elif (own := _OWN_KEY.match(msg)) and (*path, own.group(1)) in doc.marks:
        # a check of the mapping that names one of its keys ("currency: 'XYZ' is not …"):
        # that key's line, not the mapping's
        path = (*path, own.group(1))
        line, key, msg = doc.line(path), _dotted(path), msg[own.end() :]
    msg = msg.replace("Expected", "expected").replace("Invalid enum value", "invalid value")
    empty = ("expected `array`, got `null`", "expected `object`, got `null`")
    if msg.startswith(empty) and path and isinstance(path[-1], str):  # a key, not a "- "
        hint = "left empty: write [] or {} for none, or remove the key for its defaults"
    if "matching regex" in msg:  # msgspec quotes the pattern as Python's repr
        found = [said for pattern, said in _PATTERNS.items() if f"regex {pattern!r}" in msg]
        msg = found[0] if found else msg
    return ConfigError(msg, file=file, line=line, key=key, hint=hint)


def parse_config(text: str, *, file: str = PROJECT_FILE, root: Path | None = None) -> ProjectConfig:
    """Parse the text of a project file. Raises :class:`ConfigError` on any mistake."""
    doc = parse_marked(text, file=file)
    if doc.data is None:
        doc = MarkedDocument({}, doc.marks)
    if not isinstance(doc.data, dict):
        raise ConfigError("the project file must be a mapping of keys to values", file=file, line=1)
    env = {**(_env_file(root) if root else {}), **os.environ}
    # kinds first: a destination written without one is walked as the ``rest`` it is
    data = empty_keys(_default_kinds(_interpolate(doc, env, file)), _MODEL)
    try:
        return msgspec.convert(data, ProjectConfig, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _translate(e, doc, file, _pin_elided(str(e), data)) from None
    except _FieldError as e:
        raise ConfigError(
            e.message, file=file, line=doc.line(e.path), key=_dotted(e.path)
        ) from None


_MODEL: Final = msgspec.inspect.type_info(ProjectConfig)


def _default_kinds(data: Any) -> Any:
    """A destination without ``kind`` is ``kind: rest`` (reverse ETL, the only kind before
    ``events``): projects written then keep loading."""
    destinations = data.get("destinations") if isinstance(data, dict) else None
    if not isinstance(destinations, list):
        return data
    kinds = [
        {"kind": "rest", **d} if isinstance(d, dict) and "kind" not in d else d
        for d in destinations
    ]
    return {**data, "destinations": kinds}


_JSON_TYPES: Final = {type(None): "null", bool: "bool", int: "int", float: "float", list: "array"}


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if isinstance(obj, str):
            return Secret(obj)
        # a secret left empty (``write_key:``) or written as a bare number: the error names its
        # line and key, as for any other string (the value itself is never shown)
        raise TypeError(f"Expected `str`, got `{_JSON_TYPES.get(type(obj), 'object')}`")
    raise NotImplementedError


def find_project_file(directory: Path) -> Path:
    file = directory / PROJECT_FILE
    if not file.is_file():
        raise ConfigError(
            f"no {PROJECT_FILE} in {directory}",
            file=str(file),
            hint="run `personify init DIR` to make a project, or pass --project DIR",
        )
    return file


_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def key_line(file: Path, key: str) -> int | None:
    """The line of ``key`` (``relations.crm_scores``, ``alerts[0].threshold``: a
    :class:`~personify.errors.ConfigError`'s ``key``) in the YAML file ``file``; ``None`` when the
    file cannot be read or parsed or does not hold that key. For checks made after loading (a
    warehouse table that is missing, a bus that is down), whose errors must still name the line.
    The file is parsed once while it is unchanged (the real-time path asks at every event)."""
    try:
        stat = file.stat()
    except OSError:
        return None
    path = tuple(int(index) if index else name for name, index in _KEY_PART.findall(key))
    return _marks(file, stat.st_mtime_ns, stat.st_size).get(path)


@functools.lru_cache(maxsize=16)
def _marks(file: Path, mtime_ns: int, size: int) -> dict[tuple[str | int, ...], int]:
    """:func:`key_line`'s parse of ``file``, cached by its modification time and size."""
    try:
        return parse_marked(file.read_text(encoding="utf-8"), file=str(file)).marks
    except (ConfigError, OSError, UnicodeDecodeError):
        return {}


def locate(error: ConfigError, file: Path) -> ConfigError:
    """``error`` with the line of its key in the project file ``file`` when it names a key of that
    file but no line; unchanged when it has a line, names another file, or the key is not found."""
    if not error.key or error.line is not None:
        return error
    if error.file and Path(error.file).name != file.name:
        return error
    line = key_line(file, error.key)
    if line is None:
        return error
    return ConfigError(error.reason, file=str(file), line=line, key=error.key, hint=error.hint)


def load_project(directory: str | Path = ".") -> Project:
    """Load the project in ``directory`` (which holds ``personify.yml``)."""
    root = Path(directory).expanduser().resolve()
    file = find_project_file(root)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason})", file=str(file)) from None
    config = parse_config(text, file=str(file), root=root)
    return Project(config=config, root=root, file=file)
