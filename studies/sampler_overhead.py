"""Benchmark: a sampler's own time per trial as a study grows, on NAS-Bench-201 as a table.

Runs ``--trials`` (500) trials of one search on the table (CIFAR-10 signal; no budget) with
each sampler as :func:`optnas.bench.nb201.create_sampler` makes it (``auto`` with the space's
canonical key; trials record their parameter count, as in ``optnas bench``), and prints the
time ``ask`` + suggestions + ``tell`` took per trial: over all trials and over the last 50
(the cost at the study's full size). The table lookup and the recorded count are
included (microseconds).

Usage::

    python studies/sampler_overhead.py                       # auto, tpe; 500 trials
    python studies/sampler_overhead.py --samplers auto --trials 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import optuna

from optnas.bench import nb201


def trial_seconds(name: str, table: nb201.Table, trials: int, seed: int) -> np.ndarray:
    """Seconds the sampler took for each trial of one study."""
    study = optuna.create_study(
        direction="maximize", sampler=nb201.create_sampler(name, seed=seed)
    )
    seconds = []
    for _ in range(trials):
        start = time.perf_counter()
        trial = study.ask()
        row = nb201.evaluate(trial, table)
        asked = time.perf_counter() - start
        value = float(table.val12[row])
        start = time.perf_counter()
        study.tell(trial, value)
        seconds.append(asked + time.perf_counter() - start)
    return np.array(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", help="the NAS-Bench-201 CSV (default: the shared copy)")
    parser.add_argument("--samplers", default="auto,tpe")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = nb201.Table.load(args.table)
    print(f"| sampler | ms/trial, all {args.trials} | ms/trial, last 50 | slowest trial, ms |")
    print("| --- | --- | --- | --- |")
    for name in args.samplers.split(","):
        ms = 1000 * trial_seconds(name, table, args.trials, args.seed)
        print(f"| {name} | {ms.mean():.1f} | {ms[-50:].mean():.1f} | {ms.max():.0f} |", flush=True)


if __name__ == "__main__":
    main()
