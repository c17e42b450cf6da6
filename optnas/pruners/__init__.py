"""Pruners that work with several objectives (Optuna's own handle one).

They read a trial's per-epoch validation accuracy from its ``val_curve`` user attr and its
costs (known before training) from its user attrs, so they work in single- and
multi-objective studies alike. :func:`optnas.search` calls them after every epoch.
"""

import optuna

from optnas.pruners._pareto import ParetoHalvingPruner, ParetoPruner

__all__ = ["SINGLE_OBJECTIVE_PRUNERS", "ParetoHalvingPruner", "ParetoPruner"]

SINGLE_OBJECTIVE_PRUNERS = (
    optuna.pruners.MedianPruner,  # a PercentilePruner
    optuna.pruners.PercentilePruner,
    optuna.pruners.SuccessiveHalvingPruner,
    optuna.pruners.HyperbandPruner,
    optuna.pruners.ThresholdPruner,
    optuna.pruners.PatientPruner,
    optuna.pruners.WilcoxonPruner,
)
"""Optuna's pruners, which judge one objective's intermediate values; any other pruner is
asked ``prune(study, trial)`` after every epoch in studies with several objectives too."""
