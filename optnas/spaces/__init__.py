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

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from optnas._options import call_with_options, import_object, is_import_path, split_named
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
    "options_of",
]

SPACES: dict[str, Callable[..., Any]] = {"convnet": convnet, "nb201": nb201, "mlp": mlp}
"""Built-in spaces by name (besides ``"auto"``)."""


def get(
    space: str | Mapping[str, Any] | Callable[..., Any], spec: DataSpec | None = None
) -> Callable[..., Any]:
    """Resolve a space given by name (see :data:`SPACES`), by import path
    (``"package.module:function"``), or as a mapping of either with the options of its
    class (``{"name": "nb201", "channels": 8}``); return a callable as is.

    ``"auto"`` needs the data's ``spec``: ``convnet`` for images, ``mlp`` otherwise.

    Raises:
        ValueError: An unknown name or option, or a path that does not import.

    Example:
        >>> from optnas.data import DataSpec
        >>> get("convnet") is convnet, get("auto", DataSpec((13,), 3)) is mlp
        (True, True)
        >>> get({"name": "nb201", "channels": 8}).channels
        8
    """
    if callable(space):
        return space
    name, options = split_named(space, "space")
    if name == "auto":
        if spec is None:
            raise ValueError("space='auto' picks a space for the data, so it needs its spec.")
        name = "convnet" if spec.is_image else "mlp"
    if is_import_path(name):
        found = import_object(name, "space")
        if options:
            found = call_with_options(found, options, what=f"space {name!r}")
        if not callable(found):
            raise ValueError(f"The space {name!r} is a {type(found).__name__}, not callable.")
        return found
    if isinstance(name, str) and name in SPACES:
        if not options:
            return SPACES[name]
        return call_with_options(type(SPACES[name]), options, what=f"space {name!r}")
    raise ValueError(
        f"Unknown space {name!r}; valid names: auto, {', '.join(SPACES)}, or an import path "
        "'package.module:function'."
    )


def options_of(space: Callable[..., Any]) -> dict[str, Any] | None:
    """The name and options that :func:`get` rebuilds ``space`` from, or None where it
    cannot (a lambda, a function defined inside another, an object of another class).

    Example:
        >>> options_of(NB201(channels=8))
        {'name': 'nb201', 'channels': 8}
        >>> options_of(convnet)
        {'name': 'convnet'}
    """
    for name, instance in SPACES.items():
        if type(space) is type(instance):
            return {"name": name, **_changed_options(space)}
    module, qualname = getattr(space, "__module__", None), getattr(space, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    path = f"{module}:{qualname}"
    try:
        found = import_object(path, "space")
    except ValueError:
        return None
    return {"name": path} if found is space else None


def _changed_options(space: Any) -> dict[str, Any]:
    """Constructor keywords of ``space`` whose values differ from their defaults, read
    back from the attributes of the same name (as the built-in spaces keep them)."""
    changed = {}
    for name, parameter in inspect.signature(type(space).__init__).parameters.items():
        if parameter.kind is not parameter.KEYWORD_ONLY:
            continue
        value, default = getattr(space, name), parameter.default
        if _plain(value) != _plain(default):
            changed[name] = _plain(value)
    return changed


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: the form JSON and TOML give back."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


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
