"""``personify console sign-out NAME``: every console session of one token ends (recorded in the
warehouse, so every ``serve`` sharing it refuses them), idempotently; an unknown name is a usage
error listing the token names."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from personify.server.console import auth
from personify.session import open_session
from tests.e2e.cli import personify
from tests.e2e.tracking_support import start_server_on


def test_sign_out_ends_a_tokens_sessions(project_dir: Path) -> None:
    with open_session(project_dir) as session:
        wh = session.warehouse
        later = int(time.time()) + 3600
        kept = auth._start(wh, "other", later)
        for _ in range(2):
            auth._start(wh, "admin", later)
    p = ("--project", str(project_dir))
    done = personify("console", "sign-out", "admin", "--json", *p)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"token": "admin", "sessions_ended": 2}
    again = personify("console", "sign-out", "admin", *p)
    assert again.returncode == 0 and "admin: 0 console session(s) ended" in again.stdout
    with open_session(project_dir) as session:
        assert auth._live(session.warehouse, kept, "other")  # another token's: untouched
        live = session.warehouse.scalar(
            "SELECT count(*) FROM console_sessions WHERE ended_at IS NULL"
        )
        assert live == 1
    unknown = personify("console", "sign-out", "nobody", *p)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no admin token is named 'nobody'" in unknown.stderr
    assert "token names: admin" in unknown.stderr


@pytest.mark.slow
def test_sign_out_through_a_running_server(project_dir: Path, tmp_path: Path) -> None:
    """With ``personify serve`` running (holding the DuckDB warehouse), the command runs through
    it and a session signed in there ends at once: its cookie gets the sign-in form."""
    token = dotenv_values(project_dir / ".env")["PERSONIFY_ADMIN_TOKEN"]
    assert token
    server = start_server_on(project_dir, tmp_path / "serve.log")
    try:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10) as browser:
            signed = browser.post(
                "/console/login", data={"token": token}, headers={"origin": server.url}
            )
            assert signed.status_code == 303, signed.text
            assert browser.get("/console").status_code == 200
            done = personify("console", "sign-out", "admin", "--project", str(project_dir))
            assert done.returncode == 0, done.stderr
            assert "admin: 1 console session(s) ended" in done.stdout
            assert browser.get("/console").status_code == 401
    finally:
        server.stop()
