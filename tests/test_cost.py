from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision import models

from optnas.cost import latency, measure

# torchvision's published figures: parameters, and "GFLOPS" that are in fact multiply-
# accumulates (GMACs) at 224x224.
TORCHVISION = [
    ("resnet18", 11_689_512, 1.81),
    ("resnet50", 25_557_032, 4.09),
    ("mobilenet_v2", 3_504_872, 0.30),
    ("mobilenet_v3_large", 5_483_032, 0.22),
    ("efficientnet_b0", 5_288_548, 0.39),
]


@pytest.mark.parametrize(("name", "params", "gmacs"), TORCHVISION)
def test_costs_of_torchvision_models_match_their_published_figures(name, params, gmacs):
    cost = measure(models.get_model(name), (3, 224, 224))
    assert cost["params"] == params
    assert cost["params"] == models.get_model_weights(name).DEFAULT.meta["num_params"]
    assert cost["macs"] / 1e9 == pytest.approx(gmacs, rel=0.02)
    assert cost["flops"] == 2 * cost["macs"]


def test_conv_flops_follow_the_formula():
    c_in, c_out, k, h, w = 3, 16, 3, 32, 32
    conv = nn.Conv2d(c_in, c_out, k, padding=1, bias=False)
    macs = c_out * h * w * c_in * k * k
    cost = measure(conv, (c_in, h, w))
    assert cost == {"params": c_out * c_in * k * k, "flops": 2 * macs, "macs": macs}


def test_linear_flops_and_params():
    cost = measure(nn.Linear(64, 10), (64,))
    assert cost["params"] == 64 * 10 + 10
    assert cost["macs"] == 640 and cost["flops"] == 1280


def test_measure_restores_training_mode_and_counts_shared_params_once():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.BatchNorm1d(4), shared)
    model.train()
    cost = measure(model, (4,))
    assert model.training
    assert cost["params"] == 20 + 8
    assert torch.is_grad_enabled()


def test_latency_grows_with_the_work_and_restores_the_mode():
    small, big = nn.Linear(8, 8), nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 1024))
    big.train()
    fast = latency(small, (8,), batch_size=64)
    slow = latency(big, (1024,), batch_size=64)
    assert 0 < fast < slow
    assert big.training and torch.is_grad_enabled()


def test_latency_refuses_bad_arguments():
    with pytest.raises(ValueError, match="batch_size and repeats must be at least 1"):
        latency(nn.Linear(2, 2), (2,), batch_size=0)
