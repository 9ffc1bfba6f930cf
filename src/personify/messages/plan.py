"""The fast path of :func:`~personify.messages.render`: CSS inlined and the layout converted
to text once per template version, not once per email.

The reference render (:func:`~personify.messages.render.render_reference`) renders the body,
places it in the layout with Liquid, inlines the whole document's CSS (css-inline) and converts
the result to text — about three quarters of the time an email takes. A :class:`Plan` does the
same work once, when a template version is loaded:

* the **layout** becomes static pieces around its variables (``{{ subject }}``, ``{{ content }}``,
  ``{{ unsubscribe_url }}`` …): its CSS is inlined once with markers where the variables go, and
  its text part is converted once with markers too; an email only joins pieces and values;
* the **body** template gets the layout's CSS inlined into its own tags before it is parsed: each
  start tag receives exactly the ``style`` that css-inline gives that element (asked of
  css-inline itself, tag by tag); the Liquid output then already carries its inline styles.

This is only correct when a tag's computed style cannot depend on where it stands or on data, so
a plan is made only when all of these hold (otherwise the template renders the reference way):
the layout's Liquid is plain ``{{ path }}`` outputs (no tags, no filters) with ``content`` once
in text; no variable inside a tag's ``class``/``id``/``style``, and no Liquid tag inside an HTML
tag; the body has no ``<style>``, ``<link>`` or ``<script>``; every CSS selector is a simple one
(``p``, ``.price``, ``td#x.y``, ``*``) or one that can never match (a combinator whose other part
names a class or id no tag has). And before a plan is trusted, the first email of each template
version is rendered both ways and compared (the HTML after a parse and serialize by the same
HTML5 parser css-inline uses, and the text exactly); a difference drops the plan for good.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import css_inline
from liquid import BoundTemplate, Environment
from liquid.stringify import to_liquid_string
from markupsafe import escape

from personify.messages.compiled import (
    Compiled,
    Fused,
    TrackedCompiled,
    TrackedFused,
    Unsupported,
    compile_body,
    compile_fused,
    compile_fused_tracked,
    compile_text,
    compile_tracked,
)
from personify.messages.links import Links, NotTrackable, anchor_sites, pixel_at
from personify.messages.text import (
    LINK_SLOT,
    SLOT,
    SLOT_END,
    compact_marks,
    link_suffix,
    markup_to_marks,
)

log = logging.getLogger(__name__)

_OUTPUT = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
_PATH = re.compile(r"^\s*([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*)*)\s*$")
_LIQUID = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_START_TAG = re.compile(r"<([A-Za-z][\w:-]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
_ATTR = re.compile(r"""([^\s"'=<>/`]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)
_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_SIMPLE = re.compile(r"(?:[A-Za-z][\w-]*|\*)?(?:[.#][\w-]+)*")
_COMPOUND_NAMES = re.compile(r"[.#]([\w-]+)")
_SLOTTED = re.compile("([" + SLOT + LINK_SLOT + r"])(\d+)" + SLOT_END)
_NO_STYLE_TAGS = {"style", "link", "script", "html", "head", "body", "title", "meta", "base"}
_WRAP: dict[str, tuple[str, str]] = {
    "td": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "th": ("<table><tbody><tr>", "</tr></tbody></table>"),
    "tr": ("<table><tbody>", "</tbody></table>"),
    "tbody": ("<table>", "</table>"),
    "thead": ("<table>", "</table>"),
    "tfoot": ("<table>", "</table>"),
    "caption": ("<table>", "</table>"),
    "colgroup": ("<table>", "</table>"),
    "col": ("<table><colgroup>", "</colgroup></table>"),
}
_PROBE = "data-personify-probe"
CONTENT = "content"
SUBJECT = "subject"

_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
_PARSE_ONLY = css_inline.CSSInliner(
    inline_style_tags=False, keep_style_tags=True, load_remote_stylesheets=False
)


class RenderedLike(Protocol):
    """What :func:`verify_once` compares (a RenderedEmail)."""

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...


class Unplannable(Exception):
    """Why a template renders the reference way (kept for the log; never shown to users)."""


class Fallback(Exception):
    """This email's values need the reference render (a value that is not plain text)."""


def normalized(html: str) -> str:
    """``html`` parsed and serialized by css-inline's HTML5 parser (no CSS applied): two
    documents with the same tree give the same string."""
    return str(_PARSE_ONLY.inline(html))


# ---------------------------------------------------------------------------------------- CSS
def _css_of(html: str) -> str:
    return "\n".join(_STYLE_BLOCK.findall(_HTML_COMMENT.sub("", html)))


def _drop_at_blocks(css: str) -> str:
    """``css`` without ``@media``/``@supports``/``@font-face`` … blocks and ``@import`` lines
    (css-inline inlines none of them, and loads no remote stylesheet)."""
    out: list[str] = []
    i = 0
    while i < len(css):
        at = css.find("@", i)
        if at < 0:
            out.append(css[i:])
            break
        out.append(css[i:at])
        brace, semi = css.find("{", at), css.find(";", at)
        if semi >= 0 and (brace < 0 or semi < brace):  # @import (never loaded), @charset
            i = semi + 1
            continue
        if brace < 0:
            raise Unplannable("an @-rule that does not end")
        depth, j = 0, brace
        while j < len(css):
            if css[j] == "{":
                depth += 1
            elif css[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if depth:
            raise Unplannable("unbalanced braces in CSS")
        i = j + 1
    return "".join(out)


def _check_selectors(css: str, classes: set[str], ids: set[str], dynamic: bool) -> None:
    """Raise Unplannable unless every selector is simple or can never match."""
    rest = _RULE.sub("", _drop_at_blocks(_CSS_COMMENT.sub("", css)))
    if rest.strip():
        raise Unplannable("CSS that is not plain rules")
    for selectors, _ in _RULE.findall(_drop_at_blocks(_CSS_COMMENT.sub("", css))):
        for selector in selectors.split(","):
            sel = selector.strip()
            if sel and _SIMPLE.fullmatch(sel):
                continue
            parts = re.split(r"\s*[>+~]\s*|\s+", sel)
            context = parts[:-1]
            never = not dynamic and any(
                (name not in (classes if mark == "." else ids))
                for part in context
                for mark, name in re.findall(r"([.#])([\w-]+)", part)
            )
            if not never:
                raise Unplannable(f"selector {sel!r} may depend on where a tag stands")


def _names(sources: list[str]) -> tuple[set[str], set[str], bool]:
    """Class tokens and ids in ``sources``' tags; whether any is made by Liquid."""
    classes: set[str] = set()
    ids: set[str] = set()
    dynamic = False
    for source in sources:
        for m in _START_TAG.finditer(source):
            for a in _ATTR.finditer(m.group(2)):
                name = a.group(1).lower()
                value = next((g for g in a.groups()[1:] if g is not None), "")
                if name in ("class", "id") and "{" in value:
                    dynamic = True
                if name == "class":
                    classes.update(value.split())
                elif name == "id":
                    ids.add(value.strip())
    return classes, ids, dynamic


# --------------------------------------------------------------------------------- the body
def _masked(source: str) -> str:
    """``source`` with Liquid markup and HTML comments blanked (same length, same offsets)."""

    def blank(m: re.Match[str]) -> str:
        text = m.group(0)
        kind = "\x01" if text.startswith("{%") else "\x02" if text.startswith("{{") else "\x03"
        return kind * len(text)

    return _LIQUID.sub(blank, _HTML_COMMENT.sub(blank, source))


class _Styler:
    """The ``style`` css-inline gives one element, asked of css-inline, cached by its key."""

    def __init__(self, css: str) -> None:
        self.css = css
        self._cache: dict[tuple[str, str, str, str], str | None] = {}

    def style(self, tag: str, cls: str, ident: str, style: str) -> str | None:
        key = (tag, cls, ident, style)
        if key not in self._cache:
            attrs = "".join(
                f' {n}="{htmllib.escape(v)}"'
                for n, v in (("class", cls), ("id", ident), ("style", style))
                if v
            )
            before, after = _WRAP.get(tag, ("<div>", "</div>"))
            probe = f'{before}<{tag}{attrs} {_PROBE}="">{after}'
            out = str(css_inline.inline_fragment(probe, self.css))
            found = re.search(rf"<{re.escape(tag)}\b[^>]*{_PROBE}[^>]*>", out, re.I)
            if found is None:
                raise Unplannable(f"css-inline does not keep a <{tag}> where it stands")
            m = re.search(r'\sstyle="([^"]*)"', found.group(0))
            self._cache[key] = m.group(1) if m else None
        return self._cache[key]


def inline_body(source: str, css: str) -> str:
    """The body template ``source`` with each start tag's computed ``style`` written in."""
    masked = _masked(source)
    if re.search(r"<(style|link|script)\b", masked, re.I):
        raise Unplannable("the body has its own <style>, <link> or <script>")
    styler = _Styler(css)
    out: list[str] = []
    last = 0
    for m in _START_TAG.finditer(masked):
        tag, inside = m.group(1).lower(), m.group(2)
        if tag in _NO_STYLE_TAGS:
            raise Unplannable(f"a <{tag}> in the body")
        if "\x01" in inside:
            raise Unplannable("a Liquid tag inside an HTML tag")
        attrs: dict[str, tuple[str, int, int]] = {}
        for a in _ATTR.finditer(inside):
            name = a.group(1).lower()
            if "\x02" in name or a.group(4) is not None and "\x02" in a.group(4):
                raise Unplannable("a variable outside a quoted attribute value")
            vi = next((i for i in (2, 3, 4) if a.group(i) is not None), None)
            value = a.group(vi) if vi is not None else ""
            if name in ("class", "id", "style") and "\x02" in value:
                raise Unplannable(f"a variable in a tag's {name}")
            attrs[name] = (htmllib.unescape(value), a.start(), a.end())
        style = styler.style(tag, *(attrs.get(n, ("",))[0] for n in ("class", "id", "style")))
        if style is None:
            continue
        if "{" in style:
            raise Unplannable("a computed style holds '{'")
        start = m.start(2)
        original = source[start : m.end(2)]
        if "style" in attrs:
            _, s0, s1 = attrs["style"]
            original = original[:s0] + original[s1:]
        closing = "/" if original.rstrip().endswith("/") else ""
        kept = original.rstrip()[: len(original.rstrip()) - len(closing)].rstrip()
        out.append(source[last:start])
        out.append(f'{kept} style="{style}"{" /" if closing else ""}')
        last = m.end(2)
    out.append(source[last:])
    return "".join(out)


# ------------------------------------------------------------------------------- the layout
@dataclass(frozen=True)
class _Slot:
    path: tuple[str, ...]
    in_href: bool


def _slots(layout: str) -> tuple[str, list[_Slot]]:
    """The layout with each ``{{ path }}`` replaced by a slot marker, and the slots."""
    if "{%" in layout:
        raise Unplannable("the layout uses Liquid tags")
    slots: list[_Slot] = []
    masked = _masked(layout)
    tags = [(m.start(), m.end(), m.group(0)) for m in _START_TAG.finditer(masked)]

    def where(pos: int) -> str | None:
        """The attribute holding ``pos`` ('' in a tag outside values; None in text)."""
        for start, end, text in tags:
            if start <= pos < end:
                for a in _ATTR.finditer(text):
                    if a.start() <= pos - start < a.end():
                        quoted = a.group(2) is not None or a.group(3) is not None
                        return a.group(1).lower() if quoted else ""
                return ""
        return None

    def replace(m: re.Match[str]) -> str:
        path = _PATH.match(m.group(1))
        if path is None:
            raise Unplannable(f"the layout's output {m.group(0)!r} is not a plain variable")
        attribute = where(m.start())
        if attribute is not None and (attribute in ("", "class", "id", "style")):
            raise Unplannable("a layout variable inside a tag's name, class, id or style")
        parts = tuple(path.group(1).split("."))
        if parts == (CONTENT,) and attribute is not None:
            raise Unplannable("{{ content }} inside a tag")
        slots.append(_Slot(parts, attribute == "href"))
        return f"{SLOT}{len(slots) - 1}{SLOT_END}"

    slotted = _OUTPUT.sub(replace, layout)
    if sum(s.path == (CONTENT,) for s in slots) != 1:
        raise Unplannable("the layout must hold {{ content }} exactly once")
    return slotted, slots


def _split(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, int], ...]]:
    pieces: list[str] = []
    marks: list[tuple[str, int]] = []
    last = 0
    for m in _SLOTTED.finditer(text):
        pieces.append(text[last : m.start()])
        marks.append((m.group(1), int(m.group(2))))
        last = m.end()
    pieces.append(text[last:])
    return tuple(pieces), tuple(marks)


# -------------------------------------------------------------------------- tracked links
@dataclass(frozen=True)
class TrackedLayout:
    """The layout's pieces with its links and the open pixel placed once: ``statics`` around
    ``ops``, each op ``(kind, argument, tail)`` — ``slot`` (a variable), ``content`` (the body),
    ``before`` / ``link`` (a static ``href`` before / after the body), ``slotlink`` (an ``href``
    that is a variable) or ``pixel``."""

    statics: tuple[str, ...]
    ops: tuple[tuple[str, Any, str], ...]
    before: tuple[tuple[str, str], ...]
    """The static links before the body, ``(value, tail)``: signed first (their indices come
    first)."""

    def html(
        self, raw: list[str], body: str | list[str], before: list[str], links: Links
    ) -> tuple[str, ...]:
        """The email's HTML in pieces; ``body`` whole or in pieces."""
        parts = [self.statics[0]]
        b = 0
        for (kind, argument, tail), static in zip(self.ops, self.statics[1:], strict=True):
            if kind == "slot":
                parts.append(str(escape(raw[argument])))
            elif kind == "content":
                if isinstance(body, str):
                    parts.append(body)
                else:
                    parts.extend(body)
            elif kind == "before":
                parts.append(before[b])
                b += 1
            elif kind == "link":
                parts.append(links.href(argument, tail))
            elif kind == "slotlink":
                parts.append(links.href(str(escape(raw[argument])), tail))
            else:
                parts.append(links.pixel())
            parts.append(static)
        return tuple(parts)


def _tracked_layout(inlined: str, slots: list[_Slot]) -> TrackedLayout:
    """The :class:`TrackedLayout` of a slotted, CSS-inlined layout. Raises NotTrackable."""
    content_at = next(
        m.start() for m in _SLOTTED.finditer(inlined) if slots[int(m.group(2))].path == (CONTENT,)
    )
    events: list[tuple[int, int, str, Any, str]] = []
    linked: set[int] = set()
    for start, end, tail in anchor_sites(inlined, _SLOTTED):
        value = inlined[start:end]
        slot = _SLOTTED.fullmatch(value)
        if slot is not None:
            if start < content_at:
                raise NotTrackable("a layout link made of a variable before the content")
            events.append((start, end, "slotlink", int(slot.group(2)), tail))
            linked.add(start)
        elif _SLOTTED.search(value):
            raise NotTrackable("a layout href made of text and variables")
        else:
            events.append((start, end, "before" if start < content_at else "link", value, tail))
    for m in _SLOTTED.finditer(inlined):
        if m.start() not in linked:
            i = int(m.group(2))
            kind = "content" if slots[i].path == (CONTENT,) else "slot"
            events.append((m.start(), m.end(), kind, i, ""))
    at = pixel_at(inlined)
    events.append((at, at, "pixel", None, ""))
    events.sort(key=lambda e: (e[0], e[1]))
    statics: list[str] = []
    ops: list[tuple[str, Any, str]] = []
    last = 0
    for start, end, kind, argument, tail in events:
        if start < last:
            raise NotTrackable("the pixel inside a link or variable")
        statics.append(inlined[last:start])
        ops.append((kind, argument, tail))
        last = end
    statics.append(inlined[last:])
    before = tuple((arg, tail) for kind, arg, tail in ops if kind == "before")
    return TrackedLayout(tuple(statics), tuple(ops), before)


@dataclass
class TrackedPlan:
    """A plan's links found once: the body compiled with its links, the layout's placed."""

    body: TrackedCompiled
    layout: TrackedLayout
    fused: TrackedFused | None = None
    """The body's HTML with its links tracked and its text marks written together (None:
    ``body`` and the plan's ``compiled_text``)."""
    static_pieces: frozenset[str] = frozenset()
    """The layout's and the body's own text among the HTML's pieces (for the MIME writer)."""
    trusted: bool = False
    """Set once the first tracked email equalled its links found in its HTML."""
    dropped: bool = False


# ----------------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """A template version's precomputed layout and pre-inlined body (see the module doc)."""

    body: BoundTemplate
    compiled: Compiled | None
    """``body`` compiled to Python (None when it uses what is not compiled)."""
    compiled_text: Compiled | None
    """The text marks of ``body``'s output, compiled (None when not possible)."""
    slots: tuple[_Slot, ...]
    html_pieces: tuple[str, ...]
    text_pieces: tuple[str, ...]
    text_marks: tuple[tuple[str, int], ...]
    fused: Fused | None = None
    """``compiled`` and ``compiled_text`` as one function (None when either is None)."""
    static_pieces: frozenset[str] = frozenset()
    """The layout's and the body's own text among the HTML's pieces (for the MIME writer)."""
    trusted: bool = False
    """Set once the first email rendered both ways agreed."""
    dropped: bool = False
    tracked: TrackedPlan | None = None
    """The links found once (None: an email's links are found in its HTML)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def values(self, context: Mapping[str, Any], subject: str) -> list[str]:
        """Each slot's raw text (``content`` is filled by the caller). Raises Fallback."""
        out: list[str] = []
        for slot in self.slots:
            if slot.path == (CONTENT,):
                out.append("")
                continue
            if slot.path == (SUBJECT,):
                out.append(subject)
                continue
            value: Any = context
            for name in slot.path:
                if not isinstance(value, Mapping) or name not in value:
                    raise Fallback
                value = value[name]
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise Fallback
            out.append(to_liquid_string(value, False))
        return out

    def html(self, raw: list[str], body: str | list[str]) -> tuple[str, ...]:
        """The email's HTML in pieces: the layout's static ones and the values between (the
        body whole or in pieces)."""
        parts = [self.html_pieces[0]]
        for i, slot in enumerate(self.slots):
            if slot.path != (CONTENT,):
                parts.append(str(escape(raw[i])))
            elif isinstance(body, str):
                parts.append(body)
            else:
                parts.extend(body)
            parts.append(self.html_pieces[i + 1])
        return tuple(parts)

    def text_marks_of(self, raw: list[str], body_marks: str) -> str:
        parts = [self.text_pieces[0]]
        for (kind, i), piece in zip(self.text_marks, self.text_pieces[1:], strict=True):
            slot = self.slots[i]
            if slot.path == (CONTENT,):
                parts.append(body_marks)
            elif kind == LINK_SLOT:
                parts.append(link_suffix(raw[i]))
            elif slot.in_href:
                parts.append(raw[i].replace("<", "&lt;"))
            else:
                parts.append(str(escape(raw[i])))
            parts.append(piece)
        return "".join(parts)


def make_plan(
    env: Environment, body_source: str, layout_html: str, name: str
) -> tuple[Plan | None, str]:
    """A plan for a body in a compiled layout, or ``(None, why)``."""
    try:
        slotted, slots = _slots(layout_html)
        css = _css_of(layout_html)
        classes, ids, dynamic = _names([body_source, layout_html])
        _check_selectors(css, classes, ids, dynamic)
        inlined_layout = str(_INLINER.inline(slotted))
        html_pieces, html_marks = _split(inlined_layout)
        if [i for _, i in html_marks] != list(range(len(slots))):
            raise Unplannable("css-inline moved a layout variable")
        text_pieces, text_marks = _split(compact_marks(markup_to_marks(inlined_layout)))
        if not any(slots[i].path == (CONTENT,) for _, i in text_marks):
            raise Unplannable("{{ content }} is not in the layout's text")
        body = env.from_string(inline_body(body_source, css), name=name)
    except Unplannable as e:
        return None, str(e)
    compiled: Compiled | None = None
    compiled_text: Compiled | None = None
    tracked: TrackedPlan | None = None
    fused: tuple[Fused, frozenset[str]] | None = None
    try:
        compiled = compile_body(body)
        compiled_text = compile_text(body)
        fused = compile_fused(body)
        layout = _tracked_layout(inlined_layout, slots)
        fused_tracked, statics = compile_fused_tracked(body)
        tracked = TrackedPlan(compile_tracked(body), layout, fused_tracked)
        tracked.static_pieces = frozenset(layout.statics) | statics
    except (Unsupported, NotTrackable) as e:
        log.info("template %s: body or links not compiled (%s)", name, e)
    plan = Plan(body, compiled, compiled_text, tuple(slots), html_pieces, text_pieces, text_marks)
    if fused is not None:
        plan.fused, statics = fused
        plan.static_pieces = frozenset(html_pieces) | statics
    plan.tracked = tracked
    return plan, ""


def verify_links(plan: Plan, name: str, fast: RenderedLike, expected: RenderedLike) -> bool:
    """Compare an email whose links were found once with the same email whose links were found
    in its HTML (the first tracked email of a template version): the same bytes, or the
    template's links are found per email from now on."""
    tracked = plan.tracked
    assert tracked is not None
    with plan._lock:
        if tracked.trusted or tracked.dropped:
            return tracked.trusted
        if fast.html == expected.html and fast.text == expected.text:
            tracked.trusted = True
        else:
            tracked.dropped = True
            log.warning("template %s: links found once differ; finding them per email", name)
        return tracked.trusted


def verify_once(plan: Plan, name: str, fast: RenderedLike, reference: RenderedLike) -> bool:
    """Compare the plan's email with the reference render's (the first one of a template
    version); ``False`` drops the plan for good."""
    with plan._lock:
        if plan.trusted or plan.dropped:
            return plan.trusted
        if normalized(fast.html) == normalized(reference.html) and fast.text == reference.text:
            plan.trusted = True
        else:
            plan.dropped = True
            log.warning("template %s: the fast render differs; using the reference render", name)
        return plan.trusted
