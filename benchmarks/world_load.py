"""Benchmark: generate the synthetic world, write it, load it into a fresh DuckDB warehouse.

Goal: for 1,000,000 customers (≥ 10 M events), generation + load in ≤ 60 s and ≤ 4 GB peak
memory. Each step runs in a fresh process so its peak RSS is its own (``getrusage`` only knows
the peak so far; CPU seconds count every thread of the step): ``generate`` builds the world (and
reports its peak), then writes it in the same process (the write peak includes the world held in
memory); ``load`` imports the files through the path ``personify run`` uses — the pipeline's
``sync`` stage (file sources → validation → warehouse) — into a new project's DuckDB warehouse,
and prints, per imported file, the highest RSS (and Arrow pool bytes) since the previous file's
import ended, to show where the peak is.

Usage::

    .venv/bin/python benchmarks/world_load.py                 # 1 M customers
    .venv/bin/python benchmarks/world_load.py --customers 100000
    .venv/bin/python benchmarks/world_load.py --full-run      # also identity, profiles, …
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NOW = "2026-01-31T09:00:00Z"
GOAL_SECONDS = 60.0
GOAL_BYTES = 4 * 1024**3
OUT = Path(__file__).parent / "out" / "world_load"


def _peak() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def step_generate(customers: int, seed: int, out: Path) -> dict[str, Any]:
    from personify.demo import build_world, write_world

    now = datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    t0, c0 = time.perf_counter(), time.process_time()
    world = build_world(customers, seed=seed, now=now)
    t1, c1 = time.perf_counter(), time.process_time()
    peak_generate = _peak()
    sizes = world.sizes()
    write_world(world, out / "data")
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "generate": {"seconds": t1 - t0, "cpu": c1 - c0, "peak": peak_generate},
        "write": {"seconds": t2 - t1, "cpu": c2 - c1, "peak": _peak()},
        "sizes": sizes,
        "bytes": sum(p.stat().st_size for p in (out / "data").rglob("*") if p.is_file()),
    }


class _Sampler:
    """RSS and the Arrow pool's bytes every half second while the load runs; per imported file
    (the importer logs each), the highest RSS since the previous file ended — where the peak is."""

    def __init__(self) -> None:
        import logging
        import threading

        self.files: list[dict[str, Any]] = []
        self._high = 0
        self._arrow = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sampler = self

        class _Done(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                name = str(record.args[0]) if isinstance(record.args, tuple) else "?"
                sampler.files.append(
                    {"file": name, "rss_max": sampler._high, "arrow_max": sampler._arrow}
                )
                sampler._high = sampler._arrow = 0

        files_log = logging.getLogger("personify.sources.files")
        files_log.addHandler(_Done(level=logging.INFO))
        files_log.setLevel(logging.INFO)

    def _run(self) -> None:
        import pyarrow as pa

        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.wait(0.5):
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page
            self._high = max(self._high, rss)
            self._arrow = max(self._arrow, pa.total_allocated_bytes())

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def step_load(customers: int, seed: int, out: Path, full: bool) -> dict[str, Any]:
    from personify import clock, pipeline
    from personify.demo.project import configure_project
    from personify.scaffold import init_project
    from personify.session import open_session

    for path in out.glob("warehouse.duckdb*"):
        path.unlink()
    if not (out / "personify.yml").exists():
        init_project(out)
    instant = clock.parse_instant(NOW)
    configure_project(out, seed=seed, customers=customers, now=instant)
    clock.pin(instant)
    result: dict[str, Any] = {}
    with open_session(out) as session:
        t0, c0 = time.perf_counter(), time.process_time()
        with _Sampler() as sampler:
            report = pipeline.run(session, stages=pipeline.STAGES[:1])
            # a checkpoint put off by the import (another transaction open) would otherwise run
            # at close, after the figures: measured here, it is part of loading the world
            session.warehouse.execute("CHECKPOINT")
        result["load"] = {
            "seconds": time.perf_counter() - t0,
            "cpu": time.process_time() - c0,
            "peak": _peak(),
        }
        result["files"] = sampler.files
        result["counts"] = report.stages[0].counts
        if full:
            t1 = time.perf_counter()
            rest = pipeline.run(session, stages=pipeline.STAGES[1:])
            result["rest"] = {"seconds": time.perf_counter() - t1, "peak": _peak()}
            result["stages"] = {s.name: round(s.seconds, 1) for s in rest.stages}
        rows = session.warehouse.fetch(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM customers)"
        )
        result["warehouse"] = {"events": rows[0][0], "customers": rows[0][1]}
    return result


def _run_step(name: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--step",
        name,
        "--customers",
        str(args.customers),
        "--seed",
        str(args.seed),
        "--out",
        str(args.out),
    ]
    if args.full_run:
        command.append("--full-run")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"step {name} failed")
    last: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return last


def _machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout
    memory = next((ln.split()[1] for ln in free.splitlines() if ln.startswith("Mem:")), "?")
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _gb(value: float) -> str:
    return f"{value / 1024**3:.2f} GB"


def _report(args: argparse.Namespace, gen: dict[str, Any], load: dict[str, Any]) -> str:
    sizes = gen["sizes"]
    events = sizes["events"] + sizes["email_events"]
    steps = [
        ("generate (build the world)", gen["generate"]),
        ("write (render + files)", gen["write"]),
        ("load (sync stage → DuckDB)", load["load"]),
    ]
    rows = [(name, s["seconds"], s["peak"], s["cpu"]) for name, s in steps]
    total = sum(r[1] for r in rows)
    cpu = sum(r[3] for r in rows)
    peak = max(r[2] for r in rows)
    lines = [
        f"customers {args.customers:,} · events {events:,} ({events / args.customers:.1f} per "
        f"customer) · files {gen['bytes'] / 1024**2:,.0f} MiB",
        "",
        f"{'step':32} {'seconds':>9} {'CPU s':>7} {'peak RSS':>10}  goal",
        f"{'-' * 32} {'-' * 9} {'-' * 7} {'-' * 10}  {'-' * 30}",
    ]
    for name, seconds, rss, step_cpu in rows:
        lines.append(f"{name:32} {seconds:9.1f} {step_cpu:7.1f} {_gb(rss):>10}")
    ok = "met" if total <= GOAL_SECONDS and peak <= GOAL_BYTES else "NOT met"
    lines.append(
        f"{'total (generate + write + load)':32} {total:9.1f} {cpu:7.1f} {_gb(peak):>10}  "
        f"≤ {GOAL_SECONDS:.0f} s and ≤ {_gb(GOAL_BYTES)}: {ok}"
    )
    if "rest" in load:
        lines.append(
            f"{'rest of personify run':32} {load['rest']['seconds']:9.1f} "
            f"{_gb(load['rest']['peak']):>10}  {load['stages']}"
        )
    counts = load["counts"]
    lines += [
        "",
        f"loaded {counts.get('rows_loaded', 0):,} of {counts.get('rows_read', 0):,} rows "
        f"({counts.get('rows_quarantined', 0):,} quarantined, "
        f"{counts.get('rows_duplicate', 0):,} duplicate); warehouse: "
        f"{load['warehouse']['events']:,} events, {load['warehouse']['customers']:,} customers",
    ]
    if load.get("files"):
        lines += ["", "peak RSS (Arrow pool) until each file's import ended, in that order:"]
        lines += [
            f"  {f['file']:40} {_gb(f['rss_max']):>9} ({_gb(f['arrow_max'])})"
            for f in load["files"]
        ]
    machine = _machine()
    lines.append(
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, "
        f"Python {machine['python']}, load average {machine['load']} at the end"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=OUT, help="working folder (emptied first)")
    parser.add_argument("--full-run", action="store_true", help="also time the later stages")
    parser.add_argument("--keep", action="store_true", help="keep the files and warehouse")
    parser.add_argument("--step", choices=["generate", "load"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "generate":
        print(json.dumps(step_generate(args.customers, args.seed, args.out)))
        return
    if args.step == "load":
        print(json.dumps(step_load(args.customers, args.seed, args.out, args.full_run)))
        return
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    started = datetime.now(UTC)
    gen = _run_step("generate", args)
    load = _run_step("load", args)
    print(f"world_load benchmark, {started:%Y-%m-%d %H:%M} UTC")
    print(_report(args, gen, load))
    if not args.keep:
        shutil.rmtree(args.out, ignore_errors=True)


if __name__ == "__main__":
    main()
