"""Link rewriting and the open pixel, at send time.

Every ``<a href="http(s)://…">`` of the HTML part becomes ``{base}/c/{token}``, the token signed
with the link's position and its target; the open pixel ``{base}/o/{token}.gif`` goes just
before ``</body>``. Left alone: unsubscribe links (``email.unsubscribe_url`` or any path with
``/unsubscribe``), preference page links (``{{ preferences_url }}``: under
``email.preferences_url`` or its default), ``mailto:`` / ``tel:`` / ``#`` links, anything not
absolute http(s), and links marked ``data-track="false"``. The plain-text part is not rewritten
(on purpose: there the URL is the link's text). A template with ``tracking: false`` in its front
matter (or ``engagement.tracking: false`` for the project) is sent as rendered.

:func:`message_links` is what :func:`personify.delivery.prepare_one` hands the renderer: when a
template version's links were found once (:mod:`personify.messages.links`), the renderer asks it
only to sign each link as it writes it; otherwise :func:`instrument` finds them in the rendered
HTML. Both apply the same rules and give the same bytes (the renderer compares them on the first
email of each template version).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import re
from collections.abc import Callable

from personify.config import Project
from personify.engagement.tokens import _CONTROL, ClickSigner, safe_target
from personify.messages import RenderedEmail
from personify.messages.links import ANCHOR as _ANCHOR
from personify.messages.links import HREF as _HREF
from personify.messages.links import NO_TRACK as _NO_TRACK
from personify.messages.links import pixel_at


def base_url(project: Project) -> str:
    """Where ``personify serve`` answers the tracking routes (no trailing slash)."""
    return _base(project.config.engagement.base_url, project.config.email.unsubscribe_url)


@functools.lru_cache(maxsize=64)
def _base(configured: str | None, unsubscribe: str) -> str:
    if configured:
        return configured.rstrip("/")
    scheme, sep, rest = unsubscribe.partition("://")
    host = rest.split("/", 1)[0]
    return f"{scheme}{sep}{host}" if sep else unsubscribe.rstrip("/")


def _skipped(url: str, unsubscribe_url: str, preferences_url: str) -> bool:
    lowered = url.lower()
    if not lowered.startswith(("https://", "http://")) or not safe_target(url):
        return True  # mailto:, tel:, #anchors, relative, javascript:
    if unsubscribe_url and url.startswith(unsubscribe_url):
        return True
    if preferences_url and url.startswith(preferences_url):
        return True
    return "/unsubscribe" in lowered


def rewrite_links(
    document: str,
    wrap: Callable[[int, str], str],
    unsubscribe_url: str = "",
    preferences_url: str = "",
) -> tuple[str, list[str]]:
    """``document`` with each trackable link's target replaced by ``wrap(index, url)``; and the
    targets, by index. Links under ``unsubscribe_url`` or ``preferences_url`` stay as written."""
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
        if _skipped(url, unsubscribe_url, preferences_url):
            return tag
        new = html.escape(wrap(len(targets), url), quote=True)
        targets.append(url)
        return f'{tag[: found.start()]}{found.group(1)}"{new}"{tag[found.end() :]}'

    return _ANCHOR.sub(anchor, document), targets


def _pixel(src: str) -> str:
    return (
        f'<img src="{html.escape(src, quote=True)}" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )


@functools.lru_cache(maxsize=64)
def _escaped(base: str) -> str:
    return html.escape(base, quote=True)


def _pixel_html(escaped_base: str, token: str) -> str:
    """:func:`_pixel` of ``{base}/o/{token}.gif`` (a token needs no escaping)."""
    return (
        f'<img src="{escaped_base}/o/{token}.gif" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px" />'
    )


def add_pixel(document: str, src: str) -> str:
    """``document`` with a 1×1 image of ``src`` before ``</body>`` (or at the end)."""
    at = pixel_at(document)
    return document[:at] + _pixel(src) + document[at:]


@functools.lru_cache(maxsize=1024)
def _tail_untracked(tail: str) -> bool:
    return _NO_TRACK.search(tail) is not None


class _Links:
    """One rendering's tracked links, numbered from 0 (:class:`personify.messages.links.Links`)."""

    __slots__ = ("_message", "count")

    def __init__(self, message: MessageLinks) -> None:
        self._message = message
        self.count = 0

    def href(self, escaped: str, tail: str) -> str:
        # as rewrite_links sees the whole tag: the tail alone (static, so cached), or a match
        # starting in the value (it can reach at most '"false' into the tail)
        if _tail_untracked(tail) or (
            "data-track" in escaped.lower() and _NO_TRACK.search(escaped + tail[:8])
        ):
            return escaped
        url = (html.unescape(escaped) if "&" in escaped else escaped).strip()
        message = self._message
        lowered = url.lower()  # _skipped(url, message's two urls), written out
        if (
            not lowered.startswith(("https://", "http://"))
            or _CONTROL.search(url) is not None
            or "/unsubscribe" in lowered
            or (message.unsubscribe_url and url.startswith(message.unsubscribe_url))
            or (message.preferences_url and url.startswith(message.preferences_url))
        ):
            return escaped
        index = self.count
        self.count += 1
        # html.escape(wrap(...)): the token is base64url, dots and digits (nothing to escape)
        return f"{message.click_base}{message.signer(index, url)}"

    def pixel(self) -> str:
        return self._message.pixel_html


class MessageLinks:
    """The link tracking of one message (:class:`personify.messages.render.Tracking`): its
    click signer (the message's key derived once) and open pixel, made once per email."""

    def __init__(self, project: Project, *, key: str, customer_id: str, signing_key: bytes) -> None:
        self.base = base_url(project)
        self.click_base = _escaped(self.base) + "/c/"
        self.unsubscribe_url = project.config.email.unsubscribe_url
        self.preferences_url = project.config.email.preferences_base
        self.signer = ClickSigner(signing_key, key, customer_id)
        self.pixel_html = _pixel_html(_escaped(self.base), self.signer.open)

    def wrap(self, index: int, url: str) -> str:
        """The tracked address of link number ``index`` going to ``url``."""
        return f"{self.base}/c/{self.signer(index, url)}"

    def links(self) -> _Links:
        return _Links(self)

    def instrument(self, email: RenderedEmail) -> RenderedEmail:
        """``email`` with its links found in its HTML and tracked, and the pixel added."""
        document, _ = rewrite_links(
            email.html, self.wrap, self.unsubscribe_url, self.preferences_url
        )
        at = pixel_at(document)
        document = document[:at] + self.pixel_html + document[at:]
        return dataclasses.replace(email, html=document, html_pieces=())


def message_links(
    project: Project, *, key: str, customer_id: str, signing_key: bytes
) -> MessageLinks:
    """The link tracking of message ``key`` to ``customer_id`` (give it to
    :func:`personify.messages.render`; the caller checks that tracking is on)."""
    return MessageLinks(project, key=key, customer_id=customer_id, signing_key=signing_key)


def instrument(
    project: Project, email: RenderedEmail, *, key: str, customer_id: str, signing_key: bytes
) -> RenderedEmail:
    """``email`` with its links tracked and the open pixel added (the caller checks that
    tracking is on for the template)."""
    links = message_links(project, key=key, customer_id=customer_id, signing_key=signing_key)
    return links.instrument(email)


def tracking_on(project: Project, template_tracking: bool) -> bool:
    """Whether an email of a template is tracked: the project's switch and the template's."""
    return project.config.engagement.tracking and template_tracking
