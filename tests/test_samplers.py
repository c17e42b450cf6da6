"""optnas's samplers, through Optuna's ask-and-tell interface."""

from __future__ import annotations

import itertools
import re

import optuna
import pytest
from optuna.testing.pytest_samplers import BasicSamplerTestCase, MultiObjectiveSamplerTestCase

from optnas.samplers import (
    SAMPLERS,
    ControllerSampler,
    CostAwareSampler,
    RegularizedEvolutionSampler,
    create,
)

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


def test_without_a_cost_function_costs_are_learned_from_the_recorded_ones():
    study = _study(CostAwareSampler(n_startup_trials=5, seed=0))
    for _ in range(20):  # of 36 architectures
        trial = study.ask()
        p = _suggest(trial)
        study.tell(trial, [accuracy(p), params(p)])
    cells = [dict(zip(CHOICES, c, strict=True)) for c in itertools.product(*CHOICES.values())]
    assert max(t.values[0] for t in study.trials) == pytest.approx(max(map(accuracy, cells)))
    assert min(t.values[1] for t in study.best_trials) == min(map(params, cells))


def test_several_unnamed_objectives_need_a_cost_function():
    study = optuna.create_study(
        directions=["maximize", "minimize"], sampler=CostAwareSampler(n_startup_trials=1)
    )
    trial = study.ask()
    p = _suggest(trial)
    study.tell(trial, [accuracy(p), params(p)])
    with pytest.raises(ValueError, match="needs costs="):
        _suggest(study.ask())


def test_architectures_with_the_same_key_are_proposed_once():
    # "width" does not change the network here: only op and depth make it.
    sampler = CostAwareSampler(key=lambda p: (p["op"], p["depth"]), n_startup_trials=3, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        return accuracy(_suggest(trial))

    study.optimize(objective, n_trials=3)
    startup = {(t.params["op"], t.params["depth"]) for t in study.trials}
    study.optimize(objective, n_trials=12 - len(startup))  # the networks left
    modelled = [(t.params["op"], t.params["depth"]) for t in study.trials[3:]]
    assert len(set(modelled)) == len(modelled)
    assert not startup & set(modelled)


@pytest.mark.parametrize("n_exact", [None, 5])
def test_trials_sampled_at_once_propose_different_architectures(n_exact):
    # Workers asking together see one history: each used to propose its best candidate,
    # the same network, and all but one were pruned as its duplicates.
    costs = (lambda p: {"params": params(p)}) if n_exact else None
    sampler = CostAwareSampler(costs=costs, n_exact=n_exact, n_startup_trials=5, seed=0)
    study = _study(sampler)
    for _ in range(8):
        trial = study.ask()
        p = _suggest(trial)
        study.tell(trial, [accuracy(p), params(p)])
    together = [study.ask() for _ in range(3)]
    for trial in together:  # Each chooses before any records its choice (Optuna samples
        assert trial.relative_params  # on the first suggest, or here).
    proposed = [tuple(_suggest(t).values()) for t in together]
    assert len(set(proposed)) == 3
    # Once the others recorded theirs, a trial takes the best one left, as when alone.
    alone = study.ask()
    held = {tuple(t.params.values()) for t in study.trials if t.params}
    assert tuple(_suggest(alone).values()) not in held


def test_a_sampler_kept_from_repeats_can_be_copied():
    import copy

    from optnas.samplers import UnrepeatedSampler

    sampler = UnrepeatedSampler(optuna.samplers.RandomSampler(seed=0), lambda s, p: False)
    assert type(copy.deepcopy(sampler).sampler).__name__ == "RandomSampler"


def test_small_integer_choices_are_modelled():
    sampler = CostAwareSampler(n_startup_trials=4, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: -abs(t.suggest_int("n", 0, 10, step=2) - 6), n_trials=10)
    assert study.best_value == 0
    assert "n" in sampler.infer_relative_search_space(study, study.trials[-1])


def test_spaces_with_conditional_or_float_choices_are_left_to_the_independent_sampler():
    asked = []

    class Recording(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            asked.append((trial.number, name))
            return super().sample_independent(study, trial, name, distribution)

    sampler = CostAwareSampler(n_startup_trials=2, seed=0, independent_sampler=Recording(0))
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial):
        op = trial.suggest_categorical("op", list(PENALTY))
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        return 1 - PENALTY[op] - abs(lr - 0.01)

    study.optimize(objective, n_trials=8)
    assert sorted(asked) == [(n, name) for n in range(8) for name in ("lr", "op")]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("auto", CostAwareSampler),
        ("tpe", optuna.samplers.TPESampler),
        ("gp", optuna.samplers.GPSampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
        ("evolution", RegularizedEvolutionSampler),
        ("controller", ControllerSampler),
    ],
)
def test_every_name_creates_its_sampler_and_it_searches(name, kind):
    sampler = create(name, directions=["maximize"], seed=0)
    assert isinstance(sampler, kind) and set(SAMPLERS) >= {name}
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: accuracy(_suggest(t)), n_trials=12)
    assert len(study.trials) == 12 and study.best_value > 0


def test_create_passes_a_sampler_through_and_names_what_is_wrong():
    tpe = optuna.samplers.TPESampler()
    assert create(tpe, directions=["maximize"]) is tpe
    with pytest.raises(ValueError, match="Unknown sampler 'bayes'; valid names: auto, tpe"):
        create("bayes", directions=["maximize"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'maximize' or 'minimize' each, but got \\['max'\\]"):
        create("tpe", directions=["max"])


def _over_budget_proposals(seed: int, record: bool) -> int:
    """Trials over a params budget of 200 after the startup; as optnas records a budget,
    an over-budget trial is pruned, untrained, with its constraint."""
    study = optuna.create_study(
        direction="maximize", sampler=CostAwareSampler(n_startup_trials=5, seed=seed)
    )
    over = 0
    for _ in range(25):
        trial = study.ask()
        p = _suggest(trial)
        if record:
            trial.set_constraint("params", params(p) - 200)
        if params(p) > 200:
            over += trial.number >= 5
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, accuracy(p))
    return over


def test_candidates_predicted_over_a_recorded_constraint_are_avoided():
    with_constraints = sum(_over_budget_proposals(seed, True) for seed in range(3))
    without = sum(_over_budget_proposals(seed, False) for seed in range(3))
    assert with_constraints <= 0.6 * without, (with_constraints, without)


def _hopeless_proposals(seed: int, record: bool) -> int:
    """Proposals of ops whose trainings were all pruned early at 10 % accuracy."""
    study = optuna.create_study(
        direction="maximize", sampler=CostAwareSampler(n_startup_trials=6, seed=seed)
    )
    study.set_metric_names(["accuracy"])
    for _ in range(20):
        trial = study.ask()
        p = _suggest(trial)
        if p["op"] in ("none", "pool"):
            if record:
                trial.set_user_attr("val_curve", [0.05, 0.1])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, accuracy(p))
    return sum(t.params["op"] in ("none", "pool") for t in study.trials[6:])


def test_pruned_trainings_keep_the_model_away_from_their_region():
    informed = sum(_hopeless_proposals(seed, True) for seed in range(3))
    uninformed = sum(_hopeless_proposals(seed, False) for seed in range(3))
    assert informed <= 0.7 * uninformed, (informed, uninformed)


class TestCostAwareSamplerWithOptunasSuite(BasicSamplerTestCase, MultiObjectiveSamplerTestCase):
    """Optuna's own test-suite for third-party samplers."""

    @pytest.fixture
    def sampler(self):
        return lambda: CostAwareSampler(n_startup_trials=2, n_candidates=50, seed=0)


def _proposals(record) -> list[tuple]:
    """Architectures auto proposes after 5 startup trials, each trial recording
    ``record(params)`` as its ``params`` user attribute (optnas records the count)."""
    study = optuna.create_study(
        direction="maximize", sampler=CostAwareSampler(n_startup_trials=5, seed=0)
    )
    for _ in range(12):
        trial = study.ask()
        p = _suggest(trial)
        if record is not None:
            trial.set_user_attr("params", record(p))
        study.tell(trial, accuracy(p))
    return [tuple(t.params.values()) for t in study.trials[5:]]


def test_recorded_parameter_counts_are_inputs_of_the_one_objective_model():
    counted, uncounted = _proposals(params), _proposals(None)
    assert counted != uncounted
    assert _proposals(lambda p: "large") == uncounted  # a value that is not a number: unused


@pytest.mark.parametrize(
    ("named", "message"),
    [
        ({"name": "tpe", "n_startup_trials": "5"}, "'n_startup_trials' of the sampler 'tpe' "
         "must be an integer, but got '5'"),
        ({"name": "evolution", "population_size": 4.5}, "must be an integer, but got 4.5"),
        ({"name": "evolution", "population_size": True}, "must be an integer, but got True"),
        ({"name": "controller", "independent_sampler": "tpe"},
         "'independent_sampler' of the sampler 'controller' must be a BaseSampler object or "
         "none, but got 'tpe'"),
        ({"name": "auto", "cost_attrs": "params"}, "must be a list, but got 'params'"),
    ],
)  # fmt: skip
def test_options_of_the_wrong_type_are_refused_before_any_trial(named, message):
    # They used to pass, then fail every trial (or stop the search with a traceback).
    with pytest.raises(ValueError, match=re.escape(message)):
        create(named, directions=["maximize"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_startup_trials": 0}, "n_startup_trials must be at least 1, but got 0"),
        ({"length_scale": 0.0}, "length_scale must be positive, but got 0.0"),
        ({"margin": -0.5}, "margin must be a finite number >= 0, but got -0.5"),
        ({"margin": float("nan")}, "margin must be a finite number >= 0, but got nan"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        CostAwareSampler(**options)


def _distances_to_the_best(explore_every: int | None) -> list[int]:
    """For each modelled trial, in how many choices it differs from the best trial before it."""
    sampler = CostAwareSampler(n_startup_trials=3, explore_every=explore_every, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: accuracy(_suggest(t)), n_trials=10)
    out = []
    for trial in study.trials[3:]:
        best = max(study.trials[: trial.number], key=lambda t: t.value)
        out.append(sum(trial.params[n] != best.params[n] for n in CHOICES))
    return out


def test_every_kth_modelled_trial_explores_away_from_the_best():
    assert _distances_to_the_best(1) == [3] * 7  # all three choices differ
    assert min(_distances_to_the_best(None)) < 3
