"""Worker processes: several processes, on one machine or many, sharing one study.

This is Optuna's own distributed model: every worker runs ``study.optimize`` on the same
study in a shared storage (a PostgreSQL or MySQL server for many machines; SQLite or a
journal file on one machine). A worker needs only the storage and the study's name: the
objective is rebuilt from the definition recorded with the study
(:class:`optnas.definition.Definition`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import optuna

from optnas.errors import SearchError

__all__ = ["run_workers", "work"]

_GRACE_SECONDS = 30.0  # How long interrupted workers get to record their trials' ends.


def work(
    storage: str,
    study_name: str,
    *,
    n_trials: int | str | None = None,
    timeout: float | None = None,
    devices: str | Sequence[str] | None = None,
    trials_per_device: int | str | None = None,
    show_progress_bar: bool = False,
) -> optuna.Study:
    """Join the existing study ``study_name`` in ``storage`` and run its trials here.

    Everything else (space, data, objectives, budgets, training, sampler, pruner) comes
    from the definition recorded with the study; ``n_trials`` (or ``"unlimited"``) and
    ``timeout`` (the definition's when None) bound this worker alone. A seeded study's
    worker seeds its sampler from the sampler's seed (else the seed) and its process id,
    so that workers do not all propose the same candidates (a study shared by workers is
    not reproducible run to run anyway).

    Raises:
        StorageError: The storage cannot be opened or holds no such study.
        DefinitionError: The study holds no definition, or one that cannot be rebuilt
            (a space defined in a script, arrays passed from Python).

    Example:
        >>> import optnas
        >>> _ = optnas.search("mlp", "wine", n_trials=1, epochs=1, study_name="w",
        ...                   storage="sqlite:///w.db")  # doctest: +SKIP
        >>> len(work("sqlite:///w.db", "w", n_trials=2).trials)  # doctest: +SKIP
        3
    """
    from optnas.definition import Definition
    from optnas.storage import open_study

    definition = Definition.from_study(open_study(study_name, storage))
    changes = {"storage": storage, "study_name": study_name, "workers": 1}
    seed = definition["seed"] if definition["sampler_seed"] is None else definition["sampler_seed"]
    if seed is not None:  # Workers seeded alike would propose alike.
        changes["sampler_seed"] = (seed * 1_000_003 + os.getpid()) % 2**31
    changes |= {"devices": devices, "trials_per_device": trials_per_device}
    changes |= {"n_trials": n_trials, "timeout": timeout}
    changes = {k: v for k, v in changes.items() if v is not None}
    return definition.replace(changes).search(show_progress_bar=show_progress_bar)


def run_workers(
    storage: str,
    study_name: str,
    workers: int,
    *,
    n_trials: int | None,
    timeout: float | None,
    trials_per_device: int | None = None,
    show_progress_bar: bool = False,
) -> None:
    """Run ``workers`` processes of ``optnas worker`` on the study and wait for them.

    ``n_trials`` are shared out among them, and so are this machine's CPU cores: each
    worker runs on its own share (where the system lets a process choose its cores), so
    that its threads and its ``trials_per_device`` default (None: the study's) count those
    alone and the workers together do not oversubscribe the machine. The workers see the
    modules this process
    sees (its ``sys.path``), so a space given by import path resolves alike. A worker that
    dies does not stop the others: its running trial is retried once the storage's
    heartbeat finds it stale. On Ctrl-C every worker is interrupted and given
    ``_GRACE_SECONDS`` to record its trials' ends.

    Raises:
        SearchError: Every worker failed (the first exit status is named).
    """
    shares = [None] * workers if n_trials is None else _shares(n_trials, workers)
    shares = [share for share in shares if share != 0]
    processes = [
        _start(storage, study_name, share, timeout, trials_per_device, _cores(i, len(shares)))
        for i, share in enumerate(shares)
    ]
    try:
        with _ctrl_c_as_a_flag() as interrupted:
            _wait(processes, storage, study_name, n_trials, show_progress_bar, interrupted)
        if interrupted:
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        _interrupt(processes)
        raise
    codes = [p.returncode for p in processes]
    if all(code != 0 for code in codes):
        raise SearchError(
            f"All {len(codes)} workers failed (exit status {codes[0]}); their errors are "
            "printed above."
        )
    if any(code != 0 for code in codes):
        optuna.logging.get_logger("optnas").warning(
            f"{sum(c != 0 for c in codes)} of {len(codes)} workers ended with an error "
            f"(exit status {sorted(set(codes) - {0})}); the others finished."
        )


def _shares(n_trials: int, workers: int) -> list[int]:
    return [n_trials // workers + (i < n_trials % workers) for i in range(workers)]


def _start(
    storage: str,
    study_name: str,
    n_trials: int | None,
    timeout: float | None,
    trials_per_device: int | None,
    cores: list[int] | None,
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "optnas", "worker", "--storage", storage]
    command += ["--study-name", study_name, "--quiet"]
    command += ["--n-trials", "unlimited" if n_trials is None else str(n_trials)]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    if trials_per_device is not None:
        command += ["--trials-per-device", str(trials_per_device)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([p or os.getcwd() for p in sys.path])
    if cores is not None:  # The worker pins itself before it imports torch.
        env[CORES_ENV] = ",".join(map(str, cores))
        for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(pool, str(len(cores)))  # Thread pools sized to the share.
    # A session of its own: a terminal's Ctrl-C reaches this process alone, which passes
    # one SIGINT on (see _interrupt); a second one would cut short a worker recording its
    # trials' ends and leave them RUNNING.
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)


CORES_ENV = "OPTNAS_WORKER_CORES"
"""The cores (``"0,1"``) a worker started by :func:`run_workers` runs on; it pins itself
to them first thing (:func:`pin_to_given_cores`), before torch sizes its thread pools."""


def _cores(index: int, workers: int) -> list[int] | None:
    """Worker ``index``'s share of this process's cores: a contiguous block of them (one
    core, shared round-robin, when there are more workers than cores); None where a
    process cannot choose its cores (macOS)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    n = len(cores)
    if workers > n:
        return [cores[index % n]]
    return cores[index * n // workers : (index + 1) * n // workers]


def pin_to_given_cores() -> None:
    """Run this process on the cores :data:`CORES_ENV` names, if it names any.

    Example:
        >>> pin_to_given_cores()  # without OPTNAS_WORKER_CORES: nothing changes
    """
    given = os.environ.pop(CORES_ENV, None)
    if not given or not hasattr(os, "sched_setaffinity"):
        return
    cores = {int(core) for core in given.split(",")}
    threads = [0]  # This thread; on Linux every one, numpy's BLAS pool already started too.
    with contextlib.suppress(OSError):
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    for thread in threads:
        with contextlib.suppress(OSError):  # A thread that ended meanwhile, or no right to.
            os.sched_setaffinity(thread, cores)


def _wait(
    processes: list[subprocess.Popen[bytes]],
    storage: str,
    study_name: str,
    n_trials: int | None,
    show_progress_bar: bool,
    interrupted: list[int],
) -> None:
    """Until every worker ended or ``interrupted`` holds a signal."""
    bar, study = None, None
    if show_progress_bar:
        from tqdm.auto import tqdm

        from optnas.search import _untrained, progress_unit
        from optnas.storage import open_study

        study = open_study(study_name, storage)
        bar = tqdm(total=n_trials, unit=progress_unit(study.metric_names or []))
    try:
        while not interrupted and any(p.poll() is None for p in processes):
            time.sleep(0.5)
            if bar is not None and study is not None:
                trials = study.get_trials(deepcopy=False)
                trained = sum(t.state.is_finished() and not _untrained(t) for t in trials)
                bar.update(trained - bar.n)
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def _ctrl_c_as_a_flag() -> Iterator[list[int]]:
    """Within: SIGINT appends to the list it yields instead of raising KeyboardInterrupt
    wherever the main thread happens to be: a KeyboardInterrupt raised inside a finalizer
    (of a storage connection, say) is printed and dropped, and the workers would never be
    told (a parent that exited 0 on Ctrl-C while its workers ran on was seen)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in processes:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + _GRACE_SECONDS
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
