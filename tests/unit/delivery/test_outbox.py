"""The outbox: atomic files named by key, written once, an index without addresses."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from personify.delivery import (
    Delivered,
    Envelope,
    OutboxTransport,
    Transport,
    address,
    build_message,
)
from personify.delivery.outbox import file_name
from personify.messages import RenderedEmail

WHEN = datetime(2026, 2, 1, tzinfo=UTC)


def envelope(key: str, subject: str = "Hello") -> Envelope:
    email = RenderedEmail("cart", "v", subject, "<p>x</p>", "x\n")
    msg = build_message(
        email,
        sender=address("shop@example.com"),
        recipient=address("ann@x.org", "Ann"),
        date=WHEN,
        key=key,
    )
    return Envelope(key, "c1", "cart", subject, msg)


def test_written_once_and_indexed_without_addresses(tmp_path: Path) -> None:
    outbox: Transport = OutboxTransport(tmp_path / "outbox")
    first = outbox.send(envelope("abandoned_cart:wait:c1:cart/9"))
    assert first.new
    path = Path(first.location)
    assert path.parent == tmp_path / "outbox" and path.suffix == ".eml"
    assert "/" not in path.name.removesuffix(".eml")
    back = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert back["Subject"] == "Hello"
    again = outbox.send(envelope("abandoned_cart:wait:c1:cart/9", subject="Changed"))
    assert not again.new and again.location == first.location
    assert "Hello" in path.read_text()  # never overwritten
    fresh = OutboxTransport(tmp_path / "outbox")  # a rerun in a new process
    assert not fresh.send(envelope("abandoned_cart:wait:c1:cart/9")).new
    outbox.send(envelope("k2"))
    lines = (tmp_path / "outbox" / "index.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines]
    assert [d["key"] for d in docs] == ["abandoned_cart:wait:c1:cart/9", "k2"]
    assert set(docs[0]) >= {"key", "customer_id", "template", "subject", "file"}
    assert docs[0]["file"] == path.name
    assert "@" not in "\n".join(lines)
    assert sorted(p.name for p in (tmp_path / "outbox").iterdir()) == sorted(
        [path.name, file_name("k2"), "index.jsonl"]
    )  # no temporary files left


def test_a_crash_before_the_index_line_is_repaired(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / file_name("k")).write_bytes(envelope("k").message.as_bytes())  # file, no line
    assert not OutboxTransport(folder).send(envelope("k")).new
    docs = [json.loads(x) for x in (folder / "index.jsonl").read_text().splitlines()]
    assert [d["key"] for d in docs] == ["k"]


def test_a_torn_temporary_file_is_never_taken_for_the_message(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / f".{file_name('k')}.dead.tmp").write_bytes(b"half a mess")
    result = OutboxTransport(folder).send(envelope("k"))
    assert result.new and os.path.getsize(result.location) > 100


def test_distinct_keys_distinct_files() -> None:
    assert file_name("a/b") != file_name("a_b") and file_name("x").endswith(".eml")


def test_a_batch_flushes_its_own_files_never_the_whole_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """send_many flushes each new file and the folder (fdatasync/fsync of those descriptors);
    a machine-wide sync() would stall every other process's writes."""
    import personify.delivery.outbox as outbox_module

    def machine_wide() -> None:
        raise AssertionError("os.sync() flushes every file system of the machine")

    flushed: list[int] = []
    real = outbox_module._DATASYNC

    def datasync(fd: int) -> None:
        flushed.append(fd)
        real(fd)

    monkeypatch.setattr(os, "sync", machine_wide)
    monkeypatch.setattr(outbox_module, "_DATASYNC", datasync)
    monkeypatch.setattr(outbox_module, "_OPEN_MAX", 3)  # several flush rounds in one batch
    outbox = OutboxTransport(tmp_path / "outbox")
    outbox.send(envelope("k0"))
    batch = [envelope(f"k{i}") for i in range(8)]
    results = outbox.send_many(batch)
    assert [r.new for r in results if isinstance(r, Delivered)] == [False] + [True] * 7
    assert len(flushed) == 7  # each new file once; the existing one is not rewritten
    names = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert names == sorted([*(file_name(f"k{i}") for i in range(8)), "index.jsonl"])
    keys = [
        json.loads(x)["key"] for x in (tmp_path / "outbox" / "index.jsonl").read_text().splitlines()
    ]
    assert keys == [f"k{i}" for i in range(8)]
