"""Study storages: database URLs, journal files and SQLite files opened safely, studies
created or resumed, copied under a new name.

``storage`` arguments across optnas take a database URL (SQLite, PostgreSQL, MySQL:
Optuna's RDB storage), ``"journal:PATH"`` (Optuna's journal file storage), an Optuna
storage object, or None for the default SQLite file ``studies/<study name>.db``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sqlite3
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from optnas.errors import StorageError

__all__ = ["STUDIES_DIR", "default_storage", "open_study", "storage_url"]

STUDIES_DIR = Path("studies")


def default_storage(study_name: str) -> str:
    """The default storage URL of ``study_name``: ``sqlite:///studies/<name>.db``.

    Example:
        >>> default_storage("digits")
        'sqlite:///studies/digits.db'
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)
    return f"sqlite:///{(STUDIES_DIR / f'{safe}.db').as_posix()}"


def open_study(
    study_name: str,
    storage: str | optuna.storages.BaseStorage | None,
    *,
    directions: Sequence[str] | None = None,
    metric_names: Sequence[str] | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    heartbeat_interval: int | None = None,
    owner_attr: str | None = None,
) -> optuna.Study:
    """Create or resume ``study_name`` in ``storage``; with no directions, load it only.

    ``storage`` is a database URL (SQLite, PostgreSQL, MySQL: Optuna's RDB storage), a
    journal file ``"journal:PATH"`` (Optuna's journal storage, safe for several processes
    on one machine), an Optuna storage, or None for ``studies/<study_name>.db``. On a
    database URL, ``heartbeat_interval`` (seconds) turns on Optuna's heartbeats: a trial
    whose process died is marked failed after twice that long without a heartbeat and
    retried with the same parameters (up to 3 times). With ``owner_attr``, a study to
    resume must have that user attr (the mark of the code that made it) or no finished
    trials (trials enqueued for it are fine).

    Raises:
        StorageError: The storage cannot be opened, the study is missing (load only) or it
            was created with other objectives, or by other code (``owner_attr``): then
            it is left as it was.

    Example:
        >>> study = open_study("demo", "sqlite:///:memory:", directions=["maximize"])
        >>> study.study_name
        'demo'
    """
    if storage is None:
        storage = default_storage(study_name)
        if directions is not None:
            STUDIES_DIR.mkdir(exist_ok=True)
    url = storage if isinstance(storage, str) else None
    if isinstance(storage, str):
        storage = _open_storage(
            storage, create=directions is not None, heartbeat_interval=heartbeat_interval
        )
    with _storage_errors(url):
        if directions is None:
            try:
                return optuna.load_study(study_name=study_name, storage=storage)
            except KeyError:
                names = optuna.get_all_study_names(storage)
                raise StorageError(
                    f"No study named {study_name!r} in this storage; it holds: "
                    f"{', '.join(names) or 'no studies'}."
                ) from None
        study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            directions=list(directions),
            sampler=sampler,
            pruner=pruner,
            load_if_exists=True,
        )
    _check_resumed(study, directions, metric_names, owner_attr)
    return study


@contextlib.contextmanager
def _storage_errors(url: str | None) -> Iterator[None]:
    """Database errors (a locked SQLite file, a server gone) as :class:`StorageError`."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        where = _hide_password(url) if url else "the storage"
        cause = error.__cause__ if isinstance(error.__cause__, SQLAlchemyError) else error
        cause = getattr(cause, "orig", None) or cause
        hint = " (another process holds a write lock on it)" if "locked" in str(cause) else ""
        raise StorageError(f"Cannot use storage {where}: {cause}{hint}.") from error


def _open_storage(
    url: str, *, create: bool, heartbeat_interval: int | None = None
) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        return _journal(url, create=create)
    if "://" not in url:
        url = f"sqlite:///{url}"
    if url == "sqlite:///:memory:":
        # SQLite gives each thread its own in-memory database; parallel trials need one.
        return optuna.storages.InMemoryStorage()
    sqlite_file = url.startswith("sqlite:///")
    if sqlite_file:
        _check_sqlite_file(_sqlite_file(url), create=create)
    try:
        with warnings.catch_warnings():  # Heartbeats: experimental in Optuna 5.0.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            beats = _heartbeats(heartbeat_interval)
            storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url), **beats)
    except Exception as error:  # SQLAlchemy and driver errors have no common base here.
        scheme = url.split("://", 1)[0]
        hint = "; SQLAlchemy names PostgreSQL postgresql://" if scheme == "postgres" else ""
        raise StorageError(f"Cannot open storage {_hide_password(url)}: {error}{hint}") from error
    if sqlite_file:
        _configure_sqlite(storage)
    return storage


def _heartbeats(interval: int | None) -> dict[str, Any]:
    if interval is None:
        return {}
    return {
        "heartbeat_interval": interval,
        "grace_period": 2 * interval,
        "heartbeat_stale_trial_callback": _retry_stale,
    }


MAX_RETRIES = 3
"""How often a trial whose worker died is queued again, along one trial's retries."""


def _retry_stale(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """What Optuna calls for a trial whose heartbeat went stale: :func:`retry` it."""
    worker = trial.user_attrs.get("worker", "its worker")
    retry(study, trial, f"its worker ({worker}) stopped sending heartbeats: it died or hung")


def retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, why: str) -> None:
    """Queue a failed ``trial``'s parameters again as a new trial, as Optuna retries a
    trial whose heartbeat went stale (at most :data:`MAX_RETRIES` times along one trial's
    retries); its only user attr, ``retry_reason``, says ``why``.

    Example:
        >>> study = optuna.create_study()
        >>> trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        >>> _ = study.tell(trial, state=optuna.trial.TrialState.FAIL)
        >>> retry(study, study.trials[0], "its worker died")
        >>> study.trials[1].state.name, study.trials[1].user_attrs["retry_reason"]
        ('WAITING', 'retries trial 0, its worker died')
    """
    trial = copy.deepcopy(trial)
    # What the failed run recorded (its worker, curve, failure) is not the new trial's:
    # Optuna would copy it over.
    trial.user_attrs = {"retry_reason": f"retries trial {trial.number}, {why}"}
    with warnings.catch_warnings():  # Experimental in Optuna 5.0.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


_PART_CHARS = 20_000  # MySQL keeps at most 65,535 bytes of a user attr's JSON
_PARTS = "optnas.parts"


def set_long_user_attr(study: optuna.Study, key: str, value: Any) -> None:
    """Set the study user attr ``key`` to ``value`` (JSON), in parts where its JSON is
    long, so that every storage keeps it: MySQL keeps at most 64 KB of one user attr (the
    standardization of data with thousands of features is longer). Read it back with
    :func:`long_user_attr`.

    Example:
        >>> study = optuna.create_study()
        >>> set_long_user_attr(study, "mean", [0.5] * 10_000)
        >>> long_user_attr(study.user_attrs, "mean") == [0.5] * 10_000, len(study.user_attrs)
        (True, 4)
    """
    text = json.dumps(value)
    if len(text) <= _PART_CHARS:
        study.set_user_attr(key, value)
        return
    parts = [text[i : i + _PART_CHARS] for i in range(0, len(text), _PART_CHARS)]
    for i, part in enumerate(parts):
        study.set_user_attr(f"{key}.part{i}", part)
    study.set_user_attr(key, {_PARTS: len(parts)})  # Last: a reader sees every part.


def long_user_attr(attrs: Mapping[str, Any], key: str) -> Any:
    """The value :func:`set_long_user_attr` set as ``key`` among a study's user
    ``attrs`` (None where there is none).

    Example:
        >>> long_user_attr({"k": [1, 2]}, "k"), long_user_attr({}, "k")
        ([1, 2], None)
    """
    value = attrs.get(key)
    if isinstance(value, dict) and set(value) == {_PARTS}:
        return json.loads("".join(attrs[f"{key}.part{i}"] for i in range(value[_PARTS])))
    return value


def _engine_kwargs(url: str) -> dict[str, Any]:
    # A server that does not answer fails within seconds, not after the OS's TCP timeout;
    # pre-ping replaces connections a restarted server dropped.
    if url.startswith(("postgresql", "mysql")):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def _journal(url: str, *, create: bool) -> optuna.storages.BaseStorage:
    """Optuna's journal storage in the file after ``journal:`` (``journal:///abs/path``
    and ``journal:relative/path`` both work)."""
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len("journal:") :].removeprefix("//"))
    if not str(path) or path.is_dir():
        raise StorageError(f"Cannot open storage {url}: name a file, as in journal:studies/x.log.")
    if not path.exists() and not create:
        raise StorageError(f"Cannot open storage {url}: no such file.")
    if not path.parent.is_dir():
        raise StorageError(f"Cannot create storage {url}: directory {path.parent} does not exist.")
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _configure_sqlite(storage: optuna.storages.RDBStorage) -> None:
    """Write-ahead logging, and transactions that take the write lock when they begin.

    With WAL, readers (optuna-dashboard) never block the search, and a commit costs about
    half as much; with synchronous=NORMAL a commit survives a crash of the process, though
    not a power cut. Python's sqlite3 would start a transaction only at the first write, so
    two parallel trials could both read a waiting (enqueued) trial as free and both run it;
    ``BEGIN IMMEDIATE`` makes Optuna's read-then-claim one step.
    """
    from sqlalchemy import event

    def on_connect(connection: Any, _record: Any) -> None:
        connection.isolation_level = None  # SQLAlchemy's "begin" event starts transactions.
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(storage.engine, "connect", on_connect)
    event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()  # Connections opened before the listeners reopen with them.


def _check_sqlite_file(path: Path, *, create: bool) -> None:
    # Checked before SQLAlchemy touches the path, so that a bad one creates nothing.
    where = f"sqlite:///{path}"
    if path.exists():
        if path.is_dir():
            raise StorageError(f"Cannot open storage {where}: it is a directory.")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.DatabaseError as error:
            raise StorageError(
                f"Cannot open storage {where}: the file is not a readable SQLite database "
                f"({error})."
            ) from None
        if create and not os.access(path, os.W_OK):
            raise StorageError(f"Cannot open storage {where}: the file is not writable.")
        return
    if not create:
        raise StorageError(f"Cannot open storage {where}: no such file.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise StorageError(f"Cannot create storage {where}: directory {parent} does not exist.")
    if not os.access(parent, os.W_OK):
        raise StorageError(f"Cannot create storage {where}: directory {parent} is not writable.")


def _check_resumed(
    study: optuna.Study,
    directions: Sequence[str],
    metric_names: Sequence[str] | None,
    owner_attr: str | None,
) -> None:
    if owner_attr and owner_attr not in study.user_attrs:
        ran = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        if ran:  # Enqueued (waiting) trials alone are for this code to run.
            raise StorageError(
                f"Study {study.study_name!r} already exists with {len(ran)} finished trials "
                f"that this code did not make (it has no {owner_attr!r} attr); choose "
                "another study_name."
            )
    have = [d.name.lower() for d in study.directions]
    known = study.metric_names
    if have != list(directions) or (known and metric_names and known != list(metric_names)):
        raise StorageError(
            f"Study {study.study_name!r} already exists with objectives "
            f"{known or have}, not {list(metric_names or directions)}; "
            "choose another study_name."
        )
    if metric_names and not known:
        with warnings.catch_warnings():  # Stable in practice; Optuna still marks it.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))


def _hide_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _shared_url(storage: str | optuna.storages.BaseStorage | None, name: str, workers: int) -> str:
    """The URL worker processes open: a storage that several processes can share."""
    if isinstance(storage, optuna.storages.BaseStorage) or storage == "sqlite:///:memory:":
        if workers > 1:
            raise ValueError(
                f"workers={workers} needs a storage that processes share, given as a URL "
                "(SQLite file, journal:PATH, PostgreSQL or MySQL), not an in-memory or "
                "storage object."
            )
        return ""
    return storage_url(storage, name)


def storage_url(storage: str | None, study_name: str) -> str:
    """The URL of ``storage``: the default SQLite file of ``study_name`` for None, a bare
    path as an SQLite file, a URL or ``journal:PATH`` as it is.

    Example:
        >>> storage_url("runs.db", "s"), storage_url(None, "s")
        ('sqlite:///runs.db', 'sqlite:///studies/s.db')
    """
    if storage is None:
        return default_storage(study_name)
    return (
        storage if "://" in storage or storage.startswith("journal:") else f"sqlite:///{storage}"
    )


def _sqlite_file(url: str) -> Path:
    """The file of an ``sqlite:///PATH`` URL."""
    return Path(url[len("sqlite:///") :])


def _fork(
    source: str,
    target: str,
    storage: str | optuna.storages.BaseStorage | None,
    *,
    metric_names: list[str],
) -> tuple[str, str | optuna.storages.BaseStorage | None, bool]:
    """Copy study ``source`` to ``target`` unless ``target`` is already its fork:
    ``(target, storage to use, whether it was copied now)``. With the default storage each
    study has its own file; otherwise both live in ``storage``. Everything is checked
    before anything is written: a refused fork leaves no file and no study behind."""
    if not target or target == source:
        raise ValueError(
            f"fork needs a new study name, other than {source!r}, but got {target!r}."
        )
    given = storage
    if isinstance(storage, str):  # One object: ":memory:" stays one. Created by no fork:
        storage = _open_storage(storage, create=False)  # the source would be in it.
    # A URL is handed back as such, so that the search opens it with its heartbeats.
    keep = given if isinstance(given, str) and not given.endswith(":memory:") else storage
    to_url = storage if storage is not None else default_storage(target)
    if storage is None and _sqlite_file(to_url).exists():
        to_storage = _open_storage(to_url, create=False)
    else:
        to_storage = to_url if not isinstance(to_url, str) else None
    if to_storage is not None and target in optuna.get_all_study_names(to_storage):
        forked_from = optuna.load_study(study_name=target, storage=to_storage).user_attrs.get(
            "optnas.forked_from"
        )
        if forked_from != source:
            raise StorageError(
                f"Cannot fork study {source!r} as {target!r}: a study {target!r} already "
                f"exists{f' (a fork of {forked_from!r})' if forked_from else ''}; choose "
                "another name for the fork."
            )
        return target, keep, False
    from_storage = storage if storage is not None else default_storage(source)
    if isinstance(from_storage, str):
        if not _sqlite_file(from_storage).exists():
            raise StorageError(f"Cannot fork study {source!r}: {from_storage} does not exist.")
        from_storage = _open_storage(from_storage, create=False)
    if source not in optuna.get_all_study_names(from_storage):
        raise StorageError(f"Cannot fork study {source!r}: no study of that name to copy.")
    have = optuna.load_study(study_name=source, storage=from_storage).metric_names
    if have is not None and list(have) != list(metric_names):
        raise StorageError(
            f"Cannot fork study {source!r}: its objectives are {list(have)}, not "
            f"{list(metric_names)}, and a fork keeps its source's objectives (its trials "
            "hold their values). Start a new study for other objectives."
        )
    if to_storage is None:
        STUDIES_DIR.mkdir(exist_ok=True)
        to_storage = _open_storage(to_url, create=True)
    optuna.copy_study(
        from_study_name=source,
        from_storage=from_storage,
        to_storage=to_storage,
        to_study_name=target,
    )
    optuna.load_study(study_name=target, storage=to_storage).set_user_attr(
        "optnas.forked_from", source
    )
    return target, keep, True
