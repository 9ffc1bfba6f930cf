"""Validation: a raw Arrow batch in, rows typed for the target table and quarantined rows out.

Runs as SQL on the in-memory engine (:mod:`personify.ingest.engine`) over whole batches — no
Python loop per row. Checks, in the target table's column order, first problem wins:

* ``malformed_json`` — a JSON Lines line that is not UTF-8, not JSON, or not an object;
* ``missing_required`` — a NOT NULL column without a value (empty and blank count as missing);
  bookkeeping columns get defaults instead (:data:`~personify.ingest.fields.DEFAULTS`);
* ``invalid_value`` — text or JSON text holding a NUL character (as is, or JSON's ``\\u0000``):
  looked for only in batches whose bytes hold one (:meth:`Validator._may_hold_nul`);
* ``invalid_type`` — a value that does not cast: ISO 8601 timestamps with or without a zone (no
  zone = UTC; stored in UTC), dates, integers (``12`` or ``12.0``, not ``12.5``), finite numbers,
  booleans (``true/false``, ``t/f``, ``yes/no``, ``y/n``, ``1/0``), JSON text;
* ``invalid_email`` — an ``email`` column that is not ``local@domain.tld`` (the value itself is
  kept as given otherwise — blanks around it, capitals: normalizing is a later stage's job);
* row rules (:mod:`personify.ingest.rules`) — an event's the tracking API's (a known ``type``,
  the fields its type needs, ``properties``/``traits``/``context`` objects, ``missing_identity``:
  neither ``userId`` nor ``anonymousId``, ``future_timestamp``: a ``timestamp`` more than
  ``future_tolerance`` after ``received_at``), ``out_of_range`` (a quantity of 0 or less, a negative
  price);
* ``duplicate_key_in_file`` — a primary key already seen in the same file (across batches): the
  first valid row is kept.

JSON columns are built from nested values (serialized JSON text). Text values are kept as given,
except that an empty or blank value is missing; a CSV or Parquet text column read as it is (no
cast, no default) is not copied out of the engine: the engine flags its blank values and the
valid rows' values are the batch's own (:func:`_passed_through`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from personify import clock
from personify.errors import FileImportError
from personify.ingest import casts
from personify.ingest import quarantine as q
from personify.ingest.dedup import KeySet
from personify.ingest.engine import arrow, open_engine, registered
from personify.ingest.fields import Field, resolve
from personify.ingest.rules import rules_for
from personify.ingest.tracking.normalize import FUTURE_TOLERANCE, duration_text
from personify.warehouse.base import quote
from personify.warehouse.schema import Table

EMAIL_PATTERN: Final = r"^\s*[^@\s]+@[^@\s.]+(\.[^@\s.]+)+\s*$"
"""Deliberately loose: one ``@``, no spaces inside, a dot in the domain. Blanks around the address
and letter case are left for normalization (a later stage) to clean."""
RAW_COLUMN: Final = "__raw"
"""The one column of a JSON Lines batch: each line's bytes, newline included."""
_WS: Final = " \t\r\n"
_NUL_ESCAPE: Final = "\\u0000"
"""A NUL as JSON writes it (SQL string literals keep backslashes as they are)."""
_NUL_ESCAPE_BYTES: Final = re.compile(re.escape(_NUL_ESCAPE.encode()))
_BATCH, _KEYS, _BAD, _FLAG = "__batch", "__keys", "__bad", "__blank"
_BAD_COLUMNS: Final = ["__line", "__pos", "__k", "__value"]
_NOT_BLANK_LINE: Final = (  # (trimming only lines that start with a blank: see casts._nonblank)
    "__text IS NULL OR CASE WHEN ascii(__text) IN (32, 9, 10, 13) "
    "THEN trim(__text, $ws) <> '' ELSE __text <> '' END"
)


@dataclass(frozen=True)
class Checked:
    """One validated batch."""

    good: pa.Table
    """Valid rows, typed for the target table (only the columns the file provides)."""
    bad: pa.Table
    """Rows that failed, as :data:`~personify.ingest.quarantine.BAD_ROWS`."""
    read: int
    """Rows looked at (blank lines are not rows)."""
    key_hashes: np.ndarray[Any, np.dtype[np.uint64]] | None = None
    """Per valid row, the DuckDB ``hash()`` of its key, all distinct in the file so far
    (:attr:`~personify.ingest.dedup.Seen.kept_hashes`); ``None`` when not known."""


@dataclass(frozen=True)
class _Problem:
    reason: str
    before: str
    after: str = ""
    value_sql: str | None = None


class Validator:
    """Validates the batches of one file against one table (duplicate keys tracked across
    batches). Use as a context manager, or call :meth:`close`."""

    def __init__(
        self,
        table: Table,
        *,
        fmt: str,
        fields: Mapping[str, pa.DataType] | None,
        label: str,
        source: str,
        mapping: Mapping[str, str] | None = None,
        now: datetime | None = None,
        delimiter: str = ",",
        future_tolerance: float = FUTURE_TOLERANCE,
    ) -> None:
        self.table = table
        self.future_tolerance = future_tolerance
        self.fmt = fmt
        self.label = label
        self.raw_fields = list(fields or ())
        resolved = resolve(table, mapping or {}, fmt=fmt, fields=fields, label=label)
        self.fields = resolved.fields
        self.passed = _passed_through(self.fields, fmt, fields or {})
        if fields:
            _require_columns(self.fields, label, table)
        self.params: dict[str, Any] = {
            "source": source,
            "now": now or clock.now(),
            "email": EMAIL_PATTERN,
            "ws": _WS,
            "delim": delimiter,
            "structure": resolved.structure,
            "future_us": int(future_tolerance * 1_000_000),
            **resolved.params,
        }
        self.problems: list[_Problem] = []
        self._malformed = 0
        self._nul_whens: set[str] = set()
        self.key = [f for f in self.fields if f.name in table.primary_key]
        self._sql: dict[bool, str] = {}
        """The validation query without, and with, the checks for NUL characters."""
        self._compile()
        self._dup = self._problem(_duplicate_problem(self.key))
        self.con = open_engine()
        complete = self.key and all(f.sql or f.default for f in self.key)
        self.keys = KeySet(self.con, [f.name for f in self.key]) if complete else None

    # ------------------------------------------------------------------------------ public
    def check(self, data: pa.Table, lines: pa.Array | None = None) -> Checked:
        """Validate one batch; ``lines`` numbers its rows (default 1, 2, …)."""
        n = data.num_rows
        if lines is None:
            lines = pa.array(np.arange(1, n + 1, dtype=np.int64))
        raw = data.append_column("__line", lines).append_column(
            "__pos", pa.array(np.arange(n, dtype=np.int64))
        )
        with registered(self.con, raw, _BATCH):
            result = self._run(self._sql[self._may_hold_nul(data)])
        if self.passed:
            result = self._with_passed(raw, result)
        if result.column("__k").null_count == result.num_rows:  # all valid: no copies
            good, failed = result, result.select(_BAD_COLUMNS).slice(0, 0)
        else:
            is_good = pc.is_null(result.column("__k"))
            good = result.filter(is_good)
            failed = result.filter(pc.invert(is_good)).select(_BAD_COLUMNS)
        dups, hashes = self._duplicates(good)
        if dups.num_rows:
            good = good.filter(pc.invert(pc.is_in(good.column("__pos"), dups.column("__pos"))))
            failed = pa.concat_tables([failed, dups.cast(failed.schema)])
        return Checked(self._good(good), self._bad(raw, failed), result.num_rows, hashes)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- SQL
    def _problem(self, problem: _Problem) -> int:
        self.problems.append(problem)
        return len(self.problems)

    def _run(self, sql: str) -> pa.Table:
        used = set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql))
        params = {k: v for k, v in self.params.items() if k in used}
        return arrow(self.con, sql, params)

    def _compile(self) -> None:
        whens = self._check_whens()
        self._sql = {nul: self._main_sql(whens, nul=nul) for nul in (False, True)}

    def _may_hold_nul(self, data: pa.Table) -> bool:
        """Whether a value of the batch may hold a NUL character: the validation query checks
        for them only then (the checks cost ~10% of it; the search a tenth of that)."""
        if self.fmt == "jsonl":  # (a NUL byte is not JSON: only the escape can be one)
            return any(
                _NUL_ESCAPE_BYTES.search(memoryview(buffer))
                for chunk in data.column(RAW_COLUMN).chunks
                if (buffer := chunk.buffers()[2]) is not None
            )
        return any(_holds_nul(chunk) for column in data.columns for chunk in column.chunks)

    def _main_sql(self, whens: list[str], *, nul: bool) -> str:
        source = self._source_sql(nul=nul)
        values = ", ".join(
            f"{casts.value_sql(f, i)} AS v{i}"
            for i, f in enumerate(self.fields)
            if f.sql is not None
        )
        whens = [w for w in whens if nul or w not in self._nul_whens]
        checks = f"CASE {' '.join(whens)} END" if whens else "NULL::INTEGER"
        typed = f"SELECT *{', ' + values if values else ''} FROM ({source})"
        outputs = ", ".join(
            f"(s{i} IS NOT NULL AND v{i} IS NULL) AS {_FLAG}{i}"
            if i in self.passed
            else casts.output_sql(f, i)
            for i, f in enumerate(self.fields)
        )
        value = self._value_case("__k")
        return (
            f"SELECT __line, __pos, __k, {outputs}, {value} AS __value FROM "
            f"(SELECT *, {checks} AS __k FROM ({typed}))"
        )

    def _source_sql(self, *, nul: bool) -> str:
        cols = ", ".join(f"{f.sql} AS s{i}" for i, f in enumerate(self.fields) if f.sql)
        cols = ", " + cols if cols else ""
        if self.fmt == "jsonl":
            text = f"SELECT __line, __pos, TRY(decode({RAW_COLUMN})) AS __text FROM {_BATCH}"
            flag = f", contains(__text, '{_NUL_ESCAPE}') AS __nul" if nul else ""
            parsed = (
                "SELECT __line, __pos, __text, TRY(json_transform(__text, $structure)) AS __j"
                f"{flag} FROM ({text}) WHERE {_NOT_BLANK_LINE}"
            )
            bad = (
                "CASE WHEN __text IS NULL THEN 1 WHEN __j IS NULL THEN 2 "
                "WHEN starts_with(__text, '{') THEN NULL "
                "WHEN NOT starts_with(ltrim(__text, $ws), '{') THEN 2 END"
            )
            flag = ", __nul" if nul else ""
            return f"SELECT __line, __pos{flag}, {bad} AS __bad{cols} FROM ({parsed})"
        where = ""
        if self.fmt == "csv" and self.raw_fields:
            blank = " AND ".join(f"{quote(c)} = ''" for c in self.raw_fields)
            where = f" WHERE NOT ({blank})"
        return f"SELECT __line, __pos{cols} FROM {_BATCH}{where}"

    def _check_whens(self) -> list[str]:
        """The checks, in order, as ``WHEN condition THEN problem`` (problems registered)."""
        whens: list[str] = []
        if self.fmt == "jsonl":
            k = self._problem(_Problem(q.MALFORMED_JSON, "the line is not UTF-8 text"))
            whens.append(f"WHEN __bad = 1 THEN {k}")
            self._malformed = self._problem(_Problem(q.MALFORMED_JSON, "the line "))
            whens.append(f"WHEN __bad = 2 THEN {self._malformed}")
        for i, f in enumerate(self.fields):
            whens.extend(self._field_checks(f, i))
        whens.extend(self._rule_checks())
        return whens

    def _field_checks(self, f: Field, i: int) -> list[str]:
        col = _label(f)
        shown = f"to_json(s{i})::VARCHAR"
        present = casts.present_sql(f, i)
        out: list[str] = []
        if f.required:
            k = self._problem(_Problem(q.MISSING_REQUIRED, f"{col} is required but missing"))
            out.append(f"WHEN NOT ({present}) THEN {k}" if f.sql else f"WHEN true THEN {k}")
        if f.sql is None:
            return out
        nul = casts.nul_sql(f, i)
        if nul is not None:
            k = self._problem(_Problem(q.INVALID_VALUE, f"{col}: {q.NUL_MESSAGE}"))
            # JSON Lines: only a line with a \u0000 escape can hold a NUL (a NUL byte is not JSON)
            if self.fmt == "jsonl":
                nul = f"CASE WHEN __nul THEN {nul} END"
            out.append(f"WHEN {nul} THEN {k}")
            self._nul_whens.add(out[-1])
        valid = casts.valid_sql(f, i)
        if valid is not None:
            expect = f" {casts.EXPECT[f.column.type]}"
            k = self._problem(_Problem(q.INVALID_TYPE, f"{col}: ", expect, shown))
            out.append(f"WHEN ({present}) AND NOT coalesce({valid}, false) THEN {k}")
        if f.name == "email":
            problem = _Problem(q.INVALID_EMAIL, f"{col}: ", " is not an email address", shown)
            k = self._problem(problem)
            out.append(f"WHEN NOT regexp_full_match(v{i}, $email) THEN {k}")
        return out

    def _rule_checks(self) -> list[str]:
        values = {f.name: casts.final_sql(f, i) for i, f in enumerate(self.fields)}
        by_name = {f.name: f for f in self.fields}
        out: list[str] = []
        for rule in rules_for(self.table.name):
            message = rule.message.replace("{tolerance}", duration_text(self.future_tolerance))
            shown: str | None = None
            if rule.shown is not None:
                about = by_name[rule.shown]
                message = message.replace("{column}", _label(about))
                value = values[rule.shown]
                # (a JSON column's value is JSON text already)
                shown = value if about.column.type == "JSON" else f"to_json({value})::VARCHAR"
            before, found, after = message.partition("{value}")
            k = self._problem(_Problem(rule.reason, before, after, shown if found else None))
            out.append(f"WHEN NOT coalesce({rule.condition.format(**values)}, true) THEN {k}")
        return out

    def _value_case(self, code: str) -> str:
        cases = [
            f"WHEN {k} THEN {p.value_sql}" for k, p in enumerate(self.problems, 1) if p.value_sql
        ]
        if not cases:
            return "NULL::VARCHAR"
        return f"CASE WHEN {code} IS NOT NULL THEN left(CASE {code} {' '.join(cases)} END, 200) END"

    def _with_passed(self, raw: pa.Table, result: pa.Table) -> pa.Table:
        """``result`` with the passed-through fields' values taken from ``raw`` (the rows it
        kept, in its order) in place of their flags: as given, or missing where flagged."""
        pos = result.column("__pos")
        n = result.num_rows
        kept = raw
        if n != raw.num_rows or not np.array_equal(pos.to_numpy(), np.arange(n)):
            kept = raw.take(pos)
        for i, name in self.passed.items():
            flag = result.column(f"{_FLAG}{i}")
            value = kept.column(name)
            if value.type != pa.string():
                value = value.cast(pa.string())
            if pc.any(flag).as_py():  # blank values: missing
                value = pc.if_else(flag, pa.scalar(None, pa.string()), value)
            at = result.schema.get_field_index(f"{_FLAG}{i}")
            result = result.set_column(at, self.fields[i].name, value)
        return result

    def _duplicates(
        self, good: pa.Table
    ) -> tuple[pa.Table, np.ndarray[Any, np.dtype[np.uint64]] | None]:
        """Valid rows whose key an earlier valid row of this file has (this batch or before),
        and the other rows' key hashes (:attr:`Checked.key_hashes`)."""
        names = [f.name for f in self.key]
        none = good.select(_BAD_COLUMNS).slice(0, 0)
        if self.keys is None or not good.num_rows or not set(names) <= set(good.column_names):
            return none, None
        dup, kept = self.keys.duplicates(good)
        if not dup.any():
            return none, kept
        rows = good.filter(pa.array(dup)).select(["__line", "__pos", *names])
        cols = [quote(n) for n in names]
        shown = f"to_json({cols[0]})" if len(cols) == 1 else f"json_array({', '.join(cols)})"
        with registered(self.con, rows, _KEYS):
            found = self._run(
                f"SELECT __line, __pos, {self._dup} AS __k, "
                f"left({shown}::VARCHAR, 200) AS __value FROM {_KEYS}"
            )
        return found, kept

    # ----------------------------------------------------------------------------- results
    def _good(self, rows: pa.Table) -> pa.Table:
        names = [f.name for f in self.fields if f.sql is not None or f.default is not None]
        good = rows.select(names)
        if self.fmt == "jsonl" and good.num_rows:  # a field no line of the batch has: not provided
            absent = [
                f.name
                for f in self.fields
                if f.sql is not None
                and not f.explicit
                and f.default is None
                and good.column(f.name).null_count == good.num_rows
            ]
            good = good.drop_columns(absent)
        return good

    def _bad(self, raw: pa.Table, rows: pa.Table) -> pa.Table:
        if not rows.num_rows:
            return q.empty_bad_rows()
        rows = rows.sort_by("__line").combine_chunks()
        taken = raw.take(rows.column("__pos")).drop_columns(["__line", "__pos"])
        payload, note = self._payload(taken)
        code = rows.column("__k").combine_chunks()
        k = pc.subtract(code, 1)
        value = rows.column("__value").combine_chunks()
        if note is not None:
            value = pc.if_else(pc.equal(code, self._malformed), note, value)
        line = pc.cast(rows.column("__line").combine_chunks(), pa.string())
        sep = ": row " if self.fmt == "parquet" else ":"
        detail = pc.binary_join_element_wise(
            self.label,
            sep,
            line,
            ": ",
            pa.array([p.before for p in self.problems]).take(k),
            pc.coalesce(value, ""),
            pa.array([p.after for p in self.problems]).take(k),
            "",
        )
        return pa.table(
            {
                "line": rows.column("__line").combine_chunks(),
                "reason": pa.array([p.reason for p in self.problems]).take(k),
                "detail": detail,
                "payload": payload,
                "location": pc.binary_join_element_wise(self.label, line, ":"),
            },
            schema=q.BAD_ROWS,
        )

    def _payload(self, taken: pa.Table) -> tuple[pa.Array, pa.Array | None]:
        """The bad rows as received, as text (and, for JSON Lines, what is wrong with a line)."""
        with registered(self.con, taken, _BAD):
            if self.fmt == "jsonl":
                text = f"TRY(decode({RAW_COLUMN}))"
                sql = (
                    f"SELECT coalesce(rtrim({text}, $ws), regexp_replace("
                    f"CAST({RAW_COLUMN} AS VARCHAR), '(\\\\x0D)?\\\\x0A$', '')) AS p, "
                    f"CASE WHEN {text} IS NULL THEN NULL WHEN json_valid({text}) "
                    "THEN 'is JSON but not an object' ELSE 'is not valid JSON' END AS note "
                    f"FROM {_BAD}"
                )
                out = self._run(sql)
                return out.column("p").combine_chunks(), out.column("note").combine_chunks()
            if self.fmt == "csv":
                parts = ", ".join(casts.csv_quote(c) for c in taken.column_names)
                sql = f"SELECT concat_ws($delim, {parts}) AS p FROM {_BAD}"
            else:
                sql = f"SELECT CAST(to_json(r) AS VARCHAR) AS p FROM {_BAD} r"
            return self._run(sql).column("p").combine_chunks(), None


def validate(
    data: pa.Table,
    *,
    table: Table,
    fmt: str = "csv",
    mapping: Mapping[str, str] | None = None,
    fields: Mapping[str, pa.DataType] | None = None,
    lines: pa.Array | None = None,
    label: str = "<data>",
    source: str = "adhoc",
    now: datetime | None = None,
    delimiter: str = ",",
) -> Checked:
    """Validate one Arrow table against ``table`` (see the module docstring).

    ``data`` holds CSV text columns, Parquet columns, or, for ``fmt="jsonl"``, one binary column
    ``__raw`` of lines. ``fields`` defaults to ``data``'s columns (``None`` for JSON Lines)."""
    if fields is None and fmt != "jsonl":
        fields = {f.name: f.type for f in data.schema}
    with Validator(
        table,
        fmt=fmt,
        fields=fields,
        label=label,
        source=source,
        mapping=mapping,
        now=now,
        delimiter=delimiter,
    ) as v:
        return v.check(data, lines)


# ------------------------------------------------------------------------------ SQL helpers
def _holds_nul(array: pa.Array) -> bool:
    """Whether text somewhere in ``array`` (nested values too) may hold a NUL byte: a look at
    its data buffers, whole (a slice's too), as bytes. Numbers and the like hold no text."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return _holds_nul(array.dictionary)
    if pa.types.is_struct(kind):
        return any(_holds_nul(array.field(i)) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _holds_nul(array.keys) or _holds_nul(array.items)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _holds_nul(array.values)
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):  # numbers, times, booleans: no text; other layouts (string views …): maybe
        return not (
            pa.types.is_primitive(kind) or pa.types.is_decimal(kind) or pa.types.is_null(kind)
        )
    data = array.buffers()[2]
    return data is not None and not np.frombuffer(data, np.uint8).all()


def _label(f: Field) -> str:
    """How a detail names the field: ``column "email"``, with where it comes from when mapped."""
    return f'column "{f.name}"' + (f" ({f.origin})" if f.origin else "")


def _require_columns(fields: list[Field], label: str, table: Table) -> None:
    missing = [f.name for f in fields if f.required and f.sql is None]
    if missing:
        names = ", ".join(map(repr, missing))
        raise FileImportError(
            f"{label}: the file has no column for {names}, required in table {table.name}",
            hint=f"add the column, or map it in the source: mapping: {{{missing[0]}: <field>}}",
        )


def _passed_through(
    fields: list[Field], fmt: str, raw: Mapping[str, pa.DataType]
) -> dict[int, str]:
    """Fields whose valid values are the file's text as it is (field index → raw column): text
    and JSON text read from a column of a CSV or Parquet batch. Validation checks them and flags
    the blank ones; their values then come from the batch itself instead of a copy out of the
    engine (about a third of an event's bytes: ids, names, properties)."""
    if fmt not in ("csv", "parquet"):
        return {}
    by_sql = {
        quote(name): name
        for name, type_ in raw.items()
        if pa.types.is_string(type_) or pa.types.is_large_string(type_)
    }
    return {
        i: by_sql[f.sql]
        for i, f in enumerate(fields)
        if f.sql in by_sql
        and f.kind == "text"
        and f.default is None
        and f.column.type in ("VARCHAR", "JSON")
    }


def _duplicate_problem(key: list[Field]) -> _Problem:
    names = ", ".join(f.name for f in key)
    after = " appeared earlier in this file; the first row was kept"
    return _Problem(q.DUPLICATE_KEY_IN_FILE, f"key ({names}) = ", after, None)
