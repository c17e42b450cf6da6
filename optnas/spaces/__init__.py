"""Built-in search spaces: define-by-run functions ``space(trial, spec) -> nn.Module``.

A space is any callable taking an Optuna trial and a :class:`optnas.data.DataSpec` and
returning a :class:`torch.nn.Module`; every choice it makes is a ``trial.suggest_*`` call.
A space may also have a ``describe(params) -> str`` method giving an architecture in one
line. Rebuild a trial's network with ``space(optuna.trial.FixedTrial(params), spec)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from optnas.spaces.convnet import ConvNet, convnet

__all__ = ["SPACES", "ConvNet", "convnet", "describe", "get"]

SPACES: dict[str, Callable[..., Any]] = {"convnet": convnet}
"""Built-in spaces by name."""


def get(space: str | Callable[..., Any]) -> Callable[..., Any]:
    """Resolve a space given by name (see :data:`SPACES`) or return a callable as is.

    Example:
        >>> get("convnet") is convnet
        True
    """
    if callable(space):
        return space
    if isinstance(space, str) and space in SPACES:
        return SPACES[space]
    raise ValueError(f"Unknown space {space!r}; valid names: {', '.join(SPACES)}.")


def describe(space: Callable[..., Any], params: Mapping[str, Any]) -> str:
    """The architecture ``params`` choose in ``space``, in one line.

    Uses the space's own ``describe`` where it has one, else lists the parameters.

    Example:
        >>> describe(lambda trial, spec: None, {"depth": 2, "width": 64})
        'depth=2 width=64'
    """
    own = getattr(space, "describe", None)
    if callable(own):
        return own(params)
    return " ".join(f"{key}={value}" for key, value in params.items())


def name_of(space: Callable[..., Any]) -> str:
    """A short name for ``space``: its ``name`` attribute or its function name."""
    return getattr(space, "name", None) or getattr(space, "__name__", type(space).__name__)
