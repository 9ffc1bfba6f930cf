"""Link rewriting and the open pixel, at send time (after rendering, before MIME).

Every ``<a href="http(s)://…">`` of the HTML part becomes ``{base}/c/{token}``, the token signed
with the link's position and its target; the open pixel ``{base}/o/{token}.gif`` goes just
before ``</body>``. Left alone: unsubscribe links (``email.unsubscribe_url`` or any path with
``/unsubscribe``), ``mailto:`` / ``tel:`` / ``#`` links, anything not absolute http(s), and links
marked ``data-track="false"``. The plain-text part is not rewritten. A template with
``tracking: false`` in its front matter (or ``engagement.tracking: false`` for the project) is
sent as rendered.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Callable

from personify.config import Project
from personify.engagement.tokens import safe_target, sign_click, sign_open
from personify.messages import RenderedEmail

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""(\shref\s*=\s*)(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
_NO_TRACK = re.compile(r"""\sdata-track\s*=\s*["']?false""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def base_url(project: Project) -> str:
    """Where ``personify serve`` answers the tracking routes (no trailing slash)."""
    configured = project.config.engagement.base_url
    if configured:
        return configured.rstrip("/")
    unsubscribe = project.config.email.unsubscribe_url
    scheme, sep, rest = unsubscribe.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}{sep}{host}" if sep else unsubscribe.rstrip("/")


def _skipped(url: str, unsubscribe_url: str) -> bool:
    if not safe_target(url):  # mailto:, tel:, #anchors, relative, javascript:
        return True
    if unsubscribe_url and url.startswith(unsubscribe_url):
        return True
    return "/unsubscribe" in url.lower()


def rewrite_links(
    document: str, wrap: Callable[[int, str], str], unsubscribe_url: str = ""
) -> tuple[str, list[str]]:
    """``document`` with each trackable link's target replaced by ``wrap(index, url)``; and the
    targets, by index."""
    targets: list[str] = []

    def anchor(m: re.Match[str]) -> str:
        tag = m.group(0)
        if _NO_TRACK.search(tag):
            return tag
        found = _HREF.search(tag)
        if found is None:
            return tag
        raw = found.group(2) if found.group(2) is not None else found.group(3)
        url = html.unescape(raw).strip()
        if _skipped(url, unsubscribe_url):
            return tag
        new = html.escape(wrap(len(targets), url), quote=True)
        targets.append(url)
        return f'{tag[: found.start()]}{found.group(1)}"{new}"{tag[found.end() :]}'

    return _ANCHOR.sub(anchor, document), targets


def add_pixel(document: str, src: str) -> str:
    """``document`` with a 1×1 image of ``src`` before ``</body>`` (or at the end)."""
    img = (
        f'<img src="{html.escape(src, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )
    matches = list(_BODY_END.finditer(document))
    if not matches:
        return document + img
    at = matches[-1].start()
    return document[:at] + img + document[at:]


def instrument(
    project: Project, email: RenderedEmail, *, key: str, customer_id: str, signing_key: bytes
) -> RenderedEmail:
    """``email`` with its links tracked and the open pixel added (the caller checks that
    tracking is on for the template)."""
    base = base_url(project)

    def wrap(index: int, url: str) -> str:
        return f"{base}/c/{sign_click(signing_key, key, customer_id, index, url)}"

    document, _ = rewrite_links(email.html, wrap, project.config.email.unsubscribe_url)
    document = add_pixel(document, f"{base}/o/{sign_open(signing_key, key, customer_id)}.gif")
    return dataclasses.replace(email, html=document, html_pieces=())


def tracking_on(project: Project, template_tracking: bool) -> bool:
    """Whether an email of a template is tracked: the project's switch and the template's."""
    return project.config.engagement.tracking and template_tracking
