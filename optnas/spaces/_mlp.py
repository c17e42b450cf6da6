"""``mlp``: multi-layer perceptrons for tabular (flat-feature) data.

A trial chooses the depth, the width of every hidden layer, one activation, one
normalization and one dropout rate for all layers; a linear classifier follows. Inputs of
any shape are flattened first, so the space also runs on images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from optnas.spaces.ops import ACTIVATIONS, NORMS, LinearBlock

if TYPE_CHECKING:
    import optuna

    from optnas.data import DataSpec

__all__ = ["MLP", "mlp"]


class MLP:
    """The MLP space, with its choices as arguments.

    Args:
        max_layers: Most hidden layers (at least one).
        widths: Units a hidden layer may have.
        activations: Names among ``optnas.spaces.ops.ACTIVATIONS``.
        norms: Names among ``optnas.spaces.ops.NORMS`` (``"none"``, ``"batch"``, ``"layer"``).
        max_dropout: Largest dropout rate; rates are chosen in steps of 0.05 from 0.

    Example:
        >>> import optuna
        >>> from optnas.data import DataSpec
        >>> params = {"n_layers": 2, "layer0_width": 128, "layer1_width": 32,
        ...           "activation": "gelu", "norm": "layer", "dropout": 0.1}
        >>> model = mlp(optuna.trial.FixedTrial(params), DataSpec((13,), 3))
        >>> mlp.describe(params)
        '128-32 gelu layernorm dropout0.1'
    """

    name = "mlp"

    def __init__(
        self,
        *,
        max_layers: int = 4,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        activations: Sequence[str] = ("relu", "gelu", "silu", "tanh"),
        norms: Sequence[str] = ("none", "batch", "layer"),
        max_dropout: float = 0.5,
    ) -> None:
        for kind, names, valid in (
            ("activations", activations, ACTIVATIONS),
            ("norms", norms, NORMS),
        ):
            unknown = sorted(set(names) - set(valid))
            if unknown:
                raise ValueError(f"Unknown {kind} {unknown}; valid: {', '.join(valid)}.")
        if max_layers < 1:
            raise ValueError(f"max_layers must be at least 1, but got {max_layers}.")
        if not 0.0 <= max_dropout < 1.0:
            raise ValueError(f"max_dropout must be in [0, 1), but got {max_dropout}.")
        self.max_layers = max_layers
        # Plain ints and strs: NumPy scalars would reach torch and the canonical key.
        self.widths = tuple(int(w) for w in widths)
        self.activations = tuple(str(a) for a in activations)
        self.norms = tuple(str(n) for n in norms)
        self.max_dropout = max_dropout

    def __call__(self, trial: optuna.trial.BaseTrial, spec: DataSpec) -> nn.Module:
        """Build one network of the space, choosing with ``trial``."""
        n_layers = trial.suggest_int("n_layers", 1, self.max_layers)
        widths = [
            trial.suggest_categorical(f"layer{i}_width", self.widths) for i in range(n_layers)
        ]
        act = ACTIVATIONS[trial.suggest_categorical("activation", self.activations)]
        norm = NORMS[trial.suggest_categorical("norm", self.norms)]
        dropout = 0.0
        if self.max_dropout > 0:
            dropout = trial.suggest_float("dropout", 0.0, self.max_dropout, step=0.05)
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(spec.input_shape)
        for width in widths:
            layers.append(
                LinearBlock(features, width, act_layer=act, norm_layer=norm, dropout=dropout)
            )
            features = width
        layers.append(nn.Linear(features, spec.num_classes))
        return nn.Sequential(*layers)

    def describe(self, params: Mapping[str, Any]) -> str:
        """One line for the architecture that ``params`` choose; it names every choice that
        is in effect, and only those, so it doubles as the canonical key.

        Example:
            >>> mlp.describe({"n_layers": 1, "layer0_width": 64, "layer1_width": 512,
            ...               "activation": "relu", "norm": "none", "dropout": 0.0})
            '64 relu'
        """
        words = [
            "-".join(str(params[f"layer{i}_width"]) for i in range(params["n_layers"])),
            params["activation"],
        ]
        if params["norm"] != "none":
            words.append(f"{params['norm']}norm")
        dropout = round(float(params.get("dropout", 0.0)), 4)
        if dropout:
            words.append(f"dropout{dropout:g}")
        return " ".join(words)

    def key(self, params: Mapping[str, Any]) -> str:
        """The canonical key: equal for parameter sets that build the same network."""
        return self.describe(params)


mlp = MLP()
"""The MLP space with its default choices."""
