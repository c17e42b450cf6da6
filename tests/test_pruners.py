from __future__ import annotations

import warnings

import optuna
import pytest
import torch
from conftest import tiny_space
from torch import nn

import optnas
from optnas.pruners import ParetoHalvingPruner, ParetoPruner

STATE = optuna.trial.TrialState


def _study(peers: list[tuple[list[float], int]]) -> optuna.Study:
    """A finished (accuracy, params) study whose trials have the given curves and params."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["accuracy", "params"])
    for curve, params in peers:
        study.add_trial(
            optuna.trial.create_trial(
                values=[curve[-1], params], user_attrs={"val_curve": curve, "params": params}
            )
        )
    return study


def _running(curve: list[float], params: int) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=STATE.RUNNING, user_attrs={"val_curve": curve, "params": params}
    )


PEERS = [([0.6, 0.8, 0.9], 500)] * 3 + [([0.7, 0.85, 0.95], 5000)] * 3


def test_a_clearly_dominated_child_is_pruned():
    pruner = ParetoPruner(n_startup_trials=5, min_dominators=3)
    assert pruner.prune(_study(PEERS), _running([0.2, 0.3], 1000))


@pytest.mark.parametrize(
    ("curve", "params"),
    [
        ([0.2, 0.3], 100),  # the cheapest of all: on the front whatever its accuracy
        ([0.5, 0.9], 1000),  # the most accurate at this epoch
        ([0.65, 0.84], 1000),  # beaten at epoch 2 only by the three that cost more
    ],
)
def test_a_child_that_can_still_be_pareto_optimal_goes_on(curve, params):
    pruner = ParetoPruner(n_startup_trials=5, min_dominators=3)
    assert not pruner.prune(_study(PEERS), _running(curve, params))


def test_pareto_pruner_waits_for_warmup_and_startup_trials():
    pruner = ParetoPruner(n_startup_trials=5, n_warmup_steps=1, min_dominators=3)
    assert not pruner.prune(_study(PEERS), _running([0.1], 1000))  # epoch 0: warm-up
    assert not pruner.prune(_study(PEERS[:4]), _running([0.1, 0.1], 1000))  # 4 peers < 5


def test_pareto_halving_keeps_the_best_third_by_pareto_rank():
    pruner = ParetoHalvingPruner(min_resource=1, reduction_factor=3, n_startup_trials=3)
    assert pruner.rungs(10) == [1, 3, 9]
    peers = [([0.9], 100), ([0.5], 200), ([0.4], 300), ([0.3], 400), ([0.2], 500)]
    study = _study(peers)
    assert pruner.prune(study, _running([0.45], 250))  # rank 1 of 6; 2 are kept
    assert not pruner.prune(study, _running([0.95], 1000))  # on the front: most accurate
    assert not pruner.prune(study, _running([0.1], 50))  # on the front: cheapest
    assert not pruner.prune(study, _running([0.1, 0.1], 1000))  # epoch 2 is no rung


def test_pareto_halving_never_prunes_a_trial_on_the_rung_s_front():
    # Three peers on the front too: 2 of 4 are kept by (rank, accuracy), and the cheapest,
    # least accurate one came last, though nothing dominates it.
    pruner = ParetoHalvingPruner(min_resource=1, reduction_factor=2, n_startup_trials=3)
    study = _study([([0.90], 100), ([0.95], 200), ([0.99], 300)])
    assert not pruner.prune(study, _running([0.80], 10))
    assert pruner.prune(study, _running([0.80], 150))  # dominated by the 0.90 at 100


class _Hopeless(nn.Module):
    """Many parameters, and an output that does not depend on them: chance accuracy."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(64, 512)
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 10, device=x.device) * self.w


def test_multi_objective_search_prunes_a_hopeless_child_after_its_first_epoch():
    def space(trial, spec):
        # Trials 0-2 train a small good network, trial 3 a big hopeless one.
        if trial.suggest_int("n", trial.number, trial.number) < 3:
            return tiny_space(optuna.trial.FixedTrial({"width": 4}), spec)
        return _Hopeless()

    study = optnas.search(
        space,
        "digits",
        ("accuracy", "params"),
        n_trials=4,
        epochs=3,
        storage="sqlite:///:memory:",
        pruner=ParetoPruner(n_startup_trials=3, n_warmup_steps=0, min_dominators=3),
        dedup=False,
        seed=0,
    )
    states = [t.state for t in study.trials]
    assert states == [STATE.COMPLETE] * 3 + [STATE.PRUNED]
    hopeless = study.trials[3]
    assert hopeless.user_attrs["pruned_reason"].startswith("pruned by ParetoPruner after epoch 1 ")
    assert len(hopeless.user_attrs["val_curve"]) == 1


def test_optunas_single_objective_pruners_are_refused_for_several_objectives():
    with pytest.raises(ValueError, match="MedianPruner works with one objective only"):
        optnas.search(tiny_space, "digits", ("accuracy", "params"), pruner="median")
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=1,
        epochs=1,
        storage="sqlite:///:memory:",
    )
    assert type(study.pruner).__name__ == "ParetoPruner"


class _StopAfterFirstEpoch(optuna.pruners.BasePruner):
    """A user's own pruner: it reads the curve optnas keeps in the trial's user attrs."""

    def prune(self, study, trial):
        return len(trial.user_attrs.get("val_curve", [])) >= 1


def test_a_users_own_pruner_is_asked_in_multi_objective_studies():
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=1,
        epochs=3,
        storage="sqlite:///:memory:",
        pruner=_StopAfterFirstEpoch(),
    )
    assert study.trials[0].state == STATE.PRUNED
    reason = study.trials[0].user_attrs["pruned_reason"]
    assert reason.startswith("pruned by _StopAfterFirstEpoch after epoch 1 of 3 ")
