"""Built-in search spaces: define-by-run functions ``space(trial, spec) -> nn.Module``.

A space is any callable taking an Optuna trial and a :class:`optnas.data.DataSpec` and
returning a :class:`torch.nn.Module`; every choice it makes is a ``trial.suggest_*`` call.
A space may also have ``describe(params) -> str``, the architecture in one line, and
``key(params) -> str``, equal for parameter sets that build the same network. Rebuild a
trial's network with ``space(optuna.trial.FixedTrial(params), spec)``.

Built in: ``convnet`` (MobileNet-like macro space), ``nb201`` (the NAS-Bench-201 cell
space), ``mlp`` (for tabular data); ``"auto"`` picks ``convnet`` for images and ``mlp``
for flat features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from optnas.spaces._convnet import ConvNet, convnet
from optnas.spaces._mlp import MLP, mlp
from optnas.spaces._nb201 import NB201, nb201

if TYPE_CHECKING:
    from optnas.data import DataSpec

__all__ = [
    "MLP",
    "NB201",
    "SPACES",
    "ConvNet",
    "convnet",
    "describe",
    "get",
    "key",
    "mlp",
    "name_of",
    "nb201",
]

SPACES: dict[str, Callable[..., Any]] = {"convnet": convnet, "nb201": nb201, "mlp": mlp}
"""Built-in spaces by name (besides ``"auto"``)."""


def get(space: str | Callable[..., Any], spec: DataSpec | None = None) -> Callable[..., Any]:
    """Resolve a space given by name (see :data:`SPACES`) or return a callable as is.

    ``"auto"`` needs the data's ``spec``: ``convnet`` for images, ``mlp`` otherwise.

    Example:
        >>> from optnas.data import DataSpec
        >>> get("convnet") is convnet, get("auto", DataSpec((13,), 3)) is mlp
        (True, True)
    """
    if callable(space):
        return space
    if space == "auto":
        if spec is None:
            raise ValueError("space='auto' picks a space for the data, so it needs its spec.")
        return convnet if spec.is_image else mlp
    if isinstance(space, str) and space in SPACES:
        return SPACES[space]
    raise ValueError(f"Unknown space {space!r}; valid names: auto, {', '.join(SPACES)}.")


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
    return " ".join(f"{name}={value}" for name, value in params.items())


def key(space: Callable[..., Any], params: Mapping[str, Any]) -> str:
    """A canonical key of the network ``params`` build in ``space``.

    Built-in spaces give equal keys to parameter sets that build the same network (e.g.
    that differ only in choices not in effect). Other spaces use their own ``key`` method,
    else the sorted parameters, which is exact for the parameters a trial actually suggested
    (``trial.params``).

    Example:
        >>> params = {"n_layers": 1, "layer0_width": 64, "activation": "relu",
        ...           "norm": "none", "dropout": 0.0}
        >>> key(mlp, params) == key(mlp, params | {"layer3_width": 512})
        True
        >>> key(lambda trial, spec: None, {"width": 64, "depth": 2})
        'depth=2 width=64'
    """
    own = getattr(space, "key", None)
    if callable(own):
        return own(params)
    return " ".join(f"{name}={params[name]}" for name in sorted(params))


def name_of(space: Callable[..., Any]) -> str:
    """A short name for ``space``: its ``name`` attribute or its function name."""
    return getattr(space, "name", None) or getattr(space, "__name__", type(space).__name__)
