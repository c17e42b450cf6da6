from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18

from optnas.cost import measure


def test_parameter_count_of_resnet18_is_exact():
    # torchvision publishes 11,689,512 parameters for resnet18.
    assert measure(resnet18(), (3, 32, 32))["params"] == 11_689_512


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
