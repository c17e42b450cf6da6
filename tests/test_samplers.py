"""optnas's samplers, through Optuna's ask-and-tell interface."""

from __future__ import annotations

import itertools

import optuna
import pytest

from optnas.samplers import CostAwareSampler

CHOICES = {"op": ["none", "pool", "conv3", "conv5"], "width": [8, 16, 32], "depth": [1, 2, 3]}
PENALTY = {"none": 0.3, "pool": 0.2, "conv3": 0.0, "conv5": 0.05}
PRICE = {"none": 0, "pool": 0, "conv3": 9, "conv5": 25}


def accuracy(p: dict) -> float:
    return 0.9 - PENALTY[p["op"]] - 0.02 * (32 // p["width"]) - 0.03 * (3 - p["depth"])


def params(p: dict) -> float:
    return (PRICE[p["op"]] + 1) * p["width"] * p["depth"]


def _suggest(trial: optuna.Trial) -> dict:
    return {name: trial.suggest_categorical(name, choices) for name, choices in CHOICES.items()}


def _study(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.set_metric_names(["accuracy", "params"])
    return study


def test_costs_come_from_the_function_and_no_architecture_is_proposed_twice():
    asked = []

    def costs(p):
        asked.append(dict(p))
        return {"params": params(p)}

    study = _study(CostAwareSampler(costs=costs, n_startup_trials=5, n_candidates=50, seed=0))
    for _ in range(25):
        trial = study.ask()
        p = _suggest(trial)
        study.tell(trial, [accuracy(p), params(p)])
    cells = [tuple(t.params.values()) for t in study.trials[5:]]
    assert len(set(cells)) == len(cells) == 20
    assert asked and all(set(a) == set(CHOICES) for a in asked)
    assert len({tuple(sorted(a.items())) for a in asked}) == len(asked)  # cached


def test_it_finds_the_most_accurate_and_the_cheapest_architectures():
    sampler = CostAwareSampler(costs=lambda p: {"params": params(p)}, n_startup_trials=5, seed=0)
    study = _study(sampler)
    for _ in range(20):  # of 36 architectures
        trial = study.ask()
        p = _suggest(trial)
        study.tell(trial, [accuracy(p), params(p)])
    cells = [dict(zip(CHOICES, c, strict=True)) for c in itertools.product(*CHOICES.values())]
    front = {tuple(t.params.values()) for t in study.best_trials}
    assert max(t.values[0] for t in study.trials) == pytest.approx(max(map(accuracy, cells)))
    assert min(t.values[1] for t in study.best_trials) == min(map(params, cells))
    assert len(front) >= 3


def test_several_objectives_need_a_cost_function():
    study = _study(CostAwareSampler(n_startup_trials=1, seed=0))
    trial = study.ask()
    p = _suggest(trial)
    study.tell(trial, [accuracy(p), params(p)])
    with pytest.raises(ValueError, match="needs costs="):
        _suggest(study.ask())


def test_other_parameters_are_left_to_the_independent_sampler():
    sampler = CostAwareSampler(n_startup_trials=2, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        op = trial.suggest_categorical("op", list(PENALTY))
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        return 1 - PENALTY[op] - abs(lr - 0.01)

    study.optimize(objective, n_trials=8)
    assert all(1e-3 <= t.params["lr"] <= 1e-1 for t in study.trials)
    assert study.best_params["op"] == "conv3"
