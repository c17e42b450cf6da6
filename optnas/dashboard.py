"""``optnas dashboard``: optuna-dashboard on a study database, with its artifact store."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import optuna

__all__ = ["artifact_folder", "dashboard"]


def dashboard(
    storage: str,
    *,
    artifacts: str | os.PathLike[str] | None = None,
    study_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> None:
    """Serve optuna-dashboard for ``storage`` until interrupted.

    The dashboard shows every study in the storage; with the artifact store, each trial's
    page shows its architecture diagram and lists its kept weights.

    Args:
        storage: A database URL (or an SQLite file's path).
        artifacts: The artifact folder; by default the one study ``study_name`` recorded
            (else any study in the storage), else the folder beside the SQLite file.
        study_name: The study whose artifacts to serve, where studies of the storage
            keep theirs in different folders.
        host: The address to bind; the default serves this machine only.
        port: The port.

    Raises:
        StorageError: The storage cannot be opened, or holds no study ``study_name``.
        OSError: The port is taken.

    Example:
        >>> dashboard("sqlite:///studies/convnet-digits-accuracy-params.db")  # doctest: +SKIP
    """
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import run_server

    from optnas.storage import _open_storage, open_study

    _show_optuna_5_constraints()
    opened = _open_storage(storage, create=False)
    if study_name is not None:
        open_study(study_name, opened)  # A study that is not there: say so, serve nothing.
    folder = artifact_folder(opened, storage, artifacts, study_name=study_name)
    store = FileSystemArtifactStore(folder) if folder is not None else None
    print(f"optuna-dashboard at http://{host}:{port}/ (artifacts: {folder or 'none'})", flush=True)
    try:
        run_server(opened, host=host, port=port, artifact_store=store)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        raise OSError(
            error.errno, f"port {port} of {host} is taken; choose another (--port / port=)"
        ) from None


def _show_optuna_5_constraints() -> None:
    """Let optuna-dashboard show the constraints Optuna 5 records: it reads the list Optuna
    4 kept (system attr ``constraints``), where ``trial.set_constraint`` now records one
    per name (``constraints:params``), so that over-budget trials would look feasible. A
    dashboard that reads them itself (or has no such serializer) is left as it is."""
    try:
        from optuna_dashboard import _serializer
    except ImportError:
        return
    original = getattr(_serializer, "serialize_frozen_trial", None)
    if original is None or getattr(original, "optnas_constraints", False):
        return

    def serialize(study_id: int, trial: Any, study_system_attrs: dict[str, Any]) -> Any:
        serialized = original(study_id, trial, study_system_attrs)
        if isinstance(serialized, dict) and not serialized.get("constraints"):
            serialized["constraints"] = list(getattr(trial, "constraints", {}).values())
        return serialized

    serialize.optnas_constraints = True  # type: ignore[attr-defined]
    _serializer.serialize_frozen_trial = serialize


def artifact_folder(
    storage: optuna.storages.BaseStorage,
    url: str,
    artifacts: str | os.PathLike[str] | None,
    *,
    study_name: str | None = None,
) -> Path | None:
    """The artifact folder to serve: ``artifacts``, else the one study ``study_name`` (else
    any study of ``storage``) recorded, else the one beside the SQLite file; None when
    there is none.

    Raises:
        FileNotFoundError: ``artifacts`` is not a folder.
    """
    from optnas import artifacts as store

    if artifacts is not None:
        if not Path(artifacts).is_dir():
            raise FileNotFoundError(f"No artifact folder at {artifacts}.")
        return Path(artifacts)
    studies = optuna.get_all_study_summaries(storage, include_best_trial=False)
    studies.sort(key=lambda s: s.study_name != study_name)  # the study named first
    candidates: list[Any] = [s.user_attrs.get(store.FOLDER_ATTR) for s in studies]
    candidates.append(store.default_folder(url))
    for folder in candidates:
        if folder and Path(folder).is_dir():
            return Path(folder)
    return None
