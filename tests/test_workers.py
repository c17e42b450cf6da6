"""Several worker processes on one study: journal file, SQLite, PostgreSQL; crash recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import optuna
import pytest
from conftest import process_ended

import optnas
from optnas.definition import Definition
from optnas.workers import work

State = optuna.trial.TrialState
POSTGRES = os.environ.get("OPTNAS_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES,
    reason="set OPTNAS_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/test) "
    "to run the PostgreSQL tests; .ci/run sets it",
)
# A fast study: random MLPs on wine, 1 epoch, every candidate trained (no dedup, no pruning).
FAST = {"epochs": 1, "dedup": False, "pruner": "none", "sampler": "random", "seed": 0}


def _check_shared(study: optuna.Study, expected: int, workers: int) -> None:
    finished = [t for t in study.trials if t.state.is_finished()]
    assert len(finished) == expected == len(study.trials)
    assert len({t.number for t in study.trials}) == expected
    assert all(t.state == State.COMPLETE for t in finished)
    for t in finished:
        assert {"arch", "params", "flops", "val_curve", "worker"} <= set(t.user_attrs)
        assert len(t.user_attrs["val_curve"]) == 1
    assert len({t.user_attrs["worker"] for t in finished}) == workers


def test_workers_on_a_journal_file_share_one_study(in_tmp):
    url = f"journal:{in_tmp}/study.log"
    study = optnas.search("mlp", "wine", ("accuracy",), n_trials=12, workers=4,
                          storage=url, study_name="j", **FAST)  # fmt: skip
    _check_shared(study, 12, workers=4)


def test_workers_on_the_default_sqlite_file(in_tmp):
    study = optnas.search("mlp", "wine", n_trials=6, workers=3, **FAST)
    assert study.study_name == "mlp-wine-accuracy"
    _check_shared(study, 6, workers=3)


def test_workers_given_a_sampler_seed_propose_different_candidates(in_tmp):
    fast = FAST | {"seed": None, "sampler_seed": 0}
    study = optnas.search("mlp", "wine", n_trials=6, workers=2, **fast)
    by_worker = {}
    for t in study.trials:
        by_worker.setdefault(t.user_attrs["worker"], []).append(t.params)
    first, second = by_worker.values()
    assert first != second  # seeded alike, they would propose alike


@needs_postgres
def test_eight_workers_on_postgresql_run_exactly_their_trials():
    name = f"optnas-test-{uuid.uuid4().hex[:8]}"
    try:
        study = optnas.search("mlp", "wine", ("accuracy",), n_trials=200, workers=8,
                              storage=POSTGRES, study_name=name, **FAST)  # fmt: skip
        _check_shared(study, 200, workers=8)
        assert Counter(len(t.user_attrs) for t in study.trials).most_common(1)[0][1] == 200
    finally:
        if name in optuna.get_all_study_names(POSTGRES):
            optuna.delete_study(study_name=name, storage=POSTGRES)


def test_workers_refuse_storages_they_cannot_share_and_spaces_they_cannot_import():
    with pytest.raises(ValueError, match="needs a storage that processes share"):
        optnas.search("mlp", "wine", workers=2, storage="sqlite:///:memory:")

    def local_space(trial, spec):
        raise AssertionError("never built")

    with pytest.raises(optnas.definition.DefinitionError) as refused:
        optnas.search(local_space, "wine", workers=2, storage="sqlite:///w.db")
    assert "each worker process rebuilds the search" in str(refused.value)
    assert "cannot be rebuilt" in str(refused.value) and "by import path" in str(refused.value)


def test_a_worker_joins_by_storage_and_name_alone(in_tmp, capsys):
    url = f"sqlite:///{in_tmp}/w.db"
    optnas.search("mlp", "wine", n_trials=1, storage=url, study_name="w", **FAST)
    study = work(url, "w", n_trials=2)
    assert len(study.trials) == 3
    # Others may sample at the same time: TPE treats running trials as bad, as the README
    # says (a lone search with one slot does not).
    lone = optnas.search("mlp", "wine", n_trials=1, storage=url, study_name="t",
                         **(FAST | {"sampler": "tpe"}))  # fmt: skip
    assert not lone.sampler._constant_liar
    assert work(url, "t", n_trials=1).sampler._constant_liar
    assert Definition.from_study(study)["n_trials"] == 1  # run keys are not rewritten
    argv = [sys.executable, "-m", "optnas", "worker", "--storage", url, "--study", "w",
            "--n-trials", "1", "--quiet"]  # fmt: skip
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    assert len(optuna.load_study(study_name="w", storage=url).trials) == 4


def _launch(url: str, name: str, n_trials: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    argv = [sys.executable, "-m", "optnas", "worker", "--storage", url, "--study-name", name,
            "--n-trials", str(n_trials), "--quiet"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(condition, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_killed_worker_s_trial_fails_and_is_retried_while_the_others_go_on(in_tmp):
    url = f"sqlite:///{in_tmp}/k.db"
    slow = FAST | {"epochs": 15, "heartbeat_interval": 1}  # 3 s a trial: killed mid-way
    optnas.search("conftest:slow_space", "wine", ("accuracy",), n_trials=1, storage=url,
                  study_name="k", **slow)  # fmt: skip
    workers = [_launch(url, "k", 5) for _ in range(3)]
    study = optuna.load_study(study_name="k", storage=url)

    def running_after_a_completion():
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == State.COMPLETE and t.number > 0]
        # One early in its 15 epochs: the kill must not come after its end (a race seen).
        running = [t for t in trials if t.state == State.RUNNING and "worker" in t.user_attrs
                   and len(t.user_attrs.get("val_curve", [])) < 5]  # fmt: skip
        return done and running and (done, running[-1])

    done_before, victim = _wait_for(running_after_a_completion)
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)
    codes = {w.pid: w.wait(timeout=180) for w in workers}
    assert codes.pop(pid) == -signal.SIGKILL
    assert set(codes.values()) == {0}  # the others never stopped

    trials = optuna.load_study(study_name="k", storage=url).trials
    assert trials[victim.number].state == State.FAIL
    retried = [t for t in trials
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
               == victim.number]  # fmt: skip
    assert len(retried) == 1 and retried[0].state == State.COMPLETE
    assert retried[0].params == victim.params
    assert "stopped sending heartbeats" in retried[0].user_attrs["retry_reason"]
    for t in done_before:
        assert trials[t.number].state == State.COMPLETE  # no completed trial lost
    assert not [t for t in trials if t.state == State.RUNNING]


def _default_ctrl_c() -> None:
    """SIGINT as a terminal delivers it: a runner that started the tests in the background
    of a shell has SIGINT ignored, and the child would inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("kind", "how"), [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_or_sigterm_stops_cleanly_and_the_same_command_resumes(in_tmp, kind, how):
    url = f"sqlite:///{in_tmp}/c.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    argv = [sys.executable, "-m", "optnas", "search", "--space", "conftest:slow_space",
            "--data", "wine", "--objectives", "accuracy", "--epochs", "5", "--n-trials", "3",
            "--storage", url, "--study-name", "c"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=_default_ctrl_c)  # fmt: skip

    def running():
        try:
            trials = optuna.load_study(study_name="c", storage=url).get_trials(deepcopy=False)
        except (KeyError, Exception):
            return None
        return any(t.state == State.RUNNING and t.user_attrs.get("val_curve") for t in trials)

    _wait_for(running)
    process.send_signal(kind)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + kind, err.decode()
    last_line = err.decode().strip().splitlines()[-1]
    assert last_line.startswith(f"optnas search: interrupted ({how});"), last_line
    assert "resumes the study" in last_line
    assert "Warning" not in err.decode() and "Traceback" not in err.decode()
    assert f"Trial 0 interrupted ({how}); recorded as failed" in err.decode()
    trials = optuna.load_study(study_name="c", storage=url).trials
    assert not [t for t in trials if t.state == State.RUNNING]
    [interrupted] = [t for t in trials if t.state == State.FAIL]
    assert f"interrupted ({how})" in interrupted.user_attrs["fail_reason"]
    # Queued again: the candidate the sampler chose trains first when the study resumes.
    [queued] = [t for t in trials if t.state == State.WAITING]
    assert queued.params == interrupted.params
    assert queued.user_attrs["retry_reason"] == (
        f"retries trial {interrupted.number}, interrupted ({how})"
    )

    argv[argv.index("--n-trials") + 1] = "1"
    assert subprocess.run(argv, env=env, capture_output=True, timeout=120).returncode == 0
    resumed = optuna.load_study(study_name="c", storage=url).trials
    assert len(resumed) == len(trials) and resumed[queued.number].state == State.COMPLETE


def test_a_second_ctrl_c_while_the_first_is_recorded_is_said_and_ignored(in_tmp, capsys):
    # Pressed twice, Ctrl-C used to raise again in the middle of recording the first one's
    # interruption, which could leave the trial RUNNING and unqueued.
    from optnas.cli import main

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
    try:
        status = main(["search", "--space", "conftest:ctrl_c_twice_space", "--data", "digits",
                       "--objectives", "accuracy", "--epochs", "1", "--n-trials", "2",
                       "--storage", f"sqlite:///{in_tmp}/t.db", "--study-name", "t"])  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, before)
    err = capsys.readouterr().err
    assert status == 130, err
    assert "optnas: still recording the interrupted trials' ends" in err
    assert "optnas search: interrupted (Ctrl-C)" in err.strip().splitlines()[-1]
    trials = optuna.load_study(study_name="t", storage=f"sqlite:///{in_tmp}/t.db").trials
    assert [t.state for t in trials] == [State.FAIL, State.WAITING]
    assert trials[0].user_attrs["fail_reason"].startswith("interrupted (Ctrl-C)")


def _pool_search(url: str, name: str, *, epochs: int, n_trials: int) -> subprocess.Popen:
    """``optnas search`` with 2 pool slots, epochs of 1.4 s; Ctrl-C reaches it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    argv = [sys.executable, "-m", "optnas", "search", "--space", "conftest:slow_space",
            "--data", "wine", "--objectives", "accuracy", "--epochs", str(epochs),
            "--batch-size", "16", "--n-trials", str(n_trials), "--storage", url,
            "--study-name", name, "--trials-per-device", "2", "--no-dedup", "--pruner",
            "none"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_ctrl_c)  # fmt: skip


def test_ctrl_c_stops_a_pool_s_trainings_at_once(in_tmp):
    # Two trials train in pool processes, 30 epochs of 1.4 s each; Optuna's threads would
    # let both finish (and record them complete) before the interruption came through.
    url = f"sqlite:///{in_tmp}/t.db"
    process = _pool_search(url, "t", epochs=30, n_trials=4)
    _wait_for(lambda: _training(url, "t", 2))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    trials = optuna.load_study(study_name="t", storage=url).trials
    seen = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    states = [State.FAIL, State.FAIL, State.WAITING, State.WAITING]  # both queued again
    assert [t.state for t in trials] == states, (seen, err.decode())
    for t in trials[:2]:
        assert t.user_attrs["fail_reason"].startswith("interrupted (Ctrl-C)")
        assert len(t.user_attrs["val_curve"]) < 30
    assert "Traceback" not in err.decode()


def test_ctrl_c_during_a_pool_s_last_training_starts_nothing_more(in_tmp):
    # 3 trials on 2 slots: once trials 0 and 1 are done, Optuna has stopped submitting and
    # would swallow the last one's interruption; no other round may start then.
    url = f"sqlite:///{in_tmp}/e.db"
    process = _pool_search(url, "e", epochs=8, n_trials=3)

    def last_one_training():
        running = _training(url, "e", 1)
        trials = optuna.load_study(study_name="e", storage=url).trials if running else []
        return sum(t.state == State.COMPLETE for t in trials) == 2 and len(trials) == 3

    _wait_for(last_one_training)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err.decode()
    trials = optuna.load_study(study_name="e", storage=url).trials
    seen = [(t.number, t.state.name, t.params) for t in trials]
    assert [t.state for t in trials] == [State.COMPLETE, State.COMPLETE, State.FAIL,
                                         State.WAITING], (seen, err.decode())  # fmt: skip
    assert trials[3].params == trials[2].params  # queued again, and nothing else


@needs_postgres
def test_a_missing_postgresql_database_is_named_in_the_error():
    url = POSTGRES.rsplit("/", 1)[0] + "/optnas_no_such_database"
    with pytest.raises(optnas.StorageError, match="optnas_no_such_database"):
        optnas.search("mlp", "wine", n_trials=1, storage=url)


def test_ctrl_c_at_the_terminal_records_every_worker_s_trial(in_tmp):
    # A terminal's Ctrl-C signals the whole foreground process group: the workers too.
    url = f"sqlite:///{in_tmp}/g.db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    # 20 epochs of 0.2 s: both trials still train when the signal comes, even on a busy machine.
    argv = [sys.executable, "-m", "optnas", "search", "--space", "conftest:slow_space",
            "--data", "wine", "--objectives", "accuracy", "--epochs", "20", "--n-trials", "4",
            "--storage", url, "--study-name", "g", "--workers", "2"]  # fmt: skip
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True, preexec_fn=_default_ctrl_c)  # fmt: skip

    def both_training():
        try:
            trials = optuna.load_study(study_name="g", storage=url).get_trials(deepcopy=False)
        except Exception:
            return None
        return sum(t.state == State.RUNNING and bool(t.user_attrs.get("val_curve"))
                   for t in trials) == 2  # fmt: skip

    _wait_for(both_training)
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=90)
    assert process.returncode == 130, err.decode()
    trials = optuna.load_study(study_name="g", storage=url).trials
    assert not [t for t in trials if t.state == State.RUNNING]
    assert sum("interrupted" in t.user_attrs.get("fail_reason", "") for t in trials) == 2
    # One word of it, from the command typed; none from its workers (a command not typed).
    assert "optnas worker: interrupted" not in err.decode()
    assert err.decode().strip().splitlines()[-1].startswith("optnas search: interrupted")


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs a system where a process chooses its cores, and 2 of them",
)
def test_workers_share_the_machine_s_cores_out(in_tmp):
    study = optnas.search("conftest:cores_space", "wine", ("accuracy",), n_trials=4, workers=2,
                          storage=f"sqlite:///{in_tmp}/c.db", study_name="c", **FAST)  # fmt: skip
    by_worker: dict[str, set[tuple[int, ...]]] = {}
    for t in study.trials:
        assert t.user_attrs["threads"] == len(t.user_attrs["cores"])
        by_worker.setdefault(t.user_attrs["worker"], set()).add(tuple(t.user_attrs["cores"]))
    (first,), (second,) = by_worker.values()
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == os.sched_getaffinity(0)


def _search_with_workers(url: str, name: str, n_trials: int, **popen: object):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    argv = [sys.executable, "-m", "optnas", "search", "--space", "conftest:slow_space",
            "--data", "wine", "--objectives", "accuracy", "--epochs", "20", "--n-trials",
            str(n_trials), "--storage", url, "--study-name", name, "--workers", "2",
            "--pruner", "none", "--no-dedup"]  # fmt: skip
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **popen)  # fmt: skip


def _training(url: str, name: str, count: int) -> list[optuna.trial.FrozenTrial] | None:
    """The trials in training, once ``count`` of them are."""
    try:
        trials = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except Exception:
        return None
    running = [t for t in trials if t.state == State.RUNNING and t.user_attrs.get("val_curve")]
    return running if len(running) >= count else None


def _pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


@pytest.mark.parametrize("kind", [signal.SIGTERM, signal.SIGKILL])
def test_workers_stop_with_their_parent_and_record_their_trials(in_tmp, kind):
    url = f"sqlite:///{in_tmp}/p.db"
    process = _search_with_workers(url, "p", 4)
    running = _wait_for(lambda: _training(url, "p", 2))
    process.send_signal(kind)  # to the parent alone, as `kill` or a job scheduler sends it
    _, err = process.communicate(timeout=60)
    assert process.returncode == (143 if kind == signal.SIGTERM else -signal.SIGKILL)
    _wait_for(lambda: all(process_ended(_pid(t)) for t in running), timeout=60)
    trials = optuna.load_study(study_name="p", storage=url).trials
    seen = [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert not [t for t in trials if t.state == State.RUNNING], (seen, err.decode())
    how = "SIGTERM" if kind == signal.SIGTERM else "its parent process ended"
    interrupted = sum(f"interrupted ({how})" in t.user_attrs.get("fail_reason", "")
                      for t in trials)  # fmt: skip
    assert interrupted == 2, (seen, err.decode())


def test_a_killed_worker_is_replaced_and_its_trial_queued_again(in_tmp):
    url = f"sqlite:///{in_tmp}/r.db"
    process = _search_with_workers(url, "r", 4)
    victim = _wait_for(lambda: _training(url, "r", 1))[0]
    os.kill(_pid(victim), signal.SIGKILL)
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err.decode()
    assert f"A worker was killed by SIGKILL; its trial {victim.number} queued again; a new " \
           "worker runs the rest of its share (2)" in err.decode()  # fmt: skip
    trials = optuna.load_study(study_name="r", storage=url).trials
    died = trials[victim.number]
    assert died.state == State.FAIL
    assert died.user_attrs["fail_reason"].endswith("was killed by SIGKILL; queued again")
    again = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(again) == 1 and again[0].params == victim.params
    assert again[0].state == State.COMPLETE
    assert "fail_reason" not in again[0].user_attrs  # the failed run's record stays its own
    assert "4/4" in err.decode()  # the bar counts the retried trial's training
    assert sum(t.state == State.COMPLETE for t in trials) == 4  # the whole n_trials
    assert len({t.user_attrs["worker"] for t in trials}) == 3
    assert f"trial {victim.number}: its worker" in out.decode()  # the summary says why


def test_the_workers_progress_bar_counts_this_run_s_trainings(in_tmp, capfd):
    for _ in range(2):
        optnas.search("mlp", "wine", n_trials=2, workers=2, show_progress_bar=True, **FAST)
    err = capfd.readouterr().err
    last_run = err[err.rindex("0/2") :]  # the resumed run's bar, from its start
    assert "2/2" in last_run and "3/2" not in last_run and "4/2" not in last_run
