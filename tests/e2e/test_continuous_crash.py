"""A serving process killed (SIGKILL) after storing events but before its continuous-mode pass
applied them: the process that takes its place (same host and port) applies them when it
starts, with no ``personify run``. Real PostgreSQL (a schema of the test's own); the pass is
held back by a real lock another connection keeps on ``customers``."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from personify.warehouse import connect
from tests.e2e.cli import project_on, start_server, stop_all
from tests.e2e.tracking_support import write_key


def identify(user: str) -> dict[str, object]:
    return {
        "batch": [
            {
                "type": "identify",
                "messageId": f"crash-{user}",
                "userId": user,
                "traits": {"email": f"{user}@example.org", "first_name": "Ida"},
            }
        ]
    }


def until(check: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return bool(check())  # type: ignore[operator]


@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_restarted_server_applies_what_a_killed_one_left_unapplied(
    postgres_url: str, tmp_path: Path
) -> None:
    project = project_on(tmp_path / "shop", warehouse=postgres_url)
    connect(postgres_url).close()  # migrated before the server starts
    schema = postgres_url.rsplit("schema=", 1)[1]
    base = postgres_url.split("?", 1)[0]
    customers = f'SELECT first_name FROM "{schema}".customers WHERE email = %s'
    server = start_server(project, tmp_path / "serve.log")
    port = server.port
    with psycopg.connect(base, autocommit=True) as look:
        try:
            with (
                psycopg.connect(base) as lock,
                httpx.Client(auth=(write_key(project), ""), timeout=30, trust_env=False) as http,
            ):
                lock.execute(f'LOCK TABLE "{schema}".customers IN EXCLUSIVE MODE')
                r = http.post(server.url + "/v1/batch", json=identify("ida"))
                assert r.status_code == 200, r.text  # stored: acknowledged
                stored = f"SELECT count(*) FROM \"{schema}\".events WHERE message_id = 'crash-ida'"
                assert until(lambda: look.execute(stored).fetchone() == (1,), 30)
                time.sleep(1.0)  # the pass has started, and waits for the lock
                server.proc.send_signal(signal.SIGKILL)
                server.proc.wait(10)
                lock.rollback()
            assert look.execute(customers, ["ida@example.org"]).fetchall() == []  # not applied
            marks = look.execute(
                f'SELECT key FROM "{schema}".identity_state '
                "WHERE key LIKE 'continuous.unapplied:%'"
            ).fetchall()
            assert len(marks) == 1 and marks[0][0].endswith(f":{port}")  # the dead process's,
            # by host and port
            server = start_server(project, tmp_path / "serve2.log", port=port)
            assert until(
                lambda: look.execute(customers, ["ida@example.org"]).fetchall() == [("Ida",)], 60
            ), "the restarted server caught up"
            assert "catching up with what was received since" in server.log.read_text()
        finally:
            stop_all([], [server])
