"""One place where sampler names become Optuna samplers: search, CLI and benchmarks alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import optuna

from optnas.samplers._controller import ControllerSampler
from optnas.samplers._cost_aware import CostAwareSampler, CostFn, KeyFn
from optnas.samplers._evolution import RegularizedEvolutionSampler

__all__ = ["SAMPLERS", "SamplerName", "create"]

SAMPLERS = ("auto", "tpe", "gp", "nsga2", "random", "evolution", "controller")
"""Sampler names :func:`create` knows."""

SamplerName = Literal["auto", "tpe", "gp", "nsga2", "random", "evolution", "controller"]


def create(
    name: SamplerName | optuna.samplers.BaseSampler,
    *,
    directions: Sequence[str],
    seed: int | None = None,
    parallel: bool = False,
    costs: CostFn | None = None,
    key: KeyFn | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler called ``name`` for a study with ``directions`` (or ``name`` itself).

    ``auto``, optnas's default, is a :class:`CostAwareSampler`: a Gaussian process on the
    architecture's choices models accuracy alone, and every other objective is a cost
    known before training, taken from ``costs(params)`` when given (a benchmark table)
    and otherwise learned from the costs the study recorded; ``key`` tells it which
    architectures are the same network, so that none is proposed twice. Parameters it
    does not model (floats, conditional choices) are sampled by TPE. The other names are
    Optuna's samplers used plainly (``tpe``, ``gp``, ``nsga2``, ``random``) and optnas's
    :class:`RegularizedEvolutionSampler` (``evolution``) and :class:`ControllerSampler`
    (``controller``).

    Args:
        name: A name in :data:`SAMPLERS`, or a sampler, returned as it is.
        directions: The study's directions, ``"maximize"`` or ``"minimize"`` each.
        seed: Seed of the sampler.
        parallel: Trials run concurrently: TPE treats running trials as bad ("constant
            liar") so that trials started together do not propose the same architecture.
        costs: ``costs(params) -> {metric name: value}``: costs known before training
            (used by ``auto``).
        key: ``key(params) -> hashable``, equal for the same network, e.g. the space's
            :func:`optnas.spaces.key` (used by ``auto``).

    Raises:
        ValueError: An unknown name or direction.

    Example:
        >>> type(create("tpe", directions=["maximize"], seed=0)).__name__
        'TPESampler'
        >>> type(create("auto", directions=["maximize", "minimize"])).__name__
        'CostAwareSampler'
    """
    if isinstance(name, optuna.samplers.BaseSampler):
        return name
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad or not directions:
        raise ValueError(
            f"directions must be 'maximize' or 'minimize' each, but got {list(directions)!r}."
        )
    if name == "auto":
        tpe = optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
        return CostAwareSampler(costs=costs, key=key, seed=seed, independent_sampler=tpe)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "evolution":
        return RegularizedEvolutionSampler(seed=seed)
    if name == "controller":
        return ControllerSampler(seed=seed)
    raise ValueError(f"Unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}.")
