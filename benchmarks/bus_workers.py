"""Throughput of ``personify serve --role worker`` processes: two workers against one, on NATS
JetStream and PostgreSQL.

For each worker count, in the same run: a fresh PostgreSQL schema and JetStream stream; one
``--role ingest`` process takes ``--events`` Product Viewed events (``--batch`` per request,
``--customers`` distinct users) while no worker runs, so the stream holds them all; the ingest
process stops, then K ``--role worker`` processes start and the clock runs from the moment a
worker first fetched from the stream (JetStream's consumer has delivered something: process
start-up excluded) to the last stored event — the first batch's store inside it, so toy sizes
whose events fit in one batch still give a figure. A worker stores a batch (the tracking
store, one row per ``messageId``) and applies it in continuous mode (identity, profile,
segments, rules, journey entries) before acking. Figures: events stored per second, and the
time until every customer's profile was built.

Usage: ``.venv/bin/python benchmarks/bus_workers.py [--events 20000] [--customers 2000]``.
Needs PostgreSQL (``PERSONIFY_TEST_POSTGRES``) and NATS with JetStream on 127.0.0.1:4222. The
machine is shared (2 cores): say so with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from personify.scaffold import init_project
from personify.warehouse import connect

PERSONIFY = str(Path(sys.executable).parent / "personify")
PG = os.environ.get("PERSONIFY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
NATS = "nats://127.0.0.1:4222"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(project: Path, log: Path, role: str, port: int | None = None) -> subprocess.Popen[bytes]:
    args = [PERSONIFY, "serve", "--project", str(project), "--role", role]
    if port:
        args += ["--port", str(port)]
    with log.open("ab") as sink:
        return subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def fill(project: Path, tmp: Path, events: int, batch: int, customers: int) -> None:
    """Post the events through one ingest process (no worker runs: they wait on the bus)."""
    key = next(
        line.split("=", 1)[1]
        for line in (project / ".env").read_text().splitlines()
        if line.startswith("PERSONIFY_WRITE_KEY=")
    )
    port = free_port()
    ingest = spawn(project, tmp / "ingest.log", "ingest", port)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=5, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the ingest process did not start")
            time.sleep(0.1)
        with httpx.Client(auth=(key, ""), timeout=60, trust_env=False) as http:
            for start in range(0, events, batch):
                body = {
                    "batch": [
                        {
                            "type": "track",
                            "event": "Product Viewed",
                            "messageId": f"bw-{i}",
                            "userId": f"user-{i % customers}",
                            "properties": {"product_id": f"p{i % 50}"},
                        }
                        for i in range(start, min(events, start + batch))
                    ]
                }
                http.post(url + "/v1/batch", json=body).raise_for_status()
    finally:
        stop(ingest)


def measure(workers: int, args: argparse.Namespace) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix=f"personify-bw{workers}-"))
    schema = f"personify_bench_{uuid.uuid4().hex[:8]}"
    stream = f"personify_bench_{uuid.uuid4().hex[:8]}"
    url = f"{PG}?schema={schema}"
    project = tmp / "shop"
    init_project(project)
    yml = project / "personify.yml"
    yml.write_text(
        yml.read_text().replace("warehouse: duckdb:///warehouse.duckdb", f"warehouse: {url}")
        + f"\nbus: {NATS}?stream={stream}\n"
    )
    wh = connect(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        fill(project, tmp, args.events, args.batch, args.customers)
        procs = [spawn(project, tmp / f"worker{i}.log", "worker") for i in range(workers)]
        done = built = None
        deadline = time.monotonic() + args.timeout
        first = asyncio.run(_first_fetch(stream, deadline))
        cpu0 = _cpu(procs)
        while time.monotonic() < deadline:
            n = int(wh.scalar("SELECT count(*) FROM events") or 0)
            now = time.perf_counter()
            if n >= args.events and done is None:
                done = now
            if done is not None:
                c = int(wh.scalar("SELECT count(*) FROM customers") or 0)
                if c >= args.customers:
                    built = now
                    break
            time.sleep(0.02)
        cpu = _cpu(procs) - cpu0
    finally:
        for p in procs:
            stop(p)
        wh.close()
        import psycopg

        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        asyncio.run(_drop(stream))
    if done is None:
        raise SystemExit(f"{workers} worker(s) did not store everything; logs in {tmp}")
    span = max(done - first, 1e-3)
    return {
        "events_per_s": args.events / span,
        "store_s": span,
        "profiles_s": (built - first) if built else float("nan"),
        "cpu_us_per_event": cpu / args.events * 1e6,
    }


def _cpu(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) of the processes, from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in procs:
        try:
            fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


async def _first_fetch(stream: str, deadline: float) -> float:
    """When (``perf_counter``) a worker first took events from ``stream``: its consumer
    ``workers`` has delivered some (checked every 5 ms)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(NATS)
    try:
        js = nc.jetstream()
        while time.monotonic() < deadline:
            try:
                info = await js.consumer_info(stream, "workers")
            except NotFoundError:  # (no worker subscribed yet)
                info = None
            if info is not None and info.delivered is not None and info.delivered.stream_seq:
                return time.perf_counter()
            await asyncio.sleep(0.005)
    finally:
        await nc.close()
    raise SystemExit(f"no worker fetched from the stream {stream} in time")


async def _drop(stream: str) -> None:
    import nats

    nc = await nats.connect(NATS)
    try:
        await nc.jetstream().delete_stream(stream)
    except Exception:  # never created
        pass
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    rows = {k: measure(k, args) for k in (1, 2)}
    load = os.getloadavg()[0]
    print(f"\n{args.events:,} events, {args.customers:,} customers; NATS JetStream + PostgreSQL;")
    print(f"load average {load:.1f} on a shared 2-core machine\n")
    head = f"{'workers':<10} {'events/s':>10} {'stored in s':>12} {'profiles in s':>14}"
    print(f"{head} {'CPU µs/event':>13}")
    for k, r in rows.items():
        print(
            f"{k:<10} {r['events_per_s']:>10,.0f} {r['store_s']:>12.2f} {r['profiles_s']:>14.2f} "
            f"{r['cpu_us_per_event']:>13.0f}"
        )
    print(f"\n2 workers / 1 worker: {rows[2]['events_per_s'] / rows[1]['events_per_s']:.2f}×")


if __name__ == "__main__":
    main()
