"""Pruning by dominance: at the same epoch, better and no more expensive."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optnas.samplers._base import pareto_ranks

__all__ = ["ParetoHalvingPruner", "ParetoPruner"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class ParetoPruner(optuna.pruners.BasePruner):
    """Stops a child that enough earlier children beat at the same epoch while costing no more.

    After epoch ``e`` a trial is pruned when at least ``min_dominators`` finished trials had a
    higher validation accuracy after their epoch ``e`` and are no more expensive in every
    cost objective of the study (params, FLOPs, MACs, latency: all known before training).
    Such a trial can reach the Pareto front only by overtaking all of them later; a trial that
    is the cheapest so far, or the best at this epoch, is never pruned.

    Args:
        n_startup_trials: Prune only once this many trials have finished past this epoch.
        n_warmup_steps: As Optuna's: never prune at an epoch whose index (from 0) is below
            this, so not before ``n_warmup_steps + 1`` epochs were trained.
        min_dominators: How many better, no more expensive trials it takes.

    Example:
        >>> import optnas
        >>> study = optnas.search("convnet", "digits", ("accuracy", "params"), n_trials=2,
        ...     epochs=1, storage="sqlite:///:memory:", pruner=ParetoPruner())
        >>> type(study.pruner).__name__
        'ParetoPruner'
    """

    def __init__(
        self, *, n_startup_trials: int = 5, n_warmup_steps: int = 1, min_dominators: int = 3
    ) -> None:
        _check_at_least(1, min_dominators=min_dominators)
        _check_at_least(0, n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps)
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.min_dominators = min_dominators

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        curve = trial.user_attrs.get("val_curve") or []
        epoch = len(curve) - 1
        if epoch < self.n_warmup_steps:
            return False
        peers = _peers(study, trial, epoch)
        if len(peers) < self.n_startup_trials:
            return False
        names = _cost_names(study)
        better = [
            p
            for p in peers
            if p.user_attrs["val_curve"][epoch] > curve[epoch]
            and _no_more_expensive(p, trial, names)
        ]
        return len(better) >= self.min_dominators


class ParetoHalvingPruner(optuna.pruners.BasePruner):
    """Successive halving with several objectives: at each rung, keep the best 1/eta by
    Pareto rank.

    Rungs are after epochs ``min_resource * reduction_factor**k``. A trial reaching a rung
    is ranked among the finished trials that reached it by non-dominated sorting of
    (validation accuracy at the rung, costs); it goes on if it is among the best
    ``max(1, n // reduction_factor)`` of the ``n`` (ties by accuracy), as in ASHA, or if
    none of them dominates it: a trial on the rung's Pareto front is never pruned (its
    accuracy may be the lowest, its costs are then the lowest in some objective).

    Args:
        min_resource: Epochs before the first rung.
        reduction_factor: ``eta``: the share kept at each rung is ``1 / eta``.
        n_startup_trials: Prune only once this many trials have reached the rung before.

    Example:
        >>> ParetoHalvingPruner(min_resource=1, reduction_factor=3).rungs(10)
        [1, 3, 9]
    """

    def __init__(
        self, *, min_resource: int = 1, reduction_factor: int = 3, n_startup_trials: int = 3
    ) -> None:
        _check_at_least(1, min_resource=min_resource, n_startup_trials=n_startup_trials)
        _check_at_least(2, reduction_factor=reduction_factor)
        self.min_resource = min_resource
        self.reduction_factor = reduction_factor
        self.n_startup_trials = n_startup_trials

    def rungs(self, epochs: int) -> list[int]:
        """The rungs (epochs trained) up to ``epochs``."""
        out, rung = [], self.min_resource
        while rung <= epochs:
            out.append(rung)
            rung *= self.reduction_factor
        return out

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        curve = trial.user_attrs.get("val_curve") or []
        if len(curve) not in self.rungs(len(curve)):
            return False
        epoch = len(curve) - 1
        peers = _peers(study, trial, epoch)
        if len(peers) < self.n_startup_trials:
            return False
        names = _cost_names(study)
        everyone = [trial, *peers]
        points = [(-t.user_attrs["val_curve"][epoch], *_costs(t, names)) for t in everyone]
        ranks = pareto_ranks(np.array(points)).tolist()
        order = sorted(range(len(everyone)), key=lambda i: (ranks[i], points[i][0]))
        kept = max(1, len(everyone) // self.reduction_factor)
        return ranks[0] != 0 and 0 not in order[:kept]


def _peers(study: optuna.Study, trial: FrozenTrial, epoch: int) -> list[FrozenTrial]:
    """Finished trials, trained (not reused) at least ``epoch + 1`` epochs, other than
    ``trial``."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=_FINISHED)
        if t.number != trial.number
        and "duplicate_of" not in t.user_attrs
        and len(t.user_attrs.get("val_curve") or []) > epoch
    ]


def _cost_names(study: optuna.Study) -> list[str]:
    """The study's objectives other than accuracy (all minimized costs in optnas studies)."""
    return [name for name in study.metric_names or [] if name != "accuracy"]


def _costs(trial: FrozenTrial, names: Sequence[str]) -> list[float]:
    return [float(trial.user_attrs.get(name, float("inf"))) for name in names]


def _no_more_expensive(peer: FrozenTrial, trial: FrozenTrial, names: Sequence[str]) -> bool:
    return all(a <= b for a, b in zip(_costs(peer, names), _costs(trial, names), strict=True))


def _check_at_least(low: int, **values: int) -> None:
    for name, value in values.items():
        if value < low:
            raise ValueError(f"{name} must be at least {low}, but got {value}.")
