"""What optnas's samplers share."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial


class PerParameterSampler(optuna.samplers.BaseSampler):
    """A sampler that decides every parameter as the trial asks for it, so that
    define-by-run spaces, where a parameter may appear in some trials only, just work."""

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}


def choices(distribution: BaseDistribution, max_int_choices: int) -> list[Any] | None:
    """The values of a categorical distribution, or of an integer one with at most
    ``max_int_choices`` values; None for anything else (left to an independent sampler)."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        n = (distribution.high - distribution.low) // distribution.step + 1
        if n <= max_int_choices:
            return [int(distribution.low + i * distribution.step) for i in range(n)]
    return None


def pareto_ranks(points: np.ndarray) -> np.ndarray:
    """Non-domination rank of each row (every column minimized; 0 is the Pareto front).

    Example:
        >>> pareto_ranks(np.array([[1.0, 2.0], [2.0, 1.0], [2.0, 2.0]])).tolist()
        [0, 0, 1]
    """
    points = np.asarray(points, dtype=float)
    if points.ndim == 2 and points.shape[1] == 1:  # one objective: ranks of the values
        return np.unique(points[:, 0], return_inverse=True)[1].reshape(-1)
    ranks = np.full(len(points), -1)
    rank = 0
    while (ranks < 0).any():
        left = np.flatnonzero(ranks < 0)
        rows = points[left]
        dominated = ((rows[None, :, :] <= rows[:, None, :]).all(2)
                     & (rows[None, :, :] < rows[:, None, :]).any(2)).any(1)  # fmt: skip
        ranks[left[~dominated]] = rank
        rank += 1
    return ranks
