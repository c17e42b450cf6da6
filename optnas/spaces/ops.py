"""The operation library the built-in spaces share: small blocks that take layer types.

Convolutional blocks (conv-BN-act, depthwise-separable conv, inverted residual with optional
squeeze-excite), the cell operations of NAS-Bench-201 (ReLU-conv-BN, pooling, identity,
zero) and a linear block for flat inputs. Where PyTorch or torchvision already has a block it
is used (``Identity``, ``Conv2dNormActivation``, ``SqueezeExcitation``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn import Identity
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "OPS",
    "ConvBNAct",
    "Identity",
    "InvertedResidual",
    "LinearBlock",
    "ReLUConvBN",
    "SepConv",
    "SqueezeExcitation",
    "Zero",
    "make_op",
    "pool",
]

OpName = Literal["conv", "sep", "mbconv"]
OPS: tuple[OpName, ...] = ("conv", "sep", "mbconv")
"""Names :func:`make_op` accepts: plain conv, depthwise-separable conv, inverted residual."""

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
"""Activation layer types by name."""

NORMS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
}
"""Normalization layer types of :class:`LinearBlock` by name."""


class ConvBNAct(Conv2dNormActivation):
    """Convolution, batch norm and (unless ``act_layer`` is None) an activation.

    torchvision's ``Conv2dNormActivation`` with "same" padding and no conv bias.

    Example:
        >>> import torch
        >>> ConvBNAct(3, 8, kernel_size=3, stride=2)(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act_layer: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            groups=groups,
            activation_layer=act_layer,
        )


def _depthwise(
    channels: int,
    kernel_size: int,
    stride: int,
    *,
    se: bool,
    block_in: int,
    act_layer: type[nn.Module],
) -> list[nn.Module]:
    """A depthwise conv-BN-act, then squeeze-excite if asked."""
    layers: list[nn.Module] = [
        ConvBNAct(
            channels,
            channels,
            kernel_size=kernel_size,
            stride=stride,
            groups=channels,
            act_layer=act_layer,
        )
    ]
    if se:
        # EfficientNet's sizing: the squeeze has a quarter of the block's input channels.
        layers.append(SqueezeExcitation(channels, max(1, block_in // 4), activation=act_layer))
    return layers


class SepConv(nn.Sequential):
    """Depthwise-separable convolution: depthwise ``k x k``, optional SE, pointwise ``1 x 1``.

    Example:
        >>> import torch
        >>> SepConv(8, 16, kernel_size=5, stride=2, se=True)(torch.zeros(2, 8, 8, 8)).shape
        torch.Size([2, 16, 4, 4])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        se: bool = False,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            *_depthwise(
                in_channels, kernel_size, stride, se=se, block_in=in_channels, act_layer=act_layer
            ),
            ConvBNAct(in_channels, out_channels, kernel_size=1, act_layer=act_layer),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand ``1 x 1``, depthwise ``k x k``, optional SE, project.

    The projection is linear. With ``expansion=1`` there is no expanding convolution (as in
    MobileNetV2's first block). The input is added back when the shapes allow (same
    channels, stride 1).

    Example:
        >>> import torch
        >>> block = InvertedResidual(16, 16, kernel_size=3, expansion=4, se=True)
        >>> block(torch.zeros(2, 16, 8, 8)).shape, block.residual
        (torch.Size([2, 16, 8, 8]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: int = 4,
        se: bool = False,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = in_channels == out_channels and stride == 1
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, act_layer=act_layer))
        layers += _depthwise(
            hidden, kernel_size, stride, se=se, block_in=in_channels, act_layer=act_layer
        )
        layers.append(ConvBNAct(hidden, out_channels, kernel_size=1, act_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


def make_op(
    name: OpName,
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    stride: int = 1,
    expansion: int = 4,
    se: bool = False,
) -> nn.Module:
    """Build the convolutional operation ``name`` (one of :data:`OPS`).

    ``expansion`` applies to ``mbconv`` only, ``se`` to ``sep`` and ``mbconv``.

    Example:
        >>> make_op("sep", 8, 16, kernel_size=5)[0][0].kernel_size
        (5, 5)
    """
    if name == "conv":
        return ConvBNAct(in_channels, out_channels, kernel_size=kernel_size, stride=stride)
    if name == "sep":
        return SepConv(in_channels, out_channels, kernel_size=kernel_size, stride=stride, se=se)
    if name == "mbconv":
        return InvertedResidual(
            in_channels,
            out_channels,
            kernel_size=kernel_size,
            stride=stride,
            expansion=expansion,
            se=se,
        )
    raise ValueError(f"Unknown operation {name!r}; valid names: {', '.join(OPS)}.")


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm: the convolution of NAS-Bench-201 and DARTS cells.

    Example:
        >>> import torch
        >>> ReLUConvBN(16, 16, kernel_size=3)(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1
    ) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        )


def pool(kind: Literal["avg", "max"], *, kernel_size: int = 3, stride: int = 1) -> nn.Module:
    """A "same"-padded pooling layer; average pooling leaves the padding out of the mean.

    Example:
        >>> import torch
        >>> pool("avg")(torch.ones(1, 1, 4, 4)).unique()
        tensor([1.])
    """
    padding = kernel_size // 2
    if kind == "avg":
        return nn.AvgPool2d(kernel_size, stride, padding, count_include_pad=False)
    if kind == "max":
        return nn.MaxPool2d(kernel_size, stride, padding)
    raise ValueError(f"Unknown pooling {kind!r}; valid: avg, max.")


class Zero(nn.Module):
    """The "none" operation: zeros shaped like the input (an edge that is not there).

    Example:
        >>> import torch
        >>> Zero()(torch.ones(2, 3)).sum()
        tensor(0.)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class LinearBlock(nn.Sequential):
    """Linear layer, optional normalization, activation, optional dropout: an MLP layer.

    The linear layer has no bias before batch norm, which would cancel it.

    Example:
        >>> import torch
        >>> block = LinearBlock(13, 64, norm_layer=nn.LayerNorm, act_layer=nn.GELU, dropout=0.1)
        >>> block(torch.zeros(4, 13)).shape
        torch.Size([4, 64])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        act_layer: type[nn.Module] = nn.ReLU,
        norm_layer: type[nn.Module] | None = None,
        dropout: float = 0.0,
    ) -> None:
        bias = norm_layer is not nn.BatchNorm1d
        layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_features))
        layers.append(act_layer())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)
