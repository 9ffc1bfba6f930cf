"""The code generator behind :mod:`personify.messages.compiled`: :class:`_Writer` turns a
parsed template's nodes into the lines of a Python function, :func:`_build` makes that function
(with the helpers its lines call)."""

from __future__ import annotations

import html as htmllib
import itertools
import re
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate, RenderContext
from liquid.ast import BlockNode, Node
from liquid.builtin.content import ContentNode
from liquid.builtin.expressions import BooleanExpression, FilteredExpression, Path
from liquid.builtin.expressions.arguments import KeywordArgument
from liquid.builtin.expressions.logical import is_truthy
from liquid.builtin.expressions.loop import LoopExpression
from liquid.builtin.expressions.primitive import (
    FalseLiteral,
    FloatLiteral,
    IntegerLiteral,
    Nil,
    StringLiteral,
    TrueLiteral,
)
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.comment_tag import CommentNode
from liquid.builtin.tags.for_tag import ForNode
from liquid.builtin.tags.if_tag import IfNode
from liquid.stringify import to_liquid_string
from markupsafe import escape

from personify.messages.text import link_suffix

Compiled = Callable[[Mapping[str, Any]], "str | None"]
_ESCAPED = re.compile("[&<>'\"]")
_SPECIAL = {"size", "first", "last", "forloop", "parentloop"}
_LITERALS = (Nil, TrueLiteral, FalseLiteral, StringLiteral, IntegerLiteral, FloatLiteral)


class Unsupported(Exception):
    """The template uses something :func:`~personify.messages.compiled.compile_body` does not
    compile."""


class _Bail(Exception):
    """This render needs python-liquid (which renders or raises the right error)."""


def _bail() -> Any:
    raise _Bail


def _out(value: Any) -> str:
    """What python-liquid writes for ``value`` (autoescaped)."""
    if type(value) is str:
        return value if _ESCAPED.search(value) is None else escape(value)
    return to_liquid_string(value, True)


def _raw_out(value: Any) -> str:
    """What python-liquid writes for ``value`` without autoescape (a subject line)."""
    if type(value) is str:
        return value
    return to_liquid_string(value, False)


def _plain(value: Any) -> str:
    """``value`` for a text part, where the whole text is unescaped once at the end: the value
    itself when that changes nothing (no ``&``), else escaped."""
    if type(value) is str and "&" not in value:
        return value
    return _out(value)


_IN_TAG_UNSAFE = re.compile('[<>"]')


def _tout(value: Any) -> str:
    """:func:`_out` where the links were found once: a value that is not plain text and writes
    ``<``, ``>`` or ``"`` (markup marked safe) could make or change a link — python-liquid
    renders that email and its links are found in its HTML."""
    if type(value) is str:
        return value if _ESCAPED.search(value) is None else escape(value)
    out = to_liquid_string(value, True)
    if _IN_TAG_UNSAFE.search(out) is not None:
        raise _Bail
    return out


def _unescaped(escaped: str) -> str:
    """An output as written to HTML (:func:`_out`), as its text shows it."""
    return htmllib.unescape(str(escaped)) if "&" in escaped else str(escaped)


def _text(value: Any) -> str:
    """What a text part shows of an attribute value (unescaped, a plain str)."""
    return htmllib.unescape(str(_out(value)))


class _Writer:
    def __init__(self, template: BoundTemplate) -> None:
        self.template = template
        self.lines: list[str] = []
        self.constants: list[Any] = []
        self.names = itertools.count()
        self.scope: list[dict[str, str]] = []  # liquid loop name -> python local
        self.lengths: list[str] = []  # python locals holding enclosing loop lengths
        self.sinking = False  # inside a blank block (what is written goes to _sink)

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
            # a path goes through dicts only (a KeyError or anything else bails)
            code = f"(_x[{segment!r}] if type(_x := {code}) is dict else _bail())"
        return code

    def value(self, expression: Any) -> str:
        """A Python expression for an output/condition expression's value."""
        inner = expression
        while True:  # a bare path, possibly wrapped as a condition or an unfiltered output
            if isinstance(inner, FilteredExpression) and not inner.filters:
                inner = inner.left
            elif isinstance(inner, BooleanExpression):
                inner = inner.expression
            else:
                break
        if isinstance(inner, Path) and (code := self.path(inner)) is not None:
            return code
        if isinstance(inner, FilteredExpression) and (code := self.filtered(inner)) is not None:
            return code
        if any(s in str(expression) for s in ("forloop", "parentloop")):
            raise Unsupported("forloop")
        return f"_ev({self.const(expression)}, _g, {self.locals_map()})"

    def literal(self, expression: Any) -> tuple[bool, Any]:
        """(True, its value) for a literal (evaluated as python-liquid would); else (False, _)."""
        if not isinstance(expression, _LITERALS):
            return False, None
        return True, expression.evaluate(RenderContext(self.template))

    def filtered(self, expression: FilteredExpression) -> str | None:
        """A Python expression calling ``expression``'s filters directly, or None when one needs
        the render context or has a computed argument (python-liquid evaluates it then)."""
        left = expression.left
        if isinstance(left, Path):
            code = self.path(left)
            if code is None:
                return None
        else:
            known, value = self.literal(left)
            if not known:
                return None
            code = self.const(value)
        env = self.template.env
        for f in expression.filters or ():
            func = env.filters.get(f.name)
            if func is None or getattr(func, "with_context", False):
                return None
            positional: list[Any] = []
            keywords: dict[str, Any] = {}
            for argument in f.args:
                known, value = self.literal(argument.value)
                if not known:
                    return None
                if isinstance(argument, KeywordArgument):
                    keywords[argument.name] = value
                else:
                    positional.append(value)
            if getattr(func, "with_environment", False):
                keywords["environment"] = env
            call = func if not positional and not keywords else _bound(func, positional, keywords)
            code = f"{self.const(call)}({code})"
        return code

    def block(self, nodes: list[Node], depth: int, blank: bool) -> None:
        before = len(self.lines)
        if blank and not self.sinking:  # python-liquid evaluates a blank block, writes nothing
            self.sinking = True
            self.emit(depth, "_a = _sink.append")
            self.nodes(nodes, depth)
            self.emit(depth, "_a = _o.append")
            self.sinking = False
        else:  # (a block inside a blank block is blank too: still writing to _sink)
            self.nodes(nodes, depth)
        self.closed(depth, blank)
        if len(self.lines) == before:
            self.emit(depth, "pass")

    def closed(self, depth: int, blank: bool) -> None:
        """Called at the end of each block (after its nodes)."""

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


def _bound(
    func: Callable[..., Any], positional: list[Any], keywords: dict[str, Any]
) -> Callable[[Any], Any]:
    """``func`` called as python-liquid calls a filter: the value first, then the arguments."""

    def call(value: Any) -> Any:
        return func(value, *positional, **keywords)

    return call


def _blank(block: BlockNode) -> bool:
    return bool(block.blank)


def _build(
    template: BoundTemplate,
    writer: _Writer,
    *,
    text: bool,
    tracked: bool = False,
    fused: bool = False,
) -> Any:
    env = template.env
    # python-liquid's guarded output stream reads newlines universally ("\r" → "\n")
    translates = env.from_string("{{ v }}").render(v="\r") == "\n"
    limit = env.loop_iteration_limit or 10**12
    out_limit = env.output_stream_limit or 10**15
    crlf = "replace('\\r\\n', '\\n').replace('\\r', '\\n')"
    if fused:  # (html, its pieces, text marks); the pieces are one when newlines were read
        ending = [
            "    marks = ''.join(_t)",
            *(
                [
                    "    if '\\r' in out:",
                    f"        out = out.{crlf}",
                    "        _o = [out]",
                    "    if '\\r' in marks:",
                    f"        marks = marks.{crlf}",
                ]
                if translates
                else []
            ),
            "    return out, _o, marks",
        ]
    else:
        ending = [*([f"    out = out.{crlf}"] if translates else []), "    return out"]
    source = "\n".join(
        [
            "def _render(_g, _lk):" if tracked else "def _render(_g):",
            "    _o = []",
            "    _sink = []",
            "    _a = _o.append",
            *(["    _t = []", "    _b = _t.append"] if fused else []),
            "    try:",
            *writer.lines,
            "    except Exception:",
            "        return None",
            "    out = ''.join(_o)",
            # python-liquid's limit counts UTF-8 bytes as written (before newline translation)
            f"    if len(out) * 4 > {out_limit} and len(out.encode()) > {out_limit}:",
            "        return None",
            *ending,
        ]
    )

    def evaluate(expression: Any, names: Mapping[str, Any], local: dict[str, Any]) -> Any:
        scope = ChainMap(local, names) if local else names  # type: ignore[arg-type]
        return expression.evaluate(RenderContext(template, globals=scope))

    namespace: dict[str, Any] = {
        "_bail": _bail,
        "_text": _text,
        "_plain": _plain,
        "_out": _out if env.autoescape else _raw_out,
        "_truthy": is_truthy,
        "_ev": evaluate,
        "_Bail": _Bail,
        "_LIMIT": limit,
        "_k": writer.constants,
        "_suffix": link_suffix,
        "_tout": _tout,
        "_un": _unescaped,
    }
    kind = "text" if text else "tracked html" if tracked else "html"
    kind = f"{kind} + text" if fused else kind
    try:
        code = compile(source, f"<compiled {template.name} {kind}>", "exec")
    except SyntaxError as e:  # pragma: no cover - a bug here, never the user's template
        raise Unsupported(f"generated code does not compile: {e}") from None
    exec(code, namespace)  # noqa: S102 - our own generated code, names are repr()-quoted
    return namespace["_render"]
