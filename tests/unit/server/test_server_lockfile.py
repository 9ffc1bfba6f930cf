"""server.json and the server lock: publish, refuse a second server, stale files, secrecy."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from personify.server.lockfile import (
    SERVER_FILE,
    AlreadyServing,
    ServerInfo,
    ServerLock,
    live_server,
    lock_held,
    pid_alive,
    read_server_info,
)


def _info(pid: int | None = None, instance: str = "abc123", port: int = 8787) -> ServerInfo:
    return ServerInfo(
        pid=os.getpid() if pid is None else pid,
        host="127.0.0.1",
        port=port,
        token="s3cret-token",
        started_at="2026-01-01T00:00:00+00:00",
        instance=instance,
    )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    pid = int(done.stdout)
    assert not pid_alive(pid)
    return pid


def test_publish_is_private_and_withdrawn(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    with ServerLock(state) as lock:
        lock.publish(_info())
        file = state / SERVER_FILE
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert json.loads(file.read_text())["token"] == "s3cret-token"
        assert lock_held(state) is True
        assert live_server(state) == _info()
    assert not file.exists()
    assert lock_held(state) is False
    assert live_server(state) is None


def test_second_server_is_refused_naming_the_first(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    with ServerLock(state) as lock:
        lock.publish(_info(port=9999))
        with pytest.raises(AlreadyServing) as caught:
            ServerLock(state).acquire(timeout=0.2)
        assert f"process {os.getpid()}" in str(caught.value)
        assert "127.0.0.1:9999" in str(caught.value)
        assert "s3cret" not in str(caught.value)
    with ServerLock(state):  # free again once released
        pass


def test_stale_file_with_dead_pid_is_ignored_and_removed(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    state.mkdir()
    (state / SERVER_FILE).write_bytes(
        json.dumps(
            {
                "pid": _dead_pid(),
                "host": "127.0.0.1",
                "port": 1,
                "token": "t",
                "started_at": "x",
                "instance": "old",
            }
        ).encode()
    )
    assert live_server(state) is None
    assert not (state / SERVER_FILE).exists()


def test_stale_file_with_live_pid_but_no_lock_is_removed(tmp_path: Path) -> None:
    """A recycled pid: the process exists but holds no server lock."""
    state = tmp_path / ".personify"
    with ServerLock(state):
        pass  # the lock file exists, nobody holds it
    (state / SERVER_FILE).write_bytes(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": "127.0.0.1",
                "port": 1,
                "token": "t",
                "started_at": "x",
                "instance": "old",
            }
        ).encode()
    )
    assert live_server(state) is None
    assert not (state / SERVER_FILE).exists()


def test_corrupt_file_is_removed(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    state.mkdir()
    (state / SERVER_FILE).write_text("{not json")
    assert read_server_info(state) is None
    assert live_server(state) is None
    assert not (state / SERVER_FILE).exists()


def test_a_file_published_by_a_live_server_is_never_discarded(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    with ServerLock(state) as lock:
        lock.publish(_info(pid=_dead_pid()))  # pid dead, yet the lock is held: keep it
        assert live_server(state) is None
        assert (state / SERVER_FILE).exists()


def test_withdraw_leaves_another_servers_file(tmp_path: Path) -> None:
    state = tmp_path / ".personify"
    lock = ServerLock(state)
    lock.acquire()
    lock.publish(_info(instance="mine"))
    other = _info(instance="theirs")
    (state / SERVER_FILE).write_bytes(
        json.dumps(
            {
                "pid": other.pid,
                "host": other.host,
                "port": other.port,
                "token": other.token,
                "started_at": other.started_at,
                "instance": other.instance,
            }
        ).encode()
    )
    lock.release()
    assert read_server_info(state) == other


def test_repr_and_describe_hide_the_token() -> None:
    info = _info()
    assert "s3cret" not in repr(info)
    assert "s3cret" not in info.describe()
    assert info.url == "http://127.0.0.1:8787"
    wild = ServerInfo(pid=1, host="0.0.0.0", port=80, token="t", started_at="", instance="i")
    assert wild.url == "http://127.0.0.1:80"
    six = ServerInfo(pid=1, host="::", port=80, token="t", started_at="", instance="i")
    assert six.url == "http://[::1]:80"


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not pid_alive(-5)
