"""Worker processes: several processes, on one machine or many, sharing one study.

This is Optuna's own distributed model: every worker runs ``study.optimize`` on the same
study in a shared storage (a PostgreSQL or MySQL server for many machines; SQLite or a
journal file on one machine). A worker needs only the storage and the study's name: the
objective is rebuilt from the definition recorded with the study
(:class:`optnas.definition.Definition`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from optnas._signals import (
    GRACE_SECONDS,
    answer_ctrl_c,
    interrupt_as_orphan,
    interrupts_as_a_flag,
    interrupts_once,
)
from optnas.errors import SearchError, Terminated
from optnas.storage import open_study, retry

__all__ = ["run_workers", "work"]


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

    definition = Definition.from_study(open_study(study_name, storage))
    changes = {"storage": storage, "study_name": study_name, "workers": 1}
    seed = definition["seed"] if definition["sampler_seed"] is None else definition["sampler_seed"]
    if seed is not None:  # Workers seeded alike would propose alike.
        changes["sampler_seed"] = (seed * 1_000_003 + os.getpid()) % 2**31
    changes |= {"devices": devices, "trials_per_device": trials_per_device}
    changes |= {"n_trials": n_trials, "timeout": timeout}
    changes = {k: v for k, v in changes.items() if v is not None}
    from optnas.search import _ONE_OF_WORKERS

    shared = _ONE_OF_WORKERS.set(True)
    try:
        return definition.replace(changes).search(show_progress_bar=show_progress_bar)
    finally:
        _ONE_OF_WORKERS.reset(shared)


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
    modules this process sees (its ``sys.path``), so a space given by import path resolves
    alike. A worker killed by a signal (the kernel's out-of-memory killer, say) does not
    stop the others: its running trials are failed, saying so, and queued again, and a new
    worker takes over the trainings left of its share (up to ``_MAX_RESTARTS`` times). On
    Ctrl-C or SIGTERM every worker is interrupted and given ``GRACE_SECONDS`` to record its
    trials' ends; a worker whose parent died (SIGKILL) interrupts itself.

    Raises:
        SearchError: Every worker failed (the first exit status is named).
    """
    shares = [None] * workers if n_trials is None else _shares(n_trials, workers)
    shares = [share for share in shares if share != 0]

    began = time.monotonic()

    def start(share: int | None, cores: list[int] | None) -> _Worker | None:
        """A worker for ``share`` trainings within what is left of ``timeout``."""
        left = None if timeout is None else timeout - (time.monotonic() - began)
        if left is not None and left <= 0:
            return None
        started = datetime.datetime.now() - datetime.timedelta(seconds=1)  # the clock's grain
        process = _start(storage, study_name, share, left, trials_per_device, cores)
        return _Worker(process, share, cores, started)

    with interrupts_once():  # A second signal while ends are recorded: said, ignored.
        running = [start(share, _cores(i, len(shares))) for i, share in enumerate(shares)]
        supervisor = _Supervisor([w for w in running if w], start, open_study(study_name, storage))
        try:
            with interrupts_as_a_flag() as interrupted:
                supervisor.wait(n_trials, show_progress_bar, interrupted)
            if interrupted:
                raise Terminated if interrupted[0] == signal.SIGTERM else KeyboardInterrupt
        except KeyboardInterrupt as stop:
            how = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
            with interrupts_as_a_flag():  # A second signal must not cut their grace short.
                _interrupt([w.process for w in supervisor.workers], how)
            raise
    codes = [w.process.returncode for w in supervisor.workers if not w.replaced]
    if codes and all(code != 0 for code in codes):
        raise SearchError(
            f"All {len(codes)} workers failed (exit status {codes[0]}); their errors are "
            "printed above."
        )
    if any(code != 0 for code in codes):
        optuna.logging.get_logger("optnas").warning(
            f"{sum(c != 0 for c in codes)} of {len(codes)} workers ended with an error "
            f"(exit status {sorted(set(codes) - {0})}); the others finished."
        )


@dataclasses.dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    share: int | None  # trainings it was started for; None: no limit
    cores: list[int] | None
    started: datetime.datetime  # before its first trial: a pid reused later is not it
    handled: bool = False  # its death, by a signal
    replaced: bool = False  # by a new worker, or with nothing of its share left


_MAX_RESTARTS = 3  # Workers started in place of killed ones, per run.


class _Supervisor:
    """Waits for the workers, and stands in for a worker killed by a signal: fails its
    running trials and queues them again, then starts a worker for the rest of its share."""

    def __init__(self, workers: list[_Worker], start: Any, study: optuna.Study) -> None:
        self.workers, self.start, self.study = workers, start, study
        self.restarts = 0
        self.host = socket.gethostname()

    def wait(self, n_trials: int | None, show_progress_bar: bool, interrupted: list[int]) -> None:
        """Until every worker ended or ``interrupted`` holds a signal."""
        bar = self._bar(n_trials) if show_progress_bar else None
        done_before = self._trained()
        try:
            while not interrupted:
                time.sleep(0.5)
                for worker in list(self.workers):  # Polled once: a death is seen here.
                    code = worker.process.poll()
                    if code is not None and code < 0 and not worker.handled:
                        self._stand_in(worker, code, bar)
                if bar is not None:
                    bar.update(self._trained() - done_before - bar.n)
                if all(w.process.returncode is not None for w in self.workers):
                    break
        finally:
            if bar is not None:
                bar.close()

    def _bar(self, n_trials: int | None) -> Any:
        from tqdm.auto import tqdm

        from optnas.search import progress_unit

        return tqdm(total=n_trials, unit=progress_unit(self.study.metric_names or []))

    def _trained(self, worker: _Worker | None = None) -> int:
        """Trainings finished in the study (by ``worker`` alone), not counting trials
        failed because their worker died."""
        from optnas.search import _untrained

        trials = self.study.get_trials(deepcopy=False) if worker is None else self._of(worker)
        return sum(
            t.state.is_finished() and not _untrained(t) and not t.user_attrs.get("worker_died")
            for t in trials
        )

    def _of(self, worker: _Worker) -> list[optuna.trial.FrozenTrial]:
        """The trials ``worker`` started (each records its "host:pid")."""
        name = f"{self.host}:{worker.process.pid}"
        return [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get("worker") == name
            and t.datetime_start is not None
            and t.datetime_start >= worker.started
        ]

    def _stand_in(self, worker: _Worker, code: int, bar: Any) -> None:
        name = f"{self.host}:{worker.process.pid}"
        died = f"its worker ({name}) was killed by {signal.Signals(-code).name}"
        orphans = [t for t in self._of(worker) if t.state == TrialState.RUNNING]
        storage = self.study._storage
        for trial in orphans:
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"{died}; queued again")
            storage.set_trial_user_attr(trial._trial_id, "worker_died", True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            retry(self.study, storage.get_trial(trial._trial_id), died)
        worker.handled = True
        left = None if worker.share is None else worker.share - self._trained(worker)
        message = f"A worker was killed by {signal.Signals(-code).name}"
        if orphans:
            message += f"; its trial {', '.join(str(t.number) for t in orphans)} queued again"
        worker.replaced = left is not None and left <= 0
        successor = None
        if not worker.replaced and self.restarts < _MAX_RESTARTS:
            successor = self.start(left, worker.cores)  # None once the timeout is spent
        if successor is not None:
            self.restarts += 1
            worker.replaced = True
            self.workers.append(successor)
            message += f"; a new worker runs the rest of its share ({left or 'unlimited'})"
        if bar is not None:
            bar.clear()
        optuna.logging.get_logger("optnas").warning(message + ".")


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
    env[PARENT_ENV] = str(os.getpid())
    if cores is not None:  # The worker pins itself before it imports torch.
        env[CORES_ENV] = ",".join(map(str, cores))
        for pool in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(pool, str(len(cores)))  # Thread pools sized to the share.
    # A session of its own: a terminal's Ctrl-C reaches this process alone, which passes
    # one SIGINT on (see _interrupt); a second one would cut short a worker recording its
    # trials' ends and leave them RUNNING.
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)


PARENT_ENV = "OPTNAS_WORKER_PARENT"
"""The process id of the process that started a worker (:func:`run_workers`): a worker
whose parent is gone interrupts itself (:func:`stop_with_the_parent`)."""


def stop_with_the_parent() -> bool:
    """Where :data:`PARENT_ENV` names a parent, answer its SIGINT (even where it was
    ignored) and watch it: once this process has another parent (the first died, even by
    SIGKILL), interrupt this one as Ctrl-C would, so that it records its running trials'
    ends and exits instead of training on unsupervised. Whether it names one.

    Example:
        >>> stop_with_the_parent()  # without OPTNAS_WORKER_PARENT: nothing to watch
        False
    """
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or not parent.isdigit():
        return False
    # The parent stops a worker with SIGINT, which a shell's background job starts out
    # ignoring (and passes on ignored): this process answers it all the same.
    answer_ctrl_c()

    def watch() -> None:
        while os.getppid() == int(parent):
            time.sleep(1.0)
        interrupt_as_orphan()

    threading.Thread(target=watch, name="optnas-parent-watch", daemon=True).start()
    return True


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


def _interrupt(processes: list[subprocess.Popen[bytes]], how: signal.Signals) -> None:
    """Pass ``how`` (SIGINT or SIGTERM) on to the workers, and wait for them to record
    their trials' ends."""
    for p in processes:
        if p.poll() is None:
            p.send_signal(how)
    deadline = time.monotonic() + GRACE_SECONDS
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
