"""RegularizedEvolutionSampler, through Optuna's sampler test-suite and ask-and-tell."""

from __future__ import annotations

import collections

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.testing.pytest_samplers import BasicSamplerTestCase, MultiObjectiveSamplerTestCase
from optuna.trial import TrialState

from optnas.samplers._evolution import RegularizedEvolutionSampler

# Four parameters; a "marked" trial i has every one equal to i, so a child (which keeps all
# but one of its parent's) names its parent.
NAMES = ("p0", "p1", "p2", "p3")
MARKS = CategoricalDistribution(list(range(10)))


class TestBasic(BasicSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        # A small population, so the suite's short studies reach the evolution phase.
        return lambda: RegularizedEvolutionSampler(population_size=3, tournament_size=2, seed=0)


class TestMultiObjective(MultiObjectiveSamplerTestCase):
    @pytest.fixture
    def sampler(self):
        return lambda: RegularizedEvolutionSampler(population_size=3, tournament_size=2, seed=0)


def _marked(
    mark: int, values: list[float] | None, state: TrialState = TrialState.COMPLETE
) -> optuna.trial.FrozenTrial:
    return optuna.create_trial(
        state=state,
        params=dict.fromkeys(NAMES, mark),
        distributions=dict.fromkeys(NAMES, MARKS),
        values=values,
    )


def _parent_of(child: dict) -> int:
    mark, count = collections.Counter(child[n] for n in NAMES).most_common(1)[0]
    assert count == len(NAMES) - 1, child
    return mark


def _ask_child(study: optuna.Study) -> dict:
    trial = study.ask()
    return {n: trial.suggest_categorical(n, MARKS.choices) for n in NAMES}


def test_a_child_is_its_parent_with_one_parameter_changed():
    sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=4, seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(30):
        done = [t for t in study.trials if t.state == TrialState.COMPLETE][-4:]
        trial = study.ask()
        params = {
            "op": trial.suggest_categorical("op", ["conv", "pool", "skip"]),
            "width": trial.suggest_int("width", 8, 64, step=8),
            "depth": trial.suggest_int("depth", 1, 16, log=True),
            "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
            "drop": trial.suggest_float("drop", 0.0, 0.5, step=0.1),
        }
        # Every parameter counts, so the best of the population is unique.
        op = ["conv", "pool", "skip"].index(params["op"])
        size = params["width"] / 64 - params["depth"] / 100
        study.tell(trial, params["lr"] + params["drop"] - size + op / 1000)
        if len(done) == 4:
            parent = min(done, key=lambda t: t.value)
            changed = [n for n in params if params[n] != parent.params[n]]
            assert len(changed) == 1, (parent.params, params)


def test_a_child_that_is_a_known_network_by_the_key_is_bred_again():
    # "dead" does not change the network (as a dead edge of an nb201 cell): with the key,
    # a child that differs from held trials only there is no new network.
    key = lambda p: (p["a"], p["b"])  # noqa: E731
    sampler = RegularizedEvolutionSampler(population_size=3, tournament_size=3, key=key, seed=0)
    study = optuna.create_study(sampler=sampler)
    choices = {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3], "dead": list(range(20))}
    for _ in range(12):
        trial = study.ask()
        p = {n: trial.suggest_categorical(n, c) for n, c in choices.items()}
        study.tell(trial, p["a"] + p["b"])
    bred = [key(t.params) for t in study.trials[3:]]  # past the random first population
    earlier = [{key(t.params) for t in study.trials[:i]} for i in range(3, 12)]
    assert sum(k in seen for k, seen in zip(bred, earlier, strict=True)) <= 1


def test_the_parent_is_the_best_of_a_full_tournament():
    sampler = RegularizedEvolutionSampler(population_size=5, tournament_size=5, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for mark, value in enumerate([0.3, 0.9, 0.1, 0.5, 0.2]):
        study.add_trial(_marked(mark, [value]))
    assert {_parent_of(_ask_child(study)) for _ in range(10)} == {1}


def test_only_the_latest_completed_trials_can_be_parents():
    sampler = RegularizedEvolutionSampler(population_size=3, tournament_size=2, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trial(_marked(0, [100.0]))  # The best, but too old.
    for mark in (1, 2, 3):
        study.add_trial(_marked(mark, [float(mark)]))
    # Neither counts in the population nor pushes completed trials out of it.
    study.add_trial(_marked(8, None, TrialState.PRUNED))
    study.add_trial(_marked(9, None, TrialState.FAIL))
    study.ask()  # Running: not a parent either.
    parents = collections.Counter(_parent_of(_ask_child(study)) for _ in range(60))
    assert set(parents) == {2, 3}  # Trial 1 loses every pair it is drawn in.
    assert parents[3] > parents[2]


def test_aging_replaces_the_population_as_trials_complete():
    sampler = RegularizedEvolutionSampler(population_size=2, tournament_size=2, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trial(_marked(0, [10.0]))
    study.add_trial(_marked(1, [1.0]))
    assert _parent_of(_ask_child(study)) == 0
    study.add_trial(_marked(2, [2.0]))
    study.add_trial(_marked(3, [3.0]))
    assert _parent_of(_ask_child(study)) == 3


def test_the_parent_has_the_lowest_non_domination_rank():
    sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=4, seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    # 0 and 1 are the Pareto front; 2 is dominated by 0, 3 by everyone.
    for mark, values in enumerate([[0.9, 5.0], [0.5, 1.0], [0.8, 6.0], [0.1, 9.0]]):
        study.add_trial(_marked(mark, values))
    parents = collections.Counter(_parent_of(_ask_child(study)) for _ in range(40))
    assert set(parents) == {0, 1}  # Both, as the ties are broken at random.


def test_a_multi_objective_study_runs_and_improves():
    def objective(trial):
        x = trial.suggest_int("x", 0, 10)
        y = trial.suggest_categorical("y", [0, 1, 2, 3])
        return x + y, (10 - x) + y

    sampler = RegularizedEvolutionSampler(population_size=5, tournament_size=2, seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=40)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(t.params["y"] == 0 for t in study.best_trials)


def test_conditional_parameters_come_from_the_parent_or_the_independent_sampler():
    def objective(trial):
        if trial.suggest_categorical("kind", ["conv", "pool"]) == "pool":
            return float(trial.suggest_categorical("pool", ["max", "avg"]) == "max")
        kernel = trial.suggest_categorical("kernel", [1, 3, 5])
        return (kernel == 3) + trial.suggest_int("width", 8, 64, step=8) / 64

    sampler = RegularizedEvolutionSampler(population_size=5, tournament_size=3, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(objective, n_trials=60)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    expected = {"conv": {"kind", "kernel", "width"}, "pool": {"kind", "pool"}}
    assert all(set(t.params) == expected[t.params["kind"]] for t in study.trials)
    assert study.best_value == 2.0


def test_a_changed_distribution_is_sampled_afresh():
    sampler = RegularizedEvolutionSampler(population_size=2, tournament_size=2, seed=0)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for mark in (1, 2):
        study.add_trial(_marked(mark, [float(mark)]))
    trial = study.ask()
    assert all(trial.suggest_categorical(n, ["a", "b"]) in ("a", "b") for n in NAMES)


def test_the_same_seed_gives_the_same_trials():
    def run(seed):
        sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=2, seed=seed)
        study = optuna.create_study(sampler=sampler)
        study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2 + t.suggest_int("n", 0, 9), 20)
        return [t.params for t in study.trials]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_parallel_trials_all_complete_and_leave_no_state():
    sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=2, seed=0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", -1, 1) ** 2, n_trials=30, n_jobs=2)
    assert len(study.trials) == 30
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert not sampler._children


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"population_size": 0}, "population_size must be at least 1, but got 0"),
        ({"tournament_size": 0}, r"between 1 and population_size \(10\) inclusive, but got 0"),
        ({"population_size": 2, "tournament_size": 3}, "but got 3; pass a smaller tournament"),
    ],
)
def test_bad_sizes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegularizedEvolutionSampler(**kwargs)
