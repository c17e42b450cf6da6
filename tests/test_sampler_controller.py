"""ControllerSampler: Optuna's sampler test-suite, and whether the controller learns."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import optuna
import pytest
import torch
from optuna.testing.pytest_samplers import BasicSamplerTestCase, MultiObjectiveSamplerTestCase

from optnas.samplers._controller import ControllerSampler, _Adam


class TestOptunaSuite(BasicSamplerTestCase, MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self) -> Callable[[], optuna.samplers.BaseSampler]:
        return lambda: ControllerSampler(seed=0)


def _zeros(trial: optuna.Trial) -> float:
    """4 parameters x 4 choices; the reward counts the parameters set to choice 0."""
    return sum(trial.suggest_categorical(f"x{i}", ["a", "b", "c", "d"]) == "a" for i in range(4))


def _params(study: optuna.Study) -> list[dict]:
    return [t.params for t in study.trials]


def test_the_controller_learns_the_best_choices():
    study = optuna.create_study(direction="maximize", sampler=ControllerSampler(seed=0))
    study.optimize(_zeros, n_trials=100)
    values = np.array([t.value for t in study.trials])
    last = [v for p in _params(study)[-30:] for v in p.values()]
    assert last.count("a") / len(last) > 0.6  # random: 0.25
    assert values[-30:].mean() > values[:30].mean() + 1.0


def test_minimizing_learns_the_same_choices():
    study = optuna.create_study(sampler=ControllerSampler(seed=0))
    study.optimize(lambda t: -_zeros(t), n_trials=100)
    assert np.mean([t.value for t in study.trials[-30:]]) < -2.5  # random: -1


def test_several_objectives_reward_the_non_dominated():
    # Choices 2 and 3 are dominated by 0 and 1: they score in neither objective.
    def objective(trial):
        x = [trial.suggest_int(f"x{i}", 0, 3) for i in range(4)]
        return x.count(0), x.count(1)

    sampler = ControllerSampler(seed=0)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
    study.optimize(objective, n_trials=100)
    last = [v for p in _params(study)[-30:] for v in p.values()]
    assert sum(v in (0, 1) for v in last) / len(last) > 0.7  # random: 0.5


def test_ints_and_categoricals_are_modelled_floats_and_wide_ints_are_not():
    asked = []

    class Recording(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            asked.append(name)
            return super().sample_independent(study, trial, name, distribution)

    def objective(trial):
        depth = trial.suggest_int("depth", 2, 12, step=2)
        op = trial.suggest_categorical("op", [None, 3, "conv", 1.5])
        assert type(depth) is int and depth in range(2, 13, 2)
        assert op is None or type(op) in (int, str, float)
        trial.suggest_int("width", 1, 1000)
        trial.suggest_int("log_width", 1, 64, log=True)
        return trial.suggest_float("lr", 1e-4, 1e-1, log=True) + depth

    sampler = ControllerSampler(seed=0, independent_sampler=Recording(seed=0))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=10)
    assert sorted(set(asked)) == ["lr", "width"]
    assert len(asked) == 20


def test_conditional_spaces_do_not_crash():
    def objective(trial):
        kind = trial.suggest_categorical("kind", ["cnn", "mlp"])
        if kind == "cnn":
            layers = trial.suggest_int("layers", 1, 4)
            ops = [
                trial.suggest_categorical(f"op{i}", ["conv3", "conv5", "pool"])
                for i in range(layers)
            ]
            return ops.count("conv3") / layers
        trial.suggest_float("dropout", 0.0, 0.5)
        return trial.suggest_int("units", 16, 256, step=16) / 256

    study = optuna.create_study(direction="maximize", sampler=ControllerSampler(seed=0))
    study.optimize(objective, n_trials=40)
    assert {t.params["kind"] for t in study.trials} == {"cnn", "mlp"}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_parallel_trials_work():
    study = optuna.create_study(direction="maximize", sampler=ControllerSampler(seed=0))
    study.optimize(_zeros, n_trials=40, n_jobs=2)
    assert len(study.trials) == 40
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_seed_makes_the_study_reproducible_and_leaves_torch_global_rng_alone():
    global_state = torch.random.get_rng_state()

    def run(seed):
        study = optuna.create_study(direction="maximize", sampler=ControllerSampler(seed=seed))
        study.optimize(_zeros, n_trials=20)
        return _params(study)

    first = run(0)
    assert run(0) == first
    assert run(1) != first
    assert torch.equal(torch.random.get_rng_state(), global_state)


def test_failed_and_pruned_trials_leave_the_controller_as_it_was():
    def sequence(end):
        sampler = ControllerSampler(lr=0.1, seed=0)  # Updates that show within 20 trials.
        study = optuna.create_study(direction="maximize", sampler=sampler)
        params = []
        for _ in range(20):
            trial = study.ask()
            value = _zeros(trial)
            params.append(trial.params)
            end(study, trial, value)
        return params

    untold = sequence(lambda study, trial, value: None)
    assert sequence(lambda s, t, v: s.tell(t, state=optuna.trial.TrialState.PRUNED)) == untold
    assert sequence(lambda s, t, v: s.tell(t, state=optuna.trial.TrialState.FAIL)) == untold
    assert sequence(lambda s, t, v: s.tell(t, v)) != untold


def test_a_resumed_study_s_controller_learns_from_its_earlier_trials():
    # A new sampler on a resumed study (or a worker's own) used to start uniform again.
    study = optuna.create_study(direction="maximize", sampler=ControllerSampler(seed=0))
    study.optimize(_zeros, n_trials=100)
    resumed = optuna.load_study(
        study_name=study.study_name, storage=study._storage, sampler=ControllerSampler(seed=1)
    )
    resumed.optimize(_zeros, n_trials=30)
    last = [v for p in _params(resumed)[-30:] for v in p.values()]
    assert last.count("a") / len(last) > 0.5  # uniform: 0.25


def test_startup_trials_come_from_the_independent_sampler():
    startup = optuna.create_study(sampler=ControllerSampler(n_startup_trials=5, seed=0))
    startup.optimize(_zeros, n_trials=5)
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    random.optimize(_zeros, n_trials=5)
    assert _params(startup) == _params(random)


def test_the_hand_written_adam_steps_like_torchs():
    generator = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.rand(4, 3, generator=generator)) for _ in range(2)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    adam = _Adam(lr=0.01)
    adam.add(ours[:1])
    reference = torch.optim.Adam(theirs[:1], lr=0.01)
    for step in range(6):
        if step == 2:  # A head created later, then left unused for a step.
            adam.add(ours[1:])
            reference.add_param_group({"params": theirs[1:]})
        used = 1 if step == 4 else len(adam.moments)
        grads = [torch.randn(4, 3, generator=generator) for _ in range(used)]
        for params in (ours, theirs):
            for p, g in zip(params, grads, strict=False):
                p.grad = g.clone()
        adam.step()
        reference.step()
        reference.zero_grad(set_to_none=True)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hidden_size", 0),
        ("hidden_size", 8.0),
        ("lr", -1e-3),
        ("entropy_weight", -0.1),
        ("baseline_decay", 1.0),
        ("temperature", 0.0),
        ("tanh_constant", 0.0),
        ("max_int_choices", 0),
        ("n_startup_trials", -1),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_them(name, value):
    with pytest.raises(ValueError, match=f"{name} must be .* but got {value!r}"):
        ControllerSampler(**{name: value})
