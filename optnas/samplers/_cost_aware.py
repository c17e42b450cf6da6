"""A sampler that models accuracy alone, because an architecture's costs are known untrained."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["CostAwareSampler"]

CostFn = Callable[[Mapping[str, Any]], Mapping[str, float]]


class CostAwareSampler(optuna.samplers.BaseSampler):
    """Bayesian optimization of one objective (accuracy) with the others known beforehand.

    In a NAS study every objective but accuracy (parameters, FLOPs, latency) is a cost that
    can be computed from the architecture without training it. This sampler models only the
    accuracy: a Gaussian process on the one-hot encoded categorical choices (an RBF kernel
    on their Hamming distance) predicts it for candidate architectures, and ``costs`` gives
    their costs exactly. A candidate can join the Pareto front only by being more accurate
    than every trained architecture that costs no more in every cost; the next trial is the
    candidate with the largest expected improvement over that bar. With one objective the
    bar is the best accuracy so far (plain expected improvement).

    Candidates are ``n_candidates`` random architectures and every one-choice change of the
    current front; architectures the study already holds are never proposed again. Until
    ``n_startup_trials`` trials completed, and for parameters outside the categorical
    choices every completed trial shares, ``independent_sampler`` decides.

    Args:
        costs: ``costs(params) -> {objective name: value}`` for every objective but the
            modelled one (names as in ``study.metric_names``); needed with several
            objectives. Called once per distinct candidate (cached).
        objective: The metric name of the modelled objective; by default ``"accuracy"``
            if the study names its metrics so, else the first objective.
        n_startup_trials: Completed trials before the model is used.
        n_candidates: Random candidates scored per trial.
        length_scale: Hamming distance over which the kernel falls to 1/e.
        seed: Seed of the candidates and of the default independent sampler.
        independent_sampler: Sampler of the startup trials and of other parameters
            (default: ``RandomSampler(seed)``).

    Example:
        >>> import optuna
        >>> def objective(trial):
        ...     a = trial.suggest_categorical("a", [0, 1, 2, 3])
        ...     b = trial.suggest_categorical("b", [0, 1, 2, 3])
        ...     return a + b
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> sampler = CostAwareSampler(n_startup_trials=4, seed=0)
        >>> study = optuna.create_study(direction="maximize", sampler=sampler)
        >>> study.optimize(objective, n_trials=12)
        >>> study.best_value
        6.0
    """

    def __init__(
        self,
        *,
        costs: CostFn | None = None,
        objective: str | None = None,
        n_startup_trials: int = 10,
        n_candidates: int = 1000,
        length_scale: float = 3.0,
        seed: int | None = None,
        independent_sampler: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        self.costs = costs
        self.objective = objective
        self.n_startup_trials = n_startup_trials
        self.n_candidates = n_candidates
        self.length_scale = length_scale
        self._rng = np.random.default_rng(seed)
        self._independent = independent_sampler or optuna.samplers.RandomSampler(seed=seed)
        self._space = optuna.search_space.IntersectionSearchSpace()
        self._cost_cache: dict[tuple, np.ndarray] = {}

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        space = self._space.calculate(study)
        return {n: d for n, d in space.items() if isinstance(d, CategoricalDistribution)}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if all(n in t.params for n in search_space)
        ]
        if len(done) < self.n_startup_trials:
            return {}
        names = sorted(search_space)
        choices = [search_space[n].choices for n in names]  # type: ignore[attr-defined]
        target, cost_index = self._roles(study)
        loss = np.array([_loss(t, target, study.directions) for t in done])
        trained = np.array([[c.index(t.params[n]) for n, c in zip(names, choices, strict=True)]
                            for t in done])  # fmt: skip
        cost_of = self._cost_function(study, cost_index, names, choices)
        trained_costs = np.array([[_loss(t, i, study.directions) for i in cost_index]
                                  for t in done]).reshape(len(done), len(cost_index))  # fmt: skip
        seen = {tuple(c.index(t.params[n]) if n in t.params else -1
                      for n, c in zip(names, choices, strict=True))
                for t in study.get_trials(deepcopy=False)}  # fmt: skip
        candidates = self._candidates(choices, trained, loss, trained_costs, seen)
        if len(candidates) == 0:
            return {}
        costs = np.array([cost_of(c) for c in candidates]).reshape(len(candidates), -1)
        bar = _bar(costs, trained_costs, loss)
        mean, std = self._predict(trained, loss, candidates, choices)
        best = candidates[int(np.argmax(_expected_improvement(bar, mean, std)))]
        return {n: c[i] for n, c, i in zip(names, choices, best, strict=True)}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def _roles(self, study: optuna.Study) -> tuple[int, list[int]]:
        """The modelled objective's index and the cost objectives' indices."""
        names = study.metric_names or []
        wanted = self.objective or ("accuracy" if "accuracy" in names else None)
        if wanted is not None and wanted not in names:
            raise ValueError(f"No objective named {wanted!r}; the study's are {names}.")
        target = names.index(wanted) if wanted is not None else 0
        others = [i for i in range(len(study.directions)) if i != target]
        if others and self.costs is None:
            raise ValueError(
                "CostAwareSampler needs costs=... to know the costs of untrained candidates "
                f"in a study with {len(study.directions)} objectives."
            )
        return target, others

    def _cost_function(
        self, study: optuna.Study, index: list[int], names: list[str], choices: list[Sequence]
    ) -> Callable[[np.ndarray], np.ndarray]:
        metric = study.metric_names or [str(i) for i in range(len(study.directions))]
        signs = [1.0 if study.directions[i] == StudyDirection.MINIMIZE else -1.0 for i in index]

        def cost_of(candidate: np.ndarray) -> np.ndarray:
            key = tuple(candidate.tolist())
            if key not in self._cost_cache:
                params = {n: c[i] for n, c, i in zip(names, choices, candidate, strict=True)}
                values = self.costs(params) if index else {}  # type: ignore[misc]
                row = [s * float(values[metric[i]]) for s, i in zip(signs, index, strict=True)]
                self._cost_cache[key] = np.array(row)
            return self._cost_cache[key]

        return cost_of

    def _candidates(
        self,
        choices: list[Sequence],
        trained: np.ndarray,
        loss: np.ndarray,
        trained_costs: np.ndarray,
        seen: set[tuple],
    ) -> np.ndarray:
        sizes = np.array([len(c) for c in choices])
        pool = (self._rng.random((self.n_candidates, len(sizes))) * sizes).astype(int)
        front = trained[_front(np.column_stack([loss, trained_costs]))]
        neighbors = [
            np.where(np.arange(len(sizes)) == p, v, row)
            for row in front
            for p in range(len(sizes))
            for v in range(sizes[p])
            if v != row[p]
        ]
        pool = np.concatenate([pool, np.array(neighbors).reshape(-1, len(sizes))])
        unique = {tuple(row.tolist()) for row in pool} - seen
        return np.array(sorted(unique), dtype=int).reshape(-1, len(sizes))

    def _predict(
        self, x: np.ndarray, y: np.ndarray, candidates: np.ndarray, choices: list[Sequence]
    ) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = y.mean(), y.std() + 1e-9
        k = self._kernel(x, x) + 1e-2 * np.eye(len(x))
        kc = self._kernel(candidates, x)
        chol = np.linalg.cholesky(k)
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, (y - mu) / sd))
        v = np.linalg.solve(chol, kc.T)
        var = np.clip(1.0 - (v * v).sum(0), 1e-9, None)
        return mu + sd * (kc @ alpha), sd * np.sqrt(var)

    def _kernel(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        hamming = (a[:, None, :] != b[None, :, :]).sum(2)
        return np.exp(-hamming / self.length_scale)


def _loss(trial: FrozenTrial, index: int, directions: Sequence[StudyDirection]) -> float:
    value = float(trial.values[index])
    return value if directions[index] == StudyDirection.MINIMIZE else -value


def _bar(costs: np.ndarray, trained_costs: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Per candidate, the lowest loss of a trained architecture that costs no more; for a
    candidate cheaper than all of them, a loss worse than any seen (any result improves)."""
    worst = loss.max() + np.ptp(loss) + 1e-9
    if costs.shape[1] == 0:
        return np.full(len(costs), loss.min())
    cheaper = (trained_costs[None, :, :] <= costs[:, None, :]).all(2)
    return np.where(cheaper, loss[None, :], worst).min(1)


def _expected_improvement(bar: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    z = (bar - mean) / std
    return (bar - mean) * ndtr(z) + std * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _front(points: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows (all minimized)."""
    dominated = ((points[None, :, :] <= points[:, None, :]).all(2)
                 & (points[None, :, :] < points[:, None, :]).any(2)).any(1)  # fmt: skip
    return np.flatnonzero(~dominated)
