"""Tracking endpoints: requests/s and p99 latency of ``GET /o/{token}.gif`` and ``GET /c/{token}``.

Usage: ``.venv/bin/python benchmarks/engagement_tracking.py [REQUESTS] [--clients N]``
(default 20,000 requests, half pixels and half clicks, 16 keep-alive clients).

A real ``personify serve`` on a fresh scaffolded DuckDB project holding 1,000 sent messages; each
request carries a valid signed token (a distinct client address per request is not possible on
loopback, so the user agent varies: every hit is a new event). Baselines from the same run, same
clients, same load generator (``_load.py``):

* **bare ASGI** — ``_bare_asgi.py`` under the same uvicorn (uvloop, httptools): the same GIF and
  302 bytes with no token check and nothing recorded — the floor of the HTTP stack;
* ``GET /healthz`` on the same server (one warehouse round trip per request; at most 2,000 of
  them: it is a slow route and only a reference).

Also the server's CPU per tracking request: during the load, and until every hit is recorded
(the recorder thread records the hits of each 0.2 s together, after the answers; waited for
through ``/metrics``, which costs the server next to nothing), beside the bare app's CPU per
request (the HTTP stack's share), and its main thread's share during the load (the event loop:
uvicorn and the answers; it and the recorder's Python share one interpreter lock). Then it
counts the events.

Goal: ≥ 5,000 requests/s per process with p99 ≤ 20 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _load import Load, cpu_seconds, get_requests, tracked_messages_project

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PERSONIFY = str(Path(sys.executable).with_name("personify"))
MESSAGES = 1000


def _wait_http(port: int, path: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit(f"the server on port {port} did not start")
        time.sleep(0.1)


def _main_thread_seconds(pid: int) -> float:
    """CPU seconds of a process's main thread (the event loop: uvicorn and the answers; the
    recorder and the engine's threads are the rest)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


HEALTHZ = 2000


def _hits_counted(port: int) -> int:
    """Tracking hits the server has recorded (or found invalid) so far, from ``/metrics``."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("personify_engagement_hits_total{")
    )


def bare(paths: list[tuple[str, str]], clients: int) -> dict[str, float]:
    """The same requests against :mod:`_bare_asgi` under the same uvicorn."""
    from tests.e2e.test_serve import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_bare_asgi:app",
            "--app-dir",
            str(ROOT / "benchmarks"),
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--lifespan",
            "off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(port, "/o/x.gif", proc)
        load = Load(port, get_requests(port, paths))
        cpu = cpu_seconds(proc.pid)
        figures = load.figures(asyncio.run(load.run(clients)))
        figures["cpu_us"] = (cpu_seconds(proc.pid) - cpu) / len(paths) * 1e6
        return figures
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", nargs="?", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    from tests.e2e.test_serve import free_port, run_json

    work = Path(tempfile.mkdtemp(prefix="engagement-bench-")) / "shop"
    paths = tracked_messages_project(work, MESSAGES, args.requests)

    floor = bare(paths, args.clients)
    port = free_port()
    log = (work / "serve.log").open("wb")
    proc = subprocess.Popen(
        [PERSONIFY, "serve", "--project", str(work), "--port", str(port), "--log-level", "warning"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(port, "/healthz", proc)
        checks = min(args.requests, HEALTHZ)
        base = Load(port, get_requests(port, [("/healthz", "bench")] * checks))
        baseline = base.figures(asyncio.run(base.run(args.clients)))
        load = Load(port, get_requests(port, paths))
        start, main_start = cpu_seconds(proc.pid), _main_thread_seconds(proc.pid)
        tracked = load.figures(asyncio.run(load.run(args.clients)))
        cpu = cpu_seconds(proc.pid) - start
        main_cpu = _main_thread_seconds(proc.pid) - main_start
        deadline = time.monotonic() + 300
        while _hits_counted(port) < args.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_recorded = cpu_seconds(proc.pid) - start
        while True:
            stored = run_json(
                "sql",
                "SELECT count(*) AS n FROM events WHERE source = 'email_tracking'",
                "--project",
                str(work),
            )["rows"][0]["n"]
            if stored >= args.requests or time.monotonic() > deadline:
                break
            time.sleep(1)
    finally:
        _stop(proc)
        log.close()
    print(f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"{args.requests:,} requests, {args.clients} clients, {MESSAGES:,} messages\n")
    print("| endpoint | req/s | p50 ms | p99 ms | failures |")
    print("|---|---|---|---|---|")
    rows = (
        ("bare ASGI, same bytes (floor)", floor),
        ("/healthz (one warehouse query)", baseline),
        ("/o + /c (tracking)", tracked),
    )
    for name, f in rows:
        print(
            f"| {name} | {f['rps']:,.0f} | {f['p50_ms']:.2f} | {f['p99_ms']:.2f} "
            f"| {int(f['failures'])} |"
        )
    print(f"\ntracking / floor: {tracked['rps'] / floor['rps']:.0%}")
    print(
        f"server CPU per tracking request: {cpu / args.requests * 1e6:.0f} µs during the load, "
        f"{cpu_recorded / args.requests * 1e6:.0f} µs until every hit was recorded "
        f"(bare app: {floor['cpu_us']:.0f} µs per request); main thread (event loop) "
        f"{main_cpu / args.requests * 1e6:.0f} µs"
    )
    print(f"events recorded: {stored:,} of {args.requests:,}")
    print("goal: >= 5,000 req/s, p99 <= 20 ms")


if __name__ == "__main__":
    main()
