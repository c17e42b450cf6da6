"""Regularized ("aging") evolution of Real et al. (2019) as an Optuna sampler."""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optnas.samplers._base import PerParameterSampler, pareto_ranks

__all__ = ["RegularizedEvolutionSampler"]

# Mutations tried before a child that repeats an architecture of the study is accepted.
_MUTATION_TRIES = 10
# Redraws of a numerical value before giving up on one that differs from the parent's.
_VALUE_TRIES = 100

# A child: parameter name -> (the parent's distribution, the child's value).
_Child = dict[str, tuple[BaseDistribution, Any]]


class RegularizedEvolutionSampler(PerParameterSampler):
    """Regularized evolution (Real et al., 2019): mutate a tournament winner, age the rest.

    The population is the ``population_size`` most recently completed trials (by trial
    number): the oldest dies as each new one completes, whatever its value, which is what
    regularizes the search. A new trial draws ``tournament_size`` members without
    replacement; the best of them (by value, or with several objectives by
    non-domination rank within the population, ties broken at random) is the parent. The
    child copies the parent's parameters except one, chosen uniformly among those that can
    change, which gets another value: another choice of a categorical, a fresh random value
    of a number. A mutation that repeats an architecture of the study (its parameters, or
    with ``key`` the same network, such as an nb201 cell that differs only in a dead edge)
    is tried again a few times. Failed, pruned and running trials are not in the
    population.

    Parameters are sampled one at a time (``sample_independent``), so define-by-run spaces
    work: a parameter the parent lacks, or asked now with another distribution than the
    parent's, goes to ``independent_sampler``, as do all parameters until
    ``population_size`` trials completed.

    Args:
        population_size: Completed trials in the population (the paper's P).
        tournament_size: Members drawn per tournament (the paper's S).
        key: ``key(params) -> hashable``, equal for the same network (e.g. the space's
            :func:`optnas.spaces.key`); None: parameters alone tell networks apart.
        seed: Seed of the tournaments and mutations and of the default independent sampler.
        independent_sampler: Sampler of the first trials and of parameters the parent
            cannot give (default: ``RandomSampler(seed)``).

    Example:
        >>> import optuna
        >>> def objective(trial):
        ...     a = trial.suggest_categorical("a", [0, 1, 2, 3])
        ...     b = trial.suggest_categorical("b", [0, 1, 2, 3])
        ...     return a + b
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> sampler = RegularizedEvolutionSampler(population_size=4, tournament_size=2, seed=0)
        >>> study = optuna.create_study(direction="maximize", sampler=sampler)
        >>> study.optimize(objective, n_trials=20)
        >>> study.best_value
        6.0
    """

    def __init__(
        self,
        *,
        population_size: int = 10,
        tournament_size: int = 3,
        key: Callable[[Mapping[str, Any]], Hashable] | None = None,
        seed: int | None = None,
        independent_sampler: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        if population_size < 1:
            raise ValueError(
                f"population_size must be at least 1, but got {population_size!r}; "
                "pass a positive number of trials (the paper uses 10 to 100)."
            )
        if not 1 <= tournament_size <= population_size:
            raise ValueError(
                f"tournament_size must be between 1 and population_size ({population_size}) "
                f"inclusive, but got {tournament_size!r}; pass a smaller tournament or a "
                "larger population."
            )
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.key = key
        self._keys: dict[tuple[tuple[str, Any], ...], Hashable] = {}  # computed keys
        self._rng = np.random.default_rng(seed)
        self._independent = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        # Decided at a trial's first parameter, so every parameter of one trial comes from
        # the same parent even when other trials complete meanwhile (n_jobs > 1).
        self._children: dict[tuple[str, int], _Child | None] = {}
        self._lock = threading.Lock()

    def reseed_rng(self) -> None:
        with self._lock:
            self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # Keyed lazily here, not in before_trial, since trials may be created in the storage
        # directly and sampled without one.
        key = (study.study_name, trial.number)
        with self._lock:
            if key not in self._children:
                self._children[key] = self._breed(study)
            child = self._children[key]
        if child is not None and param_name in child:
            distribution, value = child[param_name]
            if distribution == param_distribution:
                return value
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        with self._lock:
            self._children.pop((study.study_name, trial.number), None)
        self._independent.after_trial(study, trial, state, values)

    def _breed(self, study: optuna.Study) -> _Child | None:
        """A mutated copy of a tournament winner, or None while the population fills."""
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(done) < self.population_size:
            return None
        population = heapq.nlargest(self.population_size, done, key=attrgetter("number"))
        ranks = _ranks(population, study.directions)
        drawn = self._rng.choice(len(population), size=self.tournament_size, replace=False)
        winners = drawn[ranks[drawn] == ranks[drawn].min()]
        parent = population[int(self._rng.choice(winners))]
        taken = [t.params for t in trials]
        taken += [_params(c) for c in self._children.values() if c is not None]
        networks = {self._key(p) for p in taken} - {None}
        for _ in range(_MUTATION_TRIES):
            child = self._mutate(parent)
            params = _params(child)
            if params not in taken and self._key(params) not in networks:
                break
        return child

    def _key(self, params: Mapping[str, Any]) -> Hashable:
        """The network ``params`` build (by ``key``), or None where there is no key."""
        if self.key is None:
            return None
        index = tuple(sorted(params.items(), key=lambda item: item[0]))
        if index not in self._keys:
            try:
                self._keys[index] = self.key(params)
            except (KeyError, ValueError, TypeError, IndexError):
                self._keys[index] = None
        return self._keys[index]

    def _mutate(self, parent: FrozenTrial) -> _Child:
        child = {n: (parent.distributions[n], v) for n, v in parent.params.items()}
        mutable = sorted(n for n, d in parent.distributions.items() if not d.single())
        if mutable:
            name = mutable[int(self._rng.integers(len(mutable)))]
            distribution, value = child[name]
            child[name] = (distribution, _other_value(self._rng, distribution, value))
        return child


def _params(child: _Child) -> dict[str, Any]:
    return {name: value for name, (_, value) in child.items()}


def _ranks(population: list[FrozenTrial], directions: Sequence[StudyDirection]) -> np.ndarray:
    """Lower is better: the loss with one objective, else the non-domination rank."""
    signs = np.array([1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in directions])
    losses = np.array([t.values for t in population], dtype=float) * signs
    if len(directions) == 1:
        return losses[:, 0]
    return pareto_ranks(losses)


def _other_value(rng: np.random.Generator, distribution: BaseDistribution, value: Any) -> Any:
    """A random value of ``distribution`` other than ``value`` (which has several)."""
    if isinstance(distribution, CategoricalDistribution):
        current = distribution.to_internal_repr(value)
        index = int(rng.integers(len(distribution.choices) - 1))
        return distribution.choices[index + (index >= current)]
    for _ in range(_VALUE_TRIES):
        new = _draw(rng, distribution)
        if new != value:
            return new
    return new


def _draw(rng: np.random.Generator, distribution: BaseDistribution) -> int | float:
    """A value of a numerical distribution, uniform on its (log) scale and grid."""
    if isinstance(distribution, IntDistribution) and distribution.log:
        low, high = math.log(distribution.low - 0.5), math.log(distribution.high + 0.5)
        value = round(math.exp(rng.uniform(low, high)))
        return int(min(max(value, distribution.low), distribution.high))
    if isinstance(distribution, IntDistribution):
        steps = (distribution.high - distribution.low) // distribution.step
        return int(distribution.low + distribution.step * int(rng.integers(steps + 1)))
    if not isinstance(distribution, FloatDistribution):
        raise ValueError(f"Cannot mutate a parameter of distribution {distribution!r}.")
    if distribution.log:
        value = math.exp(rng.uniform(math.log(distribution.low), math.log(distribution.high)))
    elif distribution.step is not None:
        steps = round((distribution.high - distribution.low) / distribution.step)
        value = distribution.low + distribution.step * int(rng.integers(steps + 1))
    else:
        value = float(rng.uniform(distribution.low, distribution.high))
    return float(min(max(value, distribution.low), distribution.high))
