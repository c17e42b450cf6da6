"""Study definitions: the declarative twin of :func:`optnas.search`.

A definition says everything a search does: the space, the data and its split, the
objectives, the budgets, each child's training, the sampler and pruner, how many trials,
on which devices, in which storage under which name. A study file (``studies/NAME.toml``)
holds one; ``optnas search FILE`` runs it, and the default study of ``optnas search`` is
such a file shipped inside the package (``optnas/default.toml``). Every search records its
resolved definition (every default filled in) with the study, as the study user attr
``"optnas.definition"``, so that the study can be rebuilt from its storage alone
(:meth:`Definition.from_study`) and a rerun that would change what the study means is
refused (:meth:`Definition.differences`).

The file format (TOML), every key optional unless marked::

    # What this study is for, and roughly how long it takes where.
    objectives = ["accuracy", "params"]   # required: accuracy, params, flops, macs, latency
    n_trials = 25                          # candidates to train (default 20), or "unlimited"
    timeout = 600.0                        # seconds; stop starting trials after it
    seed = 0                               # also sampler_seed: the sampler's alone
    study_name = "my-study"                # default: derived from space, data, objectives
    storage = "sqlite:///studies/my-study.db"   # default: studies/<study_name>.db
    devices = "auto"                       # auto, cpu, cuda, cuda:N, or a list of them
    trials_per_device = "auto"             # or a positive integer
    dedup = true
    latency_batch_size = 1
    max_initial_failures = 5
    workers = 1                            # processes sharing the study on this machine
    heartbeat_interval = 60                # seconds; a dead worker's trial is retried
    artifacts = "studies/my-study.artifacts"   # diagrams, kept weights; false: none
    keep_weights = 5                       # weights of trials among the 5 best are kept

    [space]                  # required; or space = "convnet"
    name = "nb201"           # convnet, nb201, mlp, auto, or "package.module:function"
    channels = 8             # any other key: an option of the space's class

    [data]                   # required; or data = "digits"
    name = "cifar10"         # a dataset name or an image folder
    root = "data"            # torchvision's folder (search's data_dir)
    download = false
    image_size = 32          # image folders only
    val_fraction = 0.2
    test_fraction = 0.2
    split_seed = 0

    [train]
    epochs = 10
    batch_size = 128
    lr = 0.01
    optimizer = "adamw"      # adamw, sgd
    label_smoothing = 0.0
    augment = "auto"         # auto, none, crop, flip, crop+flip
    autotune = false
    precise_bn = 128         # batch norm scored on the epoch's last 128 samples; 0: EMA

    [budgets]                # any of params, flops, macs, latency
    params = 50000

    [sampler]                # or sampler = "tpe"
    name = "auto"            # auto, tpe, gp, nsga2, random, evolution, controller, or a path
    n_startup_trials = 10    # any other key: an option of the sampler's class

    [pruner]                 # or pruner = "median"
    name = "auto"            # auto, median, hyperband, sha, pareto, pareto-halving, none, a path

Example:
    >>> d = Definition.from_toml('objectives = ["accuracy"]\\nspace = "mlp"\\n'
    ...                          'data = "wine"\\n[train]\\nepochs = 3\\n', source="wine.toml")
    >>> d.search_kwargs()["epochs"], d["data"]["name"], d["sampler"]
    (3, 'wine', {'name': 'auto'})
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optnas._identity import fingerprint, qualified, space_name
from optnas._options import OptionError, is_import_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    import optuna

__all__ = ["DEFINITION_ATTR", "DEFAULT_FILE", "UNLIMITED", "Definition", "DefinitionError", "load"]

DEFINITION_ATTR = "optnas.definition"
"""The study user attr holding a study's resolved definition (a JSON object)."""
DEFAULT_FILE = Path(__file__).with_name("default.toml")
"""The default study of ``optnas search``."""

# Keys that say how to run a study, not what it is: a rerun may change them freely.
RUN_KEYS = frozenset(
    {
        "n_trials",
        "timeout",
        "devices",
        "trials_per_device",
        "max_initial_failures",
        "workers",
        "heartbeat_interval",
        "sampler_seed",
        "artifacts",
        "keep_weights",
        "storage",
        "study_name",
        "data.root",
        "data.download",
    }
)
NAMED = ("space", "sampler", "pruner")
UNLIMITED = "unlimited"
"""``n_trials`` without a limit (search's ``n_trials=None``): until ``timeout``, an
interruption, or the space within budget looks exhausted."""


class DefinitionError(ValueError):
    """A study definition is malformed: the message names the file and the key."""


_REQUIRED = object()


@dataclass(frozen=True)
class _Key:
    """One key of the format: how to check a value, its default, and the search argument."""

    check: Callable[[Any], Any]
    expected: str
    default: Any = None
    argument: str | None = None  # search()'s argument name, where it differs


TRAINED_BEFORE = {"precise_bn": 0}
"""``[train]`` keys added after studies began to record their definitions and trials their
``training`` recipes, with the value those that lack the key were trained with."""


def _whole(minimum: int | None) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value if ok and (minimum is None or value >= minimum) else _BAD

    return check


def _number(low: float, high: float = float("inf"), *, open_low: bool = True) -> Callable:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _BAD
        inside = (value > low if open_low else value >= low) and value < high
        return float(value) if inside else _BAD

    return check


def _choice(*valid: str) -> Callable[[Any], Any]:
    return lambda value: value if value in valid else _BAD


def _of_type(kind: type) -> Callable[[Any], Any]:
    return lambda value: value if isinstance(value, kind) else _BAD


def _devices(value: Any) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return _BAD


def _folder_or_false(value: Any) -> Any:
    return value if value is False or (isinstance(value, str) and value) else _BAD


def _auto_or_whole(value: Any) -> Any:
    return value if value == "auto" else _whole(1)(value)


def _unlimited_or_whole(value: Any) -> Any:
    return value if value == UNLIMITED else _whole(1)(value)


def _objectives(value: Any) -> Any:
    from optnas.search import OBJECTIVES

    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        return _BAD
    return value if all(v in OBJECTIVES for v in value) else _BAD


_BAD = object()
_POSITIVE = _number(0.0)
_FRACTION = _number(0.0, 1.0)

SCHEMA: dict[str, dict[str, _Key]] = {
    "": {
        "objectives": _Key(
            _objectives,
            "a list of distinct names among accuracy, params, flops, macs, latency",
            _REQUIRED,
        ),
        "n_trials": _Key(_unlimited_or_whole, "a whole number ≥ 1 or 'unlimited'"),
        "timeout": _Key(_POSITIVE, "a positive number of seconds"),
        "seed": _Key(_whole(None), "a whole number"),
        "sampler_seed": _Key(_whole(None), "a whole number"),
        "study_name": _Key(_of_type(str), "a string"),
        "storage": _Key(_of_type(str), "a database URL (a string)"),
        "devices": _Key(_devices, "'auto', 'cpu', 'cuda', 'cuda:N' or a list of them"),
        "trials_per_device": _Key(_auto_or_whole, "'auto' or a whole number ≥ 1"),
        "dedup": _Key(_of_type(bool), "true or false"),
        "latency_batch_size": _Key(_whole(1), "a whole number ≥ 1"),
        "max_initial_failures": _Key(_whole(1), "a whole number ≥ 1"),
        "workers": _Key(_whole(1), "a whole number ≥ 1"),
        "heartbeat_interval": _Key(_whole(1), "a whole number of seconds ≥ 1"),
        "artifacts": _Key(_folder_or_false, "a folder (a string) or false"),
        "keep_weights": _Key(_whole(0), "a whole number ≥ 0"),
    },
    "data": {
        "name": _Key(_of_type(str), "a dataset name or an image folder", _REQUIRED, "data"),
        "root": _Key(_of_type(str), "a folder (a string)", argument="data_dir"),
        "download": _Key(_of_type(bool), "true or false"),
        "image_size": _Key(_whole(1), "a whole number ≥ 1"),
        "val_fraction": _Key(_FRACTION, "a number between 0 and 1"),
        "test_fraction": _Key(_FRACTION, "a number between 0 and 1"),
        "split_seed": _Key(_whole(None), "a whole number"),
    },
    "train": {
        "epochs": _Key(_whole(1), "a whole number ≥ 1"),
        "batch_size": _Key(_whole(1), "a whole number ≥ 1"),
        "lr": _Key(_POSITIVE, "a positive number"),
        "optimizer": _Key(_choice("adamw", "sgd"), "'adamw' or 'sgd'"),
        "label_smoothing": _Key(_number(0.0, 1.0, open_low=False), "a number in [0, 1)"),
        "augment": _Key(
            _choice("auto", "none", "crop", "flip", "crop+flip"),
            "one of 'auto', 'none', 'crop', 'flip', 'crop+flip'",
        ),
        "autotune": _Key(_of_type(bool), "true or false"),
        "precise_bn": _Key(_whole(0), "a whole number ≥ 0"),
    },
    "budgets": {
        name: _Key(_POSITIVE, "a positive number")
        for name in ("params", "flops", "macs", "latency")
    },
}
_REQUIRED_SECTIONS = ("space", "data")


@dataclass(frozen=True)
class Definition:
    """A resolved study definition: every key of the format, defaults filled in.

    Read one with :func:`load` (a TOML file), :meth:`from_toml`, :meth:`from_mapping` or
    :meth:`from_study`; run it with :meth:`search`; change keys with :meth:`replace`.

    Example:
        >>> d = load(DEFAULT_FILE)
        >>> d["objectives"], d["train"]["epochs"]
        (['accuracy', 'params', 'flops'], 10)
        >>> d.replace({"train.epochs": 2})["train"]["epochs"]
        2
    """

    values: dict[str, Any]
    source: str = field(default="<definition>", compare=False)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Definition:
        """Parse and validate a study file's text; ``source`` names it in errors."""
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise DefinitionError(f"{source}: not valid TOML: {error}") from None
        return cls.from_mapping(raw, source=source)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, source: str = "<mapping>") -> Definition:
        """Validate ``raw`` (a study file's content) and fill in the defaults.

        Raises:
            DefinitionError: An unknown key, a value of the wrong type, a missing
                required value, an unknown name or option of the space, sampler or pruner,
                or an import path that does not import; the message names ``source`` and
                the key.
        """
        values = _resolve(raw, source)
        definition = cls(values, source)
        definition._check_components()
        return definition

    @classmethod
    def from_study(cls, study: optuna.Study) -> Definition:
        """The definition recorded with ``study`` by the search that created it.

        Raises:
            DefinitionError: The study holds no definition (it was not created by
                optnas, or by a version before study definitions).
        """
        recorded = study.user_attrs.get(DEFINITION_ATTR)
        if recorded is None:
            raise DefinitionError(
                f"Study {study.study_name!r} holds no optnas definition (user attr "
                f"{DEFINITION_ATTR!r}); it was not created by optnas.search."
            )
        values = json.loads(recorded)
        values["train"] = {**TRAINED_BEFORE, **values.get("train", {})}
        return cls(values, f"study {study.study_name!r}")

    def replace(self, changes: Mapping[str, Any], *, source: str | None = None) -> Definition:
        """A copy with ``changes`` applied: dotted keys (``"train.epochs"``) to values;
        a space, sampler or pruner given as a string replaces its whole table; None
        resets a key to its default. The result is validated again.

        Example:
            >>> d = load(DEFAULT_FILE).replace({"sampler": "tpe", "budgets.params": 5e4})
            >>> d["sampler"], d["budgets"]
            ({'name': 'tpe'}, {'params': 50000.0})
        """
        raw = _unresolved(self.values)
        for dotted, value in changes.items():
            section, _, key = dotted.rpartition(".")
            target = raw.setdefault(section, {}) if section else raw
            if not isinstance(target, dict):  # e.g. data = "digits" then data.root
                target = raw[section] = {"name": target}
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
        return Definition.from_mapping(raw, source=source or self.source)

    def search_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`optnas.search` that run this definition."""
        v = self.values
        kwargs: dict[str, Any] = {k: v[k] for k in SCHEMA[""]}
        kwargs["n_trials"] = None if v["n_trials"] == UNLIMITED else v["n_trials"]
        kwargs |= {"space": _named_value(v["space"]), "sampler": _named_value(v["sampler"])}
        kwargs["pruner"] = _named_value(v["pruner"])
        kwargs["budgets"] = dict(v["budgets"])
        for section in ("data", "train"):
            for key, spec in SCHEMA[section].items():
                kwargs[spec.argument or key] = v[section][key]
        for name in self.python_objects():
            if name == "data":
                raise DefinitionError(
                    f"{self.source}: the data {v['data']['name']} were given to optnas.search "
                    "as arrays or a Dataset, which cannot be rebuilt from storage."
                )
            raise DefinitionError(
                f"{self.source}: the {name} {v[name]['name']} was a Python object "
                f"given to optnas.search, which cannot be rebuilt; name a {name} instead."
            )
        return kwargs

    def python_objects(self) -> list[str]:
        """The keys among space, sampler, pruner and data that ``optnas.search`` was given
        as Python objects (recorded as ``"<...>"``), which no name rebuilds: a definition
        with any cannot be run as it is.

        Example:
            >>> load(DEFAULT_FILE).python_objects()
            []
        """
        return [
            key
            for key in ("space", "sampler", "pruner", "data")
            if str(self.values[key]["name"]).startswith("<")
        ]

    def search(self, *, fork: str | None = None, show_progress_bar: bool = False) -> optuna.Study:
        """Run this definition: :func:`optnas.search` with :meth:`search_kwargs` (and
        ``fork``: continue under that name from a copy of the study).

        Example:
            >>> d = load(DEFAULT_FILE).replace({"n_trials": 1, "train.epochs": 1,
            ...     "storage": "sqlite:///:memory:"})
            >>> len(d.search().trials) >= 1
            True
        """
        from optnas.search import search

        return search(**self.search_kwargs(), fork=fork, show_progress_bar=show_progress_bar)

    def to_json(self) -> str:
        """The definition as the JSON object recorded with a study."""
        return json.dumps(self.values)

    def to_toml(self) -> str:
        """The definition as a study file (keys at their defaults included).

        Example:
            >>> d = load(DEFAULT_FILE)
            >>> Definition.from_toml(d.to_toml()) == d
            True
        """
        return _to_toml(self.values)

    def flat(self) -> dict[str, Any]:
        """Every key as a dotted name (``"train.epochs"``, as :meth:`replace` takes them).

        Example:
            >>> load(DEFAULT_FILE).flat()["train.epochs"]
            10
        """
        return _flat(self.values)

    def with_hashes_of(self, other: Definition) -> Definition:
        """This definition with ``other``'s names of objects (``"<arrays 5f0c…>"``) where
        this one records the same objects by an older name without their hashes
        (``"<arrays>"``, or a space without the hash of the helpers it uses): a study
        recorded before names carried them resumes.

        Example:
            >>> old = load(DEFAULT_FILE).replace({"data.name": "<arrays>"})
            >>> new = old.replace({"data.name": "<arrays 0123456789>"})
            >>> old.with_hashes_of(new) == new
            True
        """
        changes, recorded, given = {}, self.flat(), other.flat()
        for key in ("space.name", "data.name"):
            mine, theirs = recorded.get(key), given.get(key)
            legacy = isinstance(mine, str) and isinstance(theirs, str) and mine != theirs
            # A space: the hash of the values it holds, of its helpers, of its own code.
            levels = 3 if key == "space.name" else 1
            if legacy and (mine in _older_names(theirs)[:levels] or _loose(mine, theirs)):
                changes[key] = theirs
        return self.replace(changes) if changes else self

    def differences(self, other: Definition) -> list[str]:
        """The keys (besides how-to-run keys such as ``n_trials``) whose values differ
        between this definition and ``other``, as ``"key: this → other"`` lines.

        Example:
            >>> d = load(DEFAULT_FILE)
            >>> d.differences(d.replace({"train.epochs": 5, "n_trials": 3}))
            ['train.epochs: 10 → 5']
        """
        mine, theirs = _flat(_with_defaults(self.values)), _flat(_with_defaults(other.values))
        return [
            f"{key}: {_show(mine.get(key))} → {_show(theirs.get(key))}"
            for key in sorted(set(mine) | set(theirs))
            if key not in RUN_KEYS and mine.get(key) != theirs.get(key)
        ]

    def _check_components(self) -> None:
        """Resolve the space, sampler and pruner once, so that a bad name, option or
        import path is reported now, with its key, and not after the data loaded."""
        from optnas import spaces
        from optnas.samplers import create as create_sampler
        from optnas.search import OBJECTIVES, create_pruner

        directions = [OBJECTIVES[o] for o in self.values["objectives"]]
        checks: dict[str, Callable[[Any], Any]] = {
            "space": lambda v: v == "auto" or spaces.get(v),
            "sampler": lambda v: create_sampler(v, directions=directions, seed=0),
            "pruner": lambda v: create_pruner(
                v, epochs=self.values["train"]["epochs"], n_objectives=len(directions)
            ),
        }
        data = self.values["data"]
        if data.get("image_size") is not None and data["name"] in _named_sets():
            raise DefinitionError(
                f"{self.source}: key 'data.image_size': it resizes the images of an image "
                f"folder, and {data['name']!r} is a named dataset; remove it."
            )
        for name, check in checks.items():
            value = _named_value(self.values[name])
            if str(self.values[name]["name"]).startswith("<"):
                continue
            try:
                check(value)
            except OptionError as error:
                key = f"{name}.{error.key}" if error.key else name
                raise DefinitionError(f"{self.source}: key {key!r}: {error}") from None
            except ValueError as error:
                raise DefinitionError(f"{self.source}: key {name!r}: {error}") from None


def load(path: str | os.PathLike[str]) -> Definition:
    """Read and validate the study file at ``path``.

    Raises:
        FileNotFoundError: No such file.
        DefinitionError: The file is malformed; the message names the file and the key.

    Example:
        >>> load(DEFAULT_FILE)["space"]
        {'name': 'auto'}
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No study file {str(path)!r}.")
    return Definition.from_toml(path.read_text(encoding="utf-8"), source=str(path))


def from_call(arguments: Mapping[str, Any], space: Callable[..., Any]) -> Definition:
    """The definition of a call of :func:`optnas.search` with ``arguments``; ``space`` is
    the resolved space (so ``"auto"`` is recorded as the space it chose). Objects given
    in Python that no name rebuilds are recorded as ``"<...>"``: shown, compared, but not
    rebuildable.
    """
    from optnas import spaces

    a = arguments
    raw: dict[str, Any] = {k: a[k] for k in SCHEMA[""] if a.get(k) is not None}
    raw["objectives"] = (
        [a["objectives"]] if isinstance(a["objectives"], str) else list(a["objectives"])
    )
    if a["n_trials"] is None:
        raw["n_trials"] = UNLIMITED
    if not isinstance(raw.get("storage"), str):
        raw.pop("storage", None)
    if not isinstance(raw.get("artifacts"), (str, os.PathLike, bool)):
        raw.pop("artifacts", None)  # an artifact store object
    elif isinstance(raw.get("artifacts"), (str, os.PathLike)):  # A worker elsewhere: the same.
        raw["artifacts"] = os.path.abspath(raw["artifacts"])
    if isinstance(raw.get("devices"), (list, tuple)):
        raw["devices"] = [str(d) for d in raw["devices"]]
    raw["space"] = spaces.options_of(space) or {"name": space_name(space)}
    raw["sampler"] = _recorded(a["sampler"])
    raw["pruner"] = _recorded(a["pruner"])
    raw["budgets"] = dict(a["budgets"] or {})
    raw["train"] = {k: a[k] for k in SCHEMA["train"]}
    raw["data"] = {"name": data_name(a["data"])}
    for key, spec in SCHEMA["data"].items():
        if key != "name" and a.get(spec.argument or key) is not None:
            raw["data"][key] = a[spec.argument or key]
    raw["data"]["root"] = os.fspath(raw["data"]["root"])
    values = _resolve(raw, "optnas.search()")
    return Definition(values, "optnas.search()")


def _recorded(value: Any) -> Any:
    if isinstance(value, (str, Mapping)):
        return value
    return {"name": f"<{qualified(value if inspect.isfunction(value) else type(value))}>"}


def data_name(data: Any) -> str:
    """A dataset's name as a study records it; data given as objects is named with a hash
    of its contents, so that other data never resumes a study searched on these (a
    Dataset's test split is left out: a search never reads it).

    Example:
        >>> import numpy as np
        >>> data_name("digits"), is_hashed(data_name((np.zeros((4, 2)), np.arange(4))))
        ('digits', True)
    """
    from optnas.data import Dataset

    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    if isinstance(data, Dataset):
        return f"<dataset {data.name} {fingerprint(data.spec, *data.train, *data.val)}>"
    return f"<arrays {fingerprint(*data)}>"


_HASHED = re.compile(r" [0-9a-f]{10}>$")  # the hash that ends an object's recorded name


def _older_names(name: str) -> list[str]:
    """The names earlier versions recorded an object by: ``name`` without its last hash,
    then without the one before (``"<m.f a b>"``: ``"<m.f a>"``, ``"<m.f>"``)."""
    older = []
    while _HASHED.search(name):
        name = _HASHED.sub(">", name)
        older.append(name)
    return older


# Names earlier versions gave every class, bound method or partial passed as a space, and
# the start of the names they get now.
_LOOSE_NAMES = {
    re.compile(r"<builtins\.type>"): "<class ",
    re.compile(r"<builtins\.method>"): "<bound method ",
    re.compile(r"<functools\.partial( [0-9a-f]{10}){0,2}>"): "<functools.partial(",
}


def _loose(recorded: str, name: str) -> bool:
    """Whether ``recorded`` is the name an earlier version gave every space of the kind
    ``name`` names: such a study resumes once, and is then recorded by ``name``."""
    loose = _LOOSE_NAMES.items()
    return any(old.fullmatch(recorded) and name.startswith(new) for old, new in loose)


def is_hashed(name: str) -> bool:
    """Whether a recorded name of an object ends with a hash of it (names recorded before
    they carried one do not).

    Example:
        >>> is_hashed("<arrays 0123456789>"), is_hashed("<arrays>")
        (True, False)
    """
    return bool(_HASHED.search(name))


def _resolve(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Check ``raw`` against :data:`SCHEMA` and fill in every default."""
    if not isinstance(raw, Mapping):
        raise DefinitionError(f"{source}: expected a table of keys, got {type(raw).__name__}.")
    valid = [*SCHEMA[""], *NAMED, *(s for s in SCHEMA if s)]
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise DefinitionError(
            f"{source}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}."
        )
    values = _section(raw, "", source)
    for name in NAMED:
        values[name] = _named(raw.get(name, "auto"), name, source, required=name == "space")
    if "space" not in raw:
        raise DefinitionError(f"{source}: missing key 'space': the search space to search.")
    for section in ("data", "train", "budgets"):
        given = raw.get(section, {})
        if section == "data":
            if "data" not in raw:
                raise DefinitionError(f"{source}: missing key 'data': the dataset to search on.")
            given = {"name": given} if isinstance(given, str) else given
        if not isinstance(given, Mapping):
            raise DefinitionError(
                f"{source}: key {section!r}: expected a table, got {_show(given)}."
            )
        values[section] = _section(given, section, source)
    return values


def _section(given: Mapping[str, Any], section: str, source: str) -> dict[str, Any]:
    schema, prefix = SCHEMA[section], f"{section}." if section else ""
    if section:
        unknown = [k for k in given if k not in schema]
        if unknown:
            raise DefinitionError(
                f"{source}: unknown key {prefix + unknown[0]!r}; valid keys in [{section}]: "
                f"{', '.join(schema)}."
            )
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        if key not in given:
            if spec.default is _REQUIRED:
                raise DefinitionError(f"{source}: missing key {prefix + key!r}: {spec.expected}.")
            if section != "budgets":
                out[key] = _search_default(spec.argument or key)
            continue
        checked = spec.check(given[key])
        if checked is _BAD:
            raise DefinitionError(
                f"{source}: key {prefix + key!r}: expected {spec.expected}, got "
                f"{_show(given[key])}."
            )
        out[key] = checked
    return out


def _named(value: Any, name: str, source: str, *, required: bool) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise DefinitionError(
            f"{source}: key {name!r}: expected a name or a table with 'name', got {_show(value)}."
        )
    if "name" not in value:
        raise DefinitionError(f"{source}: missing key '{name}.name': the {name} to use.")
    if not isinstance(value["name"], str):
        raise DefinitionError(
            f"{source}: key '{name}.name': expected a string, got {_show(value['name'])}."
        )
    known = _known_names(name)
    if not (value["name"] in known or is_import_path(value["name"]) or value["name"][:1] == "<"):
        raise DefinitionError(
            f"{source}: key '{name}.name': unknown {name} {value['name']!r}; valid names: "
            f"{', '.join(known)}, or an import path 'package.module:attribute'."
        )
    return copy.deepcopy(dict(value))


def _named_sets() -> tuple[str, ...]:
    from optnas.data import DATASETS

    return tuple(DATASETS)


def _known_names(name: str) -> tuple[str, ...]:
    from optnas.samplers import SAMPLERS
    from optnas.search import PRUNERS
    from optnas.spaces import SPACES

    return {"space": ("auto", *SPACES), "sampler": SAMPLERS, "pruner": PRUNERS}[name]


def _named_value(value: Mapping[str, Any]) -> str | dict[str, Any]:
    """A name alone where there are no options, as search() documents it."""
    return value["name"] if set(value) == {"name"} else dict(value)


def _search_default(argument: str) -> Any:
    from optnas.search import search

    return inspect.signature(search).parameters[argument].default


def _with_defaults(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with the built-in sampler's and pruner's options filled in from their
    defaults, so that an option spelt out at its default changes nothing."""
    from optnas.samplers._create import _FACTORIES
    from optnas.search import _pruner_factory

    filled = dict(values)
    for kind in ("sampler", "pruner"):
        named = dict(values[kind])
        name = named["name"]
        try:
            if kind == "sampler" and name in _FACTORIES:
                defaults = _defaults(_FACTORIES[name])
            elif kind == "pruner" and name in _known_names("pruner") and name != "auto":
                factory, given = _pruner_factory(name, values["train"]["epochs"])
                defaults = _defaults(factory) | given
            else:
                continue
        except (ValueError, TypeError):
            continue
        chosen = {k: v for k, v in defaults.items() if k not in _SET_BY_SEARCH}
        filled[kind] = chosen | named
    return filled


# Sampler options whose value search() chooses (not the class's default): a study that
# spells one out records a choice of its own.
_SET_BY_SEARCH = ("seed", "constant_liar", "n_exact", "costs", "key", "independent_sampler")


def _defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``factory`` (a class: of its constructor) that are plain
    values (None, numbers, strings, tuples), as a study file would spell them."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    plain = (type(None), bool, int, float, str, tuple, list)
    return {
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(target).parameters.items()
        if p.default is not inspect.Parameter.empty and isinstance(p.default, plain)
    }


def _unresolved(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as a study file would give them (None dropped), to re-resolve."""
    raw: dict[str, Any] = {}
    for key, value in copy.deepcopy(dict(values)).items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        if value is not None:
            raw[key] = value
    return raw


def _flat(values: Mapping[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            flat |= {f"{key}.{k}": v for k, v in value.items()}
        else:
            flat[key] = value
    return flat


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)


def _to_toml(values: Mapping[str, Any]) -> str:
    top = [f"{k} = {_toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    lines = [line for line in top if not line.endswith("= None")]
    for section, table in values.items():
        if isinstance(table, dict) and table:
            rows = [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
            lines += ["", f"[{section}]", *rows]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # Not ASCII-escaped: JSON writes a character beyond U+FFFF as two surrogate escapes,
        # which TOML refuses. DEL, which TOML refuses raw, is escaped.
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
        )
    raise TypeError(f"Cannot write {value!r} to TOML.")
