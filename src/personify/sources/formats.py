"""Reading CSV, JSON Lines and Parquet files as bounded Arrow batches with line numbers.

Each reader yields :class:`RawBatch` es of at most ``rows`` rows, never the whole file at once:

* **CSV** — every column as text (no type guessing: ``007`` stays ``007``). The header is line 1;
  each row carries the physical line it starts on, counting quoted fields that span lines and
  blank lines. Rows with the wrong number of fields come back as :class:`MalformedRow` s.
* **JSON Lines** — each physical line as raw bytes (column ``__raw``), numbered from 1; decoding
  and parsing happen in validation, so one bad line never fails the file.
* **Parquet** — the stored columns and types, rows numbered from 1.

A file that cannot be read at all raises :class:`~personify.errors.FileImportError` naming it and
saying what to do.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from personify.config import FileFormat
from personify.errors import FileImportError
from personify.ingest.validate import RAW_COLUMN

SUFFIXES: Final[dict[str, FileFormat]] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
BLOCK_BYTES: Final = 16 << 20
"""Bytes of a text file parsed at a time (batches are cut from blocks)."""


@dataclass(frozen=True)
class MalformedRow:
    """A CSV row the parser could not split into the header's number of fields."""

    line: int
    text: str
    fields: int
    expected: int


@dataclass(frozen=True)
class RawBatch:
    """Rows as read, before validation."""

    data: pa.Table
    lines: pa.Array
    """int64, one per row: the physical line (CSV, JSON Lines) or the row number (Parquet)."""
    malformed: list[MalformedRow] = field(default_factory=list)
    done: int = 0
    """Rows read from the file so far (for progress)."""
    total: int = 0
    """Rows in the file: exact for Parquet, estimated from bytes for text formats."""


def detect_format(path: Path, declared: FileFormat | None) -> FileFormat:
    """The declared format, else the one the suffix names."""
    if declared is not None:
        return declared
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise FileImportError(
            f"{path}: cannot tell the format from the suffix {path.suffix or '(none)'!r}",
            hint="name it .csv, .jsonl or .parquet, or set the source's `format`",
        )
    return fmt


def read_batches(
    path: Path,
    fmt: FileFormat,
    *,
    rows: int,
    delimiter: str = ",",
    block_bytes: int = BLOCK_BYTES,
) -> tuple[dict[str, pa.DataType] | None, Iterator[RawBatch]]:
    """The file's top-level fields (``None`` for JSON Lines) and its batches of at most ``rows``
    rows (text files are parsed ``block_bytes`` at a time)."""
    if not path.is_file():
        raise FileImportError(
            f"{path}: no such file", hint="check the source's `path` (relative to the project)"
        )
    if fmt == "parquet":
        return _parquet(path, rows)
    _sniff_text(path, fmt)
    if fmt == "csv":
        return _csv(path, rows, delimiter, block_bytes)
    return None, _jsonl(path, rows, block_bytes)


def stored_rows(path: Path, declared: FileFormat | None) -> int:
    """The rows a Parquet file holds, from its footer (no data read); 0 for text files and for
    files that cannot be read (their import reports why). A hint for sizing, never a count."""
    try:
        if detect_format(path, declared) != "parquet":
            return 0
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (FileImportError, pa.ArrowException, OSError):
        return 0


SNIFF_BYTES: Final = 4096
"""Bytes of a text file looked at to tell it from a binary one."""


def _sniff_text(path: Path, fmt: str) -> None:
    """Refuse a binary file given as text. A few NUL bytes in text are not enough: the rows that
    hold them are quarantined (``invalid_value``) and the rest load."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    if head.startswith(b"PAR1") or _binary(head):
        at = head.find(b"\x00")
        where = f" (a NUL byte on line {head.count(10, 0, at) + 1})" if at >= 0 else ""
        raise FileImportError(
            f"{path}: this is a binary file, not {fmt.upper()} text{where}",
            hint="set the source's `format` to match the file (csv, jsonl or parquet)",
        )


def _binary(head: bytes) -> bool:
    """Whether the first bytes of a file are binary rather than text with stray NULs: NULs in
    more than one byte of 8 (UTF-16 text has one in every other byte), or, NULs set aside, bytes
    that are not UTF-8 (Parquet, gzip, spreadsheets)."""
    nuls = head.count(0)
    if not nuls:
        return False  # (text that is not UTF-8 is reported by the reader, with its line)
    if nuls * 8 > len(head):
        return True
    try:
        head.replace(b"\x00", b"").decode()
    except UnicodeDecodeError as e:
        return e.reason != "unexpected end of data"  # (the head may cut a character in two)
    return False


# ------------------------------------------------------------------------------------- Parquet
def _parquet(path: Path, rows: int) -> tuple[dict[str, pa.DataType], Iterator[RawBatch]]:
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise FileImportError(
            f"{path}: not a readable Parquet file ({e})",
            hint="set the source's `format` to match the file, or re-export it as Parquet",
        ) from None
    fields = {f.name: f.type for f in pf.schema_arrow}
    total = pf.metadata.num_rows

    def batches() -> Iterator[RawBatch]:
        done = 0
        try:
            for batch in pf.iter_batches(batch_size=rows):
                n = batch.num_rows
                lines = pa.array(np.arange(done + 1, done + n + 1, dtype=np.int64))
                done += n
                yield RawBatch(pa.Table.from_batches([batch]), lines, done=done, total=total)
        except pa.ArrowException as e:
            raise FileImportError(f"{path}: row {done + 1}: cannot read Parquet ({e})") from None

    return fields, batches()


# ----------------------------------------------------------------------------------------- CSV
def _csv_header(path: Path, delimiter: str) -> list[str] | None:
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            header = next(csv.reader(f, delimiter=delimiter), None)
    except csv.Error as e:
        raise FileImportError(f"{path}:1: cannot read the CSV header ({e})") from None
    if header and any(_undecodable(h) for h in header):
        raise FileImportError(
            f"{path}:1: the header is not UTF-8 text",
            hint="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )
    if header and any("\x00" in h for h in header):
        raise FileImportError(
            f"{path}:1: the header holds a NUL character", hint="remove it from the column names"
        )
    return header


def _undecodable(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _csv(
    path: Path, rows: int, delimiter: str, block_bytes: int
) -> tuple[dict[str, pa.DataType], Iterator[RawBatch]]:
    header = _csv_header(path, delimiter)
    if header is None:
        return {}, iter(())
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise FileImportError(
            f"{path}:1: the header names {', '.join(map(repr, dupes))} more than once",
            hint="give every column a distinct name",
        )
    numbering = _CsvLines(first=2 + sum(h.count("\n") for h in header))

    def on_invalid(row: Any) -> str:
        numbering.invalid(int(row.number), str(row.text), row.actual_columns, row.expected_columns)
        return "skip"

    def open_reader() -> tuple[pa.NativeFile, Any]:
        stream = pa.OSFile(str(path))
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=block_bytes),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter,
                    newlines_in_values=True,
                    ignore_empty_lines=False,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
                ),
            )
        except pa.ArrowException as e:
            stream.close()
            raise _csv_error(path, e) from None
        return stream, reader

    size = max(path.stat().st_size, 1)

    def batches() -> Iterator[RawBatch]:
        stream, reader = open_reader()
        done = 0
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowException as e:
                    raise _csv_error(path, e) from None
                lines, malformed = numbering.batch(batch)
                table = pa.Table.from_batches([batch])
                total = int(done + batch.num_rows * size / max(stream.tell(), 1))
                for offset in range(0, max(table.num_rows, 1), rows):
                    done += min(rows, table.num_rows - offset)
                    yield RawBatch(
                        table.slice(offset, rows),
                        lines.slice(offset, rows),
                        malformed if offset == 0 else [],
                        done=done,
                        total=max(total, done),
                    )
            tail = numbering.finish()
            if numbering.last_newlines:
                _check_closed(path, numbering.last_line, delimiter)
            if tail:
                empty = pa.table({h: pa.array([], pa.string()) for h in header})
                yield RawBatch(empty, pa.array([], pa.int64()), tail, done=done, total=done)
        finally:
            stream.close()

    return dict.fromkeys(header, pa.string()), batches()


def _check_closed(path: Path, line: int, delimiter: str) -> None:
    """Raise when the file's last record, which starts on physical ``line`` and spans several,
    holds a quoted field that is never closed. The parser reads such a field to the end of the
    file: every row after the stray quote would become part of one value (and none would be
    counted). Only that record is read again, by Python's strict CSV reader."""
    with path.open("rb") as f:
        for _ in range(line - 1):
            f.readline()
        rest = f.read().decode("utf-8", errors="replace")
    # (a field that runs to the end may be longer than the reader's default limit, 128 KiB)
    csv.field_size_limit(max(csv.field_size_limit(), len(rest) + 1))
    try:
        for _ in csv.reader(io.StringIO(rest, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as e:
        if "unexpected end of data" not in str(e):
            return  # (another oddity the parser read its own way: its rows were counted)
        raise FileImportError(
            f"{path}:{line}: a quoted field opened on this line is never closed: the rest of "
            f"the file ({rest.count(chr(10))} lines) would be read as its value",
            hint='close the quote; a quote inside a quoted field is written twice ("")',
        ) from None


def _csv_error(path: Path, e: Exception) -> FileImportError:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    if "UTF8" in text or "utf-8" in text.lower():
        return FileImportError(
            f"{path}: not UTF-8 text ({text})",
            hint="re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        )
    return FileImportError(f"{path}: cannot read it as CSV ({text})")


class _CsvLines:
    """Physical line numbers for CSV rows, from record numbers and embedded newlines.

    The parser numbers records (header = 1, blank lines included) and reports rows it skips; a
    row's physical line adds the newlines inside the quoted fields of every record before it.
    """

    def __init__(self, first: int) -> None:
        self.first = first  # physical line of the first data record
        self.parsed = 0  # data rows parsed so far
        self.newlines = 0  # newlines inside parsed rows so far
        self.bad: list[tuple[int, int, str, int, int]] = []  # (q, record, text, fields, expected)
        self.emitted = 0
        self.last_line = 0  # physical line the last record read starts on
        self.last_newlines = 0  # newlines inside that record

    def invalid(self, record: int, text: str, fields: int, expected: int) -> None:
        q = record - 2 - len(self.bad)  # how many parsed rows come before it
        self.bad.append((q, record, text, fields, expected))

    def _bad_newlines(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        counts = np.array([b[2].count("\n") for b in self.bad], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def batch(self, batch: pa.RecordBatch) -> tuple[pa.Array, list[MalformedRow]]:
        n = batch.num_rows
        per_row = np.zeros(n, dtype=np.int64)
        for column in batch.columns:
            per_row += pc.count_substring(column, "\n").to_numpy(zero_copy_only=False)
        before = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int64) + self.newlines
        index = np.arange(self.parsed, self.parsed + n, dtype=np.int64)
        qs = np.array([b[0] for b in self.bad], dtype=np.int64)
        k = np.searchsorted(qs, index, side="right")
        bad_nl = self._bad_newlines()
        lines = self.first + index + k + before[:-1] + bad_nl[k]
        malformed = self._emit(upto=self.parsed + n, before=before, bad_nl=bad_nl)
        if n and int(lines[-1]) > self.last_line:
            self.last_line, self.last_newlines = int(lines[-1]), int(per_row[-1])
        self.parsed += n
        self.newlines = int(before[-1])
        return pa.array(lines, pa.int64()), malformed

    def _emit(
        self, *, upto: int, before: np.ndarray[Any, Any], bad_nl: np.ndarray[Any, Any]
    ) -> list[MalformedRow]:
        out: list[MalformedRow] = []
        while self.emitted < len(self.bad) and self.bad[self.emitted][0] <= upto:
            q, record, text, fields, expected = self.bad[self.emitted]
            parsed_nl = int(before[min(max(q - self.parsed, 0), len(before) - 1)])
            line = record + (self.first - 2) + parsed_nl + int(bad_nl[self.emitted])
            out.append(MalformedRow(line, text, fields, expected))
            if line > self.last_line:
                self.last_line, self.last_newlines = line, text.count("\n")
            self.emitted += 1
        return out

    def finish(self) -> list[MalformedRow]:
        before = np.array([self.newlines], dtype=np.int64)
        return self._emit(upto=1 << 62, before=before, bad_nl=self._bad_newlines())


# ---------------------------------------------------------------------------------- JSON Lines
def _jsonl(path: Path, rows: int, block_bytes: int) -> Iterator[RawBatch]:
    size = max(path.stat().st_size, 1)
    line = 1
    consumed = 0
    with path.open("rb") as f:
        carry = b""
        while True:
            chunk = f.read(block_bytes)
            buf = carry + chunk
            if not chunk:
                if not buf:
                    return
                complete, carry = buf, b""
            else:
                cut = buf.rfind(b"\n") + 1
                complete, carry = buf[:cut], buf[cut:]
                if not complete:
                    continue
            consumed += len(complete)
            raw = _split_lines(complete)
            for offset in range(0, len(raw), rows):
                part = raw.slice(offset, rows)
                n = len(part)
                lines = pa.array(np.arange(line, line + n, dtype=np.int64))
                line += n
                total = int((line - 1) * size / consumed)
                yield RawBatch(pa.table({RAW_COLUMN: part}), lines, done=line - 1, total=total)
            if not chunk:
                return


def _split_lines(data: bytes) -> pa.Array:
    """One binary value per line of ``data`` (each keeps its trailing newline)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    return pa.Array.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
