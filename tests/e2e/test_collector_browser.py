"""The browser collector (``/collect.js``) in real headless Chromium, on a page served locally from
another origin: data-layer pushes, analytics calls and an unload-time ``sendBeacon`` arrive in
``events``, under the anonymous id kept in the first-party cookie."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from personify.scaffold import init_project
from tests.e2e.browser import chromium, chromium_or_skip
from tests.e2e.test_serve import Server
from tests.e2e.tracking_support import query, start_server_on, write_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
PAGE = """<!doctype html>
<html><head><title>Mug shop</title>
<script>
  window.dataLayer = window.dataLayer || [];
  window.dataLayer.push({event: "view_item", ecommerce: {currency: "EUR", value: 12,
    items: [{item_id: "sku-1", item_name: "Mug", item_category: "Kitchen", price: 12}]}});
  window.personifyConfig = {flushInterval: __FLUSH__,
    dataLayerEvents: {newsletter_signup: "Newsletter Signed Up"}};
</script>
<script src="__SERVER__/collect.js" data-write-key="__KEY__"></script>
</head><body><h1>Mugs</h1></body></html>
"""


class Site:
    """Pages on their own origin (another port), as a shop's site would be."""

    def __init__(self, pages: dict[str, str]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Server]:
    chromium_or_skip()
    project = tmp_path / "shop"
    init_project(project)
    server = start_server_on(project, tmp_path / "serve.log")
    try:
        yield server
    finally:
        server.stop()


def _wait_for(project: Path, sql: str, want: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = int(query(project, sql)[0]["n"])
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.5)


def test_data_layer_pushes_arrive_in_events(served: Server) -> None:
    key = write_key(served.project)

    def page(flush: int) -> str:
        return (
            PAGE.replace("__SERVER__", served.url)
            .replace("__KEY__", key)
            .replace("__FLUSH__", str(flush))
        )

    site = Site({"/shop.html": page(200), "/slow.html": page(600_000)})
    try:
        with chromium() as browser:
            tab = browser.new_page()
            tab.goto(site.url + "/shop.html")
            tab.evaluate(
                """() => {
                dataLayer.push({event: "add_to_cart", ecommerce: {currency: "EUR", value: 12,
                  items: [{item_id: "sku-1", item_name: "Mug", price: 12, quantity: 2}]}});
                dataLayer.push({event: "newsletter_signup", list: "weekly"});
                dataLayer.push({event: "gtm.click"});
                analytics.identify("user-42", {email: "ann@example.org", engagementScore: 70});
                dataLayer.push({event: "purchase", ecommerce: {transaction_id: "T-1",
                  currency: "EUR", value: 24, items: [{item_id: "sku-1", quantity: 2}]}});
                return analytics.flush();
            }"""
            )
            cookie = {c["name"]: c["value"] for c in tab.context.cookies()}["pfy_aid"]
            # a page that never flushes by itself: the event leaves by sendBeacon on unload
            slow = browser.new_page()
            slow.goto(site.url + "/slow.html")
            slow.evaluate("() => analytics.track('Wishlist Added', {product_id: 'sku-9'})")
            slow.goto("about:blank")
    finally:
        site.close()
    sql = (
        "SELECT count(*) AS n FROM events WHERE context->>'$.library.name' = 'personify-collect.js'"
    )
    # per page: the automatic page call and the Product Viewed pushed before the script loaded;
    # then 3 pushes and an identify on the first, and a track left to sendBeacon on the second
    assert _wait_for(served.project, sql, 9) == 9
    rows = query(
        served.project,
        "SELECT type, event, anonymous_id, user_id, properties FROM events ORDER BY timestamp",
    )
    tracks = {r["event"] for r in rows if r["type"] == "track"}
    assert tracks == {
        "Product Viewed",
        "Product Added",
        "Newsletter Signed Up",
        "Order Completed",
        "Wishlist Added",
    }
    first_tab = {"Product Added", "Newsletter Signed Up", "Order Completed", None}
    assert {r["anonymous_id"] for r in rows if r["event"] in first_tab and r["type"] != "page"} == {
        cookie
    }
    assert {r["user_id"] for r in rows if r["event"] == "Order Completed"} == {"user-42"}
    assert query(served.project, "SELECT count(*) AS n FROM quarantine")[0]["n"] == 0
