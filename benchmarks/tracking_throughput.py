"""Tracking API throughput: sustained events/s through ``POST /v1/batch`` with durable acks.

Usage: ``.venv/bin/python benchmarks/tracking_throughput.py [EVENTS] [--clients N] [--stored S]
[--owner]`` (default 300,000 events, 16 concurrent clients, 100 events per request; ``--stored``:
events already in the warehouse before the run, default 1,000,000 — a store that only works on an
empty table is no store; ``--owner``: one more figure, see below).

Figures from the same run, on the same events:

* **in-process ceiling** — decode + validate (spec rules, the scaffold's tracking plan) + store,
  no HTTP: the bodies go straight through ``take_in`` and ``store`` (one transaction per 2,000
  events, as the group writer would make them) on a fresh DuckDB file;
* **the warehouse-owning process alone** (``--owner``) — serve's group writer and continuous
  mode fed the same events already normalized, by as many coroutines as there are clients: what
  the process that owns DuckDB could take if a front process did the HTTP and the decoding;
* **HTTP** — a real ``personify serve`` process on a fresh scaffolded project; the clients are
  lean asyncio HTTP/1.1 keep-alive connections (pre-built requests, so the client costs little of
  the shared CPU), each waiting for its answer — a 200 means the events are committed — before
  sending the next. Reports events/s, p50/p99 request latency and the server's peak RSS
  (``VmHWM``), then checks the warehouse holds every event exactly once.

Goal: ≥ 25,000 events/s and ≤ 500 MB RSS on the 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from _load import Load

from personify.config import load_project
from personify.ingest.tracking.intake import take_in
from personify.ingest.tracking.limits import RecentIds
from personify.ingest.tracking.messages import Envelope
from personify.ingest.tracking.normalize import Inputs
from personify.ingest.tracking.plan import load_plan
from personify.ingest.tracking.store import store
from personify.scaffold import init_project
from personify.session import Session

PER_REQUEST = 100
PERSONIFY = str(Path(sys.executable).parent / "personify")
_LAUNCH = (
    "import sys, personify.server.roles as r; {patch}"
    "from personify.cli import main; sys.argv[0] = 'personify'; sys.exit(main())"
)
_WITHOUT_CONTINUOUS = "r.attach_continuous = lambda *a, **k: None; "
"""``personify serve`` with continuous mode left out (to tell its CPU from the ingest path's)."""
_DUCKDB_MEMORY = (
    "import personify.warehouse.duckdb.backend as b; b.SERVE_MEMORY_LIMIT = {mib} << 20; "
)
"""``personify serve`` with another cap on DuckDB's memory (MiB)."""
_DUCKDB_THREADS = "import personify.warehouse.duckdb.backend as b; b.SERVE_THREADS = {n}; "
"""``personify serve`` with DuckDB statements on ``n`` threads (0: every core)."""
_SWITCH = "sys.setswitchinterval({seconds!r}); "
"""``personify serve`` with another GIL switch interval: how soon a thread waiting for the GIL
(the group writer, back from DuckDB) takes it from one running Python (the event loop)."""


def bodies(total: int, prefix: str = "bench") -> list[bytes]:
    """``total`` Product Viewed events (about 600 bytes each) in batches of 100."""
    out = []
    for b in range(total // PER_REQUEST):
        batch = [
            {
                "type": "track",
                "event": "Product Viewed",
                "messageId": f"{prefix}-{b}-{i}",
                "anonymousId": f"anon-{(b * 7 + i) % 50_000}",
                "userId": f"user-{(b * 3 + i) % 20_000}" if i % 3 == 0 else None,
                "timestamp": "2026-02-01T10:00:00.000Z",
                "properties": {
                    "product_id": f"p-{i % 500}",
                    "sku": f"SKU-{i % 500:05d}",
                    "name": "Stoneware mug, 350 ml",
                    "category": "Kitchen",
                    "price": 12.5,
                    "currency": "EUR",
                    "url": f"https://shop.example/p/{i % 500}",
                },
                "context": {
                    "ip": "203.0.113.7",
                    "locale": "fr-FR",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36",
                    "page": {"path": "/p/mug", "url": "https://shop.example/p/mug"},
                    "library": {"name": "bench", "version": "1"},
                },
            }
            for i in range(PER_REQUEST)
        ]
        doc = {"batch": batch, "sentAt": "2026-02-01T10:00:01.000Z"}
        out.append(msgspec.json.encode(doc))
    return out


def prefill(work: Path, stored: int) -> None:
    """``stored`` older events (other ids, ~600 bytes each) in the project's warehouse."""
    if not stored:
        return
    session = Session(load_project(work))
    session.warehouse.execute(
        "INSERT INTO events (message_id, type, event, anonymous_id, timestamp, received_at, "
        "source, properties, context, payload_hash) "
        "SELECT 'old-' || i || '-' || md5(i::VARCHAR), 'track', 'Product Viewed', "
        "'anon-' || (i % 50000), TIMESTAMPTZ '2026-01-01' + to_seconds(i), "
        "TIMESTAMPTZ '2026-01-01' + to_seconds(i), 'web', "
        '\'{"product_id":"p-\' || (i % 500) || \'","price":12.5,"currency":"EUR",\' '
        '|| \'"name":"Stoneware mug, 350 ml","url":"https://shop.example/p/\' '
        "|| (i % 500) || '\"}', "
        '\'{"ip":"203.0.113.7","locale":"fr-FR","userAgent":"Mozilla/5.0 '
        '(X11; Linux x86_64) Chrome/126.0","page":{"path":"/p/mug"}}\', i '
        f"FROM range({int(stored)}) AS t(i)"
    )
    session.close()


def normalized(body: bytes, plan: Any, recent: RecentIds) -> Any:
    """One ``/v1/batch`` body decoded and validated as the server would (no HTTP)."""
    envelope = msgspec.json.decode(body, type=Envelope)
    inputs = Inputs(source="web", received_at=datetime.now(UTC), plan=plan)
    return take_in([bytes(r) for r in envelope.batch], inputs, recent)


def in_process(work: Path, payloads: list[bytes], stored: int = 0) -> tuple[float, float]:
    """Events/s of decode + validate + store without HTTP, and CPU µs per event."""
    init_project(work)
    prefill(work, stored)
    session = Session(load_project(work))
    wh = session.warehouse
    plan = load_plan(work / "tracking-plan")
    recent = RecentIds()
    rows: list[tuple[object, ...]] = []
    started, cpu = time.perf_counter(), time.process_time()
    for i, body in enumerate(payloads):
        intake = normalized(body, plan, recent)
        assert not intake.problems
        rows += intake.rows
        if len(rows) >= 2000 or i == len(payloads) - 1:
            store(wh, rows)
            rows = []
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    found = wh.scalar("SELECT count(*) FROM events WHERE message_id LIKE 'bench-%'")
    session.close()
    total = len(payloads) * PER_REQUEST
    assert found == total, found
    return total / seconds, cpu / total * 1e6


def owner_only(
    work: Path, payloads: list[bytes], clients: int, stored: int = 0, *, continuous: bool = True
) -> tuple[float, float]:
    """Events/s and CPU µs per event of the process that owns the warehouse with nothing else
    to do: ``clients`` coroutines hand pre-normalized rows (unpickled, as a front process would
    send them) to serve's group writer, continuous mode applying them — no HTTP, no decoding.
    What a server split into a front and a warehouse owner could take at most."""
    import pickle

    from personify.ingest.tracking.writer import GroupWriter
    from personify.realtime import profile_cache
    from personify.realtime.continuous import Applier, ApplyingWriter

    init_project(work)
    prefill(work, stored)
    session = Session(load_project(work))
    wh = session.warehouse
    wh.limit_memory()
    wh.limit_threads()  # as serve runs it
    plan, recent = load_plan(work / "tracking-plan"), RecentIds()
    blobs = []
    for body in payloads:
        intake = normalized(body, plan, recent)
        blobs.append(pickle.dumps(intake.rows, protocol=pickle.HIGHEST_PROTOCOL))
    group = GroupWriter(wh)
    applier = None
    writer: Any = group
    if continuous:
        profile_cache(wh, session.project)
        applier = Applier(session)
        writer = ApplyingWriter(group, applier)

    async def client(todo: Any) -> None:
        for blob in todo:
            await writer.write(pickle.loads(blob))  # noqa: S301 (our own rows)

    async def run() -> None:
        todo = iter(blobs)
        await asyncio.gather(*(client(todo) for _ in range(clients)))

    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if applier is not None:
        applier.close(300)
    group.close()
    session.close()
    total = len(payloads) * PER_REQUEST
    return total / seconds, cpu / total * 1e6


def _batch_ok(head: bytes, body: bytes) -> bool:
    return head.startswith(b"HTTP/1.1 200") and body == b'{"success":true}'


def batch_load(port: int, key: str, payloads: list[bytes]) -> Load:
    """Clients posting ``payloads`` to ``/v1/batch`` (the shared generator, ``_load.py``)."""
    auth = base64.b64encode(f"{key}:".encode()).decode()
    requests = [
        (
            f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(p)}\r\n\r\n"
        ).encode()
        + p
        for p in payloads
    ]
    return Load(port, requests, _batch_ok)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (the server's tracking normalizer processes, and the
    resource tracker ``multiprocessing`` starts beside them)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def family_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The sum over the server's process family: with ``VmHWM`` the sum of each one's peak (an
    upper bound of their peak together); with ``VmRSS`` what they hold now."""
    total = 0.0
    for p in family(pid):
        try:
            total += peak_rss_mb(p, field)
        except OSError:
            continue  # ended meanwhile
    return total


def family_cpu_seconds(pid: int) -> float:
    """User + system CPU of the server and its live descendants."""
    total = 0.0
    for p in family(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            continue
    return total


async def _sampled(pid: int, work: asyncio.Future[float], into: list[float]) -> float:
    """``work``'s result, sampling the server's RSS every 0.2 s meanwhile."""
    while not work.done():
        into.append(family_rss_mb(pid, "VmRSS"))
        await asyncio.wait([work], timeout=0.2)
    return work.result()


def _run_sampled(load: Load, clients: int, pid: int, into: list[float]) -> float:
    async def main() -> float:
        return await _sampled(pid, asyncio.ensure_future(load.run(clients)), into)

    return asyncio.run(main())


def over_http(
    work: Path,
    payloads: list[bytes],
    clients: int,
    stored: int = 0,
    *,
    continuous: bool = True,
    duckdb_mib: int | None = None,
    switch_interval: float | None = None,
    ingest_processes: int | None = None,
    duckdb_threads: int | None = None,
) -> dict[str, float]:
    """Events/s, latencies and peak RSS of a real server (and the clients' own CPU)."""
    env = init_project(work)
    prefill(work, stored)
    text = (work / "personify.yml").read_text()
    anchor = "    tracking_plan: tracking-plan\n"
    (work / "personify.yml").write_text(
        text.replace(anchor, anchor + "    rate_limit: 1000000000\n")
    )
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.e2e.test_serve import free_port, run_json

    port = free_port()
    log = (work / "serve.log").open("wb")
    patch = "" if continuous else _WITHOUT_CONTINUOUS
    if duckdb_mib is not None:
        patch += _DUCKDB_MEMORY.format(mib=int(duckdb_mib))
    if duckdb_threads is not None:
        patch += _DUCKDB_THREADS.format(n=int(duckdb_threads))
    if switch_interval is not None:
        patch += _SWITCH.format(seconds=float(switch_interval))
    launch = [sys.executable, "-c", _LAUNCH.format(patch=patch)] if patch else [PERSONIFY]
    helpers = [] if ingest_processes is None else ["--ingest-processes", str(ingest_processes)]
    proc = subprocess.Popen(
        [
            *launch,
            "serve",
            "--project",
            str(work),
            "--port",
            str(port),
            "--log-level",
            "warning",
            *helpers,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        import httpx

        deadline = time.monotonic() + 180  # a start takes ~50 s on the loaded shared machine
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the server did not start; see serve.log")
            time.sleep(0.1)
        started_rss = family_rss_mb(proc.pid, "VmRSS")
        asyncio.run(batch_load(port, env["PERSONIFY_WRITE_KEY"], bodies(2000, "warm")).run(4))
        time.sleep(1.0)  # the recent ids' preload (a background thread) finishes
        warm_rss = family_rss_mb(proc.pid, "VmRSS")
        processes = len(family(proc.pid))
        load = batch_load(port, env["PERSONIFY_WRITE_KEY"], payloads)
        commits = _commits(port)
        time.sleep(2.0)  # the warm-up's events applied (continuous mode), not counted below
        applied_before = _metric(port, "personify_realtime_applied_events_total")
        samples: list[float] = []
        cpu, own = family_cpu_seconds(proc.pid), time.process_time()
        seconds = _run_sampled(load, clients, proc.pid, samples)
        cpu, own = family_cpu_seconds(proc.pid) - cpu, time.process_time() - own
        rss = family_rss_mb(proc.pid)
        own_rss = peak_rss_mb(proc.pid)
        end_rss = family_rss_mb(proc.pid, "VmRSS")
        commits = [b - a for a, b in zip(commits, _commits(port), strict=True)]
        applied = _metric(port, "personify_realtime_applied_events_total")
        helped = _metric(port, 'personify_tracking_batches_normalized_total{where="helper"}')
        behind = _metric(port, "personify_realtime_queue_depth")
        caught_up = (
            _caught_up(port, applied_before + len(payloads) * PER_REQUEST)
            if continuous
            else float("nan")
        )
        stored = run_json(
            "sql",
            "SELECT count(*) AS n FROM events WHERE message_id LIKE 'bench-%'",
            "--project",
            str(work),
        )["rows"][0]["n"]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    lat = sorted(load.latencies)
    return {
        "events_per_s": len(payloads) * PER_REQUEST / seconds,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "rss_mb": rss,
        "rss_own_mb": own_rss,
        "processes": processes,
        "rss_started_mb": started_rss,
        "rss_warm_mb": warm_rss,
        "rss_run_mb": max(samples, default=float("nan")),
        "rss_end_mb": end_rss,
        "failures": load.failures,
        "stored": stored,
        "seconds": seconds,
        "cpu_us": cpu / (len(payloads) * PER_REQUEST) * 1e6,
        "client_cpu_us": own / (len(payloads) * PER_REQUEST) * 1e6,
        "client_cpu_share": own / seconds,
        "applied": applied,
        "helped": helped,
        "behind": behind,
        "caught_up_s": caught_up,
        "commits": commits[0],
        "rows_per_commit": commits[1] / commits[0] if commits[0] else float("nan"),
        "commit_ms": commits[2] / commits[0] * 1000 if commits[0] else float("nan"),
        "writer_busy": commits[2] / seconds,
    }


def _caught_up(port: int, target: float, limit: float = 300.0) -> float:
    """Seconds after the load until continuous mode has applied ``target`` inputs in all (every
    event of the run), NaN past ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if _metric(port, "personify_realtime_applied_events_total") >= target:
            return time.monotonic() - started
        time.sleep(0.25)
    return float("nan")


def _commits(port: int) -> list[float]:
    """Group commits so far: how many, the rows they stored, the seconds they took."""
    return [
        _metric(port, "personify_tracking_commit_rows_count"),
        _metric(port, "personify_tracking_commit_rows_sum"),
        _metric(port, "personify_tracking_commit_seconds_sum"),
    ]


def _metric(port: int, name: str) -> float:
    """One unlabelled sample of the server's ``/metrics`` (NaN when absent)."""
    import httpx

    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return float("nan")


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    gib = int(mem) / 1024 / 1024
    return f"nproc={os.cpu_count()}, {gib:.1f} GiB, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?", type=int, default=300_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument(
        "--without-continuous",
        action="store_true",
        help="run the server without continuous mode (what the ingest path alone costs)",
    )
    parser.add_argument(
        "--duckdb-memory",
        type=int,
        metavar="MIB",
        help="start the server with this cap on DuckDB's memory instead of serve's default",
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        metavar="SECONDS",
        help="start the server with this sys.setswitchinterval (Python's default: 0.005)",
    )
    parser.add_argument(
        "--duckdb-threads",
        type=int,
        metavar="N",
        help="start the server with DuckDB statements on N threads (0: every core; "
        "default: serve's own, one)",
    )
    parser.add_argument(
        "--ingest-processes",
        type=int,
        metavar="N",
        help="personify serve --ingest-processes N (default: serve's own, one per core beyond "
        "the first)",
    )
    parser.add_argument(
        "--owner",
        action="store_true",
        help="also measure the warehouse-owning process alone: serve's group writer (and "
        "continuous mode) fed pre-normalized rows by the same number of clients, no HTTP",
    )
    args = parser.parse_args()
    payloads = bodies(args.events)
    total = len(payloads) * PER_REQUEST
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        ceiling, ceiling_cpu = in_process(Path(tmp) / "inproc", payloads, args.stored)
        owner = (
            owner_only(
                Path(tmp) / "owner",
                payloads,
                args.clients,
                args.stored,
                continuous=not args.without_continuous,
            )
            if args.owner
            else None
        )
        http = over_http(
            Path(tmp) / "http",
            payloads,
            args.clients,
            args.stored,
            continuous=not args.without_continuous,
            duckdb_mib=args.duckdb_memory,
            switch_interval=args.switch_interval,
            ingest_processes=args.ingest_processes,
            duckdb_threads=args.duckdb_threads,
        )
    print(f"machine: {machine()}")
    print(f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    print(
        f"{total:,} events, {PER_REQUEST} per request, {args.clients} clients, "
        f"{args.stored:,} events stored before; continuous mode "
        f"{'off' if args.without_continuous else 'on'}"
        + (f"; GIL switch interval {args.switch_interval:g} s" if args.switch_interval else "")
        + (f"; DuckDB threads {args.duckdb_threads}" if args.duckdb_threads else "")
        + (
            f"; serve --ingest-processes {args.ingest_processes}"
            if args.ingest_processes is not None
            else ""
        )
        + "\n"
    )
    print("| figure | value | goal |")
    print("|---|---|---|")
    print(f"| in-process ceiling (decode + validate + store) | {ceiling:,.0f} events/s | |")
    print(f"| HTTP /v1/batch, durable acks | {http['events_per_s']:,.0f} events/s | ≥ 25,000 |")
    print(f"| HTTP / ceiling | {http['events_per_s'] / ceiling:.0%} | |")
    if owner is not None:
        print(
            f"| the warehouse-owning process alone (pre-normalized rows, no HTTP; "
            f"{args.clients} submitters) | {owner[0]:,.0f} events/s, {owner[1]:.1f} µs CPU "
            f"each | |"
        )
    inproc_cpu, server_cpu = ceiling_cpu, http["cpu_us"]
    print(f"| CPU per event, in-process / server | {inproc_cpu:.1f} / {server_cpu:.1f} µs | |")
    print(
        f"| events/s one idle core could do, in-process / server | "
        f"{1e6 / inproc_cpu:,.0f} / {1e6 / server_cpu:,.0f} | |"
    )
    print(
        f"| the clients' own CPU (same process) | {http['client_cpu_us']:.1f} µs per event, "
        f"{http['client_cpu_share']:.0%} of one core | |"
    )
    print(f"| request latency p50 / p99 | {http['p50_ms']:.1f} / {http['p99_ms']:.1f} ms | |")
    print(
        f"| group commits: count / events each / ms each / writer busy | "
        f"{http['commits']:,.0f} / {http['rows_per_commit']:,.0f} / {http['commit_ms']:.1f} ms / "
        f"{http['writer_busy']:.0%} of the run | |"
    )
    print(
        f"| server peak RSS, its {http['processes']:.0f} process(es) summed (the serving "
        f"process alone) | {http['rss_mb']:.0f} MB ({http['rss_own_mb']:.0f} MB) | ≤ 500 MB |"
    )
    print(
        f"| server RSS (all its processes): started / warm / highest sampled in the run / after | "
        f"{http['rss_started_mb']:.0f} / {http['rss_warm_mb']:.0f} / {http['rss_run_mb']:.0f} / "
        f"{http['rss_end_mb']:.0f} MB | |"
    )
    if http["helped"] == http["helped"]:  # (not NaN: the server has normalizer processes)
        print(
            f"| batches normalized by a helper process (warm-up included) | "
            f"{http['helped']:,.0f} of {len(payloads) + 20:,} | |"
        )
    print(f"| stored exactly once | {http['stored']:,} of {total:,} | all |")
    if not args.without_continuous:
        print(
            f"| continuous mode: inputs applied by the end of the run / still queued | "
            f"{http['applied']:,.0f} / {http['behind']:,.0f} | |"
        )
        print(
            f"| continuous mode: every input applied, seconds after the load ended | "
            f"{http['caught_up_s']:.1f} s | |"
        )
    if http["failures"] or http["stored"] != total:
        raise SystemExit(f"{http['failures']:.0f} requests failed")


if __name__ == "__main__":
    main()
