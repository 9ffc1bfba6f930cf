"""Per-context capture of the standard streams, and the session a forwarded command borrows."""

from __future__ import annotations

import contextvars
import io
import sys
import threading
from pathlib import Path

from personify.config import load_project
from personify.server.capture import capture
from personify.session import Session, open_session, serving, serving_session


def test_capture_is_per_context_and_restores_the_streams() -> None:
    before = (sys.stdin, sys.stdout, sys.stderr)
    out, err = io.StringIO(), io.StringIO()
    other = io.StringIO()
    seen: list[str] = []

    def elsewhere() -> None:  # another thread, no capture of its own: not captured
        seen.append(type(sys.stdout).__name__)
        with capture(other, other):
            print("other thread")

    with capture(out, err):
        print("to out")
        print("to err", file=sys.stderr)
        assert sys.stdin.read() == ""
        assert not sys.stdout.isatty()
        assert sys.stdout.encoding == "utf-8"
        t = threading.Thread(target=elsewhere)
        t.start()
        t.join(timeout=10)
    assert (sys.stdin, sys.stdout, sys.stderr) == before
    assert out.getvalue() == "to out\n"
    assert err.getvalue() == "to err\n"
    assert other.getvalue() == "other thread\n"


def test_open_session_borrows_the_served_warehouse(project_dir: Path) -> None:
    host = Session(load_project(project_dir))
    try:
        wh = host.warehouse

        def inside() -> None:
            with serving(host):
                assert serving_session() is host
                with open_session(project_dir) as borrowed:
                    assert borrowed.warehouse is wh
            assert serving_session() is None

        contextvars.Context().run(inside)
        assert wh.scalar("SELECT 42") == 42  # still open after the borrowed session closed
    finally:
        host.close()
