from __future__ import annotations

import optuna
import pytest
import torch

from optnas import spaces
from optnas.data import DataSpec
from optnas.spaces import ConvNet, convnet

SHAPES = [(1, 8, 8), (3, 32, 32), (3, 7, 9)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", range(6))
def test_convnet_samples_train_forward_and_backward(shape, seed):
    spec = DataSpec(shape, 10)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    trial = study.ask()
    model = convnet(trial, spec)
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert convnet.describe(trial.params).startswith("stem")


def test_rebuild_from_params_is_deterministic():
    spec = DataSpec((1, 8, 8), 10)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3)).ask()
    torch.manual_seed(0)
    first = convnet(trial, spec)
    torch.manual_seed(0)
    again = convnet(optuna.trial.FixedTrial(trial.params), spec)
    assert str(first) == str(again)
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_pooling_stops_at_one_pixel():
    params = {"stem_width": 16, "n_blocks": 4}
    for i in range(4):
        params |= {f"block{i}_op": "conv", f"block{i}_width": 16, f"block{i}_kernel": 3}
    params |= {"block0_pool": True, "block1_pool": True, "block2_pool": True}
    model = convnet(optuna.trial.FixedTrial(params), DataSpec((1, 8, 8), 10))  # no block3_pool
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert convnet.describe(params).count("pool") == 3


def test_convnet_refuses_flat_inputs():
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match="needs image inputs"):
        convnet(trial, DataSpec((64,), 10))


def test_space_choices_are_arguments():
    space = ConvNet(max_blocks=1, ops=("sep",), widths=(8,), kernels=(3,), stem_widths=(4,))
    trial = optuna.create_study().ask()
    space(trial, DataSpec((1, 8, 8), 3))
    assert trial.params["block0_op"] == "sep" and trial.params["n_blocks"] == 1
    with pytest.raises(ValueError, match="Unknown operations"):
        ConvNet(ops=("lstm",))


def test_space_names_resolve():
    assert spaces.get("convnet") is convnet
    with pytest.raises(ValueError, match="Unknown space 'resnet'; valid names: convnet"):
        spaces.get("resnet")
