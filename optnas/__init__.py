"""optnas: neural architecture search as an Optuna plugin.

Example:
    >>> import optnas
    >>> study = optnas.search("convnet", "digits", ("accuracy", "params"),
    ...                       n_trials=2, epochs=1, storage="sqlite:///:memory:")
    >>> [t.state.name for t in study.trials]
    ['COMPLETE', 'COMPLETE']
"""

from __future__ import annotations

# torch is imported on first use, so that `import optnas` and `optnas --help` stay fast.
from importlib import import_module
from typing import Any

from optnas import cost, data
from optnas.errors import SearchError, StorageError
from optnas.search import search

__all__ = [
    "SearchError",
    "StorageError",
    "artifacts",
    "cost",
    "dashboard",
    "data",
    "diagram",
    "export",
    "hypervolume",
    "load_model",
    "report",
    "retrain",
    "search",
    "spaces",
    "train",
]
__version__ = "0.1.0"

_LAZY_MODULES = (
    "artifacts",
    "dashboard",
    "diagram",
    "export",
    "hypervolume",
    "report",
    "retrain",
    "spaces",
    "train",
)
# Functions whose modules import torch: name -> module.
_LAZY_FUNCTIONS = {"load_model": "optnas.export"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return import_module(f"optnas.{name}")
    if name in _LAZY_FUNCTIONS:
        return getattr(import_module(_LAZY_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'optnas' has no attribute {name!r}")
