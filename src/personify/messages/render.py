"""Rendering one email: body, layout, inlined CSS, subject and plain-text part."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import css_inline
from liquid import Markup
from liquid.exceptions import LiquidError

from personify.messages.errors import RenderError
from personify.messages.liquid_env import translate
from personify.messages.templates import Template
from personify.messages.text import html_to_text

_INLINER = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


@dataclass(frozen=True)
class RenderedEmail:
    """What a template made for one customer: ready for MIME."""

    template: str
    version: str
    subject: str
    html: str
    text: str


def render(template: Template, context: Mapping[str, Any]) -> RenderedEmail:
    """Render ``template`` with ``context``. Raises :class:`RenderError`, never renders blank."""
    name = f"{template.name}.liquid"
    try:
        body = template.body.render(**context)
    except LiquidError as e:
        raise translate(e, name, template.body_line_offset) from None
    try:
        subject = template.subject.render(**context)
    except LiquidError as e:
        raise translate(e, f"{template.name} subject") from None
    subject = re.sub(r"\s+", " ", subject).strip()
    if not subject:
        raise RenderError("the subject rendered empty", template=name)
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
