"""Benchmark: what optnas costs over the loop users write today with plain Optuna + PyTorch.

Runs, side by side in one process and alternating, R times:

(a) plain: the pattern of Optuna's own PyTorch example: an objective that builds the
    network with ``trial.suggest_*`` calls, trains on mini-batches cut from in-memory
    tensors, evaluates on the validation split each epoch, reports and obeys the pruner;
    ``TPESampler(seed=0)``, ``MedianPruner``, in-memory storage;
(b) optnas: ``optnas.search`` with the same architecture-building function as its space,
    the same data splits, epochs, training recipe (AdamW, one-cycle, lr 1e-2, batch 128),
    sampler and pruner, with its default SQLite storage, cost measurement and per-trial
    records; scored on the running batch-norm averages as (a) is (``precise_bn=0``; the
    default scoring, and what it costs, ``studies/precise_bn.py`` measures).

Prints each run's wall times, the ratio optnas / plain and the best validation accuracies.

Usage::

    python studies/overhead.py            # 3 runs of 20 trials x 10 epochs on digits
    python studies/overhead.py --runs 1 --trials 5 --epochs 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F

import optnas
from optnas.data import load
from optnas.spaces import convnet

LR, BATCH = 1e-2, 128


def make_sampler() -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=0)


def make_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def plain_study(data: optnas.data.Dataset, trials: int, epochs: int) -> optuna.Study:
    """(a) Optuna's PyTorch example pattern, with the same space and training recipe."""
    (x_train, y_train), (x_val, y_val) = data.train, data.val

    def objective(trial: optuna.Trial) -> float:
        # Seeded as optnas seeds trial n of a search with seed=0, so that both studies train
        # the same networks from the same initialization in the same batch order, prune the
        # same trials, and the difference in wall time is optnas's overhead alone.
        torch.manual_seed(trial.number)
        generator = torch.Generator().manual_seed(trial.number)
        model = convnet(trial, data.spec)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
        steps = len(x_train) // BATCH + (len(x_train) % BATCH > 1)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=LR, total_steps=epochs * steps, pct_start=0.25
        )
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            for i in range(steps):
                idx = order[i * BATCH : (i + 1) * BATCH]
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
                schedule.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for i in range(0, len(x_val), BATCH):
                    pred = model(x_val[i : i + BATCH]).argmax(dim=1)
                    correct += (pred == y_val[i : i + BATCH]).sum().item()
            accuracy = correct / len(x_val)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=make_sampler(), pruner=make_pruner())
    study.optimize(objective, n_trials=trials)
    return study


def optnas_study(
    data: optnas.data.Dataset, trials: int, epochs: int, folder: Path
) -> optuna.Study:
    """(b) The same study through optnas.search, with a fresh SQLite database."""
    return optnas.search(
        convnet,
        data,
        ("accuracy",),
        n_trials=trials,
        epochs=epochs,
        batch_size=BATCH,
        lr=LR,
        sampler=make_sampler(),
        pruner=make_pruner(),
        storage=f"sqlite:///{folder / 'overhead.db'}",
        study_name="overhead",
        devices="cpu",
        seed=0,
        dedup=False,  # the plain loop trains every trial, repeats included
        precise_bn=0,  # scored as the plain loop scores, so the same trials are pruned
    )


def epochs_trained(study: optuna.Study) -> int:
    return sum(len(t.intermediate_values) for t in study.trials)


def timed(fn, *args) -> tuple[float, optuna.Study]:
    start = time.perf_counter()
    study = fn(*args)
    return time.perf_counter() - start, study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = load("digits")
    timed(plain_study, data, 2, 1)  # Warm up torch's kernels before either is timed.
    print(
        f"torch {torch.__version__}, optuna {optuna.__version__}, "
        f"{torch.get_num_threads()} threads; {args.trials} trials x {args.epochs} epochs"
    )
    print(
        f"{'run':>3}  {'plain s':>8}  {'optnas s':>8}  {'ratio':>6}  "
        f"{'plain best':>10}  {'optnas best':>11}  {'epochs trained':>14}"
    )
    ratios = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as folder:
            t_plain, plain = timed(plain_study, data, args.trials, args.epochs)
            t_optnas, ours = timed(optnas_study, data, args.trials, args.epochs, Path(folder))
        ratios.append(t_optnas / t_plain)
        epochs = f"{epochs_trained(plain)} / {epochs_trained(ours)}"
        print(
            f"{run:>3}  {t_plain:8.2f}  {t_optnas:8.2f}  {ratios[-1]:6.3f}  "
            f"{plain.best_value:10.4f}  {ours.best_value:11.4f}  {epochs:>14}"
        )
    print(
        f"ratio optnas/plain: mean {statistics.mean(ratios):.3f}, max {max(ratios):.3f} "
        f"over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
