"""A sampler that learns only from completed trials, kept from proposing repeats.

With dedup, a candidate whose network the study already trained is pruned untrained. A
sampler that learns from completed trials alone (Optuna's ``GPSampler``, ``NSGAIISampler``,
the RNN controller) never sees those repeats: it proposes the same network again and again,
and the search stops after 50 untrained candidates in a row, most of its trainings left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

RepeatFn = Callable[[optuna.Study, Mapping[str, Any]], bool]


class UnrepeatedSampler(optuna.samplers.BaseSampler):
    """``sampler``, except that a proposal ``repeats(study, params)`` says the study holds
    already is dropped: that trial's parameters are then drawn at random (``seed``).

    Everything else (``before_trial``, ``after_trial``, its attributes) is ``sampler``'s.

    Example:
        >>> import optuna
        >>> held = lambda study, params: any(t.params == params for t in study.trials)
        >>> sampler = UnrepeatedSampler(optuna.samplers.GPSampler(seed=0), held)
        >>> type(sampler.sampler).__name__
        'GPSampler'
    """

    def __init__(
        self, sampler: optuna.samplers.BaseSampler, repeats: RepeatFn, *, seed: int | None = None
    ) -> None:
        self.sampler = sampler
        self.repeats = repeats
        self.dropped = 0  # proposals dropped as repeats (in this process)
        # Not ``seed`` itself: the sampler's own random startup draws would be repeated.
        self._random = optuna.samplers.RandomSampler(
            seed=None if seed is None else (seed * 7919 + 17) % 2**31
        )
        self._at_random: set[int] = set()  # the trials (ids) whose proposal was dropped

    def __getattr__(self, name: str) -> Any:
        if "sampler" not in self.__dict__:  # being copied or unpickled
            raise AttributeError(name)
        return getattr(self.__dict__["sampler"], name)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        params = self.sampler.sample_relative(study, trial, search_space)
        if params and self.repeats(study, params):
            self.dropped += 1
            self._at_random.add(trial._trial_id)
            return {}
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        chooser = self._random if trial._trial_id in self._at_random else self.sampler
        return chooser.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Any,
    ) -> None:
        self._at_random.discard(trial._trial_id)
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
        self._random.reseed_rng()
