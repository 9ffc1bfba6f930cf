"""Writing the world: every format, byte for byte the same each time, readable back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from personify.demo import FILES, World, read_manifest, write_world


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def written(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world") / "data"
    write_world(world, folder)
    return folder


def test_every_format_is_written(written: Path) -> None:
    suffixes = {p.suffix for p in written.rglob("*") if p.is_file()}
    assert {".csv", ".jsonl", ".parquet", ".json"} <= suffixes
    for spec in FILES:
        assert (written / spec.path).exists(), spec.path


def test_files_read_back_with_the_tables_rows(world: World, written: Path) -> None:
    assert pacsv.read_csv(written / "products.csv").num_rows == world.products.num_rows
    assert pq.read_table(written / "orders.parquet").num_rows == world.orders.num_rows
    events = pq.read_table(written / "events")
    assert events.num_rows == world.events.num_rows
    assert events.column("properties").type == "string"  # plain Parquet types for any reader
    contacts = (written / "crm" / "contacts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(contacts) == world.crm_contacts.num_rows
    first = json.loads(contacts[0])
    assert {"id", "properties", "createdAt", "updatedAt"} <= set(first)
    assert "email" in first["properties"]


def test_some_json_lines_are_malformed(written: Path) -> None:
    for name in ("tickets.jsonl", "crm/updates.jsonl"):
        bad = 0
        for line in (written / name).read_text(encoding="utf-8").splitlines():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                bad += 1
        assert bad > 0, name


def test_the_manifest_records_the_world(world: World, written: Path) -> None:
    manifest = read_manifest(written)
    assert manifest is not None
    assert manifest["seed"] == 7 and manifest["customers"] == 1000
    assert manifest["now"] == "2026-01-31T09:00:00Z"
    assert manifest["files"]["events"]["rows"] == world.events.num_rows


def test_writing_again_gives_the_same_bytes(world: World, written: Path, tmp_path: Path) -> None:
    again = tmp_path / "data"
    write_world(world, again)
    assert _digests(again) == _digests(written)


def test_parts_and_batches_bound_the_event_files(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personify.demo import files

    monkeypatch.setattr(files, "PART_ROWS", 4000)
    monkeypatch.setattr(files, "EVENT_BATCH_ROWS", 1500)
    write_world(world, tmp_path)
    parts = sorted((tmp_path / "events").glob("part-*.parquet"))
    assert len(parts) == -(-world.events.num_rows // 4000)
    assert pq.ParquetFile(parts[0]).metadata.num_row_groups == 3
    assert pq.read_table(tmp_path / "events").num_rows == world.events.num_rows


def test_progress_counts_every_row_once_while_parts_write_side_by_side(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from personify.demo import files

    monkeypatch.setattr(files, "PART_ROWS", 2000)  # several parts per log, two at a time
    monkeypatch.setattr(files, "EVENT_BATCH_ROWS", 700)
    seen: list[tuple[str, int, int]] = []
    manifest = write_world(world, tmp_path, progress=lambda *call: seen.append(call))
    total = sum(world.sizes().values())
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen)
    assert seen[-1] == ("Writing the world", total, total)
    assert list(manifest["files"]) == [spec.path for spec in FILES]  # (in the import order)
    assert manifest["files"]["events"]["rows"] == world.events.num_rows
    parts = sorted(p.name for p in (tmp_path / "events").glob("part-*.parquet"))
    assert parts == [f"part-{k:03d}.parquet" for k in range(-(-world.events.num_rows // 2000))]
