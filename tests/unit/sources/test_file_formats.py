"""Reading files in bounded batches with physical line numbers."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personify.errors import FileImportError
from personify.sources.formats import RAW_COLUMN, RawBatch, detect_format, read_batches


def read(path: Path, fmt: str, rows: int = 1000) -> tuple[list[RawBatch], list[int], list[int]]:
    _, batches = read_batches(path, fmt, rows=rows)  # type: ignore[arg-type]
    got = list(batches)
    lines = [n for b in got for n in b.lines.to_pylist()]
    malformed = [m.line for b in got for m in b.malformed]
    return got, lines, malformed


def test_csv_rows_carry_the_physical_line_they_start_on(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "id,note\n"  # 1
        "a,plain\n"  # 2
        'b,"two\nlines"\n'  # 3-4
        "\n"  # 5 (blank)
        "c,x,extra\n"  # 6 (malformed)
        'd,"three\n\nlines"\n'  # 7-9
        'e,"bad\nrow",too,many\n'  # 10-11 (malformed)
        "f,last"  # 12, no final newline
    )
    batches, lines, malformed = read(path, "csv", rows=2)
    ids = [i for b in batches for i in b.data.column("id").to_pylist()]
    assert dict(zip(ids, lines, strict=True)) == {"a": 2, "b": 3, "": 5, "d": 7, "f": 12}
    assert malformed == [6, 10]
    assert max(b.data.num_rows for b in batches) <= 2
    assert batches[-1].done == 5


def test_csv_keeps_text_as_text(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("\ufeffzip;amount\n007;1.50\n", encoding="utf-8")
    fields, batches = read_batches(path, "csv", rows=10, delimiter=";")
    assert fields == {"zip": pa.string(), "amount": pa.string()}
    assert next(batches).data.to_pylist() == [{"zip": "007", "amount": "1.50"}]


def test_jsonl_lines_are_numbered_and_kept_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n{"a": 2}\n\xff\n{"a": 3}')
    batches, lines, _ = read(path, "jsonl", rows=2)
    raw = [x for b in batches for x in b.data.column(RAW_COLUMN).to_pylist()]
    assert lines == [1, 2, 3, 4, 5]
    assert raw == [b'{"a": 1}\r\n', b"\n", b'{"a": 2}\n', b"\xff\n", b'{"a": 3}']


def test_parquet_rows_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"x": list(range(5))}), path)
    batches, lines, _ = read(path, "parquet", rows=2)
    assert lines == [1, 2, 3, 4, 5] and [b.total for b in batches] == [5, 5, 5]


def test_format_comes_from_the_suffix_unless_declared(tmp_path: Path) -> None:
    assert detect_format(Path("a.NDJSON"), None) == "jsonl"
    assert detect_format(Path("a.txt"), "jsonl") == "jsonl"
    with pytest.raises(FileImportError, match="cannot tell the format"):
        detect_format(Path("a.xlsx"), None)


def test_unreadable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(FileImportError, match="no such file"):
        read_batches(tmp_path / "nope.csv", "csv", rows=10)
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"x": [1]}), parquet)
    with pytest.raises(FileImportError, match="binary file, not CSV"):
        read_batches(parquet, "csv", rows=10)
    dupes = tmp_path / "d.csv"
    dupes.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(FileImportError, match="d.csv:1: the header names 'a' more than once"):
        read_batches(dupes, "csv", rows=10)
    latin = tmp_path / "l.csv"
    latin.write_bytes("name\nJos\xe9\n".encode("latin-1"))
    _, batches = read_batches(latin, "csv", rows=10)
    with pytest.raises(FileImportError, match="not UTF-8"):
        list(batches)


def test_text_with_a_few_nul_bytes_is_read_and_binary_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "nul.csv"
    text.write_bytes(b"customer_id,email\nn1,n1@exa\x00mple.com\nn2,n2@example.com\n")
    batches, lines, _ = read(text, "csv", rows=10)
    assert lines == [2, 3]
    assert batches[0].data.column("email").to_pylist() == ["n1@exa\x00mple.com", "n2@example.com"]
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("customer_id,email\nn1,a@b.co\n".encode("utf-16"))
    with pytest.raises(
        FileImportError, match=r"binary file, not CSV text \(a NUL byte on line 1\)"
    ):
        read_batches(utf16, "csv", rows=10)
    blob = tmp_path / "blob.jsonl"
    blob.write_bytes(b'{"a": 1}\n' + bytes(range(256)) * 4)
    with pytest.raises(
        FileImportError, match=r"binary file, not JSONL text \(a NUL byte on line 2\)"
    ):
        read_batches(blob, "jsonl", rows=10)
    header = tmp_path / "h.csv"
    header.write_bytes(b"customer_id,em\x00ail\nn1,a@b.co\n")
    with pytest.raises(FileImportError, match="h.csv:1: the header holds a NUL character"):
        read_batches(header, "csv", rows=10)


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 20])
def test_text_files_read_the_same_whatever_the_block_size(tmp_path: Path, block: int) -> None:
    jsonl = tmp_path / "e.jsonl"
    lines = [f'{{"n": {i}, "pad": "{"x" * (i % 13)}"}}' for i in range(40)]
    jsonl.write_text("\n".join(lines) + "\n")
    _, batches = read_batches(jsonl, "jsonl", rows=3, block_bytes=block)
    got = [b for batch in batches for b in batch.data.column(RAW_COLUMN).to_pylist()]
    assert got == [f"{line}\n".encode() for line in lines]
    csv = tmp_path / "c.csv"
    csv.write_text("n,note\n" + "".join(f'{i},"a\nb{i}"\n' for i in range(40)))
    _, batches = read_batches(csv, "csv", rows=3, block_bytes=max(block, 64))
    numbered = [
        (r["n"], n)
        for b in batches
        for r, n in zip(b.data.to_pylist(), b.lines.to_pylist(), strict=True)
    ]
    assert numbered == [(str(i), 2 + 2 * i) for i in range(40)]


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ('v1,a,"Jo\nv2,b,Ann\nv3,c,Max\n', 2),  # in the last column: one value to the end
        ('v1,"Jo,a\nv2,b,Ann\nv3,c,Max\n', 2),  # in another: a row with too few fields
        ('v1,a,Jo\nv2,b,Ann\nv3,c,"Max\n', 4),  # on the last line
        ('v1,a,"Jo\n' + "".join(f"v{i},b,{'x' * 100}\n" for i in range(2000)), 2),  # > 128 KiB
    ],
)
def test_a_quote_never_closed_refuses_the_file_with_its_line(
    tmp_path: Path, body: str, line: int
) -> None:
    path = tmp_path / "q.csv"
    path.write_text("id,email,name\n" + body)
    _, batches = read_batches(path, "csv", rows=10)
    with pytest.raises(FileImportError, match=rf"q.csv:{line}: a quoted field opened on this"):
        list(batches)


def test_closed_quotes_over_several_lines_at_the_end_are_read(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('id,note\r\na,"two\r\nlines"\r\nb,"""quoted""\nand more"')
    _, lines, _ = read(path, "csv")
    assert lines == [2, 4]
