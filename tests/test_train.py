from __future__ import annotations

import pytest
import torch
from conftest import Explodes
from torch import nn

from optnas.data import load
from optnas.train import DivergedError, evaluate, fit


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_training_learns_digits():
    ds = load("digits")
    result = fit(_model(), ds.train, ds.val, epochs=5)
    assert result.accuracy > 0.9
    assert len(result.curve) == 5 and result.curve[-1] == result.accuracy
    assert result.seconds > 0


def test_seeded_training_is_reproducible_on_cpu():
    ds = load("digits")
    curves = []
    for _ in range(2):
        torch.manual_seed(1)
        curves.append(fit(_model(), ds.train, ds.val, epochs=3, seed=7).curve)
    assert curves[0] == curves[1]


def test_on_epoch_can_stop_training():
    ds = load("digits")
    seen = []

    def stop_after_two(epoch, accuracy):
        seen.append((epoch, accuracy))
        if epoch == 1:
            raise KeyError("stop")

    with pytest.raises(KeyError):
        fit(_model(), ds.train, ds.val, epochs=5, on_epoch=stop_after_two)
    assert [e for e, _ in seen] == [0, 1]


def test_divergence_is_detected():
    ds = load("digits")
    with pytest.raises(DivergedError, match="training loss is nan in epoch 0"):
        fit(Explodes(), ds.train, ds.val, epochs=2)


def test_evaluate_counts_correct_predictions():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert evaluate(model, (x, torch.tensor([0, 1, 1, 1]))) == 0.75
