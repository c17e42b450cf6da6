"""What a study records a space or data given as Python objects by: a name a person can
read, then short hashes of what makes it this object and not another of the same name
(its source, the helpers it builds with, the values it holds), so that another object
never resumes the study (see :func:`optnas.definition.from_call`)."""

from __future__ import annotations

import contextlib
import dataclasses
import dis
import enum
import functools
import hashlib
import inspect
import math
import sys
import types
from typing import Any


def fingerprint(*parts: Any) -> str:
    """A short hash of arrays' (or tensors') shapes, types and contents, and of other
    parts' ``repr``.

    Example:
        >>> import numpy as np
        >>> fingerprint(np.zeros(3)) == fingerprint(np.zeros(3)) != fingerprint(np.ones(3))
        True
    """
    import numpy as np

    digest = hashlib.blake2b(digest_size=5)
    for part in parts:
        if hasattr(part, "shape") or isinstance(part, (list, tuple)):
            array = np.ascontiguousarray(part.detach().cpu() if hasattr(part, "cpu") else part)
            digest.update(f"{array.dtype}{array.shape}".encode())
            # Object arrays (labels of any kind) hold pointers: hash their values' repr.
            digest.update(repr(array.tolist()).encode() if array.dtype == object else array.data)
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


def _code(space: Any) -> str:
    """`` `` and a hash of a space function's source (its class's, for another callable),
    so that another function of the same name does not resume the study; then, where it
    uses functions or classes of its own module (a block it builds from, say), `` `` and a
    hash of theirs, so that an edited block does not either (a study's trials would hold
    other networks than its dedup and kept weights assume). "" where Python has no source
    for it. (Studies recorded before the second hash resume: see ``with_hashes_of``.)"""
    root = _root(space)
    source = _source(root)
    if not source:
        return ""
    helpers = [text for text in map(_source, _used_helpers(root)) if text]
    return f" {fingerprint(source)}" + (f" {fingerprint(*helpers)}" if helpers else "")


def _root(space: Any) -> Any:
    """The function (without its decorators) or class whose code ``space`` runs: a
    partial's function's, a bound method's class, a callable object's class."""
    if isinstance(space, functools.partial):
        return _root(space.func)
    if inspect.ismethod(space):
        owner = space.__self__
        return owner if inspect.isclass(owner) else type(owner)
    if inspect.isclass(space):
        return space
    unwrapped = inspect.unwrap(space) if callable(space) else space
    return unwrapped if inspect.isfunction(unwrapped) else type(space)


def _source(obj: Any) -> str:
    """The source of a function or class; of a class whose file Python cannot find (one
    defined in a notebook), its methods'; "" where there is none (or it no longer parses)."""
    try:
        return inspect.getsource(obj)
    except Exception:
        if not inspect.isclass(obj):
            return ""
        parts = []
        for method in _methods(obj):
            with contextlib.suppress(Exception):
                parts.append(inspect.getsource(method))
        return "".join(parts)


def _used_helpers(root: Any) -> list[Any]:
    """The functions and classes of ``root``'s own module that it uses (by their global
    names, as default values or closed-over values), directly or through one another, in
    a stable order."""
    module = root.__module__
    namespace = (
        root.__globals__
        if inspect.isfunction(root)
        else getattr(sys.modules.get(module), "__dict__", {})
    )
    found: dict[str, Any] = {}
    pending = [root]
    while pending:
        obj = pending.pop()
        for helper in [namespace.get(n) for n in sorted(_global_names(obj))] + _held(obj):
            if (
                (inspect.isfunction(helper) or inspect.isclass(helper))
                and helper is not root
                and getattr(helper, "__module__", None) == module
                and helper.__qualname__ not in found
            ):
                found[helper.__qualname__] = helper
                pending.append(helper)
    return [found[name] for name in sorted(found)]


def _methods(cls: type) -> list[Any]:
    """The functions a class defines: methods, static and class methods, properties."""
    return [
        f
        for v in vars(cls).values()
        for f in (getattr(v, "__func__", v), getattr(v, "fget", None))
        if inspect.isfunction(f)
    ]


def _global_names(obj: Any) -> set[str]:
    """The global names a function's code, or a class's methods and bases, load (not
    attribute names: ``nn.Linear`` loads ``nn``)."""
    if inspect.isclass(obj):
        codes = [f.__code__ for f in _methods(obj)]
        names = {base.__name__ for base in obj.__bases__}
    else:
        codes, names = [obj.__code__], set()
    while codes:
        code = codes.pop()
        loads = ("LOAD_GLOBAL", "LOAD_NAME")
        names |= {i.argval for i in dis.get_instructions(code) if i.opname in loads}
        codes += [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return names


def _held(obj: Any) -> list[Any]:
    """A function's default values and closed-over values (``block=Block``)."""
    if not inspect.isfunction(obj):
        return []
    held = [*(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
    for cell in obj.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            held.append(cell.cell_contents)
    return held


def qualified(obj: Any) -> str:
    """A function's or class's module and qualified name.

    Example:
        >>> qualified(qualified)
        'optnas._identity.qualified'
    """
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', '?')}"


def space_name(space: Any) -> str:
    """The name a study records a space given as a Python object by, where no name
    rebuilds it: what it is, a hash of its code (see :func:`_code`), and, where it holds
    values (a partial's arguments, a closure's captured values, a bound method's or a
    callable object's attributes), a hash of them, so that ``partial(space, depth=3)``
    does not resume the study of ``partial(space, depth=5)``.

    Example:
        >>> import functools, re
        >>> def space(trial, spec, depth=2): ...
        >>> a, b = (space_name(functools.partial(space, depth=d)) for d in (3, 5))
        >>> a.startswith("<functools.partial(optnas._identity.space) "), a != b
        (True, True)
    """
    held = _state(space)
    state = f" {fingerprint(repr(held))}" if held else ""
    return f"<{_described(space)}{_code(space)}{state}>"


def _described(space: Any) -> str:
    """What ``space`` is, as Python's reprs say it: ``mod.f``, ``class mod.Net``,
    ``bound method mod.Net.space``, ``functools.partial(mod.f)``, or (a callable
    object) its class's ``mod.Space``."""
    if isinstance(space, functools.partial):
        return f"functools.partial({_described(space.func)})"
    if inspect.ismethod(space):
        return f"bound method {qualified(space.__func__)}"
    if inspect.isclass(space):
        return f"class {qualified(space)}"
    unwrapped = inspect.unwrap(space)
    return qualified(unwrapped if inspect.isfunction(unwrapped) else type(space))


def _state(space: Any) -> list[Any]:
    """The values ``space`` holds, in a form whose ``repr`` is the same in every
    process (see :func:`_plain`); [] where it holds none."""
    if isinstance(space, functools.partial):
        return [_state(space.func), _plain(space.args), _plain(space.keywords)]
    if inspect.ismethod(space):
        return [_plain(space.__self__)]
    if inspect.isclass(space):
        return []
    unwrapped = inspect.unwrap(space)
    if not inspect.isfunction(unwrapped):
        return [_plain(space)]
    held = []
    for cell in unwrapped.__closure__ or ():
        with contextlib.suppress(ValueError):  # an empty cell
            held.append(_plain(cell.cell_contents))
    return held


_SCALARS = (type(None), bool, int, float, complex, str, bytes, enum.Enum)
_HASHED_SIZE = 100_000  # arrays up to this many values are hashed by their contents too


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain data whose ``repr`` does not change between processes: scalars
    and containers as they are; functions, classes and modules by name; arrays by type,
    shape, dtype and (up to 100,000 values) contents; other objects by class and public
    attributes, three levels deep (so no memory addresses)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        return qualified(value)
    if isinstance(value, types.ModuleType):
        return value.__name__
    if depth >= 3:
        return qualified(type(value))
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, [_plain(v, depth + 1) for v in value]]
    if isinstance(value, (set, frozenset)):
        return sorted(repr(_plain(v, depth + 1)) for v in value)
    if isinstance(value, dict):
        items = [(repr(_plain(k, depth + 1)), _plain(v, depth + 1)) for k, v in value.items()]
        return sorted(items, key=lambda item: item[0])
    if isinstance(value, functools.partial):
        return ["partial", _plain(value.func), _plain(value.args, depth + 1),
                _plain(value.keywords, depth + 1)]  # fmt: skip
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # numpy's, torch's
        if tuple(value.shape) == () and hasattr(value, "item"):
            return _plain(value.item(), depth)  # a scalar: np.int64(3) is 3
        size = math.prod(value.shape)
        contents = fingerprint(value) if size <= _HASHED_SIZE else "not hashed"
        return [qualified(type(value)), repr(tuple(value.shape)), str(value.dtype), contents]
    return [qualified(type(value)), _plain(_attributes(value), depth + 1)]


def _attributes(value: Any) -> dict[str, Any]:
    """An object's public attributes (a dataclass's fields, slots included)."""
    if dataclasses.is_dataclass(value):
        names = [f.name for f in dataclasses.fields(value)]
        return {n: getattr(value, n) for n in names if not n.startswith("_")}
    return {k: v for k, v in getattr(value, "__dict__", {}).items() if not k.startswith("_")}
