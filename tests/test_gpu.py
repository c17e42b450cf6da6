"""CUDA paths: run with `python -m pytest -m gpu` on a machine with a GPU."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_space

import optnas
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
        device="cuda",
        storage="sqlite:///:memory:",
        seed=0,
    )
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert all(len(t.user_attrs["val_curve"]) == 2 for t in study.trials)
