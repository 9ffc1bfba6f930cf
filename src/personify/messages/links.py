"""Where an email's tracked links and open pixel go — found once per template version.

Link tracking (:mod:`personify.engagement.links`) rewrites each ``<a href="http(s)://…">`` of an
email's HTML to a signed redirect and adds an open pixel before the last ``</body>``. The rules
(these regular expressions) live here, where the renderer can apply them to a template's static
text once, when a version is planned: each link's ``href`` is then either static text or exactly
one output, and an email only signs its links (:class:`Links`) instead of searching its whole
HTML for them. :func:`anchor_sites` finds the links of a template's text in which outputs and
control flow are replaced by marker characters; anything it cannot decide once and for all
raises :class:`NotTrackable` and that template's links are rewritten per email, as before.
"""

from __future__ import annotations

import re
from typing import Protocol

ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
"""A link's start tag."""
HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
"""Its (first) quoted ``href``."""
NO_TRACK = re.compile(r"""\sdata-track\s*=\s*["']?false""", re.IGNORECASE)
"""A link its author asked not to track."""
BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)
"""The pixel goes before the last one (or at the end)."""
_OPEN_ANCHOR_AT_END = re.compile(r"<a\b[^>]*$", re.IGNORECASE)


class NotTrackable(Exception):
    """Where a template's links are cannot be decided once (they are found per email)."""


class Links(Protocol):
    """One email's link tracking, made per message by the sender
    (:func:`personify.engagement.links.message_links`)."""

    def href(self, escaped: str, tail: str) -> str:
        """What to write for an ``href`` whose value, as written, is ``escaped`` in a tag that
        continues with ``tail`` (from the closing quote): the tracked link (the next index), or
        ``escaped`` itself when the link is not tracked."""
        ...

    def pixel(self) -> str:
        """The open pixel's ``<img>``."""
        ...


def anchor_sites(text: str, markers: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """The tracked-link candidates of ``text`` (where ``markers`` match outputs and control
    flow): ``(start, end, tail)`` of each ``href`` value, in order; ``tail`` is the rest of its
    tag. Raises NotTrackable when a marker stands elsewhere in a link's tag or an ``href`` is
    single-quoted."""
    out: list[tuple[int, int, str]] = []
    if _OPEN_ANCHOR_AT_END.search(text):
        raise NotTrackable("a link tag that does not end")
    for m in ANCHOR.finditer(text):
        tag = m.group(0)
        if NO_TRACK.search(tag):  # never tracked, whatever its outputs are
            continue
        found = HREF.search(tag)
        if found is None:
            if markers.search(tag):
                raise NotTrackable("an output in a link's tag without a quoted href")
            continue
        if found.group(2) is None:
            raise NotTrackable("a single-quoted href")
        if markers.search(tag[: found.start(2)] + tag[found.end(2) :]):
            raise NotTrackable("an output or control flow in a link's tag outside its href")
        start, end = m.start() + found.start(2), m.start() + found.end(2)
        out.append((start, end, text[end : m.end()]))
    return out


def pixel_at(text: str) -> int:
    """Where the open pixel goes in ``text``: before its last ``</body>``, else at the end."""
    last = None
    for last in BODY_END.finditer(text):  # noqa: B007 - the last one
        pass
    return last.start() if last is not None else len(text)
