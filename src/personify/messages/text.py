"""The plain-text part, generated from the final HTML."""

from __future__ import annotations

import html as htmllib
import re

_ATTRS = r"""(?:[^>"']|"[^"]*"|'[^']*')*"""
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
_SPACE = re.compile(r"[ \t\r\f\v]+")
_MARK = "\x00"  # stands for a line break chosen by a tag, not by the source's whitespace


def _link(m: re.Match[str]) -> str:
    href_m = _HREF.search(m.group(1))
    text = m.group(2)
    if href_m is None:
        return text
    href = htmllib.unescape(next(g for g in href_m.groups() if g is not None))
    if href.startswith(("http://", "https://", "mailto:")):
        return f"{text} ({href.replace('<', '&lt;')})"
    return text


def _alt(m: re.Match[str]) -> str:
    alt = _ALT.search(m.group(1))
    if alt is None:
        return ""
    return f"[{alt.group(1) if alt.group(1) is not None else alt.group(2)}]"


def html_to_text(html: str) -> str:
    """Readable text from HTML: blocks on their own lines, links as ``text (url)``."""
    s = _DROP.sub("", html)
    s = _LINK.sub(_link, s)
    s = _IMG.sub(_alt, s)
    s = _BR.sub(_MARK, s)
    s = _BLOCK.sub(_MARK * 2, s)
    s = _LI.sub(_MARK + "- ", s)
    s = _TD.sub(" ", s)
    s = _TAG.sub("", s)
    s = _SPACE.sub(" ", s.replace("\n", " "))
    s = htmllib.unescape(s)
    lines = [line.strip() for line in s.split(_MARK)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text + "\n"
