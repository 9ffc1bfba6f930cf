"""``serve --role`` refuses what cannot work, and ``bus:`` URLs parse to their settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from personify.config import Project, parse_config
from personify.errors import ConfigError
from personify.realtime.bus import DUPLICATE_WINDOW, decode, encode, parse_bus_url
from personify.server.roles import check_role


def project(text: str) -> Project:
    return Project(parse_config(text), Path("."), Path("personify.yml"))


def test_parse_bus_url() -> None:
    s = parse_bus_url("nats://127.0.0.1:4222?stream=shop.events&ack_wait=5", "x")
    assert (s.url, s.stream, s.ack_wait) == ("nats://127.0.0.1:4222", "shop_events", 5.0)
    assert s.subject == "shop_events.events"
    assert parse_bus_url("nats://h:4222", "my-shop").stream == "personify_my-shop"
    assert DUPLICATE_WINDOW >= 24 * 3600
    with pytest.raises(ConfigError, match="scheme"):
        parse_bus_url("kafka://h:9092")


def test_rows_travel_unchanged() -> None:
    from datetime import UTC, datetime

    row = ("m1", datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None, 1.5, 7, '{"a": 1}')
    assert decode(encode(row)) == row


def test_roles_need_a_bus_and_a_shared_warehouse() -> None:
    check_role(project("name: x\n"), "all")
    with pytest.raises(ConfigError, match="needs a message bus"):
        check_role(project("name: x\n"), "worker")
    with pytest.raises(ConfigError, match="belongs to one process"):
        check_role(project("name: x\nbus: nats://127.0.0.1:4222\n"), "ingest")
    check_role(
        project("name: x\nwarehouse: postgresql://u@h/db\nbus: nats://127.0.0.1:4222\n"), "worker"
    )
    with pytest.raises(ConfigError, match="unknown role"):
        check_role(project("name: x\n"), "bogus")


def test_an_unreachable_bus_is_named_without_its_credentials() -> None:
    """Nothing listening on the bus's port (a real closed loopback port): connecting gives up
    after its deadline — nats-py alone retries for ever — with `cannot reach the bus at …`
    naming host and port, never the URL's user and password."""
    import asyncio
    import socket
    import time

    from personify.errors import ServiceUnavailable
    from personify.realtime.bus import BusSettings, _connect

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    settings = BusSettings(url=f"nats://ops:s3cret-pw@127.0.0.1:{port}", stream="t")
    began = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        asyncio.run(_connect(settings, deadline=3))
    assert time.monotonic() - began < 8
    said = f"{caught.value} {caught.value.hint}"
    assert f"cannot reach the bus at 127.0.0.1:{port} within 3 s" in said
    assert "ConnectionRefusedError" in said and "nats-server -js" in said
    assert "s3cret-pw" not in said and "ops" not in said


def test_status_says_why_the_bus_is_unreachable(tmp_path: Path) -> None:
    """`personify status` with the bus down names the address and the last error (without the
    URL's credentials), not only the error's type (`unreachable (ServiceUnavailable)`)."""
    import socket

    from personify.session import open_session
    from personify.status import status_report

    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    (tmp_path / "personify.yml").write_text(
        f"name: shop\nbus: nats://ops:s3cret-pw@127.0.0.1:{port}\n"
    )
    with open_session(tmp_path) as session:
        queues = status_report(session)["queues"]
    assert queues["bus_depth"] is None
    said = str(queues["bus_error"])
    assert said.startswith(f"cannot reach the bus at 127.0.0.1:{port}"), said
    assert "s3cret-pw" not in said and "ops" not in said
