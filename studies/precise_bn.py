"""Benchmark: children scored on batch-norm statistics averaged over the epoch's last training
samples (``precise_bn``, default 128) against the running averages (``precise_bn=0``), in one
process, side by side.

(1) Fidelity: ``--archs`` random convnet architectures on digits, each trained twice for
    ``--epochs`` epochs from the same initialization in the same batch order, once per
    setting (so the weights are the same; only the statistics they are scored on differ).
    Prints, per setting, the mean validation accuracy after epochs 1, 2, 3 and the last, the
    Spearman rank correlation between each early epoch's accuracies and the last one's (how
    well a pruner that stops children early can tell the good ones), and the total training
    time (what the averaging costs).
(2) Search: ``optnas.search`` on digits, one objective (accuracy), convnet, ``--trials``
    trials of ``--epochs`` epochs, the median pruner, seeds ``--seeds``, once per setting.
    Prints the best validation accuracy, the epochs trained and the wall time of each.

Usage::

    python studies/precise_bn.py                      # 20 architectures; seeds 0 1 2
    python studies/precise_bn.py --samples 512        # another sample count
    python studies/precise_bn.py --archs 4 --seeds 0 --trials 5 --epochs 4
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import optuna
import torch
from scipy.stats import spearmanr

import optnas
from optnas.data import load
from optnas.spaces import convnet
from optnas.train import fit

DEFAULT = inspect.signature(fit).parameters["precise_bn"].default


def curves(archs: int, epochs: int, settings: tuple[int, int]) -> dict[int, list]:
    """Per setting, the training result of each of ``archs`` random architectures."""
    data = load("digits")
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    out: dict[int, list] = {s: [] for s in settings}
    for number in range(archs):
        trial = study.ask()
        convnet(trial, data.spec)  # draws the architecture
        for setting in settings:
            torch.manual_seed(number)
            model = convnet(optuna.trial.FixedTrial(trial.params), data.spec)
            result = fit(model, data.train, data.val, epochs=epochs, seed=number,
                         precise_bn=setting)  # fmt: skip
            out[setting].append(result)
        study.tell(trial, 0.0)
    return out


def fidelity_rows(out: dict[int, list], epochs: int) -> list[str]:
    rows = []
    early = [e for e in (1, 2, 3) if e < epochs]
    for setting, results in out.items():
        runs = [r.curve for r in results]
        final = [c[-1] for c in runs]
        seconds = sum(r.seconds for r in results)
        means = [f"{statistics.mean(c[e - 1] for c in runs):.3f}" for e in early]
        rhos = [f"{spearmanr([c[e - 1] for c in runs], final).statistic:+.2f}" for e in early]
        rows.append(
            f"| {setting} | {' / '.join(means)} | {statistics.mean(final):.4f} | "
            f"{' / '.join(rhos)} | {seconds:.1f} |"
        )
    return rows


def search_row(setting: int, seed: int, args: argparse.Namespace) -> str:
    start = time.perf_counter()
    study = optnas.search(
        "convnet",
        "digits",
        n_trials=args.trials,
        epochs=args.epochs,
        pruner="median",
        precise_bn=setting,
        seed=seed,
        storage=optuna.storages.InMemoryStorage(),
        show_progress_bar=False,
    )
    seconds = time.perf_counter() - start
    trained = sum(len(t.user_attrs.get("val_curve", [])) for t in study.trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return (
        f"| {setting} | {seed} | {study.best_value:.4f} | {trained} | {pruned} | {seconds:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=DEFAULT, help="precise_bn (128)")
    args = parser.parse_args()
    settings = (args.samples, 0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"(1) {args.archs} random convnets on digits, {args.epochs} epochs each\n")
    print("| precise_bn | mean accuracy after epochs 1 / 2 / 3 | last | Spearman with last "
          "| training s |")  # fmt: skip
    print("| ---: | --- | ---: | --- | ---: |")
    for row in fidelity_rows(curves(args.archs, args.epochs, settings), args.epochs):
        print(row, flush=True)
    print(f"\n(2) search, {args.trials} trials x {args.epochs} epochs, median pruner\n")
    print("| precise_bn | seed | best accuracy | epochs trained | pruned | seconds |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for seed in args.seeds:
        for setting in settings:
            print(search_row(setting, seed, args), flush=True)


if __name__ == "__main__":
    main()
