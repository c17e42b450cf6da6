"""Benchmark: one search, run one trial at a time and then ``--slots`` trials at once per GPU.

Both runs are the same study: the same 64 convnet architectures (drawn once at random and
enqueued, so that both train exactly the same networks), 5 epochs each, on the same
CIFAR-shaped synthetic data (3x32x32, 10 classes; ``--samples`` images split 60/20/20),
random crop and flip, no pruning, no deduplication, SQLite storage. Prints the wall time of
each ``optnas.search`` call (worker start-up included), the trials each recorded and the
speed-up.

Usage::

    python studies/pool_search.py                      # on a CUDA machine: 64 x 5, 8 at once
    python studies/pool_search.py --devices cpu --trials 4 --epochs 1 --slots 2 --samples 600
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
import torch

import optnas
from optnas.data import load
from optnas.pool import DevicePool
from optnas.search import resolve_devices
from optnas.spaces import convnet


def synthetic(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-shaped images whose class shifts one color channel, and their labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = torch.rand(n, 3, 32, 32, generator=g)
    x[torch.arange(n), y % 3] += y[:, None, None] * 0.05
    return x, y


def architectures(n: int, spec: optnas.data.DataSpec, seed: int = 0) -> list[dict]:
    """``n`` random convnet parameter sets."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    params = []
    for _ in range(n):
        trial = study.ask()
        convnet(trial, spec)
        params.append(trial.params)
        study.tell(trial, 0.0)
    return params


def run(
    dataset,
    params: list[dict],
    slots: int,
    args: argparse.Namespace,
    folder: Path,
    name: str = "",
    autotune: bool = False,
) -> dict:
    name = name or f"slots{slots}"
    url = f"sqlite:///{folder}/{name}.db"
    study = optuna.create_study(storage=url, study_name=name, direction="maximize")
    for p in params:
        study.enqueue_trial(p)
    start = time.perf_counter()
    study = optnas.search(
        "convnet",
        dataset,
        n_trials=len(params),
        epochs=args.epochs,
        augment="crop+flip",
        autotune=autotune,
        pruner="none",
        dedup=False,
        devices=args.devices,
        trials_per_device=slots,
        storage=url,
        study_name=name,
        seed=0,
    )
    seconds = time.perf_counter() - start
    states = [t.state.name for t in study.trials]
    spans = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    return {
        "mean_trial_s": sum(spans) / len(spans),
        "slots": slots,
        "seconds": seconds,
        "trials": len(study.trials),
        "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"),
        "train_seconds": sum(t.user_attrs.get("train_seconds", 0) for t in study.trials),
        "best": study.best_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="cuda")
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--slots", type=int, default=8, help="trials at once per device")
    parser.add_argument("--samples", type=int, default=12_500)
    parser.add_argument("--autotune-too", action="store_true", help="a 3rd run, autotuned")
    parser.add_argument("--out", type=Path, help="write the results here (JSON)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dataset = load(synthetic(args.samples))
    params = architectures(args.trials, dataset.spec)
    results = []
    device = torch.cuda.get_device_name() if "cuda" in args.devices else "CPU"
    report = {"device": device, "args": vars(args) | {"out": str(args.out)}, "runs": results}
    with tempfile.TemporaryDirectory() as folder:
        for slots in (1, args.slots):
            results.append(run(dataset, params, slots, args, Path(folder)))
            print(json.dumps(results[-1]), flush=True)
            if args.out:  # After each run: a run cut off by a time limit keeps the first.
                args.out.write_text(json.dumps(report))
        if args.autotune_too:  # The one-at-a-time run again, with cuDNN autotuning.
            on = run(dataset, params, 1, args, Path(folder), name="autotune", autotune=True)
            print("with cuDNN autotuning:", json.dumps(on), flush=True)
    start = time.perf_counter()
    DevicePool(resolve_devices(args.devices), args.slots, dataset.train, dataset.val).close()
    startup = time.perf_counter() - start
    print(f"starting and closing a pool of {args.slots} workers alone: {startup:.1f} s")
    one, many = results
    speedup = one["seconds"] / many["seconds"]
    print(
        f"{device}: {args.trials} trials x {args.epochs} epochs: one at a time "
        f"{one['seconds']:.1f} s ({one['complete']} complete), {args.slots} at once "
        f"{many['seconds']:.1f} s ({many['complete']} complete): {speedup:.2f}x"
    )
    if args.out:
        args.out.write_text(json.dumps(report | {"speedup": speedup, "pool_start": startup}))


if __name__ == "__main__":
    main()
