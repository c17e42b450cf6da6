"""Rebuild a trial's network, load its weights, export it (JSON, weights, ONNX, TorchScript).

A trial's network is rebuilt by calling its search space with the trial's parameters
(``space(optuna.trial.FixedTrial(trial.params), spec)``); its trained weights are the
``weights.pt`` artifact that the search kept (see :mod:`optnas.artifacts`).
"""

from __future__ import annotations

import functools
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import optuna

from optnas import artifacts

if TYPE_CHECKING:
    import torch

    from optnas.data import Dataset, DataSpec

__all__ = ["FORMATS", "export", "load_model", "trial_of"]

FormatName = Literal["json", "weights", "onnx", "torchscript"]
FORMATS: tuple[FormatName, ...] = ("json", "weights", "onnx", "torchscript")
"""What :func:`export` writes: ``architecture.json``, ``weights.pt``, ``model.onnx``,
``model.torchscript.pt``."""
_FILES = {
    "json": "architecture.json",
    "weights": "weights.pt",
    "onnx": "model.onnx",
    "torchscript": "model.torchscript.pt",
}


def load_model(
    study: optuna.Study,
    trial: int | optuna.trial.FrozenTrial,
    *,
    space: str | Callable[..., Any] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    weights: bool = True,
) -> torch.nn.Module:
    """The network of ``trial``, with the weights the search kept, in eval mode.

    Args:
        study: The study the trial belongs to.
        trial: A trial number, or a trial of ``study``.
        space: The search space, for a space of your own (a built-in space is known from
            the study).
        artifacts: The artifact folder, when not where the search recorded it.
        weights: Load the trained weights; False rebuilds the network untrained.

    Raises:
        ValueError: No such trial, or the space is unknown.
        FileNotFoundError: No artifact store, or the trial has no saved weights (the message
            says how to get them).

    Example:
        >>> import optnas, torch
        >>> study = optnas.search("convnet", "digits", ("accuracy",), n_trials=1, epochs=1,
        ...                       storage="sqlite:///:memory:", artifacts=False)
        >>> model = optnas.load_model(study, 0, weights=False)
        >>> model(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    frozen = trial_of(study, trial)
    space_fn, spec, _ = _space_and_data(study, space=space)
    model = build(space_fn, frozen, spec)
    if weights:
        model.load_state_dict(_weights(study, frozen, artifacts)[0])
    return model.eval()


def export(
    study: optuna.Study,
    trial: int | optuna.trial.FrozenTrial,
    out_dir: str | os.PathLike[str],
    *,
    space: str | Callable[..., Any] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
    formats: Sequence[FormatName] = FORMATS,
) -> dict[str, Path]:
    """Write ``trial``'s network to ``out_dir``: its architecture and its trained weights.

    * ``architecture.json``: the space, the trial's parameters and their distributions, the
      input shape and classes: enough to rebuild the network with
      ``space(optuna.trial.FixedTrial(params), DataSpec(input_shape, num_classes))``;
      also its architecture string, state, values and costs, where its weights come from
      (the search, or a retraining on train + validation) and its retrainings' test
      accuracies, the inputs' standardization (``inputs``: ``mean``, ``std``) and the
      classes' original labels (``classes``, output index ``k`` is ``classes[k]``);
    * ``weights.pt``: its ``state_dict`` (load with ``torch.load(..., weights_only=True)``),
      for the network as :func:`load_model` returns it, which takes standardized inputs
      (as a :class:`optnas.data.Dataset`'s splits hold them);
    * ``model.onnx``: ONNX (``torch.onnx.export``, dynamo exporter, batch size free) and
    * ``model.torchscript.pt``: TorchScript, traced (``torch.jit.load``): both take inputs
      as the data was read (digits' pixel values 0 to 16, torchvision's and image folders'
      0 to 255, your arrays as given) and standardize them first, where the study
      recorded how (searches from this version on).

    Args:
        study: The study the trial belongs to.
        trial: A trial number, or a trial of ``study``.
        out_dir: The folder to write to (created).
        space: The search space, for a space of your own.
        artifacts: The artifact folder, when not where the search recorded it.
        formats: Which of :data:`FORMATS` to write.

    Returns:
        The written files by format.

    Example:
        >>> import optnas
        >>> study = optnas.search("convnet", "digits", n_trials=1)  # doctest: +SKIP
        >>> files = optnas.export.export(study, 0, "exported")  # doctest: +SKIP
        >>> sorted(f.name for f in files.values())  # doctest: +SKIP
        ['architecture.json', 'model.onnx', 'model.torchscript.pt', 'weights.pt']
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"Unknown format {unknown[:1] or formats}; valid: {', '.join(FORMATS)}.")
    if "onnx" in formats:  # Before any file is written: none half done.
        _require("onnxscript", "ONNX export")
    frozen = trial_of(study, trial)
    space_fn, spec, _ = _space_and_data(study, space=space)
    model = build(space_fn, frozen, spec)
    source = None
    if set(formats) - {"json"}:
        state, source = _weights(study, frozen, artifacts)
        model.load_state_dict(state)
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(study)
    written = {}
    for name in formats:
        path = out / _FILES[name]
        _WRITERS[name](path, model=model, study=study, trial=frozen, space=space_fn, spec=spec,
                       inputs=inputs, source=source)  # fmt: skip
        written[name] = path
    return written


def trial_of(
    study: optuna.Study, trial: int | optuna.trial.FrozenTrial
) -> optuna.trial.FrozenTrial:
    """The trial of ``study`` numbered ``trial`` (or ``trial`` itself).

    Raises:
        ValueError: The study has no such trial.
    """
    if isinstance(trial, optuna.trial.FrozenTrial):
        return trial
    trials = study.get_trials(deepcopy=False)
    if isinstance(trial, bool) or not isinstance(trial, int) or not 0 <= trial < len(trials):
        span = f"0..{len(trials) - 1}" if trials else "none"
        raise ValueError(
            f"Study {study.study_name!r} has no trial {trial!r}; its trial numbers: {span}."
        )
    return trials[trial]


def build(
    space: Callable[..., Any], trial: optuna.trial.FrozenTrial, spec: DataSpec
) -> torch.nn.Module:
    """``trial``'s network, untrained: the space called with the trial's parameters.

    Raises:
        ValueError: The trial has no parameters, or the space raised for them (the message
            says how the trial ended in the search).
    """
    if not trial.params:
        raise ValueError(
            f"Trial {trial.number} has no parameters (state {trial.state.name}), so there is "
            "no network to rebuild."
        )
    try:
        return space(optuna.trial.FixedTrial(trial.params), spec)
    except Exception as error:  # The space's own error, with which trial and how it ended.
        reason = trial.user_attrs.get("fail_reason")
        searched = f"; in the search it failed with {reason}" if reason else ""
        raise ValueError(
            f"Trial {trial.number} ({trial.state.name}) cannot be rebuilt: its space raised "
            f"{type(error).__name__}: {error}{searched}"
        ) from error


# ---------------------------------------------------------------------------------------
# Where the space and the data come from


def _space_and_data(
    study: optuna.Study,
    *,
    space: str | Callable[..., Any] | None = None,
    data: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> tuple[Callable[..., Any], DataSpec, Callable[[], Dataset]]:
    """The study's space, data spec, and a loader of its dataset.

    Read from the definition the search recorded with the study (see
    :class:`optnas.definition.Definition`); ``space`` and ``data`` override it, for a
    space or data given to the search as Python objects, which no definition rebuilds;
    ``data_dir``, the folder torchvision's sets were read from.
    """
    from optnas import spaces
    from optnas.data import DATASETS, DataSpec, load
    from optnas.definition import DEFINITION_ATTR, Definition
    from optnas.search import SPEC_ATTR

    recorded = Definition.from_study(study).values if DEFINITION_ATTR in study.user_attrs else None
    if space is None:
        space = recorded["space"] if recorded else None
        if space is None or str(space["name"]).startswith("<"):
            raise ValueError(
                f"Study {study.study_name!r} was searched in a space given as a Python "
                "object (or not by optnas.search), so it cannot be rebuilt from storage: "
                "pass space= (your space(trial, spec) function); from the command line, "
                "search with a space in a module, by import path (--space module:function)."
            )
    space_fn = spaces.get(space)

    given = dict(recorded["data"]) if recorded else {"name": "<unknown>"}
    name, root = given.pop("name"), given.pop("root", "data")
    root = root if data_dir is None else os.fspath(data_dir)
    spec = study.user_attrs.get(SPEC_ATTR)
    searched = None if spec is None else DataSpec(tuple(spec["input_shape"]), spec["num_classes"])

    @functools.cache  # A retraining asks for it twice: load (and hash) it once.
    def load_data() -> Dataset:
        if data is None and str(name).startswith("<"):
            raise ValueError(
                f"Study {study.study_name!r} was searched on data given as arrays or a "
                "Dataset, which are not recorded with it: pass the same data as data= "
                "(from Python: optnas.retrain.retrain, optnas.export.export)."
            )
        folder = not str(name).startswith("<") and name not in DATASETS  # recorded path
        if data is None and folder and not os.path.isdir(name):
            raise FileNotFoundError(
                f"Study {study.study_name!r} was searched on the image folder {name}, which "
                "is not there any more: pass the folder where it is now as data= (from the "
                "command line, --data)."
            )
        if data is not None:
            _check_same_data(study, name, data)
        # The search's split settings too: another split would put searched samples in test.
        dataset = load(name if data is None else data, data_dir=root, **given)
        if searched is not None and dataset.spec != searched:
            raise ValueError(
                f"The data ({'data=' if data is not None else name}) now has samples of "
                f"shape {dataset.spec.input_shape} in {dataset.spec.num_classes} classes, "
                f"but study {study.study_name!r} was searched on {searched.input_shape} in "
                f"{searched.num_classes}."
            )
        return dataset

    if searched is not None and data is None:
        return space_fn, searched, load_data
    return space_fn, load_data().spec, load_data


def _check_same_data(study: optuna.Study, recorded: str, data: Any) -> None:
    """Refuse ``data`` other than what ``study`` was searched on (as a resume does): a
    retraining scored on it would be recorded with the study. Names recorded before they
    carried a hash (``"<arrays>"``) cannot be checked; the data's shape still is."""
    from optnas.data import Dataset
    from optnas.definition import data_name, is_hashed

    if str(recorded).startswith("<") and not is_hashed(recorded):
        return
    if isinstance(data, Dataset) and not str(recorded).startswith("<"):
        raise ValueError(
            f"Study {study.study_name!r} was searched on {recorded!r}, which retrain and "
            "export load themselves, split as the search split it; a Dataset given as data= "
            "may hold other splits (its test samples the search's training ones). Leave "
            "data= out (data_dir= / --data-dir points at where the files are now)."
        )
    given = data_name(data)
    same = given == recorded
    if isinstance(data, (str, os.PathLike)) and os.path.isdir(data):
        # The same folder by another path, or the folder moved (its shape and classes are
        # still checked).
        same = not os.path.isdir(recorded) or os.path.samefile(data, recorded)
    if not same:
        raise ValueError(
            f"data= ({given}) is not the data study {study.study_name!r} was searched on "
            f"({recorded}); a result on other data would be recorded with the study as its "
            "own. Pass the same data (the search's split settings are applied to it)."
        )


# ---------------------------------------------------------------------------------------
# Weights


def _weights(
    study: optuna.Study,
    trial: optuna.trial.FrozenTrial,
    folder: str | os.PathLike[str] | None,
) -> tuple[dict[str, Any], str]:
    """The weights the search kept for ``trial``, else those its last retraining left;
    and which of the two they are."""
    import torch

    meta, source = artifacts.find(study, trial, artifacts.WEIGHTS), "search"
    if meta is None:
        meta, source = artifacts.find_retrained(study, trial.number), "retrained"
    if meta is None:
        raise FileNotFoundError(_no_weights(study, trial, folder))
    store = artifacts.open_store(study, folder)
    data = artifacts.read(store, meta)
    return torch.load(io.BytesIO(data), weights_only=True), source


def _no_weights(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, folder: str | os.PathLike[str] | None
) -> str:
    """Why ``trial`` has no weights, and how to get them."""
    head = f"Trial {trial.number} of study {study.study_name!r} has no saved weights"
    untrained = "; or rebuild it untrained with load_model(..., weights=False)."
    original = trial.user_attrs.get("duplicate_of")
    if original is not None:
        return (
            f"{head}: it was not trained, being a duplicate of trial {original}, which "
            f"trained the same network with the same recipe; use trial {original} "
            f"(`--trial {original}`){untrained}"
        )
    if folder is None and artifacts.FOLDER_ATTR not in study.user_attrs:
        return (
            f"{head}: the study has no artifact store, where weights are kept (it was "
            "searched with artifacts=False / --no-artifacts, or on a storage other than an "
            "SQLite file without artifacts= / --artifacts). Retrain it with an artifact "
            f"folder: `optnas retrain --trial {trial.number} --artifacts DIR`, then export "
            f"with the same --artifacts{untrained}"
        )
    kept = [t.number for t in study.get_trials(deepcopy=False) if _has_weights(study, t)]
    return (
        f"{head}: a search keeps those of its keep_weights best completed trials (this "
        f"study: trials {kept or 'none'}). Retrain it (`optnas retrain --trial "
        f"{trial.number}`: train+validation, its weights are then exported), or search "
        f"with a larger keep_weights / --keep-weights{untrained}"
    )


def _has_weights(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    return artifacts.find(study, trial, artifacts.WEIGHTS) is not None


# ---------------------------------------------------------------------------------------
# Writers


_SOURCES = {
    "search": "kept by the search (trained on the training split)",
    "retrained": "its last retraining's (train + validation; optnas retrain)",
}


def _write_json(path: Path, *, study: optuna.Study, trial: Any, space: Any, spec: Any,
                inputs: Mapping[str, Any], source: str | None, **_: Any) -> None:  # fmt: skip
    from optnas import spaces
    from optnas.retrain import runs_of

    name = spaces.name_of(space)
    builtin = spaces.SPACES.get(name) is space
    attrs = trial.user_attrs
    record = {
        "study": study.study_name,
        "trial": trial.number,
        "space": name if builtin else f"{space.__module__}:{getattr(space, '__qualname__', name)}",
        "params": trial.params,
        "distributions": {
            k: json.loads(optuna.distributions.distribution_to_json(d))
            for k, d in trial.distributions.items()
        },
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "classes": inputs.get("classes"),
        "inputs": {
            "mean": inputs.get("mean"),
            "std": inputs.get("std"),
            "note": "weights.pt's network takes standardized inputs, (x - mean) / std per "
            "channel of images or per feature; model.onnx and model.torchscript.pt take "
            "inputs as the data was read and standardize them themselves"
            if inputs.get("mean") is not None
            else "not recorded: every file takes inputs as the search's Dataset held them",
        },
        "arch": attrs.get("arch"),
        "state": trial.state.name,
        "values": dict(zip(study.metric_names or [], trial.values or [], strict=False))
        or trial.values,
        "costs": {k: attrs[k] for k in ("params", "flops", "macs", "latency") if k in attrs},
        "training": attrs.get("training"),
        "weights": _SOURCES.get(source or "", "not exported"),
        "retrained": runs_of(study.user_attrs, trial.number),
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _write_weights(path: Path, *, model: Any, **_: Any) -> None:
    import torch

    torch.save(model.state_dict(), path)


def _write_onnx(path: Path, *, model: Any, spec: Any, inputs: Mapping[str, Any],
                **_: Any) -> None:  # fmt: skip
    import torch

    x = torch.zeros((2, *spec.input_shape))
    torch.onnx.export(
        _taking_inputs_as_read(model, spec, inputs),
        (x,),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        external_data=False,  # one file
        verbose=False,
        dynamo=True,
    )


def _write_torchscript(path: Path, *, model: Any, spec: Any, inputs: Mapping[str, Any],
                       **_: Any) -> None:  # fmt: skip
    import torch

    with warnings.catch_warnings():
        # TorchScript is deprecated in recent PyTorch, but still what many runtimes load.
        warnings.simplefilter("ignore", FutureWarning)
        raw = _taking_inputs_as_read(model, spec, inputs)
        traced = torch.jit.trace(raw, torch.zeros((2, *spec.input_shape)))
        torch.jit.save(traced, str(path))


def _inputs(study: optuna.Study) -> dict[str, Any]:
    """The standardization and class labels the search recorded (none before they were)."""
    from optnas.search import INPUTS_ATTR
    from optnas.storage import long_user_attr

    return dict(long_user_attr(study.user_attrs, INPUTS_ATTR) or {})


def _taking_inputs_as_read(
    model: torch.nn.Module, spec: DataSpec, inputs: Mapping[str, Any]
) -> torch.nn.Module:
    """``model`` behind the standardization its inputs had in the search, where known."""
    import torch

    if inputs.get("mean") is None:
        return model
    shape = (1, -1, 1, 1) if spec.is_image else (1, *spec.input_shape)
    mean = torch.tensor(inputs["mean"]).reshape(shape)
    std = torch.tensor(inputs["std"]).reshape(shape)

    class Standardized(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = model
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.network((x - self.mean) / self.std)

    return Standardized().eval()


_WRITERS: dict[str, Callable[..., None]] = {
    "json": _write_json,
    "weights": _write_weights,
    "onnx": _write_onnx,
    "torchscript": _write_torchscript,
}


def _require(module: str, purpose: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"{purpose} needs the package {module!r}: pip install 'optnas[export]'."
        )
