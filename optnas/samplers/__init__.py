"""Samplers Optuna lacks, for architecture search.

:class:`CostAwareSampler` models accuracy alone and takes the costs of untrained
candidates (parameters, FLOPs, latency) from a function, since they are known before
training.
"""

from __future__ import annotations

from optnas.samplers._cost_aware import CostAwareSampler

__all__ = ["CostAwareSampler"]
