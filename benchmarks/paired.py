"""Interleaved A/B runs of one benchmark: the working tree against a git revision, in pairs.

Usage: ``.venv/bin/python benchmarks/paired.py [--base REV] [--pairs N] [--figure TEXT]...
-- SCRIPT [ARGS...]`` — e.g. ``benchmarks/paired.py --pairs 3 -- tracking_throughput.py``.

The 2-core machines these benchmarks run on change speed by a quarter or more within minutes
(the tracking benchmark's in-process ceiling has read 27k and 51k events/s in one hour), so a
figure only compares with one taken in the same minutes. This runs ``SCRIPT`` (a file of
``benchmarks/``) alternately on the two trees — ``REV`` exported with ``git archive`` into a
temporary folder, its ``src`` first on ``PYTHONPATH``; the working tree likewise — each pair in
the other order than the one before (new, base; base, new; …), so a steady drift of the host
weighs on both sides alike. Runs are strictly one after another: never run two benchmarks at
once, or beside the tests.

From each run's output it reads the rows of the Markdown table the benchmarks print
(``| label | value | goal |``): by default the rows that state a goal (the headline figures),
and every row whose label contains a ``--figure`` text. A value's first number is the figure.
It prints each pair, then per figure the median of the new/base ratios and how many pairs the
new tree was ahead in — higher is better unless the figure is a time, a latency, memory or
CPU (``--lower`` adds a label text to those).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOWER_IS_BETTER = ("time", "latency", " ms", "rss", "memory", "cpu", "seconds", "peak", " s ")
"""Label texts (lower case) of figures where less is better."""
_ROW = re.compile(r"^\|(?P<label>[^|]+)\|(?P<value>[^|]+)\|(?P<goal>[^|]*)\|\s*$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


@dataclass
class Figure:
    """One row of a benchmark's table."""

    label: str
    value: float
    text: str
    goal: str


def figures(output: str, wanted: Sequence[str] = ()) -> list[Figure]:
    """The table rows of ``output`` that state a goal or whose label contains one of
    ``wanted`` (case-insensitive), with the first number of their value."""
    out: list[Figure] = []
    for line in output.splitlines():
        m = _ROW.match(line.strip())
        if m is None:
            continue
        label, text, goal = (m[k].strip() for k in ("label", "value", "goal"))
        if set(text) <= {"-", ":", " "}:  # the header's rule
            continue
        number = _NUMBER.search(text)
        if number is None:
            continue
        chosen = bool(goal) or any(w.lower() in label.lower() for w in wanted)
        if chosen:
            out.append(Figure(label, float(number[0].replace(",", "")), text, goal))
    return out


def lower_is_better(label: str, extra: Iterable[str] = ()) -> bool:
    """Whether less of this figure is better (a time, latency, memory, CPU …)."""
    text = f" {label.lower()} "
    return any(w in text for w in (*LOWER_IS_BETTER, *(e.lower() for e in extra)))


def order(pairs: int) -> list[str]:
    """The sides in the order they run: new, base, then base, new, … (each pair the other way)."""
    out: list[str] = []
    for i in range(pairs):
        out += ["new", "base"] if i % 2 == 0 else ["base", "new"]
    return out


@dataclass
class Run:
    side: str
    pair: int
    seconds: float
    load: float
    figures: list[Figure] = field(default_factory=list)
    failed: str = ""


def export(rev: str, into: Path, repo: Path = ROOT) -> None:
    """``git archive REV`` of ``repo`` unpacked into ``into``."""
    archive = into / "tree.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(repo), "archive", rev], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
            tar.extractall(into, filter="data")
        else:  # our own repository's archive
            tar.extractall(into)  # noqa: S202
    archive.unlink()


def run_one(
    side: str, pair: int, tree: Path, script: str, args: Sequence[str], wanted: Sequence[str]
) -> Run:
    """One run of ``tree``'s ``benchmarks/SCRIPT`` with ``tree/src`` first on the path (the
    servers a benchmark starts inherit it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tree / "src"), env.get("PYTHONPATH", "")) if p
    )
    load = os.getloadavg()[0]
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(tree / "benchmarks" / script), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    run = Run(side, pair, time.perf_counter() - started, load)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        run.failed = f"exit {proc.returncode}: " + " / ".join(tail)
    run.figures = figures(proc.stdout, wanted)
    if not run.figures and not run.failed:
        run.failed = "no table row with a goal or a --figure label in its output"
    return run


def summary(
    runs: Sequence[Run], lower: Sequence[str] = ()
) -> list[tuple[str, float, int, int, int]]:
    """Per figure: ``(label, median new/base ratio, pairs the new tree was ahead in, pairs it
    tied, pairs)``."""
    done = [r for r in runs if not r.failed]
    pairs = [
        (new, base)
        for new in done
        for base in done
        if new.side == "new" and base.side == "base" and new.pair == base.pair
    ]
    out = []
    labels = [f.label for f in pairs[0][0].figures] if pairs else []
    for label in labels:
        ratios, ahead, tied = [], 0, 0
        for new, base in pairs:
            a = next((f.value for f in new.figures if f.label == label), None)
            b = next((f.value for f in base.figures if f.label == label), None)
            if a is None or b is None or b == 0:
                continue
            ratios.append(a / b)
            tied += a == b
            ahead += (a < b) if lower_is_better(label, lower) else (a > b)
        if ratios:
            out.append((label, statistics.median(ratios), ahead, tied, len(ratios)))
    return out


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    """Run the pairs (``root``: the working tree, whose git history holds ``--base``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare with (HEAD)")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of runs (3)")
    parser.add_argument(
        "--figure", action="append", default=[], help="also compare table rows with this label"
    )
    parser.add_argument(
        "--lower", action="append", default=[], help="a label text of figures where less is better"
    )
    parser.add_argument("script", help="a file of benchmarks/, e.g. tracking_throughput.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the script's own arguments")
    ns = parser.parse_args(argv)
    args = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not (root / "benchmarks" / ns.script).is_file():
        parser.error(f"no benchmarks/{ns.script} in {root}")
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="personify-base-") as tmp:
        base = Path(tmp)
        export(ns.base, base, root)
        if not (base / "benchmarks" / ns.script).is_file():
            parser.error(f"benchmarks/{ns.script} is not in {ns.base}")
        print(
            f"{shlex.join([ns.script, *args])}: the working tree (new) against {ns.base} (base), "
            f"{ns.pairs} pairs, one run at a time",
            flush=True,
        )
        for i, side in enumerate(order(ns.pairs)):
            tree = root if side == "new" else base
            run = run_one(side, i // 2, tree, ns.script, args, ns.figure)
            runs.append(run)
            shown = run.failed or "; ".join(f"{f.label}: {f.text}" for f in run.figures)
            print(
                f"  pair {i // 2 + 1} {side:<4} ({run.seconds:5.0f} s, load {run.load:.1f}) "
                f"{shown}",
                flush=True,
            )
    rows = summary(runs, ns.lower)
    print("\n| figure | new / base (median) | new ahead |\n|---|---|---|")
    for label, ratio, ahead, tied, pairs in rows:
        ties = f" ({tied} tied)" if tied else ""
        print(f"| {label} | {ratio:.3f} | {ahead} of {pairs} pairs{ties} |")
    return 1 if any(r.failed for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
