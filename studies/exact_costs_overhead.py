"""Benchmark: sampling time per trial of the default sampler counting candidates' costs.

In a multi-objective search on a flat space (here ``nb201`` with 2 channels and 5 cells per
stage, on digits, one epoch per child), ``search()``'s default sampler predicts every
candidate's costs from the study's records, then builds its 32 best candidates on the meta
device and counts their exact parameters (and FLOPs, when an objective) before choosing.
Prints the mean and largest time ``CostAwareSampler.sample_relative`` took on the trials it
modelled (the first 10 are random startup trials).

Usage::

    python studies/exact_costs_overhead.py accuracy,params 20
    python studies/exact_costs_overhead.py accuracy,params,flops 20
"""

import sys
import time

import optuna

import optnas
from optnas.samplers import CostAwareSampler

TIMES: list[tuple[float, bool]] = []
_SAMPLE = CostAwareSampler.sample_relative


def _timed(self, *args, **kwargs):
    start = time.perf_counter()
    params = _SAMPLE(self, *args, **kwargs)
    TIMES.append((time.perf_counter() - start, bool(params)))
    return params


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    CostAwareSampler.sample_relative = _timed
    objectives, n_trials = tuple(sys.argv[1].split(",")), int(sys.argv[2])
    start = time.perf_counter()
    study = optnas.search({"name": "nb201", "channels": 2, "cells": 5}, "digits", objectives,
                          n_trials=n_trials, epochs=1, seed=0, storage="sqlite:///:memory:",
                          pruner="none")  # fmt: skip
    modelled = [t for t, used in TIMES if used]
    print(f"{','.join(objectives)}: {len(study.trials)} trials, {len(modelled)} modelled; "
          f"sampling {sum(modelled) / max(1, len(modelled)):.3f} s/trial on average, "
          f"{max(modelled, default=0):.3f} s at most; {time.perf_counter() - start:.1f} s "
          "in all")  # fmt: skip


if __name__ == "__main__":
    main()
