"""CUDA paths: run with `python -m pytest -m gpu` on a machine with a GPU."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_space

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


def test_search_on_cuda_records_costs_and_curves():
    study = optnas.search(
        tiny_space,
        "digits",
        ("accuracy", "params"),
        n_trials=3,
        epochs=2,
        devices="cuda",
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
