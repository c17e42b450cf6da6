"""Retrain a chosen architecture from scratch on train + validation; score it on test.

This is the only place optnas reads a dataset's test split: a search selects on the
validation split, and the architecture it chose is then trained anew on both the training
and the validation split, with the trial's own recipe, and scored once on the test split.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna

__all__ = ["RetrainResult", "retrain", "runs_of"]

RESULT_ATTR = "optnas.retrain.trial{}"
"""Study user attr, per trial number, holding the list of that trial's retrainings."""


def runs_of(study_attrs: Mapping[str, Any], number: int) -> list[dict[str, Any]]:
    """The retrainings of trial ``number`` recorded in a study's user attrs, oldest first
    (each a :class:`RetrainResult` as a dict).

    Example:
        >>> runs_of({"optnas.retrain.trial3": [{"test_accuracy": 0.9}]}, 3)
        [{'test_accuracy': 0.9}]
        >>> runs_of({}, 3)
        []
    """
    return list(study_attrs.get(RESULT_ATTR.format(number), []))


@dataclass(frozen=True)
class RetrainResult:
    """One retraining of a trial's architecture.

    Attributes:
        trial: The trial's number.
        test_accuracy: Accuracy on the test split after the last epoch.
        train_accuracy: Accuracy on the training data (train + validation) after it.
        epochs: Epochs trained.
        seconds: Wall time of the training and the test.
        train_samples: Samples trained on (train + validation).
        test_samples: Samples in the test split.
        seed: Seed of the initialization and the batch order.
        training: The recipe (batch size, learning rate, optimizer, smoothing, augmentation).
    """

    trial: int
    test_accuracy: float
    train_accuracy: float
    epochs: int
    seconds: float
    train_samples: int
    test_samples: int
    seed: int
    training: dict[str, Any]


def retrain(
    study: optuna.Study,
    trial: int | optuna.trial.FrozenTrial,
    *,
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    space: str | Callable[..., Any] | None = None,
    data: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
    artifacts: str | os.PathLike[str] | None = None,
) -> RetrainResult:
    """Train ``trial``'s architecture from scratch on train + validation; test it.

    The network is rebuilt from the trial's parameters and trained with the trial's recipe
    (``training`` user attr: batch size, learning rate, optimizer, label smoothing,
    augmentation; for a trial never trained, being over budget, the study's) on the
    training and validation splits together, then scored on the test split. The result
    is recorded with the study (user attr ``"optnas.retrain.trialN"``, a list of runs:
    Optuna does not let a finished trial's attrs change) and its weights are uploaded as a
    study artifact ``retrained-trialN.pt`` when the study has an artifact store (else a
    warning says they were not kept); :func:`optnas.export.export` and
    :func:`optnas.load_model` use them for a trial whose search kept none.

    Args:
        study: The study the trial belongs to.
        trial: A trial number, or a trial of ``study``.
        epochs: Epochs to train; by default the trial's own.
        seed: Seeds the initialization and the batch order.
        device: ``"auto"`` (a GPU if there is one), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        space: The search space, for a space of your own.
        data: The dataset, for data given as arrays or a Dataset to the search (the same
            data: other data is refused); for a search on an image folder, the folder where
            it has moved.
        data_dir: The folder holding torchvision's sets, where not the search's.
        artifacts: The artifact folder, when not where the search recorded it.

    Raises:
        ValueError: No such trial, or its space or data is unknown.

    Example:
        >>> import optnas
        >>> study = optnas.search("convnet", "digits", n_trials=1)  # doctest: +SKIP
        >>> result = optnas.retrain.retrain(study, 0, epochs=20)  # doctest: +SKIP
        >>> result.train_samples, result.test_samples  # doctest: +SKIP
        (1437, 360)
    """
    import torch

    from optnas.export import _space_and_data, build, trial_of
    from optnas.search import resolve_devices
    from optnas.train import evaluate, fit

    frozen = trial_of(study, trial)
    space_fn, spec, load_data = _space_and_data(study, space=space, data=data, data_dir=data_dir)
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be positive, but got {epochs}.")
    dataset = load_data()
    dataset.check_test()
    recipe = _recipe(study, frozen, epochs, dataset.augment)
    train = tuple(torch.cat(pair) for pair in zip(dataset.train, dataset.val, strict=True))
    target = resolve_devices(device)[0]
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[target] if target.type == "cuda" else []):
        torch.manual_seed(seed)
        model = build(space_fn, frozen, spec)
        # The training data doubles as fit()'s per-epoch check: no test split in the loop.
        result = fit(model, train, train, device=target, seed=seed, **recipe)
    test_accuracy = evaluate(model, dataset.test)
    outcome = RetrainResult(
        trial=frozen.number,
        test_accuracy=round(test_accuracy, 6),
        train_accuracy=round(result.accuracy, 6),
        epochs=recipe["epochs"],
        seconds=round(time.perf_counter() - start, 3),
        train_samples=len(train[0]),
        test_samples=len(dataset.test[0]),
        seed=seed,
        training={k: v for k, v in recipe.items() if k != "epochs"},
    )
    _record(study, outcome, model, artifacts)
    return outcome


def _recipe(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, epochs: int | None, augment: str
) -> dict[str, Any]:
    """The trial's recipe; for a trial never trained (over budget), the study's."""
    from optnas.definition import Definition, DefinitionError
    from optnas.objective import _NOT_RECIPE, recipe_of

    recipe = recipe_of(trial)
    if recipe is None:
        try:
            recipe = dict(Definition.from_study(study)["train"])
        except DefinitionError:  # A study not created by optnas.search: fit()'s defaults.
            recipe = {}
        recipe = {k: v for k, v in recipe.items() if k not in _NOT_RECIPE}
        if recipe.get("augment") == "auto":
            recipe["augment"] = augment
    if epochs is not None:
        recipe["epochs"] = epochs
    recipe.setdefault("epochs", 10)
    return recipe


def _record(
    study: optuna.Study,
    outcome: RetrainResult,
    model: Any,
    folder: str | os.PathLike[str] | None,
) -> None:
    runs = runs_of(study.user_attrs, outcome.trial)
    study.set_user_attr(RESULT_ATTR.format(outcome.trial), [*runs, asdict(outcome)])
    from optnas import artifacts

    try:
        store = _open(study, folder)
    except FileNotFoundError:
        optuna.logging.get_logger("optnas").warning(
            f"Study {study.study_name!r} has no artifact store, so the retrained weights of "
            f"trial {outcome.trial} were not kept (its result was recorded); pass "
            "artifacts= (CLI: --artifacts DIR) to keep them."
        )
        return
    name = artifacts.RETRAINED.format(outcome.trial)
    artifacts.upload(store, study, name, artifacts.state_bytes(model))


def _open(study: optuna.Study, folder: str | os.PathLike[str] | None) -> Any:
    from optnas import artifacts

    if folder is None and artifacts.FOLDER_ATTR not in study.user_attrs:
        raise FileNotFoundError
    return artifacts.open_store(study, folder)
