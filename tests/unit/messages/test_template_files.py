"""The template store reads a file again only when it changed: an unchanged tree costs a
``stat`` per file, not a read (``TextFiles``), and an edited partial, template, sidecar or
layout is used at the very next ``get``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from personify.messages import TemplateStore, build_context, render
from personify.messages.files import RACY_NS, TextFiles
from personify.messages.liquid_env import PartialPathError, PartialsLoader

CUSTOMER = {"customer_id": "c1", "first_name": "Ann", "email": "ann@x.org", "traits": {}}


def _write(path: Path, text: str, age: float = 60.0) -> None:
    """Write ``text``, its modification time ``age`` seconds ago (an edit of a file that had
    not changed for a while; a fresh one is read every time, see RACY_NS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    then = time.time() - age
    os.utime(path, (then, then))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _write(tmp_path / "hi.liquid", "---\nsubject: Hi\n---\n<p>Hi</p>{% render 'footer' %}")
    _write(tmp_path / "hi.yml", "tracking: false\n")
    _write(tmp_path / "partials/footer.liquid", "<p>Bye {{ customer.first_name }}</p>")
    return tmp_path


def _html(store: TemplateStore) -> str:
    return render(store.get("hi"), build_context(CUSTOMER)).html


def test_an_unchanged_tree_is_not_read_again(folder: Path) -> None:
    store = TemplateStore(folder)
    first = store.get("hi")
    reads = store.files.reads
    assert reads == 3  # template, sidecar, partial
    for _ in range(5):
        assert store.get("hi") is first  # the same version: parsed once
    assert store.files.reads == reads  # a stat each, no read


def test_an_edited_partial_is_used_at_once(folder: Path) -> None:
    store = TemplateStore(folder)
    before = store.get("hi")
    assert "Bye Ann" in _html(store)
    # the same size, an older time than the first version's: still another file version
    edited = "<p>Bye {{ customer.email }}!!!!!</p>"
    assert len(edited) == (folder / "partials/footer.liquid").stat().st_size
    _write(folder / "partials/footer.liquid", edited, 30)
    after = store.get("hi")
    assert after.version != before.version
    assert "Bye ann@x.org" in _html(store)
    _write(folder / "hi.yml", "tracking: true\n", 20)  # the sidecar too
    assert store.get("hi").tracking is True


def test_a_file_just_written_is_read_every_time(tmp_path: Path) -> None:
    """Timestamps are coarse: a file modified within RACY_NS is not kept, so a second edit of
    the same size in the same tick is still seen."""
    files = TextFiles()
    path = tmp_path / "a.liquid"
    path.write_text("one", encoding="utf-8")
    assert files.read(path) == "one"
    stamp = path.stat().st_mtime_ns
    path.write_text("two", encoding="utf-8")
    os.utime(path, ns=(stamp, stamp))  # the same signature (same tick, same size)
    assert files.read(path) == "two"
    assert files.reads == 2
    old = time.time_ns() - RACY_NS - 10**9
    os.utime(path, ns=(old, old))
    assert files.read(path) == "two" and files.read(path) == "two"
    assert files.reads == 3  # kept once it had settled


def test_a_partial_retargeted_outside_the_folder_is_refused(tmp_path: Path) -> None:
    """The checks of a partial's path are redone when its name leads to another file."""
    outside = tmp_path / "secret.txt"
    _write(outside, "secret")
    inside = tmp_path / "templates/partials/real.liquid"
    _write(inside, "<p>real</p>")
    link = tmp_path / "templates/partials/footer.liquid"
    link.symlink_to(inside)
    loader = PartialsLoader(tmp_path / "templates")
    assert loader.source("footer") == "<p>real</p>"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(PartialPathError):
        loader.source("footer")
