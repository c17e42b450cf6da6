"""The operation library the built-in spaces share: small blocks that take layer types."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["OPS", "ConvBNAct", "InvertedResidual", "SepConv", "make_op"]

OpName = Literal["conv", "sep", "mbconv"]
OPS: tuple[OpName, ...] = ("conv", "sep", "mbconv")
"""Names :func:`make_op` accepts: plain conv, depthwise-separable conv, inverted residual."""


class ConvBNAct(nn.Sequential):
    """Convolution, batch norm and (unless ``act_layer`` is None) an activation.

    Example:
        >>> import torch
        >>> ConvBNAct(3, 8, kernel_size=3)(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 8, 8, 8])
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
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


class SepConv(nn.Sequential):
    """Depthwise-separable convolution: a depthwise ``k x k`` then a pointwise ``1 x 1``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            ConvBNAct(
                in_channels,
                in_channels,
                kernel_size=kernel_size,
                groups=in_channels,
                act_layer=act_layer,
            ),
            ConvBNAct(in_channels, out_channels, kernel_size=1, act_layer=act_layer),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand ``1 x 1``, depthwise ``k x k``, linear project ``1 x 1``.

    The input is added back when the shapes allow (same channels, stride 1).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        expansion: int = 4,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.residual = in_channels == out_channels
        self.block = nn.Sequential(
            ConvBNAct(in_channels, hidden, kernel_size=1, act_layer=act_layer),
            ConvBNAct(hidden, hidden, kernel_size=kernel_size, groups=hidden, act_layer=act_layer),
            ConvBNAct(hidden, out_channels, kernel_size=1, act_layer=None),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


def make_op(
    name: OpName,
    in_channels: int,
    out_channels: int,
    *,
    kernel_size: int = 3,
    expansion: int = 4,
) -> nn.Module:
    """Build the operation ``name`` (one of :data:`OPS`).

    Example:
        >>> make_op("sep", 8, 16, kernel_size=5)[0][0].kernel_size
        (5, 5)
    """
    if name == "conv":
        return ConvBNAct(in_channels, out_channels, kernel_size=kernel_size)
    if name == "sep":
        return SepConv(in_channels, out_channels, kernel_size=kernel_size)
    if name == "mbconv":
        return InvertedResidual(
            in_channels, out_channels, kernel_size=kernel_size, expansion=expansion
        )
    raise ValueError(f"Unknown operation {name!r}; valid names: {', '.join(OPS)}.")
