"""``benchmarks/paired.py``: each side runs its own tree's code, the pairs alternate, and the
summary reads the benchmark's own table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import paired  # noqa: E402

TOY = """
import toyspeed
print("| figure | value | goal |")
print("|---|---|---|")
print(f"| speed | {toyspeed.SPEED:,} events/s | >= 1 |")
print(f"| request latency p50 / p99 | {toyspeed.LATENCY} / 9 ms | |")
print("| other | 7 things | |")
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A project whose committed code is slower than its working tree."""
    root = tmp_path / "project"
    (root / "benchmarks").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "benchmarks" / "toy.py").write_text(TOY)
    (root / "src" / "toyspeed.py").write_text("SPEED = 1000\nLATENCY = 40\n")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "base")
    (root / "src" / "toyspeed.py").write_text("SPEED = 1500\nLATENCY = 20\n")  # not committed
    return root


def test_each_side_runs_its_own_tree(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = paired.main(["--pairs", "2", "--figure", "latency", "toy.py"], root=repo)
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("speed: 1,500 events/s") == 2  # the working tree's src …
    assert out.count("speed: 1,000 events/s") == 2  # … and the base revision's
    assert "| speed | 1.500 | 2 of 2 pairs |" in out
    # less latency is better: the new tree is ahead with half of it
    assert "| request latency p50 / p99 | 0.500 | 2 of 2 pairs |" in out
    assert "other" not in out  # no goal, not asked for
    assert out.startswith("'toy.py'") or out.startswith("toy.py:")


def test_pairs_alternate_which_side_runs_first() -> None:
    assert paired.order(3) == ["new", "base", "base", "new", "new", "base"]


def test_figures_read_the_first_number_of_goal_rows_and_asked_rows() -> None:
    table = "\n".join(
        [
            "| figure | value | goal |",
            "|---|---|---|",
            "| HTTP /v1/batch, durable acks | 20,131 events/s | ≥ 25,000 |",
            "| in-process ceiling (decode + validate + store) | 32,913 events/s | |",
            "| server peak RSS | 433 MB (400 MB) | ≤ 500 MB |",
            "| not a number | n/a | ≥ 1 |",
        ]
    )
    got = {f.label: f.value for f in paired.figures(table, ["CEILING"])}
    assert got == {
        "HTTP /v1/batch, durable acks": 20131.0,
        "in-process ceiling (decode + validate + store)": 32913.0,
        "server peak RSS": 433.0,
    }
    assert paired.lower_is_better("server peak RSS")
    assert not paired.lower_is_better("HTTP /v1/batch, durable acks")


def test_a_failing_run_fails_the_comparison(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "benchmarks" / "toy.py").write_text("raise SystemExit('broken')\n")
    # the base still has the committed (working) script: only the new side fails
    assert paired.main(["--pairs", "1", "toy.py"], root=repo) == 1
    assert "exit 1: broken" in capsys.readouterr().out


def test_equal_figures_are_ties_not_losses() -> None:
    def run(side: str, value: float) -> paired.Run:
        r = paired.Run(side, 0, 1.0, 0.0)
        r.figures = [paired.Figure("stored exactly once", value, f"{value}", "all")]
        return r

    assert paired.summary([run("new", 300.0), run("base", 300.0)]) == [
        ("stored exactly once", 1.0, 0, 1, 1)
    ]
