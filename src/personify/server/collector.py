"""``GET /collect.js``: the browser collector (see the header of ``collect.js`` beside this file).

The script is read once from the package and served with a strong ``ETag`` (a hash of its bytes),
cacheable for an hour, and allowed on any origin (the pages embedding it live elsewhere).
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from personify.server.openapi import Content, Operation, operation

MEDIA_TYPE = "text/javascript; charset=utf-8"


@functools.cache
def script() -> tuple[bytes, str]:
    """The collector's bytes and their ETag."""
    data = (resources.files("personify.server") / "collect.js").read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


@operation(
    Operation(
        summary="The browser collector script",
        description='Embed with `<script src="…/collect.js" data-write-key="…" async>`: '
        "`analytics.track/identify/page`, an anonymous-id cookie, `window.dataLayer` "
        "forwarding, batching, retries and `sendBeacon` on unload.",
        tags=("tracking",),
        responses={200: Content("The script.", {"type": "string"}, media_type=MEDIA_TYPE)},
    )
)
async def collect_js(request: Request) -> Response:
    """The collector, with ``ETag`` revalidation."""
    data, etag = script()
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=3600",
        "Access-Control-Allow-Origin": "*",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=MEDIA_TYPE, headers=headers)


def routes() -> list[BaseRoute]:
    """The collector's route."""
    return [Route("/collect.js", collect_js, methods=["GET"])]
