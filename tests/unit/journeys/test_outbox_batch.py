"""The outbox's batch path (what the send loop uses): one disk flush per batch, same guarantees
as one message at a time — written once per key, indexed once, no temporary file left."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.delivery.test_outbox import envelope

from personify.delivery import Delivered, OutboxTransport
from personify.delivery.outbox import file_name
from personify.delivery.transport import send_many


def test_send_many_writes_each_key_once_and_indexes_it_once(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    outbox = OutboxTransport(folder)
    first = send_many(outbox, [envelope("a"), envelope("b"), envelope("a", subject="Again")])
    assert [isinstance(d, Delivered) and d.new for d in first] == [True, True, False]
    assert "Hello" in (folder / file_name("a")).read_text()  # the first one wins

    (folder / file_name("c")).write_bytes(envelope("c").raw)  # a crash after the file, no line
    again = send_many(OutboxTransport(folder), [envelope("b"), envelope("c"), envelope("d")])
    assert [isinstance(d, Delivered) and d.new for d in again] == [False, False, True]
    keys = [json.loads(x)["key"] for x in (folder / "index.jsonl").read_text().splitlines()]
    assert sorted(keys) == ["a", "b", "c", "d"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(file_name(k) for k in "abcd"), "index.jsonl"]
    )
