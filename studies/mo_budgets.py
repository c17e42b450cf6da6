"""Benchmark: budgets and multi-objective pruning against the same study without them.

For each seed, runs in one process, alternating:

(a) the default multi-objective study (``convnet`` on digits; accuracy, params, FLOPs;
    TPE) with no budgets and no pruning (``pruner="none"``);
(b) the same study, same seed and trial count, with budgets (params and FLOPs) and the
    default multi-objective pruner (``"pareto"``).

Both keep the default deduplication, and both train the same number of candidates
(``n_trials``; candidates over budget or already trained are not counted). Reports the
training time (the sum of the trials'
``train_seconds``, pruned trainings included), the wall time, and the hypervolume of each
study's feasible Pareto front, normalized the same way for both: error, and params / FLOPs
log-scaled between the smallest and largest values any trial of either study had.

Usage::

    python studies/mo_budgets.py                       # seeds 0 1 2, 25 trials x 10 epochs
    python studies/mo_budgets.py --seeds 0 --trials 8 --epochs 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

import optnas
from optnas.hypervolume import bounds_of, hypervolume

OBJECTIVES = ("accuracy", "params", "flops")


def run(
    seed: int, trials: int, epochs: int, folder: Path, **options: object
) -> tuple[optuna.Study, float]:
    start = time.perf_counter()
    study = optnas.search(
        "convnet",
        "digits",
        OBJECTIVES,
        n_trials=trials,
        epochs=epochs,
        seed=seed,
        storage=f"sqlite:///{folder / f'{seed}-{len(options)}.db'}",
        **options,
    )
    return study, time.perf_counter() - start


def training_seconds(study: optuna.Study) -> float:
    return sum(t.user_attrs.get("train_seconds", 0.0) for t in study.trials)


def shared_bounds(*studies: optuna.Study) -> dict[str, tuple[float, float]]:
    per_study = [bounds_of(s) for s in studies]
    return {
        name: (min(b[name][0] for b in per_study), max(b[name][1] for b in per_study))
        for name in per_study[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-params", type=float, default=20_000)
    parser.add_argument("--max-flops", type=float, default=1_000_000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budgets = {"params": args.max_params, "flops": args.max_flops}
    print(f"{args.trials} trials x {args.epochs} epochs; (b): budgets {budgets}, pruner 'pareto'")
    print(
        f"{'seed':>4}  {'train s (a)':>11}  {'train s (b)':>11}  {'saved':>6}  "
        f"{'wall s (a)':>10}  {'wall s (b)':>10}  {'HV (a)':>7}  {'HV (b)':>7}  "
        f"{'HV loss':>7}  {'pruned':>6}  {'over':>4}"
    )
    saved, losses, over_seconds = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            plain, wall_a = run(seed, args.trials, args.epochs, Path(tmp), pruner="none")
            lean, wall_b = run(
                seed, args.trials, args.epochs, Path(tmp), pruner="pareto", budgets=budgets
            )
            bounds = shared_bounds(plain, lean)
            hv_a, hv_b = hypervolume(plain, bounds=bounds), hypervolume(lean, bounds=bounds)
            train_a, train_b = training_seconds(plain), training_seconds(lean)
            saved.append(1 - train_b / train_a)
            losses.append(1 - hv_b / hv_a)
            reasons = [t.user_attrs.get("pruned_reason", "") for t in lean.trials]
            over_trials = [
                t for t, r in zip(lean.trials, reasons, strict=True) if r.startswith("over")
            ]
            over = len(over_trials)
            over_seconds.extend(
                (t.datetime_complete - t.datetime_start).total_seconds() for t in over_trials
            )
            pruned = sum(r.startswith("pruned after") for r in reasons)
            print(
                f"{seed:>4}  {train_a:>11.1f}  {train_b:>11.1f}  {saved[-1]:>6.1%}  "
                f"{wall_a:>10.1f}  {wall_b:>10.1f}  {hv_a:>7.4f}  {hv_b:>7.4f}  "
                f"{losses[-1]:>7.2%}  {pruned:>6}  {over:>4}"
            )
    print(
        f"mean training time saved {statistics.mean(saved):.1%} "
        f"(min {min(saved):.1%}); mean hypervolume loss {statistics.mean(losses):.2%} "
        f"(max {max(losses):.2%})"
    )
    if over_seconds:
        print(
            f"a candidate over budget took {statistics.median(over_seconds):.3f} s "
            f"(median; max {max(over_seconds):.3f} s) from start to pruned"
        )


if __name__ == "__main__":
    main()
