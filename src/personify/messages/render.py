"""Rendering one email: body, layout, inlined CSS, subject and plain-text part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Protocol, overload

import css_inline
from liquid import BoundTemplate, Markup
from liquid.exceptions import LiquidError

from personify.messages.errors import RenderError
from personify.messages.labels import TEMPLATE_LOCALE, localize
from personify.messages.links import Links
from personify.messages.liquid_env import translate
from personify.messages.plan import Fallback, Plan, verify_links, verify_once
from personify.messages.templates import Template
from personify.messages.text import html_to_text, marks_to_text, markup_to_marks

_WS = re.compile(r"\s+")
_STYLE_ATTR = re.compile(r'\sstyle="[^"]*"')  # inlined styles; no part of the text
_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    """What a template made for one customer: ready for MIME."""

    template: str
    version: str
    subject: str
    html: str
    text: str
    html_pieces: tuple[str, ...] = ()
    """``html`` in pieces (their join is ``html``) when it was made of a layout's static pieces:
    the even-numbered ones are static — the same objects for every email of a template version,
    so the MIME writer encodes them once — and the odd-numbered ones the values between. Empty
    when not known."""
    static_pieces: AbstractSet[str] = frozenset()
    """Which of ``html_pieces`` are the template's own text, wherever they stand (then the
    even-numbered rule above does not apply): the MIME writer encodes those once and joins
    the rest between them."""


class Tracking(Protocol):
    """An email's link tracking, as the sender makes it per message
    (:func:`personify.engagement.links.message_links`)."""

    def links(self) -> Links:
        """A fresh :class:`~personify.messages.links.Links` (its link indices from 0)."""
        ...

    def instrument(self, email: RenderedEmail) -> RenderedEmail:
        """``email`` with its links found in its HTML and rewritten, and the pixel added."""
        ...


def render(
    template: Template, context: Mapping[str, Any], tracking: Tracking | None = None
) -> RenderedEmail:
    """Render ``template`` with ``context``. Raises :class:`RenderError`, never renders blank.

    Through the template's plan when it has one (the same email, made faster — see
    :mod:`personify.messages.plan`), else the reference way. With ``tracking``, the email's
    links are tracked: found once per template version when the plan could place them (the
    first email of a version is also tracked the generic way and compared), else found in
    each email's HTML by ``tracking.instrument``. Words the email prints for the project (a
    discount's ``label``, dates, amounts) are in the template's language
    (:func:`~personify.messages.labels.localize`)."""
    context = localized(template, context)
    if tracking is None:
        return _render(template, context)
    plan = template.plan
    tracked = plan.tracked if plan is not None else None
    if plan is None or plan.dropped or tracked is None or tracked.dropped:
        return tracking.instrument(_render(template, context))
    try:
        fast = _render_planned(template, plan, context, tracking.links())
    except Fallback:
        return tracking.instrument(render_reference(template, context))
    if fast is not None and plan.trusted and tracked.trusted:
        return fast
    expected = tracking.instrument(_render(template, context))
    if fast is None or not plan.trusted:
        return expected
    return fast if verify_links(plan, template.name, fast, expected) else expected


def _render(template: Template, context: Mapping[str, Any]) -> RenderedEmail:
    plan = template.plan
    if plan is None or plan.dropped:
        return render_reference(template, context)
    try:
        fast = _render_planned(template, plan, context)
    except Fallback:
        return render_reference(template, context)
    if plan.trusted:
        return fast
    reference = render_reference(template, context)
    return fast if verify_once(plan, template.name, fast, reference) else reference


def _body(template: Template, body: BoundTemplate, context: Mapping[str, Any]) -> str:
    try:
        return body.render(**context)
    except LiquidError as e:
        raise translate(e, template.file, template.body_line_offset) from None


def _planned_body(template: Template, plan: Plan, context: Mapping[str, Any]) -> str:
    """The plan's body by python-liquid; an error is the reference render's to raise (the plan's
    body has its partials placed in it: its lines are not the template's)."""
    try:
        return plan.body.render(**context)
    except LiquidError:
        raise Fallback from None


def _subject(template: Template, context: Mapping[str, Any]) -> str:
    compiled = template.subject_compiled
    if template.subject_compiled_from is not template.subject:
        compiled = None  # a copy with another subject (a journey variant's)
    subject = compiled(context) if compiled is not None else None
    if subject is None:  # not compiled, or this context needs python-liquid
        try:
            subject = template.subject.render(**context)
        except LiquidError as e:
            raise translate(e, f"{template.file.removesuffix('.liquid')} subject") from None
    subject = _WS.sub(" ", subject).strip()
    if not subject:
        raise RenderError("the subject rendered empty", template=template.file)
    return subject


@overload
def _render_planned(
    template: Template, plan: Plan, context: Mapping[str, Any], links: None = None
) -> RenderedEmail: ...


@overload
def _render_planned(
    template: Template, plan: Plan, context: Mapping[str, Any], links: Links
) -> RenderedEmail | None: ...


def _render_planned(
    template: Template, plan: Plan, context: Mapping[str, Any], links: Links | None = None
) -> RenderedEmail | None:
    """The planned email; with ``links`` (the plan has ``tracked``) its links tracked — or None
    when this context needs python-liquid (the caller then tracks the generic way)."""
    before: list[str] = []
    parts: list[str] | None = None  # the body in pieces (its text and values), when known
    static: frozenset[str] = frozenset()
    marks: str | None = None
    if links is None:
        if plan.fused is not None:  # HTML and text marks from one function
            done = plan.fused(context)
            if done is not None:
                body, parts, marks = done
                static = plan.static_pieces
            else:  # this context needs python-liquid (the text: from its HTML)
                body = _planned_body(template, plan, context)
                marks = markup_to_marks(_STYLE_ATTR.sub("", body))
        else:
            compiled = plan.compiled(context) if plan.compiled is not None else None
            # None: not compiled, or this context needs python-liquid (e.g. an error)
            body = compiled if compiled is not None else _planned_body(template, plan, context)
    else:
        tracked = plan.tracked
        assert tracked is not None
        before = [links.href(value, tail) for value, tail in tracked.layout.before]
        if tracked.fused is not None:
            done = tracked.fused(context, links.href)
            if done is None:
                return None
            body, parts, marks = done
            static = tracked.static_pieces
        else:
            tracked_body = tracked.body(context, links.href)
            if tracked_body is None:
                return None
            body = tracked_body
    subject = _subject(template, context)
    raw = plan.values(context, subject)
    if not body.strip():
        raise RenderError("the body rendered empty", template=template.file)
    if marks is None and plan.compiled_text is not None:
        marks = plan.compiled_text(context)
    if links is None:
        pieces = plan.html(raw, body if parts is None else parts)
        if marks is None:
            marks = markup_to_marks(_STYLE_ATTR.sub("", body))
    else:
        assert plan.tracked is not None
        if marks is None:  # the text of a tracked body would show the tracked links
            return None
        pieces = plan.tracked.layout.html(raw, body if parts is None else parts, before, links)
    text = marks_to_text(plan.text_marks_of(raw, marks))
    html = "".join(pieces)
    return RenderedEmail(template.name, template.version, subject, html, text, pieces, static)


def localized(template: Template, context: Mapping[str, Any]) -> Mapping[str, Any]:
    """``context`` with the words it gives in ``template``'s language (its variant's, else the
    project's ``email.default_locale``; a discount's expiry printing its day in the customer's
    zone, else the project's ``timezone``) — once: a context already done is kept. What renders
    for the email before its body (connected content's URLs) renders with it too, so it writes
    in the email's language."""
    if TEMPLATE_LOCALE in context:
        return context
    env = template.body.env
    default = getattr(env, "default_locale", None)
    return localize(context, template.language or default, getattr(env, "default_timezone", None))


def render_reference(template: Template, context: Mapping[str, Any]) -> RenderedEmail:
    """Render the straightforward way: body, layout, the whole document's CSS inlined, text."""
    context = localized(template, context)
    name = template.file
    body = _body(template, template.body, context)
    subject = _subject(template, context)
    html = body
    if template.layout is not None:
        layout_name = template.layout_name or name
        try:
            html = template.layout.render(
                **{**context, "subject": subject, "content": Markup(body)}
            )
        except LiquidError as e:
            raise translate(e, layout_name) from None
    if not body.strip():
        raise RenderError("the body rendered empty", template=name)
    try:
        html = _INLINER.inline(html)
    except (css_inline.InlineError, ValueError) as e:
        raise RenderError(f"CSS could not be inlined: {e}", template=name) from None
    return RenderedEmail(template.name, template.version, subject, html, html_to_text(html))
