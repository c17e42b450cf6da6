"""Where a study's files live: Optuna artifacts for diagrams and weights.

A search with an artifact store uploads, per trial, through Optuna's artifact API:

* ``architecture.svg``: a diagram of the network (see :mod:`optnas.diagram`), for every trial
  whose network was built and measured, so optuna-dashboard shows it on the trial's page;
* ``weights.pt``: the trained ``state_dict`` (CPU tensors, ``torch.save``; load with
  ``weights_only=True``) of a completed trial that is among the ``keep_weights`` best
  completed trials when it ends: by value with one objective; with several, by Pareto rank
  (non-dominated sorting), ties broken by the first objective. Optuna cannot drop an
  artifact from a finished trial, so weights once kept stay: a study of ``n`` trials in
  random order keeps about ``k * (1 + ln(n / k))`` weight files.

The store is a :class:`optuna.artifacts.FileSystemArtifactStore` folder. By default it lies
beside the study's SQLite file (``studies/NAME.db`` → ``studies/NAME.artifacts/``); other
storages need an explicit folder. The folder is recorded in the study's user attr
``"optnas.artifacts"``, so that ``optnas dashboard``, ``export`` and ``load_model`` find it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta

__all__ = [
    "DIAGRAM",
    "FOLDER_ATTR",
    "WEIGHTS",
    "copy_from",
    "default_folder",
    "find",
    "keeps_weights",
    "open_store",
    "read",
    "state_bytes",
    "upload",
]

FOLDER_ATTR = "optnas.artifacts"
"""Study user attr holding the artifact folder (an absolute path)."""
DIAGRAM = "architecture.svg"
WEIGHTS = "weights.pt"
RETRAINED = "retrained-trial{}.pt"
"""The study artifact holding trial N's weights as :func:`optnas.retrain.retrain` left them."""


def default_folder(storage: Any) -> Path | None:
    """The artifact folder beside an SQLite file, or None for other storages.

    Example:
        >>> default_folder("sqlite:///studies/digits.db").as_posix()
        'studies/digits.artifacts'
        >>> default_folder("sqlite:///:memory:") is None, default_folder("journal:x.log") is None
        (True, True)
    """
    url = storage if isinstance(storage, str) else getattr(storage, "url", None)
    if not isinstance(url, str) or url.startswith("journal:"):
        return None
    if "://" not in url:
        url = f"sqlite:///{url}"
    if not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url[len("sqlite:///") :]).with_suffix(".artifacts")


def create_store(study: optuna.Study, folder: str | os.PathLike[str]) -> FileSystemArtifactStore:
    """A store in ``folder`` (created), recorded with ``study``."""
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if study.user_attrs.get(FOLDER_ATTR) != str(path):
        study.set_user_attr(FOLDER_ATTR, str(path))
    return FileSystemArtifactStore(path)


def open_store(
    study: optuna.Study,
    artifacts: str | os.PathLike[str] | None = None,
    *,
    storage: Any = None,
) -> FileSystemArtifactStore:
    """The artifact store of ``study``, for reading.

    Looks in ``artifacts`` if given, else in the folder recorded with the study, else beside
    the study's SQLite file (``storage``).

    Raises:
        FileNotFoundError: No such folder; the message says where it looked.
    """
    tried = (
        [Path(artifacts)]
        if artifacts is not None
        else [Path(p) for p in (study.user_attrs.get(FOLDER_ATTR), default_folder(storage)) if p]
    )
    for folder in tried:
        if folder.is_dir():
            return FileSystemArtifactStore(folder)
    where = ", ".join(str(f) for f in tried) or "none recorded with the study"
    raise FileNotFoundError(
        f"No artifact store for study {study.study_name!r} (looked in: {where}). Searches "
        "write one beside their SQLite file, or where search(artifacts=...) / --artifacts "
        "says; pass that folder as artifacts= / --artifacts."
    )


def upload(
    store: Any,
    study_or_trial: optuna.Trial | optuna.Study,
    filename: str,
    data: bytes,
    *,
    mimetype: str | None = None,
) -> str:
    """Upload ``data`` as the artifact ``filename`` of a running trial or a study; its id.
    Without ``mimetype``, one guessed from the name, except for ``.pt`` files (torch's, not
    the SNES page tables the system's table names): ``application/octet-stream``."""
    if mimetype is None and filename.endswith(".pt"):
        mimetype = "application/octet-stream"
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, filename)
        with open(path, "wb") as f:
            f.write(data)
        return optuna.artifacts.upload_artifact(
            artifact_store=store, file_path=path, study_or_trial=study_or_trial, mimetype=mimetype
        )


def state_bytes(model: Any) -> bytes:
    """``model``'s state dict on the CPU, as ``torch.save`` bytes."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def find(
    study: optuna.Study, trial: optuna.trial.FrozenTrial, filename: str
) -> optuna.artifacts.ArtifactMeta | None:
    """The newest artifact of ``trial`` named ``filename``, or None."""
    named = [m for m in _metas(study, trial) if m.filename == filename]
    return named[-1] if named else None


def find_retrained(study: optuna.Study, number: int) -> optuna.artifacts.ArtifactMeta | None:
    """The newest retrained weights of trial ``number`` (a study artifact), or None."""
    named = [m for m in get_all_artifact_meta(study) if m.filename == RETRAINED.format(number)]
    return named[-1] if named else None


def _metas(
    study: optuna.Study, trial: optuna.trial.FrozenTrial
) -> list[optuna.artifacts.ArtifactMeta]:
    # Optuna has no public accessor of a study's storage; this is the one place read.
    return get_all_artifact_meta(trial, storage=study._storage)


def copy_from(study: optuna.Study, folder: str | os.PathLike[str], store: Any) -> None:
    """Copy the artifacts of ``study`` and its trials from the store in ``folder`` into
    ``store``: a fork's trials, copied from another study, keep their diagrams and weights.
    """
    if not Path(folder).is_dir():
        return
    source = FileSystemArtifactStore(folder)
    metas = get_all_artifact_meta(study)
    for trial in study.get_trials(deepcopy=False):
        metas += _metas(study, trial)
    for meta in metas:
        try:
            with source.open_reader(meta.artifact_id) as reader:
                store.write(meta.artifact_id, reader)
        except optuna.artifacts.exceptions.ArtifactNotFound:
            continue  # Gone from the source too: nothing to keep.


def read(store: Any, meta: optuna.artifacts.ArtifactMeta) -> bytes:
    """The bytes of the artifact ``meta``.

    Raises:
        FileNotFoundError: The study records the artifact, but ``store`` does not hold it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, meta.filename)
        try:
            download_artifact(artifact_store=store, file_path=path, artifact_id=meta.artifact_id)
        except optuna.artifacts.exceptions.ArtifactNotFound:
            where = getattr(store, "_base_path", None)
            raise FileNotFoundError(
                f"{meta.filename} (artifact {meta.artifact_id}) is recorded with the study "
                f"but missing from its artifact store{f' in {where}' if where else ''}; "
                "if it was kept elsewhere, pass that folder (--artifacts / artifacts=)."
            ) from None
        with open(path, "rb") as f:
            return f.read()


def keeps_weights(study: optuna.Study, values: Sequence[float], k: int) -> bool:
    """Whether a trial ending with ``values`` is among the ``k`` best completed trials.

    With one objective, by value; with several, by Pareto rank, ties broken by the first
    objective. The trial itself is not yet complete and is counted in.

    Example:
        >>> import optuna
        >>> study = optuna.create_study(directions=["maximize", "minimize"])
        >>> for v in ([0.9, 100], [0.8, 50], [0.7, 200]):
        ...     study.add_trial(optuna.trial.create_trial(values=v))
        >>> keeps_weights(study, [0.95, 10], 1), keeps_weights(study, [0.6, 300], 3)
        (True, False)
    """
    if k < 1:
        return False
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    signs = np.array([-1.0 if d.name == "MAXIMIZE" else 1.0 for d in study.directions])
    losses = np.array([*(t.values for t in done), list(values)], dtype=float) * signs
    if len(losses) <= k:
        return True
    from optnas.samplers._base import pareto_ranks

    ranks = pareto_ranks(losses) if losses.shape[1] > 1 else np.zeros(len(losses))
    order = np.lexsort((losses[:, 0], ranks))  # last key sorts first
    return bool(len(losses) - 1 in order[:k])
