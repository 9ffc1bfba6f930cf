"""Drive the real ``personify`` console script as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PERSONIFY = str(Path(sys.executable).parent / "personify")


def personify(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``personify ARGS`` and return the finished process (never raises on exit code)."""
    return subprocess.run(
        [PERSONIFY, *args],
        cwd=cwd,
        env={**os.environ, "PERSONIFY_NO_FORWARD": "0", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def personify_json(*args: str, cwd: Path | None = None, **kw: Any) -> Any:
    """Run a reporting command with --json; assert success and parse the one document."""
    done = personify(*args, "--json", cwd=cwd, **kw)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# An abandoned cart and four recommendations, for tests that render the scaffold's template.
CART = {
    "url": "https://shop.example/cart/9",
    "items": [
        {
            "name": "Trail Boot",
            "url": "https://shop.example/p/1",
            "image_url": "https://i/1.png",
            "price": "89.00",
            "quantity": 1,
        }
    ],
}
RECS = [
    {
        "name": f"Rec {i}",
        "url": f"https://shop.example/p/r{i}",
        "image_url": "https://i/r.png",
        "price": "19.00",
    }
    for i in range(4)
]
