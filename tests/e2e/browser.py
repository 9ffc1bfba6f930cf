"""Headless Chromium for the browser tests: Playwright drives the system's ``/usr/bin/chromium``
(no browser download). Without it a test skips with the reason — unless
PERSONIFY_REQUIRE_SERVICES=1 (as in CI), when it fails."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REQUIRE_SERVICES

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_or_skip() -> None:
    """Skip (or, when services are required, fail) without Chromium: call it before building
    what the test opens (a world, a server), so that a machine without it skips at once."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if REQUIRE_SERVICES:
            pytest.fail(f"PERSONIFY_REQUIRE_SERVICES=1 but {message}")
        pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed on the way out."""
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()


def html_report(out: Path, *command: str) -> str:
    """``personify COMMAND --out OUT``, which says where it wrote the page; the page stands
    alone (no script, nothing fetched from elsewhere). Its text."""
    from tests.e2e.cli import personify

    done = personify(*command, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"HTML report: {out}" in done.stdout.replace("\n", "")
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    return page


def page_errors(tab: Page) -> list[str]:
    """The console errors and uncaught exceptions of ``tab`` from now on, as they come."""
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    return errors


_COUNT = """async ([src, colours, near]) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.querySelector('canvas');
  c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const out = {width: c.width, height: c.height, ink: 0};
  for (const name of Object.keys(colours)) out[name] = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
    if (r < 240 || gr < 240 || b < 240) out.ink++;
    for (const [name, [x, y, z]] of Object.entries(colours)) {
      if (Math.abs(r - x) < near && Math.abs(gr - y) < near && Math.abs(b - z) < near) out[name]++;
    }
  }
  return out;
}"""


def count_colours(
    browser: Browser, png: bytes, colours: dict[str, tuple[int, int, int]], *, near: int = 12
) -> dict[str, Any]:
    """The pixels of the screenshot ``png``, counted on a canvas in a page of their own:
    ``width``, ``height``, ``ink`` (pixels that are not near-white) and, for each named colour,
    the pixels within ``near`` of it on every channel."""
    check = browser.new_page()
    try:
        check.set_content("<canvas></canvas>")
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        counted: dict[str, Any] = check.evaluate(_COUNT, [src, colours, near])
    finally:
        check.close()
    return counted
