"""``convnet``: a MobileNet-like macro space of stages at halving resolutions.

A network is a 3x3 stem, then 1 to ``max_stages`` stages, then global average pooling and
a linear classifier. Every stage after the first halves the resolution in its first block.
Per stage a trial chooses, as in MnasNet's factorized space: the operation (plain conv,
depthwise-separable conv or inverted residual), the number of blocks, the width, the kernel
size, the expansion ratio (inverted residual only) and squeeze-excite (separable and
inverted residual only).

The space scales with the input: stages are offered only while the feature map is at least
2x2 after them (8x8 digits: up to three stages; 32x32: five), and inputs of 64 pixels or
more get a stride-2 stem (224x224 ends at 7x7 after five stages, like MobileNetV2).
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

#: Channels a stage may have, per stage (MobileNetV2's progression, in small steps).
STAGE_WIDTHS: tuple[tuple[int, ...], ...] = (
    (16, 24, 32),
    (24, 32, 48),
    (32, 48, 64),
    (64, 96, 128),
    (96, 128, 160),
)


class ConvNet:
    """The conv macro space, with its choices as arguments.

    Args:
        max_stages: Most stages after the stem (fewer on small inputs).
        max_depth: Most blocks in a stage.
        widths: Per stage, the output channels it may have; needs ``max_stages`` entries.
        kernels: Kernel sizes a stage may use.
        ops: Operations a stage may use (a subset of ``optnas.spaces.ops.OPS``).
        expansions: Expansion ratios of an inverted residual.
        stem_widths: Output channels the stem convolution may have.

    Example:
        >>> import optuna
        >>> from optnas.data import DataSpec
        >>> params = {"stem_width": 16, "n_stages": 2,
        ...           "stage0_op": "conv", "stage0_depth": 1, "stage0_width": 16,
        ...           "stage0_kernel": 3,
        ...           "stage1_op": "mbconv", "stage1_depth": 2, "stage1_width": 32,
        ...           "stage1_kernel": 5, "stage1_expansion": 6, "stage1_se": True}
        >>> model = convnet(optuna.trial.FixedTrial(params), DataSpec((1, 8, 8), 10))
        >>> convnet.describe(params)
        'stem16 | 1x conv k3 c16 | 2x mbconv k5 e6 c32 se'
    """

    name = "convnet"

    def __init__(
        self,
        *,
        max_stages: int = 5,
        max_depth: int = 3,
        widths: Sequence[Sequence[int]] = STAGE_WIDTHS,
        kernels: Sequence[int] = (3, 5),
        ops: Sequence[OpName] = OPS,
        expansions: Sequence[int] = (3, 6),
        stem_widths: Sequence[int] = (16, 24, 32),
    ) -> None:
        unknown = set(ops) - set(OPS)
        if unknown:
            raise ValueError(f"Unknown operations {sorted(unknown)}; valid: {', '.join(OPS)}.")
        if max_stages < 1 or max_depth < 1:
            raise ValueError(
                f"max_stages and max_depth must be at least 1, but got {max_stages} and "
                f"{max_depth}."
            )
        if len(widths) < max_stages:
            raise ValueError(
                f"widths needs one sequence per stage ({max_stages}), but has {len(widths)}."
            )
        self.max_stages = max_stages
        self.max_depth = max_depth
        # Plain ints and strs: NumPy scalars would reach torch and the canonical key.
        self.widths = tuple(tuple(int(c) for c in w) for w in widths)
        self.kernels = tuple(int(k) for k in kernels)
        self.ops = tuple(str(op) for op in ops)
        self.expansions = tuple(int(e) for e in expansions)
        self.stem_widths = tuple(int(c) for c in stem_widths)

    def __call__(self, trial: optuna.trial.BaseTrial, spec: DataSpec) -> nn.Module:
        """Build one network of the space, choosing with ``trial``."""
        if not spec.is_image:
            raise ValueError(
                "The convnet space needs image inputs (C, H, W), but this data has "
                f"samples of shape {spec.input_shape}."
            )
        channels, size = spec.input_shape[0], min(spec.input_shape[1:])
        stem_stride = 2 if size >= 64 else 1
        width = trial.suggest_categorical("stem_width", self.stem_widths)
        layers: list[nn.Module] = [ConvBNAct(channels, width, stride=stem_stride)]
        after_stem = (size + 1) // 2 if stem_stride == 2 else size
        n_stages = trial.suggest_int("n_stages", 1, self.stages_for(after_stem))
        for s in range(n_stages):
            stage, width = self._stage(trial, s, width)
            layers += stage
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, spec.num_classes)]
        return nn.Sequential(*layers)

    def stages_for(self, size: int) -> int:
        """How many stages a feature map of ``size`` pixels allows (each after the first
        halves it, rounding up; the last must be at least 2x2), at most ``max_stages``.

        Example:
            >>> convnet.stages_for(8), convnet.stages_for(9), convnet.stages_for(112)
            (3, 4, 5)
        """
        n = 1
        while (size + 1) // 2 >= 2 and n < self.max_stages:
            size, n = (size + 1) // 2, n + 1
        return n

    def _stage(
        self, trial: optuna.trial.BaseTrial, s: int, in_width: int
    ) -> tuple[list[nn.Module], int]:
        op = trial.suggest_categorical(f"stage{s}_op", self.ops)
        depth = trial.suggest_int(f"stage{s}_depth", 1, self.max_depth)
        width = trial.suggest_categorical(f"stage{s}_width", self.widths[s])
        kernel = trial.suggest_categorical(f"stage{s}_kernel", self.kernels)
        expansion = 1
        if op == "mbconv":
            expansion = trial.suggest_categorical(f"stage{s}_expansion", self.expansions)
        se = op != "conv" and trial.suggest_categorical(f"stage{s}_se", (False, True))
        blocks = [
            make_op(
                op,
                in_width if b == 0 else width,
                width,
                kernel_size=kernel,
                stride=2 if b == 0 and s > 0 else 1,
                expansion=expansion,
                se=se,
            )
            for b in range(depth)
        ]
        return blocks, width

    def describe(self, params: Mapping[str, Any]) -> str:
        """One line for the architecture that ``params`` choose; it names every choice that
        is in effect, and only those, so it doubles as the canonical key.

        Example:
            >>> convnet.describe({"stem_width": 24, "n_stages": 1, "stage0_op": "sep",
            ...     "stage0_depth": 3, "stage0_width": 32, "stage0_kernel": 5,
            ...     "stage0_se": False, "stage0_expansion": 6})
            'stem24 | 3x sep k5 c32'
        """
        parts = [f"stem{params['stem_width']}"]
        for s in range(params["n_stages"]):
            op = params[f"stage{s}_op"]
            words = [f"{params[f'stage{s}_depth']}x", op, f"k{params[f'stage{s}_kernel']}"]
            if op == "mbconv":
                words.append(f"e{params[f'stage{s}_expansion']}")
            words.append(f"c{params[f'stage{s}_width']}")
            if op != "conv" and params[f"stage{s}_se"]:
                words.append("se")
            parts.append(" ".join(words))
        return " | ".join(parts)

    def key(self, params: Mapping[str, Any]) -> str:
        """The canonical key: equal for parameter sets that build the same network.

        Example:
            >>> a = {"stem_width": 16, "n_stages": 1, "stage0_op": "conv", "stage0_depth": 1,
            ...      "stage0_width": 16, "stage0_kernel": 3}
            >>> convnet.key(a) == convnet.key(a | {"stage0_se": True, "stage1_op": "sep"})
            True
        """
        return self.describe(params)


convnet = ConvNet()
"""The conv macro space with its default choices."""
