"""Spike, not product code: what a front/owner split of ``personify serve`` could take.

Usage: ``.venv/bin/python benchmarks/split_spike.py on|off [EVENTS]`` (continuous mode on or
off; default 300,000 events), beside ``tracking_throughput.py`` run interleaved with it.

A front process (uvicorn + Starlette, one ``/v1/batch`` route that decodes, normalizes and checks
the recent ids itself — no auth, rate limit, metrics or middleware, so it flatters the split)
sends each request's rows pickled over a Unix socket to an owner process that runs serve's group
writer and, with ``on``, continuous mode; 16 clients as in ``tracking_throughput.py``, over
1,000,000 stored events. Prints events/s, latency and each process's cores. Session 10's figures
and what they say are in ``RESULTS.md`` (tracking, session 10).
"""

from __future__ import annotations

import asyncio
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
HEAD = struct.Struct("!I")


async def _read(reader: asyncio.StreamReader) -> bytes:
    (n,) = HEAD.unpack(await reader.readexactly(HEAD.size))
    return await reader.readexactly(n)


def owner_main(work: str, sock: str, continuous: bool) -> None:
    from personify.config import load_project
    from personify.ingest.tracking.writer import GroupWriter
    from personify.realtime import profile_cache
    from personify.realtime.continuous import Applier, ApplyingWriter
    from personify.session import Session

    session = Session(load_project(Path(work)))
    wh = session.warehouse
    wh.limit_memory()
    wh.limit_threads()
    group = GroupWriter(wh)
    writer = group
    if continuous:
        profile_cache(wh, session.project)
        writer = ApplyingWriter(group, Applier(session))

    async def serve_conn(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                rows = pickle.loads(await _read(reader))  # noqa: S301
                status = await writer.write(rows)
                out = pickle.dumps(status, protocol=5)
                w.write(HEAD.pack(len(out)) + out)
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def main() -> None:
        server = await asyncio.start_unix_server(serve_conn, sock)
        Path(sock + ".ready").touch()
        async with server:
            await server.serve_forever()

    import uvloop

    uvloop.run(main())


def front_main(work: str, sock: str, port: int) -> None:
    import msgspec
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from personify.ingest.tracking.intake import settle, take_in
    from personify.ingest.tracking.limits import RecentIds
    from personify.ingest.tracking.messages import Envelope
    from personify.ingest.tracking.normalize import Inputs
    from personify.ingest.tracking.plan import load_plan

    plan = load_plan(Path(work) / "tracking-plan")
    recent = RecentIds()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    opened = []

    async def startup() -> None:
        if not opened:
            opened.append(1)
            for _ in range(32):
                pool.put_nowait(await asyncio.open_unix_connection(sock))

    async def batch(request: Request) -> Response:
        await startup()
        body = await request.body()
        env = msgspec.json.decode(body, type=Envelope)
        inputs = Inputs(source="web", received_at=datetime.now(UTC), plan=plan)
        intake = take_in([bytes(r) for r in env.batch], inputs, recent)
        if intake.rows:
            r, w = await pool.get()
            try:
                out = pickle.dumps(intake.rows, protocol=5)
                w.write(HEAD.pack(len(out)) + out)
                status = pickle.loads(await _read(r))  # noqa: S301
            finally:
                pool.put_nowait((r, w))
            settle(intake, status, recent)
        return Response(b'{"success":true}', media_type="application/json")

    app = Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )


def bench(continuous: bool, events: int, clients: int) -> None:
    import tracking_throughput as tt
    from tests.e2e.test_serve import free_port

    from personify.scaffold import init_project

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "w"
        init_project(work)
        tt.prefill(work, 1_000_000)
        sock = str(Path(tmp) / "owner.sock")
        port = free_port()
        owner = subprocess.Popen(
            [sys.executable, __file__, "owner", str(work), sock, str(int(continuous))]
        )
        while not Path(sock + ".ready").exists():
            time.sleep(0.1)
        front = subprocess.Popen([sys.executable, __file__, "front", str(work), sock, str(port)])
        import httpx

        for _ in range(300):
            try:
                httpx.post(f"http://127.0.0.1:{port}/v1/batch", content=tt.bodies(100, "warm0")[0])
                break
            except httpx.TransportError:
                time.sleep(0.1)
        asyncio.run(tt.batch_load(port, "k", tt.bodies(2000, "warm")).run(4))
        time.sleep(2)
        payloads = tt.bodies(events)
        load = tt.batch_load(port, "k", payloads)
        c0 = tt.cpu_seconds(owner.pid), tt.cpu_seconds(front.pid)
        t = time.perf_counter()
        asyncio.run(load.run(clients))
        secs = time.perf_counter() - t
        c1 = tt.cpu_seconds(owner.pid), tt.cpu_seconds(front.pid)
        lat = sorted(load.latencies)
        p50, p99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
        owner_cores, front_cores = (c1[0] - c0[0]) / secs, (c1[1] - c0[1]) / secs
        print(
            f"continuous={continuous}: {events / secs:,.0f} events/s; p50 {p50:.0f} ms "
            f"p99 {p99:.0f} ms; owner {owner_cores:.2f} cores, front {front_cores:.2f} cores; "
            f"failures {load.failures}",
            flush=True,
        )
        front.terminate()
        owner.terminate()
        front.wait()
        owner.wait()


if __name__ == "__main__":
    if sys.argv[1] == "owner":
        owner_main(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
    elif sys.argv[1] == "front":
        front_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        bench(sys.argv[1] == "on", int(sys.argv[2]) if len(sys.argv) > 2 else 300_000, 16)
