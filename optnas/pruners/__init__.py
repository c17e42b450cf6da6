"""Pruners that work with several objectives (Optuna's own handle one).

They read a trial's per-epoch validation accuracy from its ``val_curve`` user attr and its
costs (known before training) from its user attrs, so they work in single- and
multi-objective studies alike. :func:`optnas.search` calls them after every epoch.
"""

import optuna

from optnas.pruners._pareto import ParetoHalvingPruner, ParetoPruner

__all__ = ["MULTI_OBJECTIVE_PRUNERS", "ParetoHalvingPruner", "ParetoPruner"]

MULTI_OBJECTIVE_PRUNERS = (ParetoPruner, ParetoHalvingPruner, optuna.pruners.NopPruner)
"""Pruners that work in studies with several objectives."""
