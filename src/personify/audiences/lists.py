"""Uploaded lists: identifiers from a CSV, JSON Lines or Parquet file, matched to customers at
read time.

``personify lists upload vip_2026 vip.csv --column email`` reads the file in Arrow batches
(:func:`personify.sources.formats.read_batches`), normalizes each identifier as identity does
(emails lower-cased and checked, phones to E.164 — ``identity.phone_region`` for national
numbers — other kinds trimmed), in SQL on the ingest engine, and stores the distinct values in
``list_members`` as the identity graph holds them (a blind index for email/phone under encrypted
fields). Rows that are not identifiers go to the quarantine (``source`` = ``list:NAME``) with
the file, line and reason; so do ``identity.blocked`` values (``blocked_value``: placeholders and
shared test addresses link nobody, so they would match nobody) and JSON Lines lines that are not
JSON objects (``malformed_json``); ``rows_read = rows_added + rows_duplicate + rows_quarantined``.

A JSON Lines file (``.jsonl``/``.ndjson``) holds one object a line; its keys are the columns
(those of its first object; ``--column`` names another), a string or number value the identifier.

Everything happens in one transaction: a failed upload leaves the list as it was, and
``--replace`` swaps the list's members for the file's at once. Uploading the same file again adds
nothing (values already on the list are duplicates; quarantine ids are deterministic).

The ``list_customers`` view matches members through ``identities`` when it is read, so a member
who becomes a customer later is on the list from then on: segments read
``SELECT customer_id FROM list_customers WHERE list = 'vip_2026'``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from personify import clock
from personify.config import FileFormat, Project
from personify.errors import FileImportError, NotFound, UsageError
from personify.identity.normalize import (
    blind_of,
    blocked_sets,
    email_sql,
    id_sql,
    normalize_phone,
    phone_sql,
)
from personify.ingest import quarantine
from personify.ingest.engine import arrow, open_engine, registered
from personify.ingest.reasons import (
    BLOCKED_VALUE,
    INVALID_EMAIL,
    INVALID_VALUE,
    MALFORMED_JSON,
    MISSING_REQUIRED,
)
from personify.ingest.validate import RAW_COLUMN
from personify.progress import Progress
from personify.session import Session
from personify.sources.files import file_digest, file_label
from personify.sources.formats import detect_format, read_batches
from personify.warehouse.base import Warehouse
from personify.warehouse.schema import Column, Table

BATCH_ROWS: Final = 250_000
"""Rows read and normalized at a time."""
BUILT_IN_KINDS: Final = ("email", "phone", "user_id", "customer_id", "anonymous_id")
"""Identifier kinds every project knows; sources add their own (``identity.source_kinds``,
``<source>_id``)."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")
_STAGE = "_personify_list_upload"
_LINE_TEXT = "__personify_line_text"
"""A JSON Lines batch's column holding each line as written (a quarantined row's payload)."""
FIELDS_SCAN_BYTES: Final = 1 << 20
"""Bytes of a JSON Lines file read for its first object (whose keys are the columns)."""


def source_of(name: str) -> str:
    """The quarantine ``source`` of a list's rejected rows."""
    return f"list:{name}"


def known_kinds(project: Project) -> list[str]:
    """The identifier kinds a list may hold in this project."""
    identity = project.config.identity
    kinds = dict.fromkeys(BUILT_IN_KINDS)
    kinds.update(dict.fromkeys(identity.kind_for_source(s.name) for s in project.config.sources))
    kinds.update(dict.fromkeys(identity.source_kinds.values()))
    return list(kinds)


@dataclass
class UploadResult:
    """What one upload did."""

    list: str
    kind: str
    file: str
    counts: dict[str, int] = field(default_factory=dict)
    """``rows_read``, ``rows_added``, ``rows_duplicate``, ``rows_quarantined``,
    ``rows_removed`` (``--replace``: members not in the file), ``members`` (after),
    ``rows_blocked`` (of the quarantined: ``identity.blocked`` values), and
    ``already_uploaded`` (1: this file was uploaded to the list before and changed nothing —
    no upload is recorded)."""
    seconds: float = 0.0
    form: str = "plain"


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(
            f"{name!r} is not a valid list name: use letters, digits, '_' and '-', starting "
            "with a letter or '_'"
        )


def _form(wh: Warehouse, kind: str) -> str:
    blind = blind_of(wh)
    return f"blind:{blind.tag}" if blind is not None and kind in blind.kinds else "plain"


def _normalized_sql(kind: str, project: Project) -> str:
    if kind == "email":
        return email_sql("raw", project.config.identity.email)
    if kind == "phone":
        return phone_sql("raw")
    return id_sql("raw")


def _pick_column(fields: list[str], column: str | None, kind: str, label: str) -> str:
    if column is not None:
        if column not in fields:
            raise FileImportError(
                f"{label}: no column {column!r} (columns: {', '.join(fields) or 'none'})",
                hint="name the column that holds the identifiers with --column",
            )
        return column
    if kind in fields:
        return kind
    if len(fields) == 1:
        return fields[0]
    raise FileImportError(
        f"{label}: which column holds the {kind}s? (columns: {', '.join(fields) or 'none'})",
        hint=f"pass --column NAME (a column named {kind!r} is taken without it)",
    )


def upload_list(
    session: Session,
    name: str,
    path: Path,
    *,
    kind: str = "email",
    column: str | None = None,
    replace: bool = False,
    format: FileFormat | None = None,
    delimiter: str = ",",
    progress: Progress | None = None,
) -> UploadResult:
    """Upload ``path`` into the list ``name`` (see the module doc)."""
    started = time.perf_counter()
    project, wh, now = session.project, session.warehouse, clock.now()
    _check_name(name)
    kinds = known_kinds(project)
    if kind not in kinds:
        raise UsageError(
            f"unknown identifier kind {kind!r} (kinds: {', '.join(kinds)})",
            hint="a source's own ids are <source>_id, or as identity.source_kinds names them",
        )
    label = file_label(project, path)
    fmt = detect_format(path, format)
    if path.suffix.lower() == ".json" and format is None:
        raise FileImportError(
            f"{label}: a list is read from CSV, JSON Lines or Parquet: is this JSON Lines?",
            hint="name a file of one JSON object a line .jsonl or .ndjson, or pass --format jsonl",
        )
    fields, batches = read_batches(path, fmt, rows=BATCH_ROWS, delimiter=delimiter)
    if fields is None:  # JSON Lines: the keys of its first object
        fields = dict.fromkeys(_jsonl_fields(path, label))
    chosen = _pick_column(list(fields), column, kind, label)
    if fmt == "jsonl" and '"' in chosen:
        raise UsageError(
            f"{label}: a JSON Lines key with a double quote cannot be read: {chosen!r}"
        )
    blocked = _blocked(project, kind)
    digest = file_digest(path)
    blind_list_members(wh)  # values stored before encryption was turned on
    form = _form(wh, kind)
    blind = blind_of(wh) if form != "plain" else None
    region = project.config.identity.phone_region
    result = UploadResult(name, kind, label, form=form)
    read = quarantined = good = 0
    bad_tables: list[pa.Table] = []
    not_objects = quarantine.empty_bad_rows()
    con = open_engine()
    stage = Table(_STAGE, (Column("value", "VARCHAR"),))
    try:
        with wh.transaction():
            wh.execute(f"DROP TABLE IF EXISTS {_STAGE}")
            wh.execute(f"CREATE TEMP TABLE {_STAGE} (value VARCHAR)")
            for batch in batches:
                data, lines = batch.data, batch.lines
                if fmt == "jsonl":
                    data, lines, not_objects = _jsonl_rows(con, data, lines, chosen, label)
                    bad_tables.append(not_objects)
                read += data.num_rows + len(batch.malformed) + not_objects.num_rows
                if batch.malformed:
                    rows = [(m.line, m.text, m.fields, m.expected) for m in batch.malformed]
                    bad_tables.append(quarantine.malformed_rows(rows, label=label))
                values, pending, bad = _normalize(
                    con, data, lines, chosen, kind, label, project, blocked
                )
                parsed, still_bad = _parse_phones(pending, region, label, blocked)
                if parsed:
                    values = pa.concat_arrays([values, pa.array(parsed, pa.string())])
                bad_tables += [t for t in (bad, still_bad) if t.num_rows]
                if blind is not None:
                    values = _blinded(values, kind, blind.hash)
                good += len(values)
                if len(values):
                    wh.load(stage, pa.table({"value": values}))
                if progress is not None:
                    progress(f"list {name}", batch.done, batch.total)
            bad_all = pa.concat_tables(bad_tables) if bad_tables else quarantine.empty_bad_rows()
            quarantined = bad_all.num_rows
            blocked_rows = int(
                pc.sum(pc.equal(bad_all.column("reason"), BLOCKED_VALUE)).as_py() or 0
            )
            kept: list[pa.Array] = []
            if quarantined:
                rows = quarantine.to_rows(
                    con, bad_all, source=source_of(name), origin=label, received_at=now, same=True
                )
                quarantine.write(wh, rows)
                kept = list(rows.column("id").chunks)
            # a corrected version of the file: its earlier versions' rejected rows leave the
            # quarantine, but those still bad (same line and row: same id)
            quarantine.supersede(wh, source_of(name), label, kept, now)
            removed = 0
            if replace:
                removed = max(
                    wh.execute(
                        "DELETE FROM list_members WHERE list = ? AND NOT (kind = ? AND value IN "
                        f"(SELECT value FROM {_STAGE} WHERE value IS NOT NULL))",
                        [name, kind],
                    ),
                    0,
                )
            added = wh.execute(
                "INSERT INTO list_members (list, kind, value, added_at, file) "
                f"SELECT DISTINCT ?, ?, s.value, ?, ? FROM {_STAGE} AS s "
                "WHERE s.value IS NOT NULL AND NOT EXISTS (SELECT 1 FROM list_members AS m "
                "WHERE m.list = ? AND m.kind = ? AND m.value = s.value) "
                "ON CONFLICT DO NOTHING",  # an upload to the same list committed meanwhile
                [name, kind, now, label, name, kind],
            )
            if added < 0:  # an engine that does not report counts
                added = int(
                    wh.scalar(
                        "SELECT count(*) FROM list_members WHERE list = ? AND added_at = ?",
                        [name, now],
                    )
                    or 0
                )
            wh.execute(f"DROP TABLE {_STAGE}")
            members = int(
                wh.scalar("SELECT count(*) FROM list_members WHERE list = ?", [name]) or 0
            )
            counts = {
                "rows_read": read,
                "rows_added": added,
                "rows_duplicate": good - added,
                "rows_quarantined": quarantined,
                "rows_removed": removed,
                "members": members,
            }
            if blocked_rows:
                counts["rows_blocked"] = blocked_rows
            again = wh.scalar(
                "SELECT 1 FROM list_uploads WHERE list = ? AND sha256 = ? AND kind = ? LIMIT 1",
                [name, digest, kind],
            )
            if again and not added and not removed:  # the same file again: nothing changed
                counts["already_uploaded"] = 1
            else:
                wh.execute(
                    "INSERT INTO list_uploads (list, sha256, file, kind, form, uploaded_at, "
                    "rows_read, rows_added, rows_duplicate, rows_quarantined, replaced) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [name, digest, label, kind, form, now, read, added]
                    + [good - added, quarantined, replace],
                )
    finally:
        con.close()
    result.counts = counts
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Pending:
    """Phones that need parsing: their line, raw text and row as read."""

    lines: list[int] = field(default_factory=list)
    raws: list[str] = field(default_factory=list)
    payloads: list[str | None] = field(default_factory=list)


def _normalize(
    con: Any,
    data: pa.Table,
    lines: pa.Array,
    column: str,
    kind: str,
    label: str,
    project: Project,
    blocked: _Blocked,
) -> tuple[pa.Array, _Pending, pa.Table]:
    """``(normalized values, phones still to parse, bad rows)`` of one batch. Set-wise: one SQL
    pass on the ingest engine normalizes every row and keeps the good values as Arrow; only the
    rows that are not identifiers or are blocked values (few) are looked at one by one, for
    their reason."""
    table = pa.table({"__line": lines, "raw": data.column(column)})
    normalized = _normalized_sql(kind, project)
    with registered(con, table) as view:
        out = arrow(
            con,
            f"SELECT row_number() OVER () - 1 AS i, __line AS line, CAST(raw AS VARCHAR) AS raw, "
            f"{normalized} AS value, {id_sql('raw')} IS NULL AS empty FROM {view}",
        )
    found = pc.and_not(pc.is_valid(out.column("value")), blocked.mask(out.column("value")))
    good = out.column("value").filter(found).combine_chunks()
    rest = out.filter(pc.invert(found))
    pending = _Pending()
    if not rest.num_rows:
        return good, pending, quarantine.empty_bad_rows()
    shown = column.replace('"', '\\"')
    rows = data.take(rest.column("i")).to_pylist()
    bad: list[dict[str, Any]] = []
    for r, row in zip(rest.to_pylist(), rows, strict=True):
        written = row.pop(_LINE_TEXT, None)  # a JSON Lines line: the payload is it as written
        payload = written or json.dumps(row, default=str, ensure_ascii=False)
        where = f"{label}:{r['line']}"
        if r["value"] is not None:  # normalized, but blocked
            bad.append(_blocked_row(r["line"], shown, r["raw"], payload, where))
        elif r["empty"]:
            detail = f'column "{shown}" is empty'
            bad.append(_bad(r["line"], MISSING_REQUIRED, detail, payload, where))
        elif kind == "phone":
            pending.lines.append(r["line"])
            pending.raws.append(r["raw"])
            pending.payloads.append(payload)
        else:
            reason = INVALID_EMAIL if kind == "email" else INVALID_VALUE
            said = "an email address" if kind == "email" else f"a {kind}"
            detail = f'column "{shown}": {_preview(r["raw"])} is not {said}'
            bad.append(_bad(r["line"], reason, detail, payload, where))
    return good, pending, pa.Table.from_pylist(bad, schema=quarantine.BAD_ROWS)


def _preview(raw: str) -> str:
    """A rejected value as a detail shows it: quoted, cut at 40 characters."""
    return repr(raw if len(raw) <= 40 else raw[:40] + "…")


def _bad(line: int, reason: str, detail: str, payload: str | None, where: str) -> dict[str, Any]:
    return {
        "line": line,
        "reason": reason,
        "detail": f"{where}: {detail}",
        "payload": payload,
        "location": where,
    }


def _parse_phones(
    pending: _Pending, region: str | None, label: str, blocked: _Blocked
) -> tuple[list[str], pa.Table]:
    """Phones not already in E.164, parsed with ``phonenumbers`` once per distinct text (in
    ``identity.phone_region`` for national numbers); those that are no number, or a blocked
    one, are bad rows."""
    parsed: dict[str, str | None] = {}
    good: list[str] = []
    bad: list[dict[str, Any]] = []
    for raw, line, payload in zip(pending.raws, pending.lines, pending.payloads, strict=True):
        if raw not in parsed:
            parsed[raw] = normalize_phone(raw, region)
        value = parsed[raw]
        if value is None:
            hint = "" if region else " (national numbers need identity.phone_region)"
            detail = f"{_preview(raw)} is not a phone number{hint}"
            bad.append(_bad(line, INVALID_VALUE, detail, payload, f"{label}:{line}"))
        elif blocked.holds(value):
            bad.append(_blocked_row(line, None, raw, payload, f"{label}:{line}"))
        else:
            good.append(value)
    return good, pa.Table.from_pylist(bad, schema=quarantine.BAD_ROWS)


@dataclass(frozen=True)
class _Blocked:
    """A kind's ``identity.blocked`` values, normalized: ``anywhere`` (``*``, compared
    lower-cased) and the kind's own."""

    anywhere: frozenset[str]
    own: frozenset[str]

    def mask(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """True where a (normalized) value is blocked; False where it is not or is null."""
        hit = pc.or_(
            pc.is_in(pc.utf8_lower(values), value_set=pa.array(sorted(self.anywhere), pa.string())),
            pc.is_in(values, value_set=pa.array(sorted(self.own), pa.string())),
        )
        return pc.fill_null(hit, False)

    def holds(self, value: str) -> bool:
        return value.lower() in self.anywhere or value in self.own


def _blocked(project: Project, kind: str) -> _Blocked:
    anywhere, per_kind = blocked_sets(project.config.identity)
    return _Blocked(anywhere, per_kind.get(kind, frozenset()))


def _blocked_row(
    line: int, column: str | None, raw: str, payload: str | None, where: str
) -> dict[str, Any]:
    at = f'column "{column}": ' if column else ""
    detail = f"{at}{_preview(raw)} is a blocked value (identity.blocked): it would match nobody"
    return _bad(line, BLOCKED_VALUE, detail, payload, where)


# ----------------------------------------------------------------------------------- JSON Lines
def _jsonl_fields(path: Path, label: str) -> list[str]:
    """The keys of a JSON Lines file's first object (read from its first bytes)."""
    with path.open("rb") as f:
        head = f.read(FIELDS_SCAN_BYTES)
    for number, line in enumerate(head.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            first = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            if number == head.count(b"\n") + 1 and len(head) == FIELDS_SCAN_BYTES:
                break  # a line cut by the scan
            continue  # (quarantined with its line when read)
        if isinstance(first, dict):
            return [str(k) for k in first]
    raise FileImportError(
        f"{label}: no JSON object in its first {FIELDS_SCAN_BYTES >> 20} MB to take the keys from",
        hint='a JSON Lines list holds one object a line, e.g. {"email": "ann@example.org"}',
    )


def _jsonl_rows(
    con: Any, data: pa.Table, lines: pa.Array, column: str, label: str
) -> tuple[pa.Table, pa.Array, pa.Table]:
    """A JSON Lines batch as rows of ``column`` (text; a number's digits): ``(rows, their
    lines, bad rows)``. Blank lines are skipped; a line that is not UTF-8 or not a JSON object is
    ``malformed_json``, a value that is an object, array or boolean ``invalid_value``."""
    table = pa.table({"__line": lines, RAW_COLUMN: data.column(RAW_COLUMN)})
    with registered(con, table) as view:
        out = arrow(
            con,
            "SELECT __line AS line, text, CASE WHEN text IS NULL THEN 'utf8' "
            "WHEN j IS NULL OR json_type(j) <> 'OBJECT' THEN 'json' "
            "WHEN json_type(j, $path) IN ('OBJECT', 'ARRAY', 'BOOLEAN') THEN 'type' END AS bad, "
            "json_extract_string(j, $path) AS value FROM (SELECT __line, text, TRY(json(text)) "
            f"AS j FROM (SELECT __line, TRY(decode({RAW_COLUMN})) AS text FROM {view}) "
            "WHERE text IS NULL OR NOT regexp_matches(text, '^\\s*$'))",
            {"path": f'$."{column}"'},
        )
    ok = pc.is_null(out.column("bad"))
    rows = out.filter(ok)
    texts = pc.utf8_rtrim(rows.column("text"), characters="\r\n")
    good = pa.table({column: rows.column("value"), _LINE_TEXT: texts})
    bad: list[dict[str, Any]] = []
    for r in out.filter(pc.invert(ok)).to_pylist():
        where = f"{label}:{r['line']}"
        text = r["text"].rstrip("\r\n") if r["text"] is not None else None
        if r["bad"] == "utf8":
            bad.append(_bad(r["line"], MALFORMED_JSON, "the line is not UTF-8 text", None, where))
        elif r["bad"] == "json":
            detail = "the line is not a JSON object"
            bad.append(_bad(r["line"], MALFORMED_JSON, detail, text, where))
        else:
            detail = f'key "{column}" holds {r["value"][:40]}, not text or a number'
            bad.append(_bad(r["line"], INVALID_VALUE, detail, text, where))
    return (
        good,
        rows.column("line").combine_chunks(),
        pa.Table.from_pylist(bad, schema=quarantine.BAD_ROWS),
    )


def _blinded(values: pa.Array, kind: str, hash_: Callable[[str, str], str]) -> pa.Array:
    """The blind index of each value (computed once per distinct value)."""
    distinct = pc.unique(values)
    hashed = pa.array([hash_(kind, v) for v in distinct.to_pylist()], pa.string())
    return pc.take(hashed, pc.index_in(values, value_set=distinct))


_PLAIN: Final = {"email": "%@%", "phone": "+%"}
"""``LIKE`` patterns of a kind's plain values (a blind value is hex: no ``@``, no ``+``)."""


def blind_list_members(wh: Warehouse) -> int:
    """Encryption was turned on for email/phone after lists were uploaded: replace their plain
    members by the blind index the graph now holds (so they match again, and no address stays
    at rest), and mark the uploads as made under it. Returns the members rewritten. A no-op
    without a blind index, or when nothing is plain. (Another ``blind_index_key`` cannot be
    followed — the old values are hashes: :func:`show_list` reports such lists as stale.)"""
    blind = blind_of(wh)
    if blind is None:
        return 0
    done = 0
    for kind in blind.kinds:
        pattern = _PLAIN.get(kind)
        if pattern is None or not wh.fetch(
            "SELECT 1 FROM list_members WHERE kind = ? AND value LIKE ? LIMIT 1", [kind, pattern]
        ):
            continue
        with wh.transaction():
            plain = wh.fetch_arrow(
                "SELECT DISTINCT value FROM list_members WHERE kind = ? AND value LIKE ?",
                [kind, pattern],
            ).column("value")
            mapping = pa.table({"plain": plain, "blind": _blinded(plain, kind, blind.hash)})
            wh.execute(f"DROP TABLE IF EXISTS {_MAP}")
            wh.execute(f"CREATE TEMP TABLE {_MAP} (plain VARCHAR, blind VARCHAR)")
            wh.load(_MAP_TABLE, mapping)
            # a list holding both forms of one value keeps one row
            wh.execute(
                f"DELETE FROM list_members WHERE kind = ? AND value IN (SELECT plain FROM {_MAP} "
                f"AS m WHERE EXISTS (SELECT 1 FROM list_members AS o WHERE o.kind = ? "
                "AND o.value = m.blind AND o.list = list_members.list))",
                [kind, kind],
            )
            changed = wh.execute(
                f"UPDATE list_members SET value = m.blind FROM {_MAP} AS m "
                "WHERE list_members.kind = ? AND list_members.value = m.plain",
                [kind],
            )
            wh.execute(
                "UPDATE list_uploads SET form = ? WHERE kind = ? AND form = 'plain'",
                [f"blind:{blind.tag}", kind],
            )
            wh.execute(f"DROP TABLE {_MAP}")
        done += max(changed, 0)
    return done


_MAP = "_personify_list_blind"
_MAP_TABLE = Table(_MAP, (Column("plain", "VARCHAR"), Column("blind", "VARCHAR")))


# --------------------------------------------------------------------------------- reading back
def list_lists(wh: Warehouse) -> list[dict[str, Any]]:
    """Every list: kinds, members, customers matched now, uploads, last upload, quarantined."""
    rows: list[dict[str, Any]] = wh.fetch_arrow(
        "WITH names AS (SELECT list FROM list_members UNION SELECT list FROM list_uploads), "
        "m AS (SELECT list, count(*) AS members, string_agg(DISTINCT kind, ',') AS kinds "
        "FROM list_members GROUP BY list), "
        "c AS (SELECT list, count(*) AS customers FROM list_customers GROUP BY list), "
        "u AS (SELECT list, count(*) AS uploads, max(uploaded_at) AS last_upload "
        "FROM list_uploads GROUP BY list), "
        "q AS (SELECT source, count(*) AS quarantined FROM quarantine "
        "WHERE source LIKE 'list:%' GROUP BY source) "
        "SELECT n.list, coalesce(m.kinds, '') AS kinds, coalesce(m.members, 0) AS members, "
        "coalesce(c.customers, 0) AS customers, coalesce(u.uploads, 0) AS uploads, "
        "u.last_upload, coalesce(q.quarantined, 0) AS quarantined "
        "FROM names AS n LEFT JOIN m ON m.list = n.list LEFT JOIN c ON c.list = n.list "
        "LEFT JOIN u ON u.list = n.list LEFT JOIN q ON q.source = 'list:' || n.list "
        "ORDER BY n.list"
    ).to_pylist()
    for row in rows:
        row["kinds"] = sorted(k for k in str(row["kinds"]).split(",") if k)
        for key in ("members", "customers", "uploads", "quarantined"):
            row[key] = int(row[key])
    return rows


def show_list(wh: Warehouse, name: str, *, sample: int = 10) -> dict[str, Any]:
    """One list: its counts per kind, the customers matched now, a sample of them, its uploads
    (newest first), and whether its stored values still match how identities are held."""
    found = [r for r in list_lists(wh) if r["list"] == name]
    if not found:
        known = ", ".join(r["list"] for r in list_lists(wh)) or "none"
        raise NotFound(f"no list named {name!r} (lists: {known})")
    info = found[0]
    by_kind = {
        str(k): int(n)
        for k, n in wh.fetch(
            "SELECT kind, count(*) FROM list_members WHERE list = ? GROUP BY kind ORDER BY kind",
            [name],
        )
    }
    customers = [
        str(r[0])
        for r in wh.fetch(
            "SELECT customer_id FROM list_customers WHERE list = ? ORDER BY customer_id LIMIT ?",
            [name, sample],
        )
    ]
    uploads = wh.fetch_arrow(
        "SELECT file, kind, form, uploaded_at, rows_read, rows_added, rows_duplicate, "
        "rows_quarantined, replaced FROM list_uploads WHERE list = ? ORDER BY uploaded_at DESC",
        [name],
    ).to_pylist()
    stale = sorted(
        {u["kind"] for u in uploads if u["form"] != _form(wh, u["kind"]) and u["kind"] in by_kind}
    )
    return {
        **info,
        "by_kind": by_kind,
        "sample": customers,
        "uploads": uploads,
        "stale_kinds": stale,
        "quarantine_source": source_of(name),
    }


def delete_list(wh: Warehouse, name: str) -> dict[str, int]:
    """Delete a list: its members, its uploads and its quarantined rows, in one transaction."""
    _check_name(name)
    with wh.transaction():
        members = wh.execute("DELETE FROM list_members WHERE list = ?", [name])
        uploads = wh.execute("DELETE FROM list_uploads WHERE list = ?", [name])
        quarantined = wh.execute("DELETE FROM quarantine WHERE source = ?", [source_of(name)])
    if members <= 0 and uploads <= 0:
        raise NotFound(f"no list named {name!r}")
    return {"members": members, "uploads": uploads, "quarantined": max(quarantined, 0)}


def lists_of(wh: Warehouse, customer_ids: list[str]) -> list[str]:
    """The lists any of ``customer_ids`` is on now (for exports)."""
    if not customer_ids:
        return []
    rows = wh.fetch(
        "SELECT DISTINCT list FROM list_customers WHERE customer_id IN "
        "(SELECT unnest(CAST(? AS VARCHAR[]))) ORDER BY list",
        [customer_ids],
    )
    return [str(r[0]) for r in rows]
