"""Write the world as files: Parquet for the big tables, JSON Lines for the nested ones, CSV for
flat exports — so a demo exercises all three formats the file importer reads.

===========================  ========  ===========  ==========================================
in the data folder           format    table        what it is
===========================  ========  ===========  ==========================================
``products.csv``             CSV       products     the shop's catalogue export
``shop_customers.csv``       CSV       customers    the shop's customer export
``consents.csv``             CSV       consents     the consent log (email marketing)
``crm/contacts.jsonl``       JSONL     customers    CRM contacts (nested ``properties``)
``crm/updates.jsonl``        JSONL     customers    later CRM edits (and a few broken lines)
``tickets.jsonl``            JSONL     tickets      help-desk tickets (nested ``requester``)
``orders.parquet``           Parquet   orders       shop orders
``order_items.parquet``      Parquet   order_items  their line items
``events/part-*.parquet``    Parquet   events       the web shop's tracking history
``email_events/part-*``      Parquet   events       the email service's opens and clicks
===========================  ========  ===========  ==========================================

Event logs are rendered and written in parts of :data:`PART_ROWS` events, each a Parquet file of
row groups of :data:`EVENT_BATCH_ROWS`, two parts at a time in worker threads: memory stays
bounded whatever the size. ``manifest.json`` (written last) records the world's seed, size,
``now`` and every file's rows. The same world gives byte-identical files.
"""

from __future__ import annotations

import concurrent.futures
import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from personify.demo import _text as tx
from personify.demo.events import SCHEMA, EventLog
from personify.demo.segment import render
from personify.demo.world import World
from personify.progress import Progress

MANIFEST: Final = "manifest.json"
GENERATOR: Final = "personify-demo/1"
EVENT_BATCH_ROWS: Final = 250_000
"""Events per rendered batch (and Parquet row group): the rendering's working set, two at a
time (500 k peaked 0.4 GiB higher at 500 k customers, for no less CPU)."""
PART_ROWS: Final = 2_000_000
"""Events per Parquet part file."""
WRITERS: Final = 2
"""Part files rendered and written at the same time (threads)."""
JSON_CHUNK_ROWS: Final = 200_000
MALFORMED_EVERY: Final = 2_000
"""One malformed JSON line per this many lines of the files that get them (at least two)."""
_LOW_CARDINALITY: Final = [
    f"{column}{'.' + leaf if leaf else ''}"
    for column, leaves in {
        "type": [""],
        "event": [""],
        "name": [""],
        "context": [
            "ip", "locale", "userAgent", "page.url", "page.referrer", "campaign.source",
            "campaign.medium", "campaign.name",
        ],
    }.items()
    for leaf in leaves
]  # fmt: skip
COMPRESSION: Final = "lz4"
"""Parquet compression (LZ4_RAW): as small as snappy, and read back 13–20 % faster (pyarrow)."""
PARQUET: Final[dict[str, Any]] = {
    "compression": COMPRESSION,
    "store_schema": False,
    "use_dictionary": _LOW_CARDINALITY,
    "write_statistics": ["timestamp"],
}
"""Event files: dictionary-encode only the low-cardinality columns, statistics on time only
(both are costly on ten million unique strings); plain Parquet types for every reader."""


@dataclass(frozen=True)
class DataFile:
    """One file (or folder of Parquet parts) of the world and how it maps into the warehouse."""

    source: str
    """Name of the ``kind: file`` source reading it."""
    path: str
    """Path in the data folder (a folder for event logs)."""
    part: str
    """What it holds: a table of the world, or ``events`` / ``email_events``."""
    table: str
    """The modelled table it loads into."""
    format: str
    about: str
    mapping: dict[str, str] = field(default_factory=dict)
    """Target column → field, where the names differ."""
    glob: str | None = None
    """What the source reads instead of ``path`` (several files)."""

    @property
    def is_log(self) -> bool:
        return self.part in ("events", "email_events")


_CRM_MAPPING: Final = {
    "customer_id": "id",
    "email": "properties.email",
    "first_name": "properties.firstname",
    "last_name": "properties.lastname",
    "phone": "properties.phone",
    "city": "properties.city",
    "country": "properties.country",
    "timezone": "properties.hs_timezone",
    "locale": "properties.hs_language",
    "created_at": "createdAt",
    "updated_at": "updatedAt",
}
FILES: Final = (
    DataFile(
        "shop_products",
        "products.csv",
        "products",
        "products",
        "csv",
        "the shop's catalogue export",
        {"product_id": "id", "name": "title", "category": "product_type"}
        | {"stock": "inventory_quantity"},
    ),
    DataFile(
        "shop_customers",
        "shop_customers.csv",
        "shop_customers",
        "customers",
        "csv",
        "the shop's customer export (shop ids: the web shop's userId)",
        {"customer_id": "id"},
    ),
    DataFile(
        "consents", "consents.csv", "consents", "consents", "csv", "the email-marketing consent log"
    ),
    DataFile(
        "crm",
        "crm/contacts.jsonl",
        "crm_contacts",
        "customers",
        "jsonl",
        "CRM contacts (ids of its own, nested properties), then later CRM edits",
        _CRM_MAPPING,
        glob="crm/*.jsonl",
    ),
    DataFile("crm", "crm/updates.jsonl", "crm_updates", "customers", "jsonl", "", _CRM_MAPPING),
    DataFile(
        "helpdesk",
        "tickets.jsonl",
        "tickets",
        "tickets",
        "jsonl",
        "help-desk tickets (the requester is a nested object)",
        {
            "ticket_id": "id",
            "customer_id": "requester.external_id",
            "email": "requester.email",
            "satisfaction": "satisfaction_rating.score",
        },
    ),
    DataFile(
        "shop_orders",
        "orders.parquet",
        "orders",
        "orders",
        "parquet",
        "shop orders",
        {"order_id": "id", "cart_id": "cart_token", "status": "financial_status"}
        | {"subtotal": "subtotal_price", "discount": "total_discounts", "total": "total_price"},
    ),
    DataFile(
        "shop_order_items",
        "order_items.parquet",
        "order_items",
        "order_items",
        "parquet",
        "their line items",
        {"line_no": "line_number"},
    ),
    DataFile(
        "web_history",
        "events",
        "events",
        "events",
        "parquet",
        "the web shop's tracking history; Segment's fields map by name (messageId → message_id)",
        glob="events/part-*.parquet",
    ),
    DataFile(
        "email_engagement",
        "email_events",
        "email_events",
        "events",
        "parquet",
        "the email service's opens and clicks",
        glob="email_events/part-*.parquet",
    ),
)
"""Every file, in the order they are written and imported."""
VIP_LIST: Final = "lists/vip.csv"
"""The loyalty team's VIP sheet (not a source: ``personify demo`` uploads it as the list
``vip``, ``personify lists upload``)."""
LOYALTY: Final = "analytics/loyalty.parquet"
"""The data team's loyalty table (not a source: ``personify demo`` loads it into the
warehouse as ``analytics.loyalty``, as the team's own loader would, and the project reads it
through ``relations:``)."""
MALFORMED: Final = frozenset({"crm_updates", "tickets"})
"""Parts whose JSON Lines file gets a few truncated (malformed) lines."""


def write_world(
    world: World, directory: Path, *, progress: Progress | None = None
) -> dict[str, Any]:
    """Write every file of ``world`` into ``directory`` and return the manifest (also written,
    last, as ``manifest.json``). The event logs' parts and the tables are written by
    :data:`WRITERS` threads at once, the largest first: the same files as one log and table
    after another (each log's parts two at a time), 3 s sooner of 18–20 at 1 M customers."""
    directory.mkdir(parents=True, exist_ok=True)
    total = sum(world.sizes().values())
    lock = threading.Lock()
    written = [0]

    def tick(rows: int) -> None:
        with lock:
            written[0] += rows
            if progress:
                progress("Writing the world", written[0], total)

    jobs: list[tuple[int, str, Callable[[], int]]] = []  # (rows, file, write it → malformed)
    files: dict[str, Any] = {}  # (in FILES order: the manifest's)
    for spec in FILES:
        path = directory / spec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec.is_log:
            path.mkdir(exist_ok=True)
            log: EventLog = getattr(world, spec.part)
            for old in path.glob("part-*.parquet"):
                old.unlink()
            for k, (lo, hi) in enumerate(_part_bounds(log.num_rows)):
                name = f"{spec.path}/part-{k:03d}.parquet"
                job = functools.partial(_write_part, log, lo, hi, directory / name, tick)
                jobs.append((hi - lo, name, job))
            files[spec.path] = {"table": spec.table, "rows": log.num_rows, "parts": True}
            continue
        table: pa.Table = getattr(world, spec.part)
        jobs.append(
            (table.num_rows, spec.path, functools.partial(_write_one, table, spec, path, tick))
        )
        files[spec.path] = {"table": spec.table, "rows": table.num_rows}
    with concurrent.futures.ThreadPoolExecutor(max_workers=WRITERS) as pool:
        futures = {name: pool.submit(job) for _, name, job in sorted(jobs, key=lambda j: -j[0])}
        for name, future in futures.items():
            if malformed := future.result():
                files[name]["rows"] += malformed
                files[name]["malformed_lines"] = malformed
    vip = directory / VIP_LIST
    vip.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(world.vip_list, vip)
    loyalty = directory / LOYALTY
    loyalty.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(world.loyalty, loyalty, compression=COMPRESSION, store_schema=False)
    manifest = {
        "generator": GENERATOR,
        "seed": world.seed,
        "customers": world.customers,
        "now": world.now.isoformat().replace("+00:00", "Z"),
        "files": files,
        "invalid": world.invalid,
        "lists": {"vip": {"path": VIP_LIST, "rows": world.vip_list.num_rows}},
        "relations": {"loyalty": {"path": LOYALTY, "rows": world.loyalty.num_rows}},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of the world written in ``directory``, if any."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _write_table(table: pa.Table, spec: DataFile, path: Path) -> int:
    """Write one table; returns the malformed lines added (JSON Lines only)."""
    if spec.format == "csv":
        pacsv.write_csv(table, path)
        return 0
    if spec.format == "parquet":
        pq.write_table(table, path, compression=COMPRESSION, store_schema=False)
        return 0
    return _write_jsonl(table, path, malformed=spec.part in MALFORMED)


def _write_one(table: pa.Table, spec: DataFile, path: Path, tick: Callable[[int], None]) -> int:
    malformed = _write_table(table, spec, path)
    tick(table.num_rows)
    return malformed


def _part_bounds(rows: int) -> list[tuple[int, int]]:
    """Each Parquet part's events (:data:`PART_ROWS`; one empty part for an empty log)."""
    return [(lo, min(lo + PART_ROWS, rows)) for lo in range(0, rows, PART_ROWS)] or [(0, 0)]


def _write_part(log: EventLog, lo: int, hi: int, path: Path, tick: Callable[[int], None]) -> int:
    """Render events ``lo`` to ``hi`` of ``log`` and write them as one Parquet part (a row
    group per rendered batch)."""
    with pq.ParquetWriter(path, SCHEMA, **PARQUET) as writer:
        for start in range(lo, hi, EVENT_BATCH_ROWS):
            batch = render(log, start, min(start + EVENT_BATCH_ROWS, hi))
            writer.write_batch(batch, row_group_size=batch.num_rows)
            tick(batch.num_rows)
    return 0


def _write_jsonl(table: pa.Table, path: Path, *, malformed: bool) -> int:
    """Write ``table`` as JSON Lines, chunk by chunk; returns how many malformed lines went in
    (each a real line cut short, before the line itself)."""
    bad = 0
    with path.open("wb") as out:
        for lo in range(0, max(table.num_rows, 1), JSON_CHUNK_ROWS):
            chunk = table.slice(lo, JSON_CHUNK_ROWS)
            lines = tx.json_lines(chunk)
            if malformed:
                lines, added = _with_malformed(lines, lo, table.num_rows)
                bad += added
            out.write(_buffer(lines))
    return bad


def _with_malformed(lines: pa.Array, lo: int, total: int) -> tuple[pa.Array, int]:
    every = min(MALFORMED_EVERY, max(total // 2, 1))
    positions = np.arange(every // 2, total, every)
    local = positions[(positions >= lo) & (positions < lo + len(lines))] - lo
    if not len(local):
        return lines, 0
    cut = tx.join(pc.utf8_slice_codeunits(lines.take(pa.array(local)), 0, 48), "\n")
    order = np.insert(np.arange(len(lines)), local, len(lines) + np.arange(len(local)))
    return pa.concat_arrays([lines, cut]).take(pa.array(order)), len(local)


def _buffer(lines: pa.Array) -> pa.Buffer:
    """The bytes of a string array's values, back to back (the file's content)."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, 4 * lines.offset)
    data = lines.buffers()[2]
    if data is None:
        return pa.py_buffer(b"")
    return data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
