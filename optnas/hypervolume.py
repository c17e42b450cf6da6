"""Hypervolume of a study's feasible Pareto front, over normalized objectives.

Every objective is mapped to a loss in ``[0, 1]`` (0 best, 1 worst) before the volume is
taken, so that studies and objectives of different scales compare:

* ``accuracy`` becomes the error ``1 - accuracy``;
* a cost (``params``, ``flops``, ``macs``, ``latency``, or any other minimized value) is
  placed on a log scale between its bounds ``(low, high)``: ``log(v / low) / log(high /
  low)`` (linearly if ``low <= 0``), clipped to ``[0, 1]``; a maximized value other than
  accuracy, linearly between its bounds, reversed.

The reference point is ``(1, ..., 1)``: the hypervolume is the share of the unit box that the
feasible Pareto front dominates, between 0 and 1. Bounds default to the smallest and largest
value each cost took in the study's feasible trials (failed and pruned trials included,
since costs are measured before training; trials over a budget left out, so that an
untrained candidate far over it does not stretch the scale); pass the same ``bounds`` to
compare studies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import optuna

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["HypervolumePoint", "bounds_of", "history", "hypervolume", "losses", "volume"]

Bounds = Mapping[str, tuple[float, float]]


@dataclass(frozen=True)
class HypervolumePoint:
    """The hypervolume once trial ``trial`` had finished, ``seconds`` into the study."""

    trial: int
    seconds: float
    hypervolume: float


def hypervolume(study: optuna.Study, *, bounds: Bounds | None = None) -> float:
    """The share of the unit box dominated by the study's feasible Pareto front.

    Args:
        study: A multi-objective study (one objective works too).
        bounds: ``{name: (low, high)}`` per cost objective; defaults to :func:`bounds_of`.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.set_metric_names(["accuracy", "params"])
        >>> study.add_trial(optuna.trial.create_trial(values=[0.9, 1000]))
        >>> hypervolume(study, bounds={"params": (100, 10_000)})  # 0.9 * (1 - 1/2)
        0.45
    """
    trials = _feasible(study)
    if not trials:
        return 0.0
    bounds = dict(bounds_of(study)) | dict(bounds or {})
    return volume(losses(study, trials, bounds))


def history(study: optuna.Study, *, bounds: Bounds | None = None) -> list[HypervolumePoint]:
    """The hypervolume after each finished trial, in the order trials finished.

    ``seconds`` counts from the start of the study's first trial.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.set_metric_names(["accuracy", "params"])
        >>> study.add_trial(optuna.trial.create_trial(values=[0.5, 100]))
        >>> study.add_trial(optuna.trial.create_trial(values=[0.9, 100]))
        >>> [round(p.hypervolume, 3) for p in history(study, bounds={"params": (10, 1000)})]
        [0.25, 0.45]
    """
    finished = [t for t in study.get_trials(deepcopy=False) if t.datetime_complete is not None]
    if not finished:
        return []
    finished.sort(key=lambda t: (t.datetime_complete, t.number))
    start = min(t.datetime_start or t.datetime_complete for t in finished)
    bounds = dict(bounds_of(study)) | dict(bounds or {})
    feasible = {t.number for t in _feasible(study)}
    points, front = [], []
    for trial in finished:
        if trial.number in feasible:
            front.append(trial)
        dominated = volume(losses(study, front, bounds)) if front else 0.0
        seconds = (trial.datetime_complete - start).total_seconds()
        points.append(HypervolumePoint(trial.number, seconds, dominated))
    return points


def bounds_of(study: optuna.Study) -> dict[str, tuple[float, float]]:
    """The smallest and largest value each objective other than accuracy took in
    ``study``'s trials within its budgets (of every state: costs are measured before
    training).

    Costs are read from trials' user attrs (set before training, so every measured trial
    counts), other objectives from completed trials' values. Trials over a budget (a
    positive constraint) are left out: a candidate far over it, never trained, would
    stretch the scale and change the hypervolume of a front it is no part of.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> study.set_metric_names(["accuracy", "params"])
        >>> study.add_trial(optuna.trial.create_trial(values=[0.9, 1000]))
        >>> study.add_trial(optuna.trial.create_trial(values=[0.5, 10]))
        >>> study.add_trial(optuna.trial.create_trial(
        ...     state=optuna.trial.TrialState.PRUNED, user_attrs={"params": 9e9},
        ...     system_attrs={"constraints:params": 1.0}))
        >>> bounds_of(study)
        {'params': (10.0, 1000.0)}
    """
    names = _names(study)
    trials = [t for t in study.get_trials(deepcopy=False) if _within_budgets(t)]
    bounds = {}
    for i, name in enumerate(names):
        if name == "accuracy":
            continue
        seen = [t.user_attrs[name] for t in trials if name in t.user_attrs]
        seen += [t.values[i] for t in trials if t.values is not None]
        finite = [float(v) for v in seen if isinstance(v, (int, float)) and math.isfinite(v)]
        if finite:
            bounds[name] = (min(finite), max(finite))
    return bounds


def losses(study: optuna.Study, trials: Sequence[FrozenTrial], bounds: Bounds) -> np.ndarray:
    """The normalized losses (one row per trial, in ``[0, 1]``) of ``trials``' values."""
    names = _names(study)
    values = np.array([t.values for t in trials], dtype=float).reshape(len(trials), len(names))
    columns = []
    for i, (name, direction) in enumerate(zip(names, study.directions, strict=True)):
        maximize = direction == optuna.study.StudyDirection.MAXIMIZE
        columns.append(_loss(values[:, i], name, maximize, bounds))
    return np.clip(np.stack(columns, axis=1), 0.0, 1.0)


def _loss(column: np.ndarray, name: str, maximize: bool, bounds: Bounds) -> np.ndarray:
    if name == "accuracy":
        return 1.0 - column
    if name not in bounds:
        raise ValueError(
            f"No bounds for objective {name!r}; pass bounds={{{name!r}: (low, high)}}."
        )
    low, high = bounds[name]
    if high <= low:
        return np.zeros_like(column)  # every trial alike: no spread to reward
    if maximize:
        return (high - column) / (high - low)
    if low > 0:
        return np.log(np.maximum(column, low) / low) / math.log(high / low)
    return (column - low) / (high - low)


def _names(study: optuna.Study) -> list[str]:
    return study.metric_names or [f"value{i}" for i in range(len(study.directions))]


def _feasible(study: optuna.Study) -> list[FrozenTrial]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return [t for t in complete if _within_budgets(t)]


def _within_budgets(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def volume(loss_values: np.ndarray) -> float:
    """The volume of the unit box dominated by rows of normalized losses in ``[0, 1]``
    (reference point 1 in every objective).

    Example:
        >>> import numpy as np
        >>> volume(np.array([[0.5, 0.5], [0.0, 0.75]]))
        0.375
    """
    # Optuna has no public hypervolume function; its private one is used here only, and
    # tests/test_hypervolume.py checks it against hand-computed volumes.
    from optuna._hypervolume import compute_hypervolume

    reference = np.ones(loss_values.shape[1])
    return float(compute_hypervolume(loss_values, reference))
