"""The outbox transport: one ``.eml`` file per message in a folder, plus ``index.jsonl``.

Files are named by the idempotency key and written atomically (a temporary file, then a hard
link that fails when the name exists), so a rerun — or two processes racing — never writes one
message twice and a reader never sees half a file. ``index.jsonl`` gets one line per message:
key, customer id, template, subject, file, written at — never an email address.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from personify import clock
from personify.delivery.transport import Delivered, DeliveryError, Envelope

INDEX = "index.jsonl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(key: str) -> str:
    """The ``.eml`` name of a key: readable, filesystem-safe and unique (a hash suffix)."""
    readable = _UNSAFE.sub("_", key).strip("._")[:80] or "message"
    return f"{readable}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12]}.eml"


_FLUSHERS = 16
"""Threads issuing one batch's ``fdatasync`` calls at once (the file system groups them)."""
_DATASYNC = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_OPEN_MAX = 256
"""Files a batch keeps open before flushing them (a large batch stays under the fd limit)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush_all(fds: list[int]) -> None:
    """``fdatasync`` every file of ``fds`` (concurrently: one journal commit serves many), then
    close them and empty the list."""
    try:
        if len(fds) == 1:
            _DATASYNC(fds[0])
        elif fds:
            with ThreadPoolExecutor(max_workers=min(_FLUSHERS, len(fds))) as pool:
                list(pool.map(_DATASYNC, fds))
    finally:
        while fds:
            os.close(fds.pop())


def _fsync_dir(folder: Path) -> None:
    """Flush ``folder``'s entries (new names and links) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutboxTransport:
    """Writes each message as ``FOLDER/<key>.eml``; see the module docstring."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._indexed: set[str] | None = None

    def send(self, envelope: Envelope) -> Delivered:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = file_name(envelope.key)
        target = self.folder / name
        new = self._write_once(target, envelope.raw)
        with self._lock:
            if new or envelope.key not in self._index_keys():
                self._append_index(envelope, name)
        return Delivered(envelope.key, new, str(target))

    def send_many(self, envelopes: Sequence[Envelope]) -> list[Delivered | DeliveryError]:
        """:meth:`send` for a batch, flushing the batch's files together instead of one after
        the other: every new message goes to its temporary file, each file's data is flushed
        (``fdatasync``, issued from a few threads at once so the file system commits them in a
        few journal writes — sequential flushes cost milliseconds each), then each is linked
        under its name (still atomic and written once), the folder itself is flushed so the
        names survive a power cut, and the index gets the batch's lines in one append. Only the
        batch's own files are flushed, never the whole machine (no ``sync()``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        staged: list[tuple[Envelope, Path, Path | None]] = []
        opened: list[int] = []
        try:
            for envelope in envelopes:
                target = self.folder / file_name(envelope.key)
                if target.exists():
                    staged.append((envelope, target, None))
                    continue
                temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                opened.append(fd)
                staged.append((envelope, target, temporary))
                _write_all(fd, envelope.raw)
                if len(opened) >= _OPEN_MAX:
                    _flush_all(opened)
            _flush_all(opened)
            out: list[Delivered | DeliveryError] = []
            with self._lock:
                known = self._index_keys()
                lines = []
                for envelope, target, pending in staged:
                    new = False
                    if pending is not None:
                        try:
                            os.link(pending, target)
                            new = True
                        except FileExistsError:
                            pass
                    if new or envelope.key not in known:
                        lines.append(self._index_line(envelope, target.name))
                        known.add(envelope.key)
                    out.append(Delivered(envelope.key, new, str(target)))
                if any(d.new for d in out if isinstance(d, Delivered)):
                    _fsync_dir(self.folder)  # the new names are durable before "sent"
                if lines:
                    self._append_lines(lines)
            return out
        finally:
            for fd in opened:
                os.close(fd)
            opened.clear()
            for _, _, pending in staged:
                if pending is not None:
                    pending.unlink(missing_ok=True)

    def close(self) -> None:
        self._indexed = None

    def _write_once(self, target: Path, data: bytes) -> bool:
        if target.exists():
            return False
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, target)  # atomic, and refuses to replace an existing file
            _fsync_dir(self.folder)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _index_keys(self) -> set[str]:
        if self._indexed is None:
            self._indexed = set()
            path = self.folder / INDEX
            if path.exists():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        self._indexed.add(json.loads(line)["key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a torn last line after a crash
        return self._indexed

    def _append_index(self, envelope: Envelope, name: str) -> None:
        self._append_lines([self._index_line(envelope, name)])
        self._index_keys().add(envelope.key)

    def _append_lines(self, lines: list[str]) -> None:
        fd = os.open(self.folder / INDEX, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(line + "\n" for line in lines).encode("utf-8"))
        finally:
            os.close(fd)

    def _index_line(self, envelope: Envelope, name: str) -> str:
        return json.dumps(
            {
                "key": envelope.key,
                "customer_id": envelope.customer_id,
                "template": envelope.template,
                "subject": envelope.subject,
                "file": name,
                "written_at": clock.now().isoformat(),
            },
            ensure_ascii=False,
        )
