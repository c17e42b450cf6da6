"""``convnet``: a convolutional macro space of stacked blocks.

Each trial chooses a stem width and a depth; then, for every block, an operation (plain
conv, depthwise-separable conv or inverted residual), its width, kernel size, expansion
(inverted residual only) and whether a 2x2 max-pool follows it (only while the feature map
is larger than 1x1). A global average pool and a linear classifier close the network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from optnas.spaces.ops import OPS, ConvBNAct, OpName, make_op

if TYPE_CHECKING:
    import optuna

    from optnas.data import DataSpec

__all__ = ["ConvNet", "convnet"]


class ConvNet:
    """The conv macro space, with its choices as arguments.

    Args:
        max_blocks: Largest number of blocks after the stem.
        widths: Output channels a block may have.
        kernels: Kernel sizes a block may use.
        ops: Operations a block may be (a subset of ``optnas.spaces.ops.OPS``).
        expansions: Expansion ratios of an inverted residual.
        stem_widths: Output channels the stem convolution may have.

    Example:
        >>> import optuna
        >>> from optnas.data import DataSpec
        >>> space = ConvNet(max_blocks=2)
        >>> params = {"stem_width": 16, "n_blocks": 1, "block0_op": "sep",
        ...           "block0_width": 32, "block0_kernel": 3, "block0_pool": True}
        >>> model = space(optuna.trial.FixedTrial(params), DataSpec((1, 8, 8), 10))
        >>> space.describe(params)
        'stem16 | sep k3 c32 pool'
    """

    name = "convnet"

    def __init__(
        self,
        *,
        max_blocks: int = 4,
        widths: Sequence[int] = (16, 32, 64, 96),
        kernels: Sequence[int] = (3, 5),
        ops: Sequence[OpName] = OPS,
        expansions: Sequence[int] = (2, 4),
        stem_widths: Sequence[int] = (16, 32),
    ) -> None:
        unknown = set(ops) - set(OPS)
        if unknown:
            raise ValueError(f"Unknown operations {sorted(unknown)}; valid: {', '.join(OPS)}.")
        if max_blocks < 1:
            raise ValueError(f"max_blocks must be at least 1, but got {max_blocks}.")
        self.max_blocks = max_blocks
        self.widths = tuple(widths)
        self.kernels = tuple(kernels)
        self.ops = tuple(ops)
        self.expansions = tuple(expansions)
        self.stem_widths = tuple(stem_widths)

    def __call__(self, trial: optuna.trial.BaseTrial, spec: DataSpec) -> nn.Module:
        """Build one network of the space, choosing with ``trial``."""
        if not spec.is_image:
            raise ValueError(
                "The convnet space needs image inputs (C, H, W), but this data has "
                f"samples of shape {spec.input_shape}."
            )
        channels, size = spec.input_shape[0], min(spec.input_shape[1:])
        width = trial.suggest_categorical("stem_width", self.stem_widths)
        layers: list[nn.Module] = [ConvBNAct(channels, width, kernel_size=3)]
        for i in range(trial.suggest_int("n_blocks", 1, self.max_blocks)):
            block, width, size = self._block(trial, i, width, size)
            layers += block
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, spec.num_classes)]
        return nn.Sequential(*layers)

    def _block(
        self, trial: optuna.trial.BaseTrial, i: int, in_width: int, size: int
    ) -> tuple[list[nn.Module], int, int]:
        op = trial.suggest_categorical(f"block{i}_op", self.ops)
        width = trial.suggest_categorical(f"block{i}_width", self.widths)
        kernel = trial.suggest_categorical(f"block{i}_kernel", self.kernels)
        expansion = 1
        if op == "mbconv":
            expansion = trial.suggest_categorical(f"block{i}_expansion", self.expansions)
        layers = [make_op(op, in_width, width, kernel_size=kernel, expansion=expansion)]
        if size > 1 and trial.suggest_categorical(f"block{i}_pool", (False, True)):
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            size = (size + 1) // 2
        return layers, width, size

    def describe(self, params: Mapping[str, Any]) -> str:
        """One line for the architecture that ``params`` choose.

        Example:
            >>> convnet.describe({"stem_width": 16, "n_blocks": 1, "block0_op": "mbconv",
            ...     "block0_width": 32, "block0_kernel": 5, "block0_expansion": 4})
            'stem16 | mbconv k5 e4 c32'
        """
        parts = [f"stem{params['stem_width']}"]
        for i in range(params["n_blocks"]):
            op = params[f"block{i}_op"]
            words = [op, f"k{params[f'block{i}_kernel']}"]
            if op == "mbconv":
                words.append(f"e{params[f'block{i}_expansion']}")
            words.append(f"c{params[f'block{i}_width']}")
            if params.get(f"block{i}_pool"):
                words.append("pool")
            parts.append(" ".join(words))
        return " | ".join(parts)


convnet = ConvNet()
"""The conv macro space with its default choices."""
