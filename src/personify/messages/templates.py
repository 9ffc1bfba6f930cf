"""Templates of a project: ``templates/NAME.liquid`` plus its subject and MJML layout.

A template is an HTML body in Liquid. Its settings come from YAML front matter at the top of the
file (between two ``---`` lines) or from a sidecar ``NAME.yml``:

* ``subject`` — the subject line, itself Liquid (required);
* ``layout`` — ``layouts/LAYOUT.mjml`` to place the body in (its ``{{ content }}``); without it,
  ``NAME.mjml`` beside the template when present; ``none`` for no layout;
* ``connected`` — JSON fetched from HTTP APIs at send time (:mod:`personify.messages.connected`).
* ``tracking`` — ``false``: no open pixel and no click tracking in this template's emails.

A layout is compiled from MJML to HTML once per version (the hash of its source) and then parsed
as a Liquid template, so a layout may use the same variables as the body. Each template version
also gets a :class:`~personify.messages.plan.Plan` when it can: the layout's CSS inlined and its
text converted once, not per email.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from liquid import BoundTemplate
from liquid.exceptions import LiquidError

from personify.errors import NotFound
from personify.messages.compiled import Compiled, Unsupported, compile_body
from personify.messages.connected import Connected, parse_connected
from personify.messages.errors import RenderError
from personify.messages.liquid_env import html_environment, text_environment, translate
from personify.messages.plan import Plan, make_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Template:
    """One parsed template version: body, subject and (optional) compiled layout."""

    name: str
    version: str
    """Hash of everything the template is made of (body, settings, layout)."""
    body: BoundTemplate
    subject: BoundTemplate
    layout: BoundTemplate | None
    body_line_offset: int
    layout_name: str | None
    connected: tuple[Connected, ...] = ()
    """Connected-content sources (``connected:`` in front matter), fetched at send time."""
    plan: Plan | None = None
    """The fast path (CSS inlined and the layout converted once); ``None`` when the template
    renders the reference way (see :mod:`personify.messages.plan`)."""
    tracking: bool = True
    """Open and click tracking for this template (``tracking: false`` in front matter turns it
    off; see :mod:`personify.engagement`)."""
    subject_compiled: Compiled | None = None
    """``subject`` compiled to Python (:func:`~personify.messages.compiled.compile_body`; None
    when it uses what is not compiled)."""
    subject_compiled_from: BoundTemplate | None = None
    """The subject ``subject_compiled`` was made from: a copy of this template with another
    ``subject`` (``dataclasses.replace``) renders that one with python-liquid, never the old."""


def _front_matter(text: str) -> tuple[dict[str, Any], str, int]:
    if not text.startswith("---"):
        return {}, text, 0
    lines = text.splitlines(keepends=True)
    for i in range(1, len(lines)):
        if lines[i].rstrip() == "---":
            meta = yaml.safe_load("".join(lines[1:i])) or {}
            return meta, "".join(lines[i + 1 :]), i + 1
    return {}, text, 0


def _compile_mjml(source: str, name: str) -> str:
    try:
        import mjml
    except ImportError:  # pragma: no cover - mjml-python is a dependency
        raise RenderError(
            "the layout is MJML but mjml-python is not installed",
            template=name,
            hint="pip install mjml-python",
        ) from None
    try:
        return str(mjml.mjml2html(source, disable_comments=True))
    except ValueError as e:
        raise RenderError(f"invalid MJML: {e}", template=name) from None


class TemplateStore:
    """Loads templates from a folder; parses and compiles each version once (thread-safe)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._html = html_environment()
        self._text = text_environment()
        self._cache: dict[str, Template] = {}
        self._layouts: dict[str, tuple[str, BoundTemplate]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Names of the templates in the folder."""
        return sorted(p.stem for p in self.folder.glob("*.liquid"))

    def get(self, name: str) -> Template:
        """The current version of template ``name``. Raises NotFound or RenderError."""
        path = self.folder / f"{name}.liquid"
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"no template {name!r} in {self.folder}", hint=f"templates: {known}")
        source = path.read_text(encoding="utf-8")
        meta, body, offset = _front_matter(source)
        sidecar = self.folder / f"{name}.yml"
        if sidecar.is_file():
            meta = {**(yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}), **meta}
        layout_path = self._layout_path(name, meta)
        layout_source = layout_path.read_text(encoding="utf-8") if layout_path else ""
        version = hashlib.sha256(
            "\0".join((source, repr(sorted(meta.items())), layout_source)).encode()
        ).hexdigest()[:16]
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached.version == version:
                return cached
        subject = meta.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise RenderError(
                "no subject",
                template=f"{name}.liquid",
                hint=f"add `subject: ...` in front matter (--- lines) or in {name}.yml",
            )
        layout_name = str(layout_path.relative_to(self.folder)) if layout_path else None
        try:
            parsed_body = self._html.from_string(body, name=f"{name}.liquid")
        except LiquidError as e:
            raise translate(e, f"{name}.liquid", offset, body) from None
        try:
            parsed_subject = self._text.from_string(subject, name=f"{name} subject")
        except LiquidError as e:
            raise translate(e, f"{name} subject") from None
        try:
            subject_compiled: Compiled | None = compile_body(parsed_subject)
        except Unsupported:
            subject_compiled = None
        layout: BoundTemplate | None = None
        plan: Plan | None = None
        if layout_name:
            layout_html, layout = self._layout(layout_name, layout_source)
            plan, why = make_plan(self._html, body, layout_html, f"{name}.liquid")
            if plan is None:
                log.info("template %s renders the reference way: %s", name, why)
        connected = parse_connected(meta, f"{name}.liquid", self._text)
        template = Template(
            name,
            version,
            parsed_body,
            parsed_subject,
            layout,
            offset,
            layout_name,
            connected,
            plan,
            tracking=meta.get("tracking", True) is not False,
            subject_compiled=subject_compiled,
            subject_compiled_from=parsed_subject,
        )
        with self._lock:
            self._cache[name] = template
        return template

    def _layout_path(self, name: str, meta: dict[str, Any]) -> Path | None:
        wanted = meta.get("layout")
        if wanted in ("none", False):
            return None
        if wanted:
            path = self.folder / "layouts" / f"{wanted}.mjml"
            if not path.is_file():
                raise RenderError(f"layout {wanted!r} not found at {path}", template=name)
            return path
        own = self.folder / f"{name}.mjml"
        return own if own.is_file() else None

    def _layout(self, name: str, source: str) -> tuple[str, BoundTemplate]:
        """The layout compiled to HTML (once per content hash) and parsed as Liquid."""
        key = hashlib.sha256(source.encode()).hexdigest()
        with self._lock:
            hit = self._layouts.get(key)
        if hit is not None:
            return hit
        html = _compile_mjml(source, name)
        try:
            parsed = self._html.from_string(html, name=name)
        except LiquidError as e:
            raise translate(e, name) from None
        with self._lock:
            self._layouts[key] = (html, parsed)
        return html, parsed
