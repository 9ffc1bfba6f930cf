"""The plain-text part, generated from the final HTML."""

from __future__ import annotations

import html as htmllib
import re

_ATTRS = r"""[^>"']*(?:(?:"[^"]*"|'[^']*')[^>"']*)*"""  # unrolled: no per-character alternation
_DROP = re.compile(
    r"<!--.*?-->|<(head|style|script|title)\b" + _ATTRS + r">.*?</\1\s*>", re.S | re.I
)
_LINK = re.compile(r"<a\b(" + _ATTRS + r")>(.*?)</a\s*>", re.S | re.I)
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_IMG = re.compile(r"<img\b(" + _ATTRS + r")>", re.I)
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)
_BR = re.compile(r"<br\b" + _ATTRS + r">", re.I)
_BLOCK = re.compile(r"</?(?:p|div|table|tr|h[1-6]|ul|ol|section)\b" + _ATTRS + r">", re.I)
_LI = re.compile(r"<li\b" + _ATTRS + r">", re.I)
_TD = re.compile(r"<td\b" + _ATTRS + r">", re.I)
_TAG = re.compile(r"</?[A-Za-z!?/]" + _ATTRS + ">")
_SPACE = re.compile(r"[ \t\n\r\f\v]+")
_SPACES = re.compile(r"[\t\n\r\f\v][ \t\n\r\f\v]*| [ \t\n\r\f\v]+")
"""What ``_SPACE.sub(" ", …)`` changes: every run but a lone space (most gaps between words)."""
_BREAKS = re.compile(r"[ \t\n\r\f\v]*(?:\x00[ \t\n\r\f\v]*){2,}")
_BREAK = re.compile(r"[ \t\n\r\f\v]*\x00[ \t\n\r\f\v]*")
_BLANKS = re.compile(r"\n{3,}")
_MARK = "\x00"  # stands for a line break chosen by a tag, not by the source's whitespace


SLOT = "\ue000"
"""Opens a slot marker ``SLOT + index + SLOT_END`` standing for a value not known yet (a layout
is converted once with markers where its variables go; see :mod:`personify.messages.plan`)."""
SLOT_END = "\ue001"
LINK_SLOT = "\ue002"
"""A link whose ``href`` is a slot becomes ``text`` + ``LINK_SLOT + index + SLOT_END``: the
`` (url)`` part depends on the value (shown for http(s) and mailto links only)."""
_SLOT_AT_START = re.compile(SLOT + r"(\d+)" + SLOT_END)


def _link(m: re.Match[str]) -> str:
    href_m = _HREF.search(m.group(1))
    text = m.group(2)
    if href_m is None:
        return text
    href = htmllib.unescape(next(g for g in href_m.groups() if g is not None))
    if href.startswith(("http://", "https://", "mailto:")):
        return f"{text} ({href.replace('<', '&lt;')})"
    slot = _SLOT_AT_START.match(href)
    if slot is not None and slot.end() == len(href):
        return f"{text}{LINK_SLOT}{slot.group(1)}{SLOT_END}"
    return text


def link_suffix(url: str) -> str:
    """What a link to ``url`` adds after its text (the value of a ``LINK_SLOT``)."""
    if url.startswith(("http://", "https://", "mailto:")):
        return f" ({url.replace('<', '&lt;')})"
    return ""


def _alt(m: re.Match[str]) -> str:
    alt = _ALT.search(m.group(1))
    if alt is None:
        return ""
    value = alt.group(1) if alt.group(1) is not None else alt.group(2)
    return f"[{value.replace('<', '&lt;')}]"  # an HTML5 serializer leaves '<' in attributes


def markup_to_marks(html: str) -> str:
    """Step one of :func:`html_to_text`: hidden parts dropped, links, images, line and block
    breaks turned into text and marks, tags removed. Local to each piece of markup (no match
    crosses a block's text), so pieces can be converted apart and joined."""
    s = _DROP.sub("", html)
    s = _LINK.sub(_link, s)
    s = _IMG.sub(_alt, s)
    s = _BR.sub(_MARK, s)
    s = _BLOCK.sub(_MARK * 2, s)
    s = _LI.sub(_MARK + "- ", s)
    s = _TD.sub(" ", s)
    return _TAG.sub("", s)


def marks_to_text(s: str) -> str:
    """Step two of :func:`html_to_text`: whitespace collapsed, entities decoded, lines."""
    # each regular expression runs only when it can match: they try every position of the text
    # (~15 µs each per email), a substring test costs ~0.2 µs
    if "\t" in s or "\n" in s or "\r" in s or "\f" in s or "\v" in s or "  " in s:
        s = _SPACES.sub(" ", s)
    if "&" in s:
        s = htmllib.unescape(s)
        if "\n" in s:  # an entity made a line break inside a line
            lines = [line.strip() for line in s.split(_MARK)]
            return _BLANKS.sub("\n\n", "\n".join(lines)).strip() + "\n"
    lines = [line.strip() for line in s.split(_MARK)]
    # no line holds a line break: runs of three or more become two where empty lines repeat
    kept = [line for line, before in zip(lines, ["", *lines], strict=False) if line or before]
    return "\n".join(kept).strip() + "\n"


def compact_marks(s: str) -> str:
    """Marks from :func:`markup_to_marks` with the same text after :func:`marks_to_text`, but
    shorter: breaks lose the blanks around them (lines are stripped) and runs of two or more
    breaks become two (more blank lines are squeezed anyway), other blanks one space. Still true
    when joined with other marks, so a layout's pieces are compacted once."""
    return _SPACE.sub(" ", _BREAK.sub(_MARK, _BREAKS.sub(_MARK * 2, s)))


def html_to_text(html: str) -> str:
    """Readable text from HTML: blocks on their own lines, links as ``text (url)``."""
    return marks_to_text(markup_to_marks(html))
