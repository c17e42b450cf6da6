"""CUDA paths: run with `python -m pytest -m gpu` on a machine with a GPU."""

from __future__ import annotations

import gc

import pytest
import torch
from conftest import enqueued_study, hog_space, tiny_space

import optnas
from optnas.cost import latency
from optnas.data import load
from optnas.train import fit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_trainer_on_cuda_learns_in_bf16_channels_last():
    ds = load("digits")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 64, 10),
    )
    result = fit(model, ds.train, ds.val, epochs=5, device="cuda")
    assert result.accuracy > 0.9
    assert next(model.parameters()).is_cuda
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_trainer_on_cuda_augments_in_batches_with_sgd():
    ds = load("digits")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.BatchNorm2d(32),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 64, 10),
    )
    result = fit(
        model,
        ds.train,
        ds.val,
        epochs=8,
        device="cuda",
        optimizer="sgd",
        lr=0.05,
        augment="crop+flip",
        label_smoothing=0.1,
    )
    assert result.accuracy > 0.85
    assert result.images == 8 * len(ds.train[0])


def test_batch_norm_on_cuda_holds_the_last_batches_statistics_in_bf16():
    ds = load("digits")

    def convnet() -> torch.nn.Sequential:
        torch.manual_seed(0)
        layers: list[torch.nn.Module] = []
        for c_in, c_out in ((1, 32), (32, 32), (32, 32)):
            layers += [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out)]
            layers.append(torch.nn.ReLU())
        head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 10)]
        return torch.nn.Sequential(*layers, *head)

    model = convnet()
    result = fit(model, ds.train, ds.val, epochs=1, device="cuda")
    running = fit(convnet(), ds.train, ds.val, epochs=1, device="cuda", precise_bn=0)
    # On CPU, with 10 batch orders, 0.51 to 0.73 against about 0.1 on the running averages.
    assert result.accuracy > max(0.3, running.accuracy + 0.15), (result, running)
    assert model[1].running_var.dtype == torch.float32 and model[1].momentum == 0.1


def test_pool_on_cuda_trains_the_asked_count_in_parallel(tmp_path):
    study = optnas.search(
        tiny_space,
        "digits",
        n_trials=6,
        epochs=2,
        devices="cuda",
        trials_per_device=3,
        storage=f"sqlite:///{tmp_path}/p.db",
        seed=0,
        dedup=False,
        pruner="none",
    )
    assert len(study.trials) == 6
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    starts = sorted(t.datetime_start for t in study.trials)
    ends = sorted(t.datetime_complete for t in study.trials)
    assert starts[1] < ends[0]  # two trials ran at once


@pytest.mark.parametrize("trials_per_device", [1, 2])  # in this process; in a pool
def test_cuda_out_of_memory_fails_its_trial_and_frees_its_memory(tmp_path, trials_per_device):
    kinds = ["hog", "hog", "ok", "ok", "ok", "ok"]
    url = enqueued_study(tmp_path, "oom", [{"kind": k} for k in kinds])
    gc.disable()  # Memory must be free at once, not when the garbage collector next runs.
    try:
        study = optnas.search(
            hog_space,
            "digits",
            n_trials=6,
            epochs=1,
            devices="cuda",
            trials_per_device=trials_per_device,
            storage=url,
            study_name="oom",
            seed=0,
            dedup=False,
        )
    finally:
        gc.enable()
    for trial in study.trials:
        if trial.params["kind"] == "hog":
            assert trial.state.name == "FAIL"
            assert trial.user_attrs["fail_reason"].startswith("OutOfMemoryError: CUDA out of")
        else:
            assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")


def test_search_on_cuda_records_costs_and_curves():
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=3,
        epochs=2,
        devices="cuda",
        trials_per_device=2,
        storage="sqlite:///:memory:",
        seed=0,
        dedup=False,  # tiny_space has two architectures
    )
    assert len(study.trials) == 3
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(len(t.user_attrs["val_curve"]) == 2 for t in study.trials)


@pytest.mark.parametrize("space", ["convnet", "nb201"])
def test_builtin_spaces_search_on_cuda_with_latency(space):
    study = optnas.search(
        space,
        "digits",
        ("accuracy", "latency"),
        n_trials=2,
        epochs=2,
        devices="cuda",
        storage="sqlite:///:memory:",
        seed=0,
    )
    for trial in study.trials:
        assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
        assert trial.values[1] == trial.user_attrs["latency"] > 0


def test_latency_on_cuda_is_synchronized():
    model = torch.nn.Sequential(*[torch.nn.Linear(2048, 2048) for _ in range(8)])
    small = latency(model, (2048,), batch_size=8, device="cuda")
    large = latency(model, (2048,), batch_size=8192, device="cuda")
    assert next(model.parameters()).is_cuda
    # 1,000x the work must show: unsynchronized timing would see only the launch.
    assert large > 5 * small
