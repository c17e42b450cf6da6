"""Samplers for architecture search, and the one place sampler names are resolved.

:func:`create` turns a name of :data:`SAMPLERS` into a sampler, for ``search()``, the
command line and the benchmarks alike. :class:`CostAwareSampler` (the default, ``auto``)
models accuracy alone and takes the costs of untrained candidates (parameters, FLOPs,
latency) as known; :class:`RegularizedEvolutionSampler` is aging evolution;
:class:`ControllerSampler` is the RNN controller of the original NAS work, trained with
REINFORCE.
"""

from __future__ import annotations

from optnas.samplers._controller import ControllerSampler
from optnas.samplers._cost_aware import CostAwareSampler
from optnas.samplers._create import SAMPLERS, SamplerName, create
from optnas.samplers._evolution import RegularizedEvolutionSampler
from optnas.samplers._unrepeated import UnrepeatedSampler

__all__ = [
    "SAMPLERS",
    "ControllerSampler",
    "CostAwareSampler",
    "RegularizedEvolutionSampler",
    "SamplerName",
    "UnrepeatedSampler",
    "create",
]
