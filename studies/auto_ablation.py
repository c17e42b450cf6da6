"""Benchmark: what each part of ``auto``'s one-objective search adds, on NAS-Bench-201.

Runs the paper's protocol (``optnas.bench.nb201.simulate``; CIFAR-10 signal, 12,000
simulated seconds) with ``auto`` as ``search()`` makes it and with its exploration turned
off (``margin=0, explore_every=None``), over the same seeds, in one process, and prints the
mean test accuracy at the end and at half the budget, with the spread at half.

Usage::

    python studies/auto_ablation.py                 # seeds 0..99
    python studies/auto_ablation.py --seed 100 --runs 100
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna

from optnas.bench import nb201

VARIANTS = {
    "auto": {},
    "auto, margin=0, explore_every=None": {"margin": 0.0, "explore_every": None},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", help="the NAS-Bench-201 CSV (default: the shared copy)")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = nb201.Table.load(args.table)
    print(f"seeds {args.seed}..{args.seed + args.runs - 1}")
    print("| sampler | test accuracy (%) | at half budget | spread at half |")
    print("| --- | --- | --- | --- |")
    for label, options in VARIANTS.items():
        final, half = [], []
        for r in range(args.runs):
            sampler = nb201.create_sampler({"name": "auto", **options}, seed=args.seed + r)
            run = nb201.simulate(sampler, table)
            final.append(run.result)
            half.append(run.reported_at(nb201.BUDGET / 2))
        print(f"| {label} | {np.mean(final):.2f} ± {np.std(final, ddof=1):.2f} | "
              f"{np.mean(half):.2f} | {np.std(half, ddof=1):.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
