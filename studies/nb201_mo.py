"""Benchmark: multi-objective search on NAS-Bench-201 as a table, samplers side by side.

Objectives: the 12-epoch validation accuracy (the paper's search signal; maximized), the
parameter count and the benchmark's measured latency (minimized), all looked up in the
table (``../shared/benchmarks/nb201/nb201.csv`` beside the clone, or ``--table``). Each run
stops after ``--trainings`` trainings (100): for Optuna's samplers used plainly every trial
is a training, repeats included; optnas prunes, untrained, a cell whose canonical key (the
same computation) was already trained, and counts only trainings.

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

import numpy as np
import optuna

from optnas.bench import nb201
from optnas.hypervolume import volume
from optnas.search import create_sampler
from optnas.spaces import nb201 as nb201_space

DIRECTIONS = ["maximize", "minimize", "minimize"]
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "optnas": lambda seed: create_sampler("tpe", seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


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
    dedup = name == "optnas"
    study = optuna.create_study(directions=DIRECTIONS, sampler=SAMPLERS[name](seed))
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


class CostAwareEI:
    """Prototype of a cost-aware strategy (not yet in optnas): costs are known before
    training, so only accuracy is modelled.

    A GP on the one-hot cell (RBF on Hamming distance) predicts validation error. A
    candidate (random cells, and every one-edge change of the current front) can join the
    front only if its error is below that of the best trained cell that costs no more in
    every cost; the next cell maximizes the expected amount by which it does.
    """

    def __init__(self, table: nb201.Table, norm: Normalizer, seed: int, startup: int = 10):
        self.table, self.norm = table, norm
        self.rng = np.random.default_rng(seed)
        self.startup = startup
        ops = np.array([[OP_INDEX[o] for o in nb201.parse(a).values()] for a in table.arch])
        self.onehot = np.eye(len(nb201.OPS))[ops].reshape(len(ops), -1)
        self.costs = norm.losses(np.stack([table.val12 / 100, table.params, table.latency], 1))[
            :, 1:
        ]
        self.neighbors = ops

    def propose(self, trained_rows: list[int], errors: list[float], skipped: list[int]) -> int:
        untrained = np.ones(len(self.table), bool)
        untrained[trained_rows] = False
        untrained[skipped] = False
        if len(trained_rows) < self.startup:
            return int(self.rng.choice(np.flatnonzero(untrained)))
        candidates = self._candidates(trained_rows, errors, untrained)
        mean, std = self._gp(trained_rows, np.array(errors), candidates)
        threshold = self._threshold(trained_rows, np.array(errors), candidates)
        z = (threshold - mean) / std
        ei = (threshold - mean) * _norm_cdf(z) + std * _norm_pdf(z)
        return int(candidates[np.argmax(ei)])

    def _candidates(self, rows: list[int], errors: list[float], free: np.ndarray) -> np.ndarray:
        pool = set(self.rng.choice(len(self.table), 1000, replace=False).tolist())
        front = _front(np.column_stack([errors, self.costs[rows]]))
        for r in np.array(rows)[front]:
            diff = (self.neighbors != self.neighbors[r]).sum(1)
            pool.update(np.flatnonzero(diff == 1).tolist())
        pool_array = np.array(sorted(pool))
        return pool_array[free[pool_array]]

    def _gp(self, rows: list[int], y: np.ndarray, cand: np.ndarray):
        x, xc = self.onehot[rows], self.onehot[cand]
        mu, sd = y.mean(), y.std() + 1e-9
        yn = (y - mu) / sd
        k = _kernel(x, x) + 1e-2 * np.eye(len(x))
        kc = _kernel(xc, x)
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
        v = np.linalg.solve(chol, kc.T)
        var = np.clip(1.0 - (v * v).sum(0), 1e-9, None)
        return mu + sd * (kc @ alpha), sd * np.sqrt(var)

    def _threshold(self, rows: list[int], errors: np.ndarray, cand: np.ndarray) -> np.ndarray:
        trained = self.costs[rows]  # (n, 2)
        cheaper = (trained[None, :, :] <= self.costs[cand][:, None, :]).all(2)  # (m, n)
        best = np.where(cheaper, errors[None, :], 1.0).min(1)
        return best


OP_INDEX = {op: i for i, op in enumerate(nb201.OPS)}


def _kernel(a: np.ndarray, b: np.ndarray, length: float = 3.0) -> np.ndarray:
    hamming = (a.sum(1)[:, None] + b.sum(1)[None, :] - 2 * a @ b.T) / 2
    return np.exp(-hamming / length)


def _front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows (all minimized)."""
    keep = []
    for i, p in enumerate(points):
        dominated = ((points <= p).all(1) & (points < p).any(1)).any()
        if not dominated:
            keep.append(i)
    return np.array(keep, dtype=int)


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def run_prototype(
    seed: int, table: nb201.Table, norm: Normalizer, trainings: int
) -> tuple[np.ndarray, float]:
    """The prototype; like optnas, a cell computing what a trained one computes (same
    canonical key) is not trained and not counted."""
    strategy = CostAwareEI(table, norm, seed)
    rows: list[int] = []
    skipped: list[int] = []
    keys: set[str] = set()
    start = time.perf_counter()
    while len(rows) < trainings:
        row = strategy.propose(rows, [1 - table.val12[r] / 100 for r in rows], skipped)
        key = nb201_space.key(nb201.parse(table.arch[row]))
        (skipped if key in keys else rows).append(row)
        keys.add(key)
    seconds = (time.perf_counter() - start) / (len(rows) + len(skipped))
    trained = np.array(rows)
    values = np.stack(
        [table.val12[trained] / 100, table.params[trained], table.latency[trained]], 1
    )
    return values, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", help="the NAS-Bench-201 CSV (default: the shared copy)")
    parser.add_argument("--dataset", default="cifar10", choices=nb201.DATASETS)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trainings", type=int, default=100)
    parser.add_argument(
        "--samplers",
        default=",".join([*SAMPLERS, "cost-ei"]),
        help="among " + ", ".join([*SAMPLERS, "cost-ei"]) + " (cost-ei: a prototype)",
    )
    args = parser.parse_args()
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
            if name == "cost-ei":
                values, per_trial = run_prototype(seed, table, norm, args.trainings)
            else:
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
