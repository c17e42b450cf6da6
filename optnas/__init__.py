"""optnas: neural architecture search as an Optuna plugin.

Example:
    >>> import optnas
    >>> study = optnas.search("convnet", "digits", ("accuracy", "params"),
    ...                       n_trials=2, epochs=1, storage="sqlite:///:memory:")
    >>> [t.state.name for t in study.trials]
    ['COMPLETE', 'COMPLETE']
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from optnas.errors import SearchError, StorageError

if TYPE_CHECKING:
    from optnas.search import search

__all__ = ["SearchError", "StorageError", "search"]
__version__ = "0.1.0"

# torch and optuna are imported on first use, so that `import optnas` and `optnas --help`
# stay fast.
_LAZY = {"search": "optnas.search"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optnas' has no attribute {name!r}")
