"""Rendering one email: body, layout, inlined CSS, subject and plain-text part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
from liquid import BoundTemplate, Markup
from liquid.exceptions import LiquidError

from personify.messages.errors import RenderError
from personify.messages.liquid_env import translate
from personify.messages.plan import Fallback, Plan, verify_once
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


def render(template: Template, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``template`` with ``context``. Raises :class:`RenderError`, never renders blank.

    Through the template's plan when it has one (the same email, made faster — see
    :mod:`personify.messages.plan`), else the reference way."""
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
        raise translate(e, f"{template.name}.liquid", template.body_line_offset) from None


def _subject(template: Template, context: Mapping[str, Any]) -> str:
    try:
        subject = template.subject.render(**context)
    except LiquidError as e:
        raise translate(e, f"{template.name} subject") from None
    subject = _WS.sub(" ", subject).strip()
    if not subject:
        raise RenderError("the subject rendered empty", template=f"{template.name}.liquid")
    return subject


def _render_planned(template: Template, plan: Plan, context: Mapping[str, Any]) -> RenderedEmail:
    body = plan.compiled(context) if plan.compiled is not None else None
    if body is None:  # not compiled, or this context needs python-liquid (e.g. an error)
        body = _body(template, plan.body, context)
    subject = _subject(template, context)
    raw = plan.values(context, subject)
    if not body.strip():
        raise RenderError("the body rendered empty", template=f"{template.name}.liquid")
    pieces = plan.html(raw, body)
    marks = plan.compiled_text(context) if plan.compiled_text is not None else None
    if marks is None:
        marks = markup_to_marks(_STYLE_ATTR.sub("", body))
    text = marks_to_text(plan.text_marks_of(raw, marks))
    return RenderedEmail(template.name, template.version, subject, "".join(pieces), text, pieces)


def render_reference(template: Template, context: Mapping[str, Any]) -> RenderedEmail:
    """Render the straightforward way: body, layout, the whole document's CSS inlined, text."""
    name = f"{template.name}.liquid"
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
