"""One place where sampler names become Optuna samplers: search, CLI and benchmarks alike."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import optuna

from optnas._options import call_with_options, import_object, is_import_path, split_named
from optnas.samplers._controller import ControllerSampler
from optnas.samplers._cost_aware import CostAwareSampler, CostFn, KeyFn
from optnas.samplers._evolution import RegularizedEvolutionSampler

__all__ = ["SAMPLERS", "SamplerName", "create"]

SAMPLERS = ("auto", "tpe", "gp", "nsga2", "random", "evolution", "controller")
"""Sampler names :func:`create` knows."""

SamplerName = Literal["auto", "tpe", "gp", "nsga2", "random", "evolution", "controller"]


def create(
    name: SamplerName | str | Mapping[str, Any] | optuna.samplers.BaseSampler,
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
        name: A name in :data:`SAMPLERS`, an import path ``"package.module:Class"`` of a
            sampler class, either of those with options as a mapping
            (``{"name": "tpe", "n_startup_trials": 5}``: keywords of the sampler's
            constructor), or a sampler, returned as it is.
        directions: The study's directions, ``"maximize"`` or ``"minimize"`` each.
        seed: Seed of the sampler.
        parallel: Trials run concurrently: TPE treats running trials as bad ("constant
            liar") so that trials started together do not propose the same architecture.
        costs: ``costs(params) -> {metric name: value}``: costs known before training
            (used by ``auto``).
        key: ``key(params) -> hashable``, equal for the same network, e.g. the space's
            :func:`optnas.spaces.key` (used by ``auto`` and ``evolution``).

    Raises:
        ValueError: An unknown name, option or direction.

    Example:
        >>> type(create("tpe", directions=["maximize"], seed=0)).__name__
        'TPESampler'
        >>> type(create("auto", directions=["maximize", "minimize"])).__name__
        'CostAwareSampler'
    """
    name, options = split_named(name, "sampler")
    if isinstance(name, optuna.samplers.BaseSampler):
        if options:
            raise ValueError("A sampler object takes no options; configure it when creating it.")
        return name
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad or not directions:
        raise ValueError(
            f"directions must be 'maximize' or 'minimize' each, but got {list(directions)!r}."
        )
    fixed: dict[str, object] = {"seed": seed}
    if name in ("auto", "tpe"):
        options.setdefault("constant_liar", parallel)
    if name == "evolution":
        fixed["key"] = key
    if name == "auto":
        tpe_options = {"constant_liar": options.pop("constant_liar")}
        tpe = optuna.samplers.TPESampler(seed=seed, **tpe_options)
        fixed |= {"costs": costs, "key": key, "independent_sampler": tpe}
    if is_import_path(name):
        factory = import_object(name, "sampler")
        if isinstance(factory, optuna.samplers.BaseSampler) and not options:
            return factory
    elif name in _FACTORIES:
        factory = _FACTORIES[name]
    else:
        raise ValueError(
            f"Unknown sampler {name!r}; valid names: {', '.join(SAMPLERS)}, or an import "
            "path 'package.module:SamplerClass'."
        )
    sampler = call_with_options(factory, options, what=f"sampler {name!r}", fixed=fixed)
    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise ValueError(f"The sampler {name!r} made a {type(sampler).__name__}, not a sampler.")
    return sampler


_FACTORIES = {
    "auto": CostAwareSampler,
    "tpe": optuna.samplers.TPESampler,
    "gp": optuna.samplers.GPSampler,
    "nsga2": optuna.samplers.NSGAIISampler,
    "random": optuna.samplers.RandomSampler,
    "evolution": RegularizedEvolutionSampler,
    "controller": ControllerSampler,
}
