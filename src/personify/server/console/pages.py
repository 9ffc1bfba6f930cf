"""The console's routes: sign-in and sign-out, and its read-only pages (see the package)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from liquid import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from personify.errors import NotFound, ServiceUnavailable, WarehouseBusy
from personify.server.console import views
from personify.server.console.auth import (
    SignInError,
    Viewer,
    cookie_header,
    same_origin,
    sign_in,
    sign_out,
    viewer_of,
)
from personify.server.responses import read_body
from personify.server.state import state_of

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
CSS = (HERE / "console.css").read_text(encoding="utf-8")
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect width="16" height="16" rx="3" fill="#1d2330"/></svg>'
)
FORM_LIMIT = 4096
_ENV = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=True, undefined=StrictUndefined
)
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""Pages: nothing but this server's stylesheet, forms and the preview frame; no script at all."""
EMAIL_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; font-src * data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox"
)
"""The previewed email: its inline styles and images, no script, no form, no navigation, framed
only by the console (and sandboxed by the frame's ``sandbox`` attribute too)."""
_HEADERS = {
    "cache-control": "no-store",
    # the console's own forms send their origin (checked against CSRF), other sites get nothing
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}


def _page(
    name: str,
    title: str,
    viewer: Viewer | None,
    status: int = 200,
    headers: dict[str, str] | None = None,
    /,
    **data: Any,
) -> Response:
    """The page template ``name`` with ``data`` inside the layout, with the console's headers."""
    body = _ENV.get_template(f"{name}.liquid").render(**data)
    page = _ENV.get_template("layout.liquid").render(
        title=title,
        body=Markup(body),  # noqa: S704 - the template's own output, escaped as it was rendered
        viewer=viewer.name if viewer else "",
        sees_pii=bool(viewer and viewer.sees_pii),
    )
    return Response(
        page,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={
            **_HEADERS,
            "content-security-policy": PAGE_CSP,
            "x-frame-options": "DENY",
            **(headers or {}),
        },
    )


def _login(message: str = "", status: int = 401, next_url: str = "/console") -> Response:
    return _page("login", "Sign in", None, status, message=message, next=next_url)


def _safe_next(value: str) -> str:
    """A post-sign-in destination inside the console only (no open redirect)."""
    if value.startswith("/console") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console"


_BY_ID = (
    "No customer has this id. (Without the profiles:read or privacy scope, customers are found "
    "by customer id only.)"
)
"""The answer, to a viewer who names people by id only (:attr:`Viewer.finds_by_identifier`), for
any text that names no customer *id* — an unknown id, or an email whether or not a customer has
it: the same words, status and lookups either way."""


def _nobody(viewer: Viewer, text: str) -> str:
    """What to say when ``text`` names no customer: to a viewer who names people by id only,
    :data:`_BY_ID` (whatever the text); to one who may name them by email or identifier, in the
    words of what was asked — an email (``ann@…``, ``email:ann@…``), an identifier
    (``kind:value``, a ``+33…`` phone), else an id."""
    if not viewer.finds_by_identifier:
        return _BY_ID
    kind, sep, _ = text.partition(":")
    if "@" in text and (not sep or kind.strip().lower() == "email"):
        return "No customer has this email."
    if (sep and kind.strip() and not kind.startswith("+")) or text.startswith("+"):
        return "No customer has this identifier."
    return "No customer has this id."


Handler = Callable[[Request, Viewer], Any]
Endpoint = Callable[[Request], Awaitable[Response]]
RETRY_SECONDS = 30
"""The ``Retry-After`` of a page the warehouse could not answer."""


def _warehouse_answers(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering a plain 503 page with ``Retry-After`` when the warehouse does not
    answer (every page reads its session there) rather than a 500 — no stack trace, no detail."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ServiceUnavailable, WarehouseBusy) as e:
            log.warning("console: the warehouse does not answer (%s)", type(e).__name__)
            return _page(
                "unavailable",
                "The warehouse is not answering",
                None,
                503,
                {"retry-after": str(RETRY_SECONDS)},
            )

    return guarded


def _signed_in(handler: Handler) -> Endpoint:
    """Run ``handler`` for a signed-in viewer; others get the sign-in form with 401."""

    @_warehouse_answers
    async def endpoint(request: Request) -> Response:
        viewer = await run_in_threadpool(viewer_of, state_of(request), request)
        if viewer is None:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return _login("Sign in with a token that has the console scope.", 401, here)
        response: Response = await handler(request, viewer)
        return response

    return endpoint


async def login_form(request: Request) -> Response:
    """``GET /console/login``."""
    return _login("", 200, _safe_next(request.query_params.get("next", "/console")))


@_warehouse_answers
async def login(request: Request) -> Response:
    """``POST /console/login``: ``token=…&next=…``, form-encoded."""
    body = await read_body(request, FORM_LIMIT)
    if not same_origin(request):
        return _login("This form must be sent from the console's own page.", 403)
    fields = parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0]
    next_url = _safe_next((fields.get("next") or ["/console"])[0])
    try:
        _, cookie = await run_in_threadpool(sign_in, state_of(request), request, token)
    except SignInError as e:
        headers = {"retry-after": str(e.retry_after)} if e.retry_after else None
        response = _login(str(e), e.status, next_url)
        if headers:
            response.headers.update(headers)
        return response
    response = RedirectResponse(next_url, status_code=303, headers=_HEADERS)
    response.headers["set-cookie"] = cookie_header(request, cookie)
    return response


@_warehouse_answers
async def logout(request: Request) -> Response:
    """``POST /console/logout``: the session is ended server-side and the cookie cleared."""
    await read_body(request, FORM_LIMIT)
    if not same_origin(request):
        return _login("This form must be sent from the console's own page.", 403)
    await run_in_threadpool(sign_out, state_of(request), request)
    response = _login("Signed out.", 200)
    response.headers["set-cookie"] = cookie_header(request, "", max_age=0)
    return response


async def stylesheet(request: Request) -> Response:
    """``GET /console/static/console.css``."""
    return Response(
        CSS,
        media_type="text/css; charset=utf-8",
        headers={"cache-control": "max-age=3600", "x-content-type-options": "nosniff"},
    )


async def icon(request: Request) -> Response:
    """``GET /console/static/icon.svg`` (browsers ask for an icon; this one is ours)."""
    return Response(
        ICON,
        media_type="image/svg+xml",
        headers={"cache-control": "max-age=86400", "x-content-type-options": "nosniff"},
    )


@_signed_in
async def overview(request: Request, viewer: Viewer) -> Response:
    """``GET /console``."""
    data = await run_in_threadpool(views.overview, state_of(request).session)
    return _page("overview", "Overview", viewer, **data)


@_signed_in
async def segment_list(request: Request, viewer: Viewer) -> Response:
    """``GET /console/segments``."""
    try:
        rows = await run_in_threadpool(views.segments, state_of(request).session)
    except views.SegmentsBroken as e:
        return _page("broken", "Segments", viewer, 500, **e.page())
    return _page("segments", "Segments", viewer, segments=rows)


@_signed_in
async def segment_page(request: Request, viewer: Viewer) -> Response:
    """``GET /console/segments/{name}[?customer=…]``."""
    name = str(request.path_params["name"])
    who = request.query_params.get("customer", "").strip()
    session = state_of(request).session
    try:
        data = await run_in_threadpool(views.segment, session, viewer, name, who or None)
    except views.SegmentsBroken as e:
        return _page("broken", f"Segment {name}", viewer, 500, **e.page())
    except NotFound:
        missing = _page("missing", "Not found", viewer, 404, what="No segment of that name.")
        if not who:
            return missing
        try:  # the customer, or the segment itself, is unknown
            data = await run_in_threadpool(views.segment, session, viewer, name, None)
        except NotFound:
            return missing
        data["missing"] = True
    else:
        data["missing"] = False
    return _page(
        "segment",
        f"Segment {name}",
        viewer,
        who=who,
        nobody=_nobody(viewer, who),
        by_id=not viewer.finds_by_identifier,
        **data,
    )


@_signed_in
async def search(request: Request, viewer: Viewer) -> Response:
    """``GET /console/profiles[?q=…]``: a found customer's profile is one redirect away."""
    q = request.query_params.get("q", "").strip()
    if not q:
        return _page(
            "search", "Profiles", viewer, q="", missing=False, by_id=not viewer.finds_by_identifier
        )
    try:
        customer_id = await run_in_threadpool(
            views.find_customer, state_of(request).session, viewer, q
        )
    except NotFound:
        return _page(
            "search",
            "Profiles",
            viewer,
            404,
            q=q,
            missing=True,
            nobody=_nobody(viewer, q),
            by_id=not viewer.finds_by_identifier,
        )
    return RedirectResponse(
        "/console/profiles/" + quote(customer_id, safe=""), status_code=303, headers=_HEADERS
    )


@_signed_in
async def profile_page(request: Request, viewer: Viewer) -> Response:
    """``GET /console/profiles/{customer_id}``."""
    key = str(request.path_params["customer_id"])
    session = state_of(request).session
    try:
        doc = await run_in_threadpool(views.profile, session, viewer, key)
    except NotFound:
        return _page("missing", "Not found", viewer, 404, what=_nobody(viewer, key))
    templates = await run_in_threadpool(views.choices, session)
    return _page("profile", "Profile", viewer, p=doc, **templates)


def _preview_args(request: Request) -> tuple[str, str, str]:
    q = request.query_params
    return (
        q.get("template", "").strip(),
        q.get("customer", "").strip(),
        q.get("journey", "").strip(),
    )


@_signed_in
async def preview_page(request: Request, viewer: Viewer) -> Response:
    """``GET /console/preview?customer=…&template=…[&journey=…]``."""
    template, who, journey = _preview_args(request)
    session = state_of(request).session
    form = await run_in_threadpool(views.choices, session)
    data: dict[str, Any] = {
        "template": template,
        "customer": who,
        "journey": journey,
        "error": "",
        "shown": None,
        "frame": "",
        **form,
    }
    if not viewer.sees_pii:
        data["error"] = (
            "Previews show a customer's personal data: they need a token with the "
            "profiles:read scope as well."
        )
        return _page("preview", "Email preview", viewer, 403, **data)
    if template and who:
        try:
            shown = await run_in_threadpool(
                views.render, session, viewer, template, who, journey or None
            )
        except NotFound:
            data["error"] = "No customer has this id or email."
            return _page("preview", "Email preview", viewer, 404, **data)
        except views.PreviewError as e:
            data["error"] = str(e)
            return _page("preview", "Email preview", viewer, 400, **data)
        data["shown"] = {
            "customer_id": shown.customer_id,
            "subject": shown.subject,
            "text": shown.text,
            "file": shown.template_file,
            "verdict": shown.verdict,
            "sends": shown.outcome == "send",
            "journey": shown.journey or "",
        }
        data["frame"] = "/console/preview/email?" + str(request.url.query)
    return _page("preview", "Email preview", viewer, **data)


@_signed_in
async def preview_email(request: Request, viewer: Viewer) -> Response:
    """``GET /console/preview/email?…``: the email's HTML alone, for the preview's frame."""
    template, who, journey = _preview_args(request)
    headers = {**_HEADERS, "content-security-policy": EMAIL_CSP, "x-frame-options": "SAMEORIGIN"}
    if not viewer.sees_pii:
        return Response("", 403, headers=headers)
    try:
        # audited too: the frame's address alone fetches the whole personalized email
        shown = await run_in_threadpool(
            functools.partial(views.render, part="html"),
            state_of(request).session,
            viewer,
            template,
            who,
            journey or None,
        )
    except (NotFound, views.PreviewError):
        return Response("", 404, headers=headers)
    return Response(shown.html, media_type="text/html; charset=utf-8", headers=headers)


def routes() -> list[BaseRoute]:
    """The console's routes."""
    return [
        Route("/console", overview, methods=["GET"]),
        Route("/console/login", login_form, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/logout", logout, methods=["POST"]),
        Route("/console/static/console.css", stylesheet, methods=["GET"]),
        Route("/console/static/icon.svg", icon, methods=["GET"]),
        Route("/console/segments", segment_list, methods=["GET"]),
        Route("/console/segments/{name}", segment_page, methods=["GET"]),
        Route("/console/profiles", search, methods=["GET"]),
        Route("/console/profiles/{customer_id}", profile_page, methods=["GET"]),
        Route("/console/preview", preview_page, methods=["GET"]),
        Route("/console/preview/email", preview_email, methods=["GET"]),
    ]
