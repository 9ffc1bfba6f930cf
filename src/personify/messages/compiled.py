"""Body templates compiled to Python: the same output as python-liquid, three times faster.

python-liquid interprets its tree node by node, with a context object, a guarded output stream
and a chain of namespaces per lookup. :func:`compile_body` turns a parsed template made of the
common statements — text, comments, ``{{ a.b.c }}``, ``{% if %}``/``elsif``/``else``, ``{% for x
in a.b limit: N %}``/``else`` — into one Python function that appends strings to a list. Filters
whose arguments are literals (``{{ price | money }}``, ``{{ name | default: 'Hi' | upcase }}``)
become direct calls of the environment's own filter functions, exactly as python-liquid calls
them (``environment=`` given to those that ask for it); a filter that needs the render context,
a computed argument and any other output expression (special properties such as ``size``,
ternaries) is evaluated by python-liquid itself, in a render context holding the same names.

The compiled function never decides anything hard by itself: when a name is missing, a value
is not a plain ``dict`` where a path goes through it, a filter fails, a loop would pass the
iteration limit or the output the size limit, it returns ``None`` and the caller renders the
template with python-liquid — which then renders or raises exactly as it always does (strict
undefined, autoescape and resource limits are python-liquid's own). A template holding any other
tag (assign, capture, case, include, forloop …) is not compiled at all.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from liquid import BoundTemplate
from liquid.ast import Node
from liquid.builtin.content import ContentNode
from liquid.builtin.output import OutputNode
from liquid.builtin.tags.comment_tag import CommentNode
from liquid.builtin.tags.for_tag import ForNode
from liquid.builtin.tags.if_tag import IfNode

from personify.messages._codegen import Compiled as Compiled
from personify.messages._codegen import Unsupported as Unsupported
from personify.messages._codegen import _build, _Writer
from personify.messages.links import NotTrackable, anchor_sites
from personify.messages.text import (
    LINK_SLOT,
    SLOT,
    SLOT_END,
    compact_marks,
    markup_to_marks,
)


def compile_body(template: BoundTemplate) -> Compiled:
    """The compiled render of ``template`` (see the module docstring): HTML when its
    environment autoescapes, else text as written (a subject). Raises Unsupported."""
    env = template.env
    if not env.suppress_blank_control_flow_blocks:
        raise Unsupported("blank blocks written")
    writer = _Writer(template)
    writer.nodes(template.nodes, 2)
    compiled: Compiled = _build(template, writer, text=False)
    return compiled


# ------------------------------------------------------------------------------ the text part
_CTRL = "\ue004"
"""Marks where control flow (if/elsif/else/endif, for/else/endfor) was, in a flattened body."""
_IN_TAG = re.compile(r"<[A-Za-z][\w:-]*((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR_VALUE = re.compile(r"""([^\s"'=<>/`]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_BOUNDARY = re.compile(f"{_CTRL}\\d+{SLOT_END}")
_PIECE = re.compile(f"({SLOT}|{LINK_SLOT})(\\d+){SLOT_END}")


class _Flat:
    """A body template flattened to one string: static text, ``SLOT i SLOT_END`` for output
    ``i`` and ``_CTRL k SLOT_END`` for control boundary ``k`` (in walk order)."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.outputs: list[Any] = []
        self.boundaries = 0
        self.length = 0
        self.texts: list[tuple[int, ContentNode]] = []
        """Each text node and where it starts in the flattened string."""
        self.output_nodes: list[OutputNode] = []
        self.spans: list[tuple[int, int, OutputNode]] = []
        """Each output's marker: where it starts, its length, the node."""

    def add(self, part: str) -> None:
        self.parts.append(part)
        self.length += len(part)

    def boundary(self) -> None:
        self.add(f"{_CTRL}{self.boundaries}{SLOT_END}")
        self.boundaries += 1

    def walk(self, nodes: list[Node]) -> None:
        for node in nodes:
            if isinstance(node, ContentNode):
                if any(c in node.text for c in (SLOT, SLOT_END, LINK_SLOT, _CTRL, "\x00")):
                    raise Unsupported("the template's text holds marker characters")
                self.texts.append((self.length, node))
                self.add(node.text)
            elif isinstance(node, OutputNode):
                marker = f"{SLOT}{len(self.outputs)}{SLOT_END}"
                self.spans.append((self.length, len(marker), node))
                self.add(marker)
                self.outputs.append(node.expression)
                self.output_nodes.append(node)
            elif isinstance(node, IfNode):
                self.boundary()
                self.walk(node.consequence.nodes)
                for alternative in node.alternatives:
                    self.boundary()
                    self.walk(alternative.block.nodes)
                if node.default is not None:
                    self.boundary()
                    self.walk(node.default.nodes)
                self.boundary()
            elif isinstance(node, ForNode):
                self.boundary()
                self.walk(node.block.nodes)
                if node.default is not None:
                    self.boundary()
                    self.walk(node.default.nodes)
                self.boundary()
            elif not isinstance(node, CommentNode):
                raise Unsupported(type(node).__name__)


def _href_outputs(flat: str) -> set[int]:
    """Outputs inside an ``href`` value (the text shows them unescaped, as a URL). Raises
    Unsupported for an output or control flow elsewhere in a tag than a quoted value, and for an
    href that starts with an output followed by more (its scheme would decide)."""
    inside: set[int] = set()
    for tag in _IN_TAG.finditer(flat):
        text = tag.group(1)
        if _CTRL in text:
            raise Unsupported("control flow inside an HTML tag")
        valued = "".join(m.group(0) for m in _ATTR_VALUE.finditer(text))
        if text.count(SLOT) != valued.count(SLOT):
            raise Unsupported("an output outside a quoted attribute value")
        for a in _ATTR_VALUE.finditer(text):
            value = a.group(2) if a.group(2) is not None else a.group(3)
            if a.group(1).lower() != "href" or SLOT not in value:
                continue
            first = _PIECE.match(value)
            if first is not None and first.end() < len(value):
                raise Unsupported("an href starting with a variable followed by more")
            inside.update(int(m.group(2)) for m in _PIECE.finditer(value))
    return inside


class _TextWriter(_Writer):
    """Generates the function writing a body's text marks (see :func:`compile_text`)."""

    def __init__(
        self, template: BoundTemplate, segments: list[str], outputs: list[Any], href: set[int]
    ) -> None:
        super().__init__(template)
        self.segments = segments
        self.outputs = outputs
        self.href = href
        self.cursor = 0

    def segment(self, depth: int, blank: bool = False) -> None:
        text = self.segments[self.cursor]
        self.cursor += 1
        if blank:
            return
        last = 0
        for m in _PIECE.finditer(text):
            if m.start() > last:
                self.emit(depth, f"_a({text[last : m.start()]!r})")
            expression = self.value(self.outputs[int(m.group(2))])
            if m.group(1) == LINK_SLOT:
                self.emit(depth, f"_a(_suffix(_text({expression})))")
            elif int(m.group(2)) in self.href:
                self.emit(depth, f"_a(_text({expression}).replace('<', '&lt;'))")
            else:
                self.emit(depth, f"_a(_plain({expression}))")
            last = m.end()
        if last < len(text):
            self.emit(depth, f"_a({text[last:]!r})")

    def block(self, nodes: list[Node], depth: int, blank: bool) -> None:
        before = len(self.lines)
        self.walk(nodes, depth, blank)
        self.segment(depth, blank)
        if len(self.lines) == before:
            self.emit(depth, "pass")

    def walk(self, nodes: list[Node], depth: int, blank: bool = False) -> None:
        for node in nodes:
            if isinstance(node, IfNode | ForNode):
                self.segment(depth, blank)
                self.node(node, depth)

    def node(self, node: Node, depth: int) -> None:
        if isinstance(node, IfNode | ForNode):
            super().node(node, depth)


def _text_segments(template: BoundTemplate) -> tuple[list[str], _Flat, set[int]]:
    """The text marks of ``template``'s markup between its control boundaries (in walk order,
    outputs as ``SLOT i SLOT_END`` or ``LINK_SLOT i SLOT_END``), the flattened body and the
    outputs inside an ``href``. Raises Unsupported (see :func:`compile_text`)."""
    flat = _Flat()
    flat.walk(template.nodes)
    source = "".join(flat.parts)
    href = _href_outputs(source)
    converted = compact_marks(markup_to_marks(source))
    found = [int(m.group(1)) for m in re.finditer(f"{_CTRL}(\\d+){SLOT_END}", converted)]
    if found != list(range(flat.boundaries)):
        raise Unsupported("a conversion rule spans control flow")
    segments = re.split(f"{_CTRL}\\d+{SLOT_END}", converted)
    alone = [compact_marks(markup_to_marks(part)) for part in re.split(_BOUNDARY, source)]
    if alone != segments:  # then no rule matched across control flow
        raise Unsupported("a conversion rule spans control flow")
    return segments, flat, href


def compile_text(template: BoundTemplate) -> Compiled:
    """A function writing the text marks (:func:`~personify.messages.text.markup_to_marks`) of
    ``template``'s output, without rendering the HTML: the body's markup is converted once, with
    markers for its outputs and its control flow. Raises Unsupported when the conversion could
    depend on values (control flow or outputs where a conversion rule spans them)."""
    segments, flat, href = _text_segments(template)
    writer = _TextWriter(template, segments, flat.outputs, href)
    writer.walk(template.nodes, 2)
    writer.segment(2)
    assert writer.cursor == len(segments)
    compiled: Compiled = _build(template, writer, text=True)
    return compiled


# ------------------------------------------------------------------------ tracked links
TrackedCompiled = Callable[[Mapping[str, Any], Callable[[str, str], str]], "str | None"]
"""A body compiled with its links found once: ``render(names, href)`` calls ``href(escaped
value, rest of the tag)`` for each link (see :class:`personify.messages.links.Links`)."""
_MARKERS = re.compile(f"[{SLOT}{_CTRL}]\\d+{SLOT_END}")
_MARKER_AFTER_LT = re.compile(f"<[{SLOT}{_CTRL}]")

Event = tuple[int, str, str]
"""Where an ``href`` value starts (``"start"``) or ends (``"end"``, with the rest of its tag)
in a text node (the offset) or around an output (offset 0: before it, 1: after it)."""


class _TrackedWriter(_Writer):
    """:class:`_Writer` whose links call ``_lk``: an ``href`` that is one output as
    ``_lk(value, tail)``; any other is collected while it is written (``_a`` appends to ``_h``
    between its start and its end) and then handed to ``_lk``."""

    def __init__(
        self, template: BoundTemplate, whole: dict[int, str], events: dict[int, list[Event]]
    ) -> None:
        super().__init__(template)
        self.whole = whole
        self.events = events

    def event(self, depth: int, kind: str, tail: str) -> None:
        if kind == "start":
            self.emit(depth, "_h = []")
            self.emit(depth, "_a = _h.append")
        else:
            self.emit(depth, "_a = _o.append")
            self.emit(depth, f"_a(_lk(''.join(_h), {tail!r}))")

    def node(self, node: Node, depth: int) -> None:
        events = self.events.get(id(node), [])
        if isinstance(node, ContentNode):
            text, last = node.text, 0
            for at, kind, tail in events:
                if at > last:
                    self.static(depth, text[last:at])
                self.event(depth, kind, tail)
                last = at
            if last < len(text):
                self.static(depth, text[last:])
        elif isinstance(node, OutputNode):
            for at, kind, tail in events:
                if at == 0:
                    self.event(depth, kind, tail)
            self.output(depth, node, self.whole.get(id(node)))
            for at, kind, tail in events:
                if at == 1:
                    self.event(depth, kind, tail)
        else:
            super().node(node, depth)

    def static(self, depth: int, text: str) -> None:
        self.emit(depth, f"_a({text!r})")

    def output(self, depth: int, node: OutputNode, rest: str | None) -> None:
        value = self.value(node.expression)
        if rest is None:
            self.emit(depth, f"_a(_tout({value}))")
        else:
            self.emit(depth, f"_a(_lk(_tout({value}), {rest!r}))")


def _place(flat: _Flat, position: int, kind: str) -> tuple[int, int]:
    """The node (its id) and offset where an href value's start or end at ``position`` is
    written (see :data:`Event`)."""
    for at, text in flat.texts:
        end = at + len(text.text)
        if (at <= position < end) if kind == "start" else (at < position <= end):
            return id(text), position - at
    for at, length, output in flat.spans:
        if kind == "start" and position == at:
            return id(output), 0
        if kind == "end" and position == at + length:
            return id(output), 1
    raise Unsupported("a link's href starts or ends where nothing is written")


def _link_events(
    template: BoundTemplate,
) -> tuple[dict[int, str], dict[int, list[Event]]]:
    """Where ``template``'s links are (see :func:`compile_tracked`): the outputs that are a
    whole ``href`` (by node id, with the rest of their tag) and the other ``href`` values'
    starts and ends (by node id). Raises Unsupported."""
    if not template.env.autoescape:
        raise Unsupported("links are found in autoescaped HTML")
    compile_body(template)  # the same checks (raises Unsupported)
    flat = _Flat()
    flat.walk(template.nodes)
    source = "".join(flat.parts)
    if re.search(r"</body", source, re.I) or _MARKER_AFTER_LT.search(source):
        raise Unsupported("a </body> or an output right after '<' in the body")
    try:
        sites = anchor_sites(source, _MARKERS)
    except NotTrackable as e:
        raise Unsupported(str(e)) from None
    whole: dict[int, str] = {}
    events: dict[int, list[Event]] = {}
    for start, end, tail in sites:
        value = source[start:end]
        if _CTRL in value:
            raise Unsupported("control flow in an href")
        one = _MARKERS.fullmatch(value)
        if one is not None:
            whole[id(flat.output_nodes[int(value[1:-1])])] = tail
            continue
        for position, kind, rest in ((start, "start", ""), (end, "end", tail)):
            node, offset = _place(flat, position, kind)
            events.setdefault(node, []).append((offset, kind, rest))
    return whole, events


def compile_tracked(template: BoundTemplate) -> TrackedCompiled:
    """:func:`compile_body` with the body's links found once (see
    :func:`personify.messages.links.anchor_sites`): each ``href`` value is handed to the
    email's link tracking as written (escaped). Raises Unsupported when the links cannot be
    decided once (an output or control flow elsewhere in a link's tag or control flow in an
    ``href``, a ``</body>`` in the body, an output right after ``<``)."""
    whole, events = _link_events(template)
    writer = _TrackedWriter(template, whole, events)
    writer.nodes(template.nodes, 2)
    compiled: TrackedCompiled = _build(template, writer, text=False, tracked=True)
    return compiled


# ------------------------------------------------------------------- HTML and text together
Fused = Callable[[Mapping[str, Any]], "tuple[str, list[str], str] | None"]
"""A body's HTML, the same HTML in pieces (the template's text and the values between) and its
text marks, written by one function (see :func:`compile_fused`)."""
TrackedFused = Callable[
    [Mapping[str, Any], Callable[[str, str], str]], "tuple[str, list[str], str] | None"
]
""":data:`Fused` with the body's links tracked (``render(names, href)``, as
:data:`TrackedCompiled`)."""


class _FusedWriter(_TrackedWriter):
    """:class:`_TrackedWriter` that also writes the text marks (to ``_b``): each output is
    evaluated and escaped once (``_e<i>``) and written to the HTML at once and to the text where
    its segment ends — at the next control boundary, after every output it holds."""

    def __init__(
        self,
        template: BoundTemplate,
        whole: dict[int, str],
        events: dict[int, list[Event]],
        text: tuple[list[str], set[int]],
        escaped: str,
    ) -> None:
        super().__init__(template, whole, events)
        self.segments, self.href = text
        self.cursor = 0
        self.index = itertools.count()  # outputs in walk order, as _Flat numbers them
        self.escaped = escaped
        self.statics: set[str] = set()
        """Every piece of the template's text the function writes."""
        self.blanks = [False]

    def static(self, depth: int, text: str) -> None:
        self.statics.add(text)
        super().static(depth, text)

    def output(self, depth: int, node: OutputNode, rest: str | None) -> None:
        i = next(self.index)
        self.emit(depth, f"_e{i} = {self.escaped}({self.value(node.expression)})")
        self.emit(depth, f"_a(_e{i})" if rest is None else f"_a(_lk(_e{i}, {rest!r}))")

    def nodes(self, nodes: list[Node], depth: int) -> None:
        for node in nodes:
            if isinstance(node, IfNode | ForNode):
                self.segment(depth)
            self.node(node, depth)

    def block(self, nodes: list[Node], depth: int, blank: bool) -> None:
        self.blanks.append(blank)
        super().block(nodes, depth, blank)
        self.blanks.pop()

    def closed(self, depth: int, blank: bool) -> None:
        self.segment(depth)

    def segment(self, depth: int) -> None:
        """The text marks of the next segment (nothing in a blank block)."""
        text = self.segments[self.cursor]
        self.cursor += 1
        if self.blanks[-1]:
            return
        last = 0
        for m in _PIECE.finditer(text):
            if m.start() > last:
                self.emit(depth, f"_b({text[last : m.start()]!r})")
            i = int(m.group(2))
            if m.group(1) == LINK_SLOT:
                self.emit(depth, f"_b(_suffix(_un(_e{i})))")
            elif i in self.href:
                self.emit(depth, f"_b(_un(_e{i}).replace('<', '&lt;'))")
            else:  # escaped: the text is unescaped once at the end (marks_to_text)
                self.emit(depth, f"_b(_e{i})")
            last = m.end()
        if last < len(text):
            self.emit(depth, f"_b({text[last:]!r})")


def compile_fused(template: BoundTemplate) -> tuple[Fused, frozenset[str]]:
    """:func:`compile_body` and :func:`compile_text` as one function: each output evaluated
    once for both parts. Also the template text it writes (the same strings every time).
    Raises Unsupported when either cannot be compiled (and for a template that does not
    autoescape: its text part is not HTML's)."""
    if not template.env.autoescape:
        raise Unsupported("the text part is made from autoescaped HTML")
    compile_body(template)  # the same checks (raises Unsupported)
    return _fused(template, {}, {}, tracked=False)


def compile_fused_tracked(template: BoundTemplate) -> tuple[TrackedFused, frozenset[str]]:
    """:func:`compile_tracked` and :func:`compile_text` as one function (see
    :func:`compile_fused`); the text shows each link's own URL, not the tracked one. Raises
    Unsupported."""
    whole, events = _link_events(template)
    return _fused(template, whole, events, tracked=True)


def _fused(
    template: BoundTemplate,
    whole: dict[int, str],
    events: dict[int, list[Event]],
    *,
    tracked: bool,
) -> tuple[Any, frozenset[str]]:
    """The one function of :func:`compile_fused` (no links: ``whole`` and ``events`` empty) or
    :func:`compile_fused_tracked`, and the template text it writes. Raises Unsupported."""
    segments, _, href = _text_segments(template)
    # _tout: a value that writes markup (a filter's) could change the text: python-liquid then
    writer = _FusedWriter(template, whole, events, (segments, href), "_tout")
    writer.nodes(template.nodes, 2)
    writer.segment(2)
    assert writer.cursor == len(segments)
    return _build(template, writer, text=False, tracked=tracked, fused=True), frozenset(
        writer.statics
    )
