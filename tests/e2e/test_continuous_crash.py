"""A serving process killed (SIGKILL) after storing events but before its continuous-mode pass
applied them: the process that takes its place (same host and port) applies them when it
starts, with no ``personify run``.

Two ways to hold the pass back until the kill, both real:

- on every backend, the applier's own thread is kept busy: its journeys' tick hands an email to
  an SMTP server on loopback that accepts the connection and never greets, so the pass for
  events stored meanwhile waits its turn (it has not started when the process dies);
- on PostgreSQL also mid-pass: another connection keeps a lock on ``customers``, so the pass has
  started and waits inside its transaction when the process dies. DuckDB has nothing of the
  kind — no lock another process can take (one process opens the file), no lock statement
  (concurrent writers conflict and retry instead of waiting) — so that test is PostgreSQL's.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from personify.warehouse import connect
from tests.e2e.cli import personify_json, project_on, start_server, stop_all
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


CART_NOW = """name: cart_now
trigger: {event: Product Added, key: properties.cart_id, within: 24h}
purpose: email_marketing
steps:
  - send: cart_now
"""


class SilentSmtp:
    """A TCP server on loopback that accepts connections and never says a word: an SMTP client
    waits for its greeting until its timeout."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._listener.close()
        for conn in self.accepted:
            conn.close()


def _post(http: httpx.Client, url: str, path: str, body: dict[str, object]) -> None:
    r = http.post(url + path, json=body)
    assert r.status_code == 200, r.text


@pytest.mark.timeout(300)
def test_a_killed_server_with_a_busy_applier_leaves_nothing_unapplied(
    warehouse_url: str, tmp_path: Path
) -> None:
    """On DuckDB and PostgreSQL: events stored while the applier's thread waits on a silent SMTP
    server are applied by the next process on the same port, after a SIGKILL."""
    smtp = SilentSmtp()
    project = project_on(tmp_path / "shop", warehouse=warehouse_url)
    yml = project / "personify.yml"
    delivery = "delivery:\n  kind: outbox\n  path: outbox\n"
    assert delivery in yml.read_text()
    yml.write_text(
        yml.read_text().replace(
            delivery,
            f"delivery:\n  kind: smtp\n  host: 127.0.0.1\n  port: {smtp.port}\n  tls: none\n"
            "  timeout_seconds: 240\n  retries: 0\n",
        )
    )
    (project / "journeys" / "cart_now.yml").write_text(CART_NOW)
    (project / "templates" / "cart_now.liquid").write_text(
        '---\nsubject: "Your cart"\nlayout: none\n---\n<p>Hi {{ customer.first_name }}</p>\n'
    )
    connect(warehouse_url).close()  # migrated before the server starts
    p = str(project)
    server = start_server(project, tmp_path / "serve.log")
    port = server.port
    try:
        with httpx.Client(auth=(write_key(project), ""), timeout=30, trust_env=False) as http:
            _post(http, server.url, "/v1/batch", identify("bob"))
            deadline = time.monotonic() + 60
            bob = "SELECT customer_id FROM customers WHERE email = 'bob@example.org'"
            while not personify_json("sql", bob, "--project", p)["rows"]:
                assert time.monotonic() < deadline, server.output()
                time.sleep(0.2)
            consent = ["consent", "set", "bob@example.org", "--purpose", "email_marketing"]
            assert personify_json(*consent, "--status", "granted", "--project", p)
            added = {
                "userId": "bob",
                "messageId": "crash-bob-added",
                "event": "Product Added",
                "properties": {"cart_id": "c-1", "product_id": "p1"},
            }
            _post(http, server.url, "/v1/track", added)
            # the journey sends at once: the applier's thread now waits for a greeting
            assert until(lambda: smtp.accepted, 60), server.output()
            _post(http, server.url, "/v1/batch", identify("ida"))  # stored: acknowledged
            time.sleep(1.0)  # (a pass that could run would have run)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        smtp.close()  # the next process is refused at once: its tick does not hold its passes
        wh = connect(warehouse_url)
        try:
            stored = "SELECT count(*) FROM events WHERE message_id = 'crash-ida'"
            assert wh.scalar(stored) == 1
            ida = "SELECT first_name FROM customers WHERE email = 'ida@example.org'"
            assert wh.fetch(ida) == []  # not applied
            marks = wh.fetch(
                "SELECT key FROM identity_state WHERE key LIKE 'continuous.unapplied:%'"
            )
            assert len(marks) == 1 and str(marks[0][0]).endswith(f":{port}")
        finally:
            wh.close()
        server = start_server(project, tmp_path / "serve2.log", port=port)
        assert until(
            lambda: personify_json("sql", ida, "--project", p)["rows"] == [{"first_name": "Ida"}],
            60,
        ), server.output()
        assert "catching up with what was received since" in server.log.read_text()
    finally:
        stop_all([], [server])
        smtp.close()
