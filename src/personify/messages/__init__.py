"""Messages: Liquid + MJML rendering of one email for one customer.

* :class:`TemplateStore` — a project's ``templates/`` folder; each version parsed once;
* :func:`render` — a template and a context → :class:`RenderedEmail` (subject, HTML, text);
* :func:`read_customer` / :func:`read_customers` / :func:`build_context` — the render context;
* :func:`render_for` — all of it for one customer of a project;
* :class:`RenderError` — a template that cannot render (names template, line, variable).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from personify.config import Project
from personify.messages.context import build_context, read_customer, read_customers
from personify.messages.errors import RenderError
from personify.messages.locale import customer_locale
from personify.messages.render import RenderedEmail, render
from personify.messages.templates import Template, TemplateStore
from personify.warehouse.base import Warehouse

TEMPLATES_DIR = "templates"


_stores: dict[Path, TemplateStore] = {}
_stores_lock = threading.Lock()


def template_store(project: Project) -> TemplateStore:
    """The project's templates (``templates/``): one store per folder in a process, so each
    template version is parsed, compiled and planned once however often it is asked for (a
    store checks the files' content on every ``get``)."""
    folder = project.path(TEMPLATES_DIR).resolve()
    with _stores_lock:
        store = _stores.get(folder)
        if store is None:
            store = _stores[folder] = TemplateStore(folder)
        store.default_locale = project.config.email.default_locale
        store.default_timezone = project.config.timezone
        return store


def render_for(
    wh: Warehouse,
    project: Project,
    template: str,
    who: str,
    variables: Mapping[str, Any] | None = None,
    *,
    store: TemplateStore | None = None,
) -> tuple[dict[str, Any], RenderedEmail]:
    """Render ``template`` for the customer ``who``, profile read now: (customer, email) — the
    template's variant for the customer's locale (``NAME.fr.liquid``) when it has one."""
    customer = read_customer(wh, who, project)
    store = store or template_store(project)
    parsed = store.get(template, customer_locale(customer))
    return customer, render(parsed, build_context(customer, variables))


__all__ = [
    "TEMPLATES_DIR",
    "RenderError",
    "RenderedEmail",
    "Template",
    "TemplateStore",
    "build_context",
    "read_customer",
    "read_customers",
    "render",
    "render_for",
    "template_store",
]
