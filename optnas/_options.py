"""Named components with options: ``{"name": "tpe", "n_startup_trials": 5}``.

Spaces, samplers and pruners can be given as a name, as a mapping of a name and the
options of its constructor (as a study file writes them), or as an import path
``"package.module:attribute"``. This module splits such values, imports paths and checks
options against the constructor's signature, so that a misspelt option is an error that
names it rather than a keyword silently dropped.
"""

from __future__ import annotations

import importlib
import inspect
import types
import typing
from collections import abc
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["OptionError", "call_with_options", "import_object", "is_import_path", "split_named"]


class OptionError(ValueError):
    """A bad name or option of a component; ``key`` is ``"name"`` or the option's name."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def split_named(value: Any, what: str) -> tuple[Any, dict[str, Any]]:
    """``(name, options)`` of ``value``: a mapping with ``"name"`` and options, or any
    other value with no options.

    Example:
        >>> split_named({"name": "tpe", "n_startup_trials": 5}, "sampler")
        ('tpe', {'n_startup_trials': 5})
        >>> split_named("random", "sampler")
        ('random', {})
    """
    if not isinstance(value, Mapping):
        return value, {}
    options = dict(value)
    if "name" not in options:
        raise ValueError(f"A {what} given as a mapping needs a 'name', but got {dict(value)!r}.")
    return options.pop("name"), options


def is_import_path(name: object) -> bool:
    """Whether ``name`` reads ``"package.module:attribute"``.

    Example:
        >>> is_import_path("mypkg.spaces:my_space"), is_import_path("convnet")
        (True, False)
    """
    return isinstance(name, str) and name.count(":") == 1 and all(name.split(":"))


def import_object(path: str, what: str) -> Any:
    """The object that ``"package.module:attribute"`` names.

    Raises:
        OptionError: The module cannot be imported or lacks the attribute.

    Example:
        >>> import_object("math:pi", "constant")
        3.141592653589793
    """
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise OptionError(
            f"Cannot import the {what} {path!r}: module {module_name!r} was not found "
            f"({error}); check the path and that the package is installed or on PYTHONPATH.",
            "name",
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise OptionError(
                f"Cannot import the {what} {path!r}: module {module_name!r} has no "
                f"attribute {attribute!r}.",
                "name",
            )
        target = getattr(target, part)
    return target


def call_with_options(
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    what: str,
    fixed: Mapping[str, Any] | None = None,
) -> Any:
    """``factory(**fixed, **options)``, refusing an option ``factory`` does not take.

    ``fixed`` keywords the caller supplies (a seed, say) are passed only where ``factory``
    takes them, and an option may not override one.

    Raises:
        OptionError: An unknown option, one that ``fixed`` already sets, or a value the
            factory rejects (its message kept).

    Example:
        >>> import optuna
        >>> call_with_options(optuna.samplers.TPESampler, {"n_startup_trials": 3},
        ...                   what="sampler 'tpe'", fixed={"seed": 0})._n_startup_trials
        3
    """
    fixed = dict(fixed or {})
    accepted = _parameters(factory)
    clash = sorted(set(options) & set(fixed))
    if clash:
        raise OptionError(f"The {what} sets {clash[0]!r} itself; remove that option.", clash[0])
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            valid = ", ".join(sorted(accepted - set(fixed))) or "none"
            raise OptionError(
                f"Unknown option {unknown[0]!r} of the {what}; valid options: {valid}.",
                unknown[0],
            )
        fixed = {k: v for k, v in fixed.items() if k in accepted}
    for name, value in options.items():
        expected = _expected(factory, name)
        if expected is not None and not _matches(value, expected):
            raise OptionError(
                f"Option {name!r} of the {what} must be {_described(expected)}, but got "
                f"{value!r}.",
                name,
            )
    try:
        return factory(**fixed, **options)
    except TypeError as error:
        raise OptionError(f"Bad options {dict(options)!r} for the {what}: {error}") from None


def _parameters(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` takes, or None when it takes any (``**kwargs``)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    kinds = {p.kind for p in signature.parameters.values()}
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    return {
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _expected(factory: Callable[..., Any], name: str) -> tuple[Any, ...] | None:
    """The plain types (int, float, bool, str, a sequence, a class, None, literal values
    as ``("literal", values)``) that parameter ``name`` of ``factory`` is annotated with,
    or None where its annotation says nothing checkable (a callable, a generic mapping,
    or one that does not resolve)."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        annotation = inspect.signature(target).parameters[name].annotation
        if isinstance(annotation, str):
            module = inspect.getmodule(target)
            annotation = eval(annotation, dict(vars(module)) if module else {})  # noqa: S307
    except Exception:
        return None
    members = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    found: list[Any] = []
    for member in members:
        origin = typing.get_origin(member)
        if member is type(None) or member in (int, float, bool, str):
            found.append(member)
        elif origin is typing.Literal:
            found.append(("literal", typing.get_args(member)))
        elif origin in (list, tuple, abc.Sequence) or member in (list, tuple, abc.Sequence):
            found.append(abc.Sequence)
        elif inspect.isclass(member) and origin is None and member is not inspect.Parameter.empty:
            found.append(member)
        else:
            return None  # Anything else (Callable, Mapping[...]): not checked.
    return tuple(found) or None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _matches(value: Any, expected: tuple[Any, ...]) -> bool:
    for kind in expected:
        if kind is type(None) and value is None:
            return True
        if isinstance(kind, tuple) and value in kind[1]:
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind is abc.Sequence and isinstance(value, (list, tuple)):
            return True
        plain = (bool, int, float, abc.Sequence)
        if inspect.isclass(kind) and kind not in plain and isinstance(value, kind):
            return True
    return False


def _described(expected: tuple[Any, ...]) -> str:
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             abc.Sequence: "a list", type(None): "none"}  # fmt: skip
    said = []
    for kind in expected:
        if isinstance(kind, tuple):
            said.append("one of " + ", ".join(map(repr, kind[1])))
        else:
            said.append(words.get(kind, f"a {getattr(kind, '__name__', kind)} object"))
    return " or ".join(said)
