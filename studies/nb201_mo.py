"""Benchmark: multi-objective search on NAS-Bench-201 as a table, samplers side by side.

Objectives: the 12-epoch validation accuracy (the paper's search signal; maximized), the
parameter count and the benchmark's measured latency (minimized), all looked up in the
table (``../shared/benchmarks/nb201/nb201.csv`` beside the clone, or ``--table``). Each run
stops after ``--trainings`` trainings (100): for Optuna's samplers used plainly every trial
is a training, repeats included. ``optnas`` is the default,
``optnas.samplers.create("auto")`` (:class:`optnas.samplers.CostAwareSampler`), given the
table's costs as known before training; ``optnas-screened`` is the sampler as ``search()``
makes it: it predicts a candidate's costs from the costs the study recorded and takes the
exact costs of its 32 most promising candidates only (a search counts them on the built
network; here the table gives them); ``optnas-learned`` predicts every cost, with no exact
ones. None is given the space's canonical key (``search()`` passes it with one objective
only): in this table two cells that build the same network (an operation whose output
nothing uses) can differ in parameters and latency, since the benchmark's networks keep
such dead operations, and skipping one of them would hide a cheaper point of the front. All
three prune, untrained, a cell whose canonical key was already trained (``search()``'s
duplicate check), and count only trainings.

The score of a run is its hypervolume ratio: the hypervolume of its Pareto front over that
of the table's true front, both on the same normalized losses (error and log-costs scaled
between the table's smallest and largest values; reference point 1). Prints mean ± std over
``--seeds`` seeds per sampler and the sampling time per trial.

Usage::

    python studies/nb201_mo.py                                   # 20 seeds, all samplers
    python studies/nb201_mo.py --seeds 3 --samplers optnas,tpe   # a quick look
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import import_module

import numpy as np
import optuna

from optnas.bench import nb201
from optnas.hypervolume import volume
from optnas.samplers import create
from optnas.spaces import nb201 as nb201_space

DIRECTIONS = ["maximize", "minimize", "minimize"]
# --n-exact: candidates per trial given exact costs; search() uses optnas.search.N_EXACT.
N_EXACT = [import_module("optnas.search").N_EXACT]
SAMPLERS: dict[str, Callable[[int, nb201.Table], optuna.samplers.BaseSampler]] = {
    "optnas": lambda seed, table: create(
        "auto", directions=DIRECTIONS, seed=seed, costs=_costs(table)
    ),
    "optnas-learned": lambda seed, table: create("auto", directions=DIRECTIONS, seed=seed),
    "optnas-screened": lambda seed, table: create(
        {"name": "auto", "n_exact": N_EXACT[0]},
        directions=DIRECTIONS,
        seed=seed,
        costs=_costs(table),
    ),
    "tpe": lambda seed, table: optuna.samplers.TPESampler(seed=seed),
    "nsga2": lambda seed, table: optuna.samplers.NSGAIISampler(seed=seed),
    "gp": lambda seed, table: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed, table: optuna.samplers.RandomSampler(seed=seed),
}
DEDUP = ("optnas", "optnas-learned", "optnas-screened")


def _costs(table: nb201.Table) -> Callable[[dict], dict[str, float]]:
    """Costs before training: in a real search, measured on the built network."""

    def costs(cell: dict) -> dict[str, float]:
        row = table.lookup(cell)
        return {"params": table.params[row], "latency": table.latency[row]}

    return costs


class Normalizer:
    """Losses in [0, 1]: error, log-params and log-latency between the table's extremes."""

    def __init__(self, table: nb201.Table) -> None:
        self.columns = [
            (1 - table.val12 / 100).clip(0, 1),
            np.log(table.params),
            np.log(table.latency),
        ]
        self.low = [c.min() for c in self.columns]
        self.high = [c.max() for c in self.columns]

    def losses(self, values: np.ndarray) -> np.ndarray:
        """Rows of (accuracy, params, latency) as normalized losses."""
        raw = [1 - values[:, 0], np.log(values[:, 1]), np.log(values[:, 2])]
        scaled = [(r - lo) / (hi - lo) for r, lo, hi in zip(raw, self.low, self.high, strict=True)]
        return np.clip(np.stack(scaled, axis=1), 0, 1)


def true_hypervolume(table: nb201.Table, norm: Normalizer) -> float:
    values = np.stack([table.val12 / 100, table.params, table.latency], axis=1)
    return volume(norm.losses(values))


def run(name: str, seed: int, table: nb201.Table, trainings: int) -> tuple[np.ndarray, float]:
    """One search; returns the values of its completed trials and sampling s per trial."""
    dedup = name in DEDUP
    study = optuna.create_study(directions=DIRECTIONS, sampler=SAMPLERS[name](seed, table))
    study.set_metric_names(["accuracy", "params", "latency"])
    trained: dict[str, int] = {}
    sampling = 0.0
    while len(trained) < trainings:
        start = time.perf_counter()
        trial = study.ask()
        cell = nb201.suggest(trial)
        sampling += time.perf_counter() - start
        row = table.lookup(cell)
        key = nb201_space.key(cell)
        if dedup and key in trained:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        trained.setdefault(key, row)
        if not dedup:
            trained[f"{key}#{trial.number}"] = row
        study.tell(trial, [table.val12[row] / 100, table.params[row], table.latency[row]])
    done = [t.values for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return np.array(done), sampling / len(study.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", help="the NAS-Bench-201 CSV (default: the shared copy)")
    parser.add_argument("--dataset", default="cifar10", choices=nb201.DATASETS)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trainings", type=int, default=100)
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=", ".join(SAMPLERS))
    parser.add_argument("--n-exact", type=int, default=N_EXACT[0], help="for optnas-screened")
    args = parser.parse_args()
    N_EXACT[0] = args.n_exact
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = nb201.Table.load(args.table, args.dataset)
    norm = Normalizer(table)
    best = true_hypervolume(table, norm)
    print(f"true front hypervolume {best:.4f} ({args.dataset}, {len(table):,} cells)")
    print("| sampler | hypervolume ratio, mean ± std | min | sampling s/trial |")
    print("| --- | --- | --- | --- |")
    for name in args.samplers.split(","):
        ratios, seconds = [], []
        for seed in range(args.seeds):
            values, per_trial = run(name, seed, table, args.trainings)
            ratios.append(volume(norm.losses(values)) / best)
            seconds.append(per_trial)
        print(
            f"| {name} | {statistics.mean(ratios):.4f} ± {statistics.stdev(ratios):.4f} | "
            f"{min(ratios):.4f} | {statistics.mean(seconds):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
