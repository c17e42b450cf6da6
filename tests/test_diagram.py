from __future__ import annotations

import xml.etree.ElementTree as ET

import optuna
import torch

from optnas.data import DataSpec
from optnas.diagram import blocks, svg
from optnas.spaces import convnet, nb201

PARAMS = {
    "stem_width": 16,
    "n_stages": 2,
    "stage0_op": "sep",
    "stage0_depth": 1,
    "stage0_width": 24,
    "stage0_kernel": 3,
    "stage0_se": True,
    "stage1_op": "mbconv",
    "stage1_depth": 2,
    "stage1_width": 32,
    "stage1_kernel": 5,
    "stage1_expansion": 6,
    "stage1_se": False,
}


def test_convnet_diagram_shows_each_block_with_its_output_shape():
    model = convnet(optuna.trial.FixedTrial(PARAMS), DataSpec((1, 8, 8), 10))
    image = svg(model, (1, 8, 8), title=convnet.describe(PARAMS))
    root = ET.fromstring(image)  # well-formed SVG
    assert root.tag.endswith("svg")
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[0] == "stem16 | 1x sep k3 c24 se | 2x mbconv k5 e6 c32"
    for kind in ("ConvBNAct", "SepConv", "InvertedResidual", "Linear"):
        assert kind in texts
    # The resolution halves at the second stage; the classifier gives 10 logits.
    assert "24×8×8" in texts and "32×4×4" in texts and "10" in texts
    total = sum(b.params for b in blocks(model, (1, 8, 8)))
    assert total == sum(p.numel() for p in model.parameters())


def test_drawing_leaves_the_network_as_it_was():
    model = convnet(optuna.trial.FixedTrial(PARAMS), DataSpec((1, 8, 8), 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    svg(model, (1, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _Unused(torch.nn.Module):
    """A network holding a layer its forward pass never runs (like a dead nb201 edge)."""

    def __init__(self) -> None:
        super().__init__()
        self.used = torch.nn.Linear(4, 2)
        self.dead = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def test_blocks_the_forward_pass_skips_show_no_shape():
    chain = {b.name: b for b in blocks(_Unused(), (4,))}
    assert chain["used"].shape == (2,) and chain["dead"].shape is None
    assert "not run" in svg(_Unused(), (4,))


def test_nb201_networks_are_drawn_cell_by_cell():
    ops = dict.fromkeys(("1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"), "nor_conv_3x3")
    chain = blocks(nb201(optuna.trial.FixedTrial(ops), DataSpec((3, 8, 8), 10)), (3, 8, 8))
    assert sum(b.kind == "Cell" for b in chain) == 15
    assert chain[-1].shape == (10,)
