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
from optnas.errors import SearchError, StorageError
from optnas.search import search

__all__ = ["SearchError", "StorageError", "search"]
__version__ = "0.1.0"
