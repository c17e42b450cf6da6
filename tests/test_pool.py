"""Trials in parallel worker processes (``trials_per_device``), on the CPU."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
import weakref

import optuna
import pytest
from conftest import FailsInTraining, enqueued_study, failing_space, process_ended, tiny_space
from torch import nn

import optnas


def test_pool_records_what_one_trial_at_a_time_records(tmp_path):
    widths = [{"width": w} for w in (4, 8, 8, 4)]
    studies = []
    for name, slots in (("pool", 2), ("sequential", 1)):
        url = enqueued_study(tmp_path, name, widths)
        studies.append(
            optnas.search(
                tiny_space,
                "digits",
                n_trials=4,
                epochs=2,
                devices="cpu",
                trials_per_device=slots,
                storage=url,
                study_name=name,
                seed=0,
                dedup=False,
            )
        )
    pool, sequential = ([t for t in s.trials] for s in studies)
    assert len(pool) == len(sequential) == 4
    for a, b in zip(pool, sequential, strict=True):
        assert a.state == b.state == optuna.trial.TrialState.COMPLETE
        assert a.params == b.params and a.user_attrs["params"] == b.user_attrs["params"]
        assert len(a.user_attrs["val_curve"]) == 2
        # Same seeds; only the threads per process (float summation order) differ.
        assert a.values[0] == pytest.approx(b.values[0], abs=0.03)


def test_out_of_memory_crashed_and_broken_children_fail_alone(tmp_path):
    kinds = ["oom", "ok", "crash", "ok", "fatal", "ok", "ok", "ok"]
    url = enqueued_study(tmp_path, "fails", [{"kind": k} for k in kinds])
    study = optnas.search(
        failing_space,
        "digits",
        n_trials=8,
        epochs=1,
        devices="cpu",
        trials_per_device=2,
        storage=url,
        study_name="fails",
        seed=0,
        dedup=False,
    )
    by_kind = {k: [t for t in study.trials if t.params["kind"] == k] for k in set(kinds)}
    assert len(study.trials) == 8
    (oom,) = by_kind["oom"]
    assert oom.state == optuna.trial.TrialState.FAIL
    assert oom.user_attrs["fail_reason"].startswith("OutOfMemoryError: CUDA out of memory")
    # Where it failed, in the worker process: the network's forward, called by the trainer.
    assert 'raise torch.OutOfMemoryError("CUDA out' in oom.user_attrs["fail_traceback"]
    assert "in fit" in oom.user_attrs["fail_traceback"]
    (crash,) = by_kind["crash"]
    assert crash.state == optuna.trial.TrialState.FAIL
    assert "WorkerDiedError" in crash.user_attrs["fail_reason"]
    assert "exited (code 3)" in crash.user_attrs["fail_reason"]
    (fatal,) = by_kind["fatal"]
    assert fatal.user_attrs["fail_reason"] == (
        "RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    # The freed and the restarted slots went on training, the broken one's in a new process.
    ok = by_kind["ok"]
    assert [t.state for t in ok] == [optuna.trial.TrialState.COMPLETE] * 5, [
        t.user_attrs.get("fail_reason") for t in ok
    ]


def test_pool_trials_report_and_are_pruned_from_the_parent(tmp_path):
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=3,
        epochs=4,
        devices="cpu",
        trials_per_device=2,
        pruner=optuna.pruners.ThresholdPruner(lower=1.01, n_warmup_steps=1),
        storage=f"sqlite:///{tmp_path}/p.db",
        seed=0,
        dedup=False,
    )
    assert len(study.trials) == 3
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.PRUNED
        assert sorted(trial.intermediate_values) == [0, 1]
        assert len(trial.user_attrs["val_curve"]) == 2
        assert trial.user_attrs["train_seconds"] > 0


def test_a_network_the_pool_cannot_ship_is_named(tmp_path):
    class Local(nn.Module):  # not importable by the worker processes
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    def local_space(trial, spec):
        trial.suggest_int("unused", 0, 1)
        return Local()

    with pytest.raises(optnas.SearchError, match="cannot be pickled.*importable"):
        optnas.search(
            local_space,
            "digits",
            n_trials=4,
            epochs=1,
            devices="cpu",
            trials_per_device=2,
            storage="sqlite:///:memory:",
            max_initial_failures=2,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trials_per_device": 0}, "trials_per_device must be positive"),
        ({"trials_per_device": "many"}, "trials_per_device must be a positive integer"),
        ({"devices": "cpu,cpu"}, "Each device may appear once"),
        ({"devices": "cpu, gpu"}, "Unknown device 'gpu'"),
        ({"augment": "mixup"}, "Unknown augment 'mixup'; valid names: auto, none, crop"),
        ({"optimizer": "lion"}, "Unknown optimizer 'lion'; valid names: adamw, sgd"),
        ({"data": "wine", "augment": "flip"}, "needs images"),
    ],
)
def test_bad_pool_and_training_settings_are_refused(in_tmp, kwargs, message):
    with pytest.raises(ValueError, match=message):
        optnas.search(**{"space": "auto", "n_trials": 1, **kwargs})
    assert not (in_tmp / "studies").exists()


def test_failed_and_pruned_trials_free_their_network_at_once(tmp_path):
    """In this process too (one slot): at once, not at the next garbage collection, since
    on a GPU the next trial needs the memory (Optuna keeps each error in a cycle)."""
    built = []

    def space(trial, spec):
        model = FailsInTraining(spec, trial.suggest_categorical("kind", ["ok", "oom"]))
        built.append(weakref.ref(model))
        return model

    url = enqueued_study(tmp_path, "free", [{"kind": k} for k in ("oom", "ok", "oom", "ok")])
    pruner = optuna.pruners.ThresholdPruner(lower=1.01, n_warmup_steps=1)  # at epoch 2
    gc.disable()
    try:
        study = optnas.search(
            space, "digits", n_trials=4, epochs=3, trials_per_device=1, pruner=pruner,
            storage=url, study_name="free", dedup=False,
        )  # fmt: skip
        alive = [ref() is not None for ref in built]
    finally:
        gc.enable()
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "PRUNED", "FAIL", "PRUNED"]
    assert alive == [False] * 4


class _BreaksCuda(nn.Module):
    """Fails its first training batch as a CUDA error that breaks a process's context."""

    def __init__(self, spec) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, spec.num_classes))

    def forward(self, x):
        if self.training:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.body(x)


def test_a_fatal_cuda_error_in_this_process_stops_the_search(tmp_path):
    def space(trial, spec):
        trial.suggest_int("x", 0, 9)
        return _BreaksCuda(spec)

    url = f"sqlite:///{tmp_path}/u.db"
    with pytest.raises(optnas.SearchError, match="unable to use the GPU.*study resumes"):
        optnas.search(space, "digits", n_trials=5, epochs=1, trials_per_device=1,
                      storage=url, study_name="u")  # fmt: skip
    (trial,) = optuna.load_study(study_name="u", storage=url).trials  # no other one started
    assert trial.state == optuna.trial.TrialState.FAIL
    assert "illegal memory access" in trial.user_attrs["fail_reason"]


_KILLED_MID_TRAINING = """
import os, signal, threading, time
import torch
from optnas.pool import DevicePool

class Slow(torch.nn.Linear):  # 0.2 s a batch: 80 batches, 16 s an epoch
    def forward(self, x):
        time.sleep(0.2)
        return super().forward(x)

if __name__ == "__main__":
    x, y = torch.randn(640, 4), torch.randint(0, 2, (640,))
    pool = DevicePool([torch.device("cpu")], 1, (x, y), (x, y))
    print(pool._slots[0]._process.pid, flush=True)
    with pool.slot() as slot:
        slot.measure(Slow(4, 2), (4,), 1)
        # SIGKILL a second into the first epoch: no clean-up, no word to the worker.
        threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGKILL)).start()
        slot.fit(seed=0, on_epoch=lambda epoch, accuracy: None, epochs=3, batch_size=8)
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_worker_ends_when_its_parent_is_killed_mid_training(tmp_path):
    """At once, not when its epoch ends (15 s on): on a GPU it would hold memory till then."""
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_MID_TRAINING)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    out = tmp_path / "out.txt"  # not a pipe, which the worker would hold open
    with out.open("w") as stdout:
        parent = subprocess.Popen([sys.executable, str(script)], env=env, stdout=stdout,
                                  stderr=subprocess.STDOUT)  # fmt: skip
        assert parent.wait(timeout=120) == -signal.SIGKILL, out.read_text()
    worker = int(out.read_text().split()[0])
    deadline = time.monotonic() + 8
    while not process_ended(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_ended(worker)
