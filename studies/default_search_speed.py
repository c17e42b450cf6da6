"""Benchmark: wall time of the default ``optnas search`` at two commits, alternating.

Checks out ``--baseline`` and ``--candidate`` (default: HEAD) into temporary git worktrees
and runs ``optnas search`` (no arguments: the default study) from each, ``--runs`` times,
alternating which goes first, each in a fresh working directory (so each creates its
study). Prints each run's wall time, its summary line, and the ratio candidate / baseline.

Usage::

    python studies/default_search_speed.py --baseline 641f080          # 2 runs each
    python studies/default_search_speed.py --baseline HEAD~3 --runs 1 --args "--n-trials 3"
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = "import sys, optnas; from optnas.cli import main; print(optnas.__file__); sys.exit(main())"


def worktree(ref: str, folder: Path) -> Path:
    path = folder / ref.replace("/", "_").replace("~", "_")
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), ref], check=True
    )
    return path


def run(tree: Path, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CODE, "search", *args],
            cwd=cwd, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    lines = done.stdout.splitlines()
    if not lines[0].startswith(str(tree)):
        raise RuntimeError(f"ran {lines[0]}, not the worktree {tree}")
    summary = next((line for line in lines if "trials" in line), lines[-1])
    return seconds, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, help="git ref of the baseline")
    parser.add_argument("--candidate", default="HEAD", help="git ref to compare")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--args", default="", help="arguments of optnas search")
    args = parser.parse_args()
    extra = shlex.split(args.args)
    times: dict[str, list[float]] = {"baseline": [], "candidate": []}
    with tempfile.TemporaryDirectory() as folder:
        trees = {
            "baseline": worktree(args.baseline, Path(folder)),
            "candidate": worktree(args.candidate, Path(folder)),
        }
        try:
            for i in range(args.runs):
                order = ["baseline", "candidate"] if i % 2 == 0 else ["candidate", "baseline"]
                for which in order:
                    seconds, summary = run(trees[which], extra)
                    times[which].append(seconds)
                    print(f"run {i} {which}: {seconds:.1f} s | {summary}", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(
                    ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)]
                )
    base, cand = (statistics.mean(times[k]) for k in ("baseline", "candidate"))
    print(
        f"mean baseline {base:.1f} s, candidate {cand:.1f} s: candidate / baseline = "
        f"{cand / base:.3f}"
    )


if __name__ == "__main__":
    main()
