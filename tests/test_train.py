from __future__ import annotations

import pytest
import torch
from conftest import Explodes
from torch import nn

from optnas.data import load
from optnas.train import DivergedError, augment_batch, evaluate, fit


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_training_learns_digits():
    ds = load("digits")
    result = fit(_model(), ds.train, ds.val, epochs=5)
    assert result.accuracy > 0.9
    assert len(result.curve) == 5 and result.curve[-1] == result.accuracy
    assert result.seconds > 0


def _bn_cnn() -> nn.Module:
    layers: list[nn.Module] = []
    for c_in, c_out in ((1, 32), (32, 32), (32, 32)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def test_a_batch_norm_network_is_judged_fairly_after_one_epoch():
    # Nine steps in, batch norm's running averages still describe the first weights: scored
    # on them the network is at chance; on the statistics of its last training batches, not.
    ds = load("digits")
    scores = {}
    for precise_bn in (0, 128):
        torch.manual_seed(0)
        scores[precise_bn] = fit(
            _bn_cnn(), ds.train, ds.val, epochs=1, lr=1e-2, precise_bn=precise_bn
        ).accuracy
    assert scores[128] > 0.5
    assert scores[128] > scores[0] + 0.2


@pytest.mark.parametrize("compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_precise_batch_norm_statistics_are_those_of_the_training_samples(compile):
    # 40 samples in batches of 16, 16 and 8: each sample counts once, whatever its batch.
    x, y = torch.randn(40, 4) * 3 + 5, torch.randint(0, 2, (40,))
    means = {}
    for precise_bn in (0, 40):
        model = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 2))
        fit(model, (x, y), (x, y), epochs=1, batch_size=16, precise_bn=precise_bn,
            compile=compile)  # fmt: skip
        means[precise_bn] = model[0].running_mean
        assert model[0].momentum == 0.1  # training goes on with running averages
    torch.testing.assert_close(means[40], x.mean(0))
    # The running averages after 3 steps still hold much of their initial zeros.
    assert not torch.allclose(means[0], x.mean(0), rtol=0.1)
    torch.testing.assert_close(model[0].running_var, x.var(0), rtol=0.2, atol=0.0)


@pytest.mark.slow
def test_a_compiled_model_trains_on_whole_batches_only():
    # 40 samples in batches of 16: a last batch of 8 would compile the model again.
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert fit(model, (x, y), (x, y), epochs=2, batch_size=16).images == 80
    compiled = fit(model, (x, y), (x, y), epochs=2, batch_size=16, compile=True)
    assert compiled.images == 64 and len(compiled.curve) == 2


class _FailsInSecondStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm, self.head, self.calls = nn.BatchNorm1d(4), nn.Linear(4, 2), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.head(self.norm(x))


def test_an_interrupted_epoch_leaves_batch_norm_as_it_was():
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    model = _FailsInSecondStep()
    with pytest.raises(RuntimeError, match="simulated"):
        fit(model, (x, y), (x, y), epochs=1, batch_size=16, precise_bn=40)
    assert model.norm.momentum == 0.1


def test_lazy_batch_norm_trains_when_every_batch_is_averaged():
    x, y = torch.randn(40, 4), torch.randint(0, 2, (40,))
    model = nn.Sequential(nn.LazyBatchNorm1d(), nn.Linear(4, 2))
    result = fit(model, (x, y), (x, y), epochs=2, batch_size=16, precise_bn=1000)
    assert len(result.curve) == 2 and model[0].momentum == 0.1


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


@pytest.mark.parametrize("samples", [8, 16, 32, 40])
def test_a_handful_of_steps_trains(samples):
    x, y = torch.randn(samples, 4), torch.randint(0, 2, (samples,))
    model = nn.Linear(4, 2)
    before = model.weight.detach().clone()
    result = fit(model, (x, y), (x, y), epochs=1, batch_size=8)
    assert result.images == samples and len(result.curve) == 1
    assert not torch.equal(model.weight.detach().cpu(), before)  # it took its steps


def test_images_are_augmented_in_batches_without_mixing_samples():
    x = torch.arange(4.0)[:, None, None, None].expand(4, 1, 8, 8).contiguous() + 1
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "crop+flip", generator=g)
    assert out.shape == x.shape
    for i in range(4):  # each image keeps its own values, with a zero (padded) border at most
        assert set(out[i].unique().tolist()) <= {0.0, i + 1.0}
        assert (out[i] == i + 1).sum() >= 7 * 7
    flipped = augment_batch(torch.arange(8.0).expand(64, 1, 1, 8), "flip", generator=g)
    rows = {tuple(r.flatten().tolist()) for r in flipped}
    assert rows == {tuple(range(8)), tuple(range(7, -1, -1))}
