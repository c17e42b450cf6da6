from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image
from torch import nn

optuna.logging.set_verbosity(optuna.logging.WARNING)


def tiny_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """A fast space for search tests: one conv of a chosen width, then a linear layer."""
    width = trial.suggest_categorical("width", [4, 8])
    return nn.Sequential(
        nn.Conv2d(spec.input_shape[0], width, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(width * spec.input_shape[1] * spec.input_shape[2], spec.num_classes),
    )


def cores_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """A linear classifier whose trials record the cores and threads of their process."""
    trial.set_user_attr("cores", sorted(os.sched_getaffinity(0)))
    trial.set_user_attr("threads", torch.get_num_threads())
    trial.suggest_float("unused", 0.0, 1.0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), spec.num_classes))


def ctrl_c_twice_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """A space whose first trial is interrupted by Ctrl-C pressed twice: the second press
    comes while the first one's interruption is being handled."""
    model = tiny_space(trial, spec)  # its candidate chosen: one to queue again
    if trial.number == 0:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        except KeyboardInterrupt:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # The second one's handler runs here.
            raise
    return model


class Explodes(nn.Module):
    """A network whose outputs are infinite, so its training loss is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] * self.w * float("inf")


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty working directory, so default storages land in tmp_path/studies."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


MYSQL = os.environ.get("OPTNAS_TEST_MYSQL_URL")


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "mysql",
            marks=pytest.mark.skipif(
                not MYSQL,
                reason="set OPTNAS_TEST_MYSQL_URL "
                "(e.g. mysql+pymysql://root@127.0.0.1:3306/test) to run it",
            ),
        ),
    ]
)
def sql_storage(request, tmp_path):
    """A database URL: an SQLite file, then the MySQL (or MariaDB) database that
    OPTNAS_TEST_MYSQL_URL names, where it names one; the studies a test makes there are
    deleted after it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/s.db"
        return
    before = set(optuna.get_all_study_names(MYSQL))
    yield MYSQL
    for name in set(optuna.get_all_study_names(MYSQL)) - before:
        optuna.delete_study(study_name=name, storage=MYSQL)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


class FailsInTraining(nn.Module):
    """Measures fine (one sample, eval mode), then fails on its first training batch:
    ``"oom"`` raises CUDA's out-of-memory error, ``"crash"`` ends its process, ``"fatal"``
    raises a CUDA error after which (like a real one) nothing trains in its process again.
    Pool workers only: ``"fatal"`` would stop every later training of this process."""

    def __init__(self, spec, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        global _CONTEXT_BROKEN
        if _CONTEXT_BROKEN:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (again)")
        if self.training and self.kind == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 TiB")
        if self.training and self.kind == "crash":
            os._exit(3)
        if self.training and self.kind == "fatal":
            _CONTEXT_BROKEN = True
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.body(x)


_CONTEXT_BROKEN = False  # Set in a worker process by a "fatal" network.


def failing_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """A space whose ``kind`` chooses a network that trains, runs out of memory, crashes
    or breaks its process's CUDA context."""
    kind = trial.suggest_categorical("kind", ["ok", "oom", "crash", "fatal"])
    return FailsInTraining(spec, kind)


class HogsMemory(nn.Module):
    """Holds 1 GiB of device memory, then asks for 4 TiB on its first training batch: a
    real out-of-memory error, whose traceback holds the 1 GiB until it is dropped."""

    def __init__(self, spec) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            held = torch.ones(1 << 28, device=x.device)  # 1 GiB, a local of this frame
            x = x + held[: x.shape[-1]]
            x = x + torch.zeros(1 << 41, dtype=torch.float16, device=x.device)[: x.shape[-1]]
        return self.body(x)


class ChecksMemory(nn.Module):
    """Trains like a linear classifier; measuring it (its first forward pass) fails if more
    than 512 MiB of its device's memory is still allocated in its process: an earlier
    trial's tensors that were not freed."""

    def __init__(self, spec) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and not self.training:
            held = torch.cuda.memory_allocated(x.device)
            if held > 1 << 29:
                raise RuntimeError(f"{held:,} bytes of an earlier trial are still allocated")
        return self.body(x)


def hog_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """``kind`` ``"hog"`` runs out of device memory in training, holding 1 GiB when it
    does; ``"ok"`` trains, and fails if memory of an earlier trial is still held."""
    if trial.suggest_categorical("kind", ["ok", "hog"]) == "hog":
        return HogsMemory(spec)
    return ChecksMemory(spec)


def write_image_folder(root: Path, sizes: dict[str, list[tuple[int, int]]], mode: str = "RGB"):
    """An ImageFolder tree: one subfolder per class, one PNG per (width, height)."""
    rng = np.random.default_rng(0)
    for label, class_sizes in sizes.items():
        (root / label).mkdir(parents=True)
        for i, (width, height) in enumerate(class_sizes):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / label / f"{i}.png")
    return root


def process_ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (Linux): gone, or a zombie not yet reaped."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" in status.read()
    except FileNotFoundError:
        return True


def enqueued_study(tmp_path, name: str, params: list[dict], directions=("maximize",)) -> str:
    """A fresh SQLite study holding ``params`` as enqueued trials; returns its storage URL."""
    url = f"sqlite:///{tmp_path}/{name}.db"
    study = optuna.create_study(storage=url, study_name=name, directions=list(directions))
    for p in params:
        study.enqueue_trial(p)
    return url


class Slow(nn.Module):
    """A linear classifier whose every training batch takes 0.2 s: a trial mid-training
    lasts long enough to be interrupted or killed."""

    def __init__(self, spec) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(spec.input_shape), spec.num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            time.sleep(0.2)
        return self.body(x)


def slow_space(trial: optuna.trial.BaseTrial, spec) -> nn.Module:
    """One choice (``width``, not in effect) and a slow network: for worker tests."""
    trial.suggest_int("width", 1, 1000)
    return Slow(spec)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory):
    """A small finished default-style study (convnet on digits, accuracy / params / FLOPs)
    in an SQLite file with its artifact folder beside it; shared, so tests only read it."""
    import optnas

    root = tmp_path_factory.mktemp("finished")
    storage = f"sqlite:///{root}/study.db"
    study = optnas.search(
        "convnet",
        "digits",
        ("accuracy", "params", "flops"),
        n_trials=3,
        epochs=2,
        seed=0,
        storage=storage,
        study_name="finished",
        keep_weights=1,
    )
    return study, storage, root
