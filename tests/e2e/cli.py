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
