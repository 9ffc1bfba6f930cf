"""YAML with line numbers: the data of a document plus where each key and value stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from personify.errors import ConfigError

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class MarkedDocument:
    """Plain data (dicts, lists, scalars) and the 1-based line of every path in it."""

    data: Any
    marks: dict[Path, int]

    def line(self, path: Path) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        while True:
            if path in self.marks:
                return self.marks[path]
            if not path:
                return None
            path = path[:-1]


class _Loader(yaml.SafeLoader):
    pass


def parse_marked(text: str, *, file: str) -> MarkedDocument:
    """Parse one YAML document. Syntax errors and duplicate keys raise :class:`ConfigError`."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return MarkedDocument(None, {})
        marks: dict[Path, int] = {}
        _mark(node, (), marks, file)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "invalid YAML"
        raise ConfigError(
            f"invalid YAML: {problem}",
            file=file,
            line=line,
            hint="check indentation, colons and quotes around this line",
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", file=file) from None
    finally:
        loader.dispose()
    return MarkedDocument(data, marks)


def _mark(node: yaml.Node, path: Path, marks: dict[Path, int], file: str) -> None:
    marks.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(
                    f"duplicate key {key!r}",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    key=".".join(str(p) for p in (*path, key)),
                    hint="each key may appear once in a mapping; remove or merge the repeats",
                )
            seen.add(key)
            marks[(*path, key)] = key_node.start_mark.line + 1
            _mark(value_node, (*path, key), marks, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _mark(item, (*path, i), marks, file)
