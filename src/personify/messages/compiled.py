"""Body templates compiled to Python: the same output as python-liquid, three times faster.

python-liquid interprets its tree node by node, with a context object, a guarded output stream
and a chain of namespaces per lookup. :func:`compile_body` turns a parsed template made of the
common statements — text, comments, ``{{ a.b.c }}``, ``{% if %}``/``elsif``/``else``, ``{% for x
in a.b limit: N %}``/``else`` — into one Python function that appends strings to a list. Any
other output expression (filters, literals, special properties such as ``size``) is evaluated by
python-liquid itself, in a render context holding the same names.

The compiled function never decides anything hard by itself: when a name is missing, a value
is not a plain ``dict`` where a path goes through it, a filter fails, a loop would pass the
iteration limit or the output the size limit, it returns ``None`` and the caller renders the
template with python-liquid — which then renders or raises exactly as it always does (strict
undefined, autoescape and resource limits are python-liquid's own). A template holding any other
tag (assign, capture, case, include, forloop …) is not compiled at all.
"""

from __future__ import annotations

import itertools
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate, RenderContext
from liquid.ast import BlockNode, Node
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import BooleanExpression, FilteredExpression, Path
from liquid.builtin.expressions.logical import is_truthy
from liquid.builtin.expressions.loop import LoopExpression
from liquid.builtin.expressions.primitive import IntegerLiteral
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.comment_tag import CommentNode
from liquid.builtin.tags.for_tag import ForNode
from liquid.builtin.tags.if_tag import IfNode
from liquid.stringify import to_liquid_string
from markupsafe import escape

Compiled = Callable[[Mapping[str, Any]], "str | None"]
_SPECIAL = {"size", "first", "last", "forloop", "parentloop"}


class Unsupported(Exception):
    """The template uses something :func:`compile_body` does not compile."""


class _Bail(Exception):
    """This render needs python-liquid (which renders or raises the right error)."""


def _get(obj: Any, key: str) -> Any:
    if type(obj) is not dict:
        raise _Bail
    return obj[key]  # a KeyError bails too


def _out(value: Any) -> str:
    if type(value) is str:
        return str(escape(value))
    return to_liquid_string(value, True)


class _Writer:
    def __init__(self, template: BoundTemplate) -> None:
        self.template = template
        self.lines: list[str] = []
        self.constants: list[Any] = []
        self.names = itertools.count()
        self.scope: list[dict[str, str]] = []  # liquid loop name -> python local
        self.lengths: list[str] = []  # python locals holding enclosing loop lengths

    def const(self, value: Any) -> str:
        self.constants.append(value)
        return f"_k[{len(self.constants) - 1}]"

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def local(self, name: str) -> str | None:
        for frame in reversed(self.scope):
            if name in frame:
                return frame[name]
        return None

    def locals_map(self) -> str:
        pairs = ", ".join(f"{k!r}: {v}" for frame in self.scope for k, v in frame.items())
        return "{" + pairs + "}"

    def path(self, path: Path) -> str | None:
        """A Python expression for a plain path of names, or None (evaluate generically)."""
        segments = path.path
        if not segments or not all(type(s) is str for s in segments):
            return None
        if any(s in _SPECIAL for s in segments):
            return None
        root = segments[0]
        assert isinstance(root, str)
        code = self.local(root) or f"_g[{root!r}]"
        for segment in segments[1:]:
            code = f"_get({code}, {segment!r})"
        return code

    def value(self, expression: Any) -> str:
        """A Python expression for an output/condition expression's value."""
        inner = expression
        if isinstance(inner, FilteredExpression) and not inner.filters:
            inner = inner.left
        if isinstance(inner, BooleanExpression):
            inner = inner.expression
        if isinstance(inner, Path) and (code := self.path(inner)) is not None:
            return code
        if any(s in str(expression) for s in ("forloop", "parentloop")):
            raise Unsupported("forloop")
        return f"_ev({self.const(expression)}, _g, {self.locals_map()})"

    def block(self, nodes: list[Node], depth: int, blank: bool) -> None:
        before = len(self.lines)
        if blank:  # python-liquid evaluates a blank block but writes nothing of it
            self.emit(depth, "_a = _sink.append")
            self.nodes(nodes, depth)
            self.emit(depth, "_a = _o.append")
        else:
            self.nodes(nodes, depth)
        if len(self.lines) == before:
            self.emit(depth, "pass")

    def nodes(self, nodes: list[Node], depth: int) -> None:
        for node in nodes:
            self.node(node, depth)

    def node(self, node: Node, depth: int) -> None:
        if isinstance(node, ContentNode):
            if node.text:
                self.emit(depth, f"_a({node.text!r})")
        elif isinstance(node, CommentNode):
            return
        elif isinstance(node, OutputNode):
            self.emit(depth, f"_a(_out({self.value(node.expression)}))")
        elif isinstance(node, IfNode):
            self.emit(depth, f"if _truthy({self.value(node.condition)}):")
            self.block(node.consequence.nodes, depth + 1, _blank(node.consequence))
            for alternative in node.alternatives:
                self.emit(depth, f"elif _truthy({self.value(alternative.expression)}):")
                self.block(alternative.block.nodes, depth + 1, _blank(alternative.block))
            if node.default is not None:
                self.emit(depth, "else:")
                self.block(node.default.nodes, depth + 1, _blank(node.default))
        elif isinstance(node, ForNode):
            self.loop(node, depth)
        else:
            raise Unsupported(type(node).__name__)

    def loop(self, node: ForNode, depth: int) -> None:
        expr: LoopExpression = node.expression
        if expr.offset is not None or expr.reversed or getattr(expr, "cols", None) is not None:
            raise Unsupported("for with offset, reversed or cols")
        if expr.limit is not None and not isinstance(expr.limit, IntegerLiteral):
            raise Unsupported("for with a computed limit")
        if "forloop" in str(node.block) or "parentloop" in str(node.block):
            raise Unsupported("forloop")
        if not isinstance(expr.iterable, Path) or (source := self.path(expr.iterable)) is None:
            raise Unsupported("for over something else than a plain path")
        n = next(self.names)
        items, length, item = f"_i{n}", f"_n{n}", f"_v{n}"
        limit = int(expr.limit.value) if expr.limit is not None else 0
        self.emit(depth, f"{items} = {source}")
        self.emit(depth, f"if type({items}) is not list and type({items}) is not tuple:")
        self.emit(depth + 1, "raise _Bail")
        # python-liquid: stop = min(limit or length, length) (so limit 0 means no limit)
        self.emit(depth, f"{length} = max(min({limit} or len({items}), len({items})), 0)")
        self.emit(depth, f"if {length}:")
        carry = " * ".join([length, *self.lengths])
        self.emit(depth + 1, f"if {carry} > _LIMIT:")
        self.emit(depth + 2, "raise _Bail")
        self.emit(depth + 1, f"for {item} in {items}[:{length}]:")
        self.scope.append({expr.identifier: item})
        self.lengths.append(length)
        self.block(node.block.nodes, depth + 2, _blank(node.block))
        self.lengths.pop()
        self.scope.pop()
        if node.default is not None:
            self.emit(depth, "else:")
            self.block(node.default.nodes, depth + 1, _blank(node.default))


def _blank(block: BlockNode) -> bool:
    return bool(block.blank)


def compile_body(template: BoundTemplate) -> Compiled:
    """The compiled render of ``template`` (see the module docstring). Raises Unsupported."""
    env = template.env
    if not env.autoescape:
        raise Unsupported("compiled bodies are for autoescaped HTML")
    if not env.suppress_blank_control_flow_blocks:
        raise Unsupported("blank blocks written")
    # python-liquid's guarded output stream reads newlines universally ("\r" → "\n")
    translates = env.from_string("{{ v }}").render(v="\r") == "\n"
    writer = _Writer(template)
    writer.nodes(template.nodes, 2)
    limit = env.loop_iteration_limit or 10**12
    out_limit = env.output_stream_limit or 10**15
    source = "\n".join(
        [
            "def _render(_g):",
            "    _o = []",
            "    _sink = []",
            "    _a = _o.append",
            "    try:",
            *writer.lines,
            "    except Exception:",
            "        return None",
            "    out = ''.join(_o)",
            # python-liquid's limit counts UTF-8 bytes as written (before newline translation)
            f"    if len(out) * 4 > {out_limit} and len(out.encode()) > {out_limit}:",
            "        return None",
            *(
                ["    out = out.replace('\\r\\n', '\\n').replace('\\r', '\\n')"]
                if translates
                else []
            ),
            "    return out",
        ]
    )

    def evaluate(expression: Any, names: Mapping[str, Any], local: dict[str, Any]) -> Any:
        scope = ChainMap(local, names) if local else names  # type: ignore[arg-type]
        return expression.evaluate(RenderContext(template, globals=scope))

    namespace: dict[str, Any] = {
        "_get": _get,
        "_out": _out,
        "_truthy": is_truthy,
        "_ev": evaluate,
        "_Bail": _Bail,
        "_LIMIT": limit,
        "_k": writer.constants,
    }
    try:
        code = compile(source, f"<compiled {template.name}>", "exec")
    except SyntaxError as e:  # pragma: no cover - a bug here, never the user's template
        raise Unsupported(f"generated code does not compile: {e}") from None
    exec(code, namespace)  # noqa: S102 - our own generated code, names are repr()-quoted
    render: Compiled = namespace["_render"]
    return render
