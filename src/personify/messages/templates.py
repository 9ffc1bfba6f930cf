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
import re
import threading
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import yaml
from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError

from personify.errors import NotFound
from personify.messages.compiled import Compiled, Unsupported, compile_body
from personify.messages.connected import Connected, parse_connected
from personify.messages.errors import RenderError
from personify.messages.files import Derived, TextFiles
from personify.messages.liquid_env import (
    PARTIALS_DIR,
    PartialsLoader,
    UnknownZoneError,
    check_zones,
    html_environment,
    text_environment,
    translate,
)
from personify.messages.locale import candidates, is_variant
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
    variant: str = ""
    """The locale variant this is (``fr``, ``fr-CA``: the file ``NAME.fr.liquid``), ``""`` for
    the default ``NAME.liquid``."""

    @property
    def file(self) -> str:
        """The body's file name, as errors name it: ``welcome.liquid``, ``welcome.fr.liquid``."""
        return f"{self.name}.{self.variant}.liquid" if self.variant else f"{self.name}.liquid"

    @property
    def language(self) -> str:
        """The locale the template is written in, as its file says: its variant's, else its
        name's suffix when it names a language version itself (``get('welcome.fr')``); ``""``
        for a default ``NAME.liquid`` (written in ``email.default_locale``)."""
        return self.variant or _variant_of(self.name)[1]


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


def _variant_of(stem: str) -> tuple[str, str]:
    """``welcome.fr-CA`` → (``welcome``, ``fr-CA``); a stem without a locale suffix → (it, ""):
    ``promo.big`` is a name of its own (``big`` is no locale Babel knows)."""
    base, dot, suffix = stem.rpartition(".")
    if dot and base and is_variant(suffix):
        return base, suffix
    return stem, ""


_PARTIAL_TAG = re.compile(r"\{%(-?)\s*(render|include)\s+(['\"])([^'\"]*)\3\s*(-?)%\}")
_SCOPED = re.compile(r"\{%-?\s*(?:assign|capture|increment|decrement|liquid|cycle|ifchanged)\b")
_LOOP = re.compile(r"\{%-?\s*(for|tablerow|endfor|endtablerow)\b")
_RAW = re.compile(r"\{%-?\s*raw\b")


def placed_partials(source: str, partials: dict[str, str], depth: int = 0) -> str | None:
    """``source`` with each ``{% render 'NAME' %}`` / ``{% include 'NAME' %}`` (a quoted name,
    no arguments) replaced by the partial's text — for the plan, whose CSS is inlined into the
    body's text and whose body is compiled: the same output as rendering the partial, or None
    when that cannot be promised (``render`` inside a loop or next to ``assign``/``capture``,
    whose scopes it isolates; whitespace control; ``raw``; a partial not read). What a
    ``{% comment %}`` block holds is not looked at (it renders nothing): it is kept as written."""
    scanned = _uncommented(source)
    if depth > 10 or scanned is None or _RAW.search(scanned):
        return None
    out: list[str] = []
    end = 0
    for match in _PARTIAL_TAG.finditer(scanned):
        left, tag, _, name, right = match.groups()
        text = partials.get(name)
        if left or right or text is None:
            return None
        if tag == "render":
            before = scanned[: match.start()]
            opened = sum(1 for m in _LOOP.finditer(before) if not m.group(1).startswith("end"))
            closed = sum(1 for m in _LOOP.finditer(before) if m.group(1).startswith("end"))
            inside = _uncommented(text) or text
            if opened != closed or _SCOPED.search(scanned) or _SCOPED.search(inside):
                return None
            if re.search(r"\{%-?\s*include\b", inside):
                return None  # include is refused inside a rendered partial
        inner = placed_partials(text, partials, depth + 1)
        if inner is None:
            return None
        out += [source[end : match.start()], inner]
        end = match.end()
    if re.search(r"\{%-?\s*(?:render|include)\b", _PARTIAL_TAG.sub("", scanned)):
        return None  # a partial named otherwise (a variable, arguments)
    return "".join(out) + source[end:]


_COMMENT = re.compile(r"\{%-?\s*(comment|endcomment)\s*-?%\}")


def _uncommented(source: str) -> str | None:
    """``source`` with what each ``{% comment %}`` block holds blanked out (same length, so a
    position in it is a position in ``source``); blocks nest, as Liquid's do. None when a block
    is not closed or an ``endcomment`` closes nothing (the template does not parse)."""
    depth, start, out, end = 0, 0, [], 0
    for match in _COMMENT.finditer(source):
        if match.group(1) == "comment":
            depth += 1
            if depth == 1:
                start = match.end()
        elif depth == 0:
            return None
        else:
            depth -= 1
            if depth == 0:
                out += [source[end:start], " " * (match.start() - start)]
                end = match.start()
    if depth:
        return None
    return "".join(out) + source[end:]


_PARTIAL_REF = re.compile(r"\b(?:render|include)\s+(['\"])(.*?)\1")
_DYNAMIC_INCLUDE = re.compile(r"\binclude\s+[A-Za-z_]")
_NAMED_PARTIAL = re.compile(r"(?:render|include)\s+(['\"])(.*?)\1")
_UNQUOTED_RENDER = re.compile(r"render\s+([A-Za-z_][\w-]*)")
"""``{% render footer %}``: python-liquid reads an unquoted name as an inline snippet's (a tag
Personify does not have), never as a partial's file nor a variable — it fails every render."""


def _references(text: str) -> tuple[bool, tuple[str, ...]]:
    """Whether ``text`` includes a partial named by a variable, and the partials it names."""
    names = tuple(m.group(2) for m in _PARTIAL_REF.finditer(text))
    return bool(_DYNAMIC_INCLUDE.search(text)), names


def _check_layout_zones(env: Environment, name: str, source: str, parsed: BoundTemplate) -> None:
    """A ``date`` zone written in layout ``name`` that is no zone, as a RenderError when the
    layout is read (not when an email renders): at its line of the MJML ``source`` when that
    parses as Liquid, else of the compiled HTML (``parsed``)."""
    try:
        check_zones(env.from_string(source, name=name))
    except UnknownZoneError as e:
        raise translate(e, name, 0, source) from None
    except LiquidError:
        pass  # (MJML that is no Liquid template: the compiled HTML says)
    try:
        check_zones(parsed)
    except UnknownZoneError as e:
        raise translate(e, name) from None


def _yaml_mapping(text: str) -> dict[str, Any]:
    return yaml.safe_load(text) or {}


class TemplateStore:
    """Loads templates from a folder; parses and compiles each version once (thread-safe).

    Partials (``{% render 'footer' %}``) are files of its ``partials/`` folder; a template's
    version covers the partials it names, so changing one makes new versions of the templates
    that render it. Locale variants ``NAME.fr.liquid`` are chosen by :meth:`get`'s ``locale``.

    :meth:`get` looks at every file a template is made of each time (once per batch), but reads
    only those that changed: an unchanged file costs a ``stat``
    (:class:`~personify.messages.files.TextFiles`), and what is derived from its text — front
    matter, the partials it names — is kept by that text."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files = TextFiles()
        """Every file the store reads (templates, sidecars, layouts, partials)."""
        self._html = html_environment(folder, self.files)
        self._text = text_environment(folder, self.files)
        self._front = Derived(_front_matter)
        self._refs = Derived(_references)
        self._sidecars = Derived(_yaml_mapping)
        self._cache: dict[str, Template] = {}
        self._layouts: dict[str, tuple[str, BoundTemplate]] = {}
        self._checked: dict[str, str] = {}
        """File → the version :meth:`check` found good."""
        self._lock = threading.Lock()

    @property
    def default_locale(self) -> str | None:
        """The locale filters write in for customers without one (``email.default_locale``)."""
        return getattr(self._html, "default_locale", None)

    @default_locale.setter
    def default_locale(self, value: str | None) -> None:
        for env in (self._html, self._text):
            env.default_locale = value  # type: ignore[attr-defined]

    @property
    def default_timezone(self) -> str | None:
        """The zone ``date`` writes instants in for customers without one (the project's
        ``timezone``)."""
        return getattr(self._html, "default_timezone", None)

    @default_timezone.setter
    def default_timezone(self, value: str | None) -> None:
        for env in (self._html, self._text):
            env.default_timezone = value  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        """Names of the templates in the folder (their locale variants are not others)."""
        stems = {p.stem for p in self.folder.glob("*.liquid")}
        return sorted(s for s in stems if _variant_of(s)[0] == s or _variant_of(s)[0] not in stems)

    def variants(self, name: str) -> list[str]:
        """The locales template ``name`` has a variant for (``fr``, ``fr-CA`` …), sorted."""
        found = []
        for path in self.folder.glob(f"{glob_escape(name)}.*.liquid"):
            base, suffix = _variant_of(path.stem)
            if base == name and suffix:
                found.append(suffix)
        return sorted(found)

    def variant_for(self, name: str, locale: str | None) -> str:
        """Which variant of ``name`` a recipient of ``locale`` gets: the exact locale's, else
        its language's, else ``""`` (the default ``NAME.liquid``)."""
        for suffix in candidates(locale):
            if is_variant(suffix) and (self.folder / f"{name}.{suffix}.liquid").is_file():
                return suffix
        return ""

    def _partials(self, *sources: str) -> dict[str, str]:
        """The partials ``sources`` name (and those they name), read now: name → text. A
        partial named by a variable makes every file of ``partials/`` count."""
        loader = self._html.loader
        assert isinstance(loader, PartialsLoader)
        found: dict[str, str] = {}
        todo = list(sources)
        while todo:
            text = todo.pop()
            dynamic, names = self._refs(text)
            if dynamic:
                folder = self.folder / PARTIALS_DIR
                for path in sorted(folder.rglob("*.liquid")) if folder.is_dir() else []:
                    name = path.relative_to(folder).with_suffix("").as_posix()
                    if name not in found:
                        found[name] = self.files.read(path)
                        todo.append(found[name])
            for name in names:
                if name in found:
                    continue
                try:
                    found[name] = loader.source(name)
                except LiquidError:
                    continue  # rendering says where (template, line) and why
                todo.append(found[name])
        return found

    def get(self, name: str, locale: str | None = None) -> Template:
        """The current version of template ``name`` — of its variant for ``locale`` (see
        :meth:`variant_for`) when given. Raises NotFound or RenderError."""
        path = self.folder / f"{name}.liquid"
        if "/" in name or "\\" in name or name.startswith(".") or not path.is_file():
            known = ", ".join(self.names()) or "none"
            raise NotFound(f"no template {name!r} in {self.folder}", hint=f"templates: {known}")
        variant = self.variant_for(name, locale) if locale else ""
        stem = f"{name}.{variant}" if variant else name
        file = f"{stem}.liquid"
        source = self.files.read(self.folder / file)
        meta, body, offset = self._front(source)
        for sidecar in dict.fromkeys((self.folder / f"{stem}.yml", self.folder / f"{name}.yml")):
            if sidecar.is_file():
                meta = {**self._sidecars(self.files.read(sidecar)), **meta}
        meta = dict(meta)  # (the kept front matter is never changed)
        layout_path = self._layout_path(name, meta, variant)
        layout_source = self.files.read(layout_path) if layout_path else ""
        partials = self._partials(body, str(meta.get("subject", "")), layout_source)
        version = hashlib.sha256(
            "\0".join(
                (
                    source,
                    repr(sorted(meta.items())),
                    layout_source,
                    *(f"{k}\0{v}" for k, v in sorted(partials.items())),
                )
            ).encode()
        ).hexdigest()[:16]
        for env in (self._html, self._text):
            loader = env.loader
            assert isinstance(loader, PartialsLoader)
            loader.refresh(env, partials)  # a partial that does not parse: its file and line
        with self._lock:
            cached = self._cache.get(stem)
            if cached is not None and cached.version == version:
                return cached
        subject = meta.get("subject")
        if not isinstance(subject, str) or not subject.strip():
            raise RenderError(
                "no subject",
                template=file,
                hint=f"add `subject: ...` in front matter (--- lines) or in {stem}.yml",
            )
        layout_name = str(layout_path.relative_to(self.folder)) if layout_path else None
        try:
            parsed_body = self._html.from_string(body, name=file)
            check_zones(parsed_body)
        except LiquidError as e:
            raise translate(e, file, offset, body) from None
        try:
            parsed_subject = self._text.from_string(subject, name=f"{stem} subject")
            check_zones(parsed_subject)
        except LiquidError as e:
            raise translate(e, f"{stem} subject") from None
        try:
            subject_compiled: Compiled | None = compile_body(parsed_subject)
        except Unsupported:
            subject_compiled = None
        layout: BoundTemplate | None = None
        plan: Plan | None = None
        if layout_name:
            layout_html, layout = self._layout(layout_name, layout_source)
            placed = placed_partials(body, partials)
            if placed is None:
                plan, why = None, "it renders partials the plan cannot place (see README)"
            else:
                plan, why = make_plan(self._html, placed, layout_html, file)
            if plan is None:
                log.info("template %s renders the reference way: %s", stem, why)
        connected = parse_connected(meta, file, self._text)
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
            variant=variant,
        )
        with self._lock:
            self._cache[stem] = template
        return template

    def check(self, name: str) -> list[str]:
        """Check every language version of template ``name`` now — ``NAME.liquid`` and each
        ``NAME.xx.liquid`` — with its subject, its layout and the partials they render (those
        named in quotes, and the partials those name): each parsed as a send would parse it.
        Returns the files checked; raises NotFound or a RenderError naming the file (a version's,
        a layout's or ``partials/NAME.liquid``) and line of the first mistake."""
        files: list[str] = []
        for variant in ["", *self.variants(name)]:
            template = self.get(name, variant or None)
            files.append(template.file)
            with self._lock:  # a version covers its partials: one found good stays good
                if self._checked.get(template.file) == template.version:
                    continue
            source = (self.folder / template.file).read_text(encoding="utf-8")
            meta, body, offset = _front_matter(source)
            texts = [(template.file, body, offset)]
            if template.layout_name:
                layout = (self.folder / template.layout_name).read_text(encoding="utf-8")
                texts.append((template.layout_name, layout, 0))
            self._check_partial_names(texts)
            with self._lock:
                self._checked[template.file] = template.version
        return files

    def _check_partial_names(self, texts: list[tuple[str, str, int]]) -> None:
        """Every partial the texts (file shown, text, line offset) render by a quoted name
        exists — and those the partials render: else a RenderError at the line that names it.
        Only ``render``/``include`` tags count (Liquid's analysis finds them), not the words in
        the email's text."""
        loader = self._html.loader
        assert isinstance(loader, PartialsLoader)
        seen: set[str] = set()
        todo = list(texts)
        while todo:
            file, text, offset = todo.pop()
            try:
                tags = self._html.from_string(text).analyze(include_partials=False).tags
            except LiquidError:
                continue  # (get() reported what does not parse; an MJML source may not)
            spans = [*tags.get("render", ()), *tags.get("include", ())]
            for span in sorted(spans, key=lambda s: s.index):
                match = _NAMED_PARTIAL.match(text, span.index)
                if match is None:
                    unquoted = _UNQUOTED_RENDER.match(text, span.index)
                    if unquoted is None:
                        continue  # an include of a variable's partial: read when rendered
                    raise self._unquoted(file, text, offset, span.index, unquoted.group(1))
                name = match.group(2)
                try:
                    partial = loader.source(name)
                except LiquidError as e:
                    raise RenderError(
                        str(e.message or type(e).__name__),
                        template=file,
                        line=text.count("\n", 0, span.index) + 1 + offset,
                        hint=f"partials are files templates/{PARTIALS_DIR}/NAME.liquid, named "
                        "without the folder or extension: {% render 'footer' %}",
                    ) from None
                if name not in seen:
                    seen.add(name)
                    shown = f"{PARTIALS_DIR}/{name.removesuffix('.liquid')}.liquid"
                    todo.append((shown, partial, 0))

    def _unquoted(self, file: str, text: str, offset: int, at: int, name: str) -> RenderError:
        """The error of ``{% render name %}`` (no quotes) at ``at`` of ``text``: the partial
        it would not read, or that there is no such partial."""
        loader = self._html.loader
        assert isinstance(loader, PartialsLoader)
        try:
            loader.source(name)
            exists = True
        except LiquidError:
            exists = False
        quoted = f"{{% render '{name}' %}}"
        message = (
            f"partial {name!r} is named without quotes: write {quoted}"
            if exists
            else f"partial {name!r} not found (looked for templates/{PARTIALS_DIR}/{name}.liquid)"
        )
        return RenderError(
            f"{message} — render takes a partial's name in quotes, not a variable",
            template=file,
            line=text.count("\n", 0, at) + 1 + offset,
            hint=f"partials are files templates/{PARTIALS_DIR}/NAME.liquid, rendered by their "
            f"name in quotes: {quoted}; a variable chooses one with {{% include var %}}",
        )

    def _layout_path(self, name: str, meta: dict[str, Any], variant: str = "") -> Path | None:
        wanted = meta.get("layout")
        if wanted in ("none", False):
            return None
        if wanted:
            path = self.folder / "layouts" / f"{wanted}.mjml"
            if not path.is_file():
                raise RenderError(f"layout {wanted!r} not found at {path}", template=name)
            return path
        if variant:  # a variant's own MJML (welcome.fr.mjml), else the template's
            own = self.folder / f"{name}.{variant}.mjml"
            if own.is_file():
                return own
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
        _check_layout_zones(self._html, name, source, parsed)
        with self._lock:
            self._layouts[key] = (html, parsed)
        return html, parsed
