"""Benchmark: trials per second of one study with 1, 2, 4, 8 worker processes.

Each trial's objective sleeps 1 s (inside the space function, so the time is
part of the trial) and then builds and trains a tiny MLP on wine for one epoch, so that what
is measured is how well optnas's workers share a study in the storage, not the CPU. Every
run is a fresh study in the same storage, with ``--trials-per-worker`` trials per worker,
random sampling, no pruning, no deduplication: ``optnas.search(..., workers=W)``.

Two rates per run: steady (finished trials over the span from the first trial's start to
the last one's end, from the storage's timestamps) and wall (over the whole
``optnas.search`` call, worker start-up included: each worker imports torch first).

Usage::

    python studies/worker_scaling.py                                   # PostgreSQL, local
    python studies/worker_scaling.py --storage journal:/tmp/scaling.log
"""

from __future__ import annotations

import argparse
import time
import uuid

import optuna
from torch import nn

import optnas

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def sleep_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """An objective that sleeps, then a tiny MLP of a chosen width."""
    time.sleep(1.0)
    width = trial.suggest_categorical("width", [8, 16, 32])
    return nn.Sequential(nn.Flatten(), nn.Linear(spec.input_shape[0], width), nn.ReLU(),
                         nn.Linear(width, spec.num_classes))  # fmt: skip


def run(storage: str, workers: int, trials_per_worker: int) -> dict[str, float]:
    """One fresh study with ``workers`` processes; its rates."""
    import worker_scaling  # This file by its module name, so that workers import the space.

    name = f"scaling-{workers}-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    study = optnas.search(
        worker_scaling.sleep_space,
        "wine",
        ("accuracy",),
        n_trials=workers * trials_per_worker,
        epochs=1,
        sampler="random",
        pruner="none",
        dedup=False,
        workers=workers,
        storage=storage,
        study_name=name,
    )
    wall = time.perf_counter() - start
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    span = (last - first).total_seconds()
    if storage.startswith("postgresql"):
        optuna.delete_study(study_name=name, storage=storage)
    return {"trials": len(done), "steady": len(done) / span, "wall": len(done) / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=POSTGRES)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--trials-per-worker", type=int, default=12)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"storage {args.storage.split('@')[-1]}, objective sleeps 1 s, "
          f"{args.trials_per_worker} trials per worker")  # fmt: skip
    print("| workers | trials | trials/s (steady) | speed-up | trials/s (wall) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = None
    for workers in args.workers:
        r = run(args.storage, workers, args.trials_per_worker)
        base = base or r
        print(f"| {workers} | {r['trials']} | {r['steady']:.2f} | "
              f"{r['steady'] / base['steady']:.2f}x | {r['wall']:.2f} | "
              f"{r['wall'] / base['wall']:.2f}x |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
