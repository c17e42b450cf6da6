"""``nb201``: the NAS-Bench-201 cell space, exactly as the benchmark builds it.

A cell is a DAG on four nodes; each of its six edges ``i <- j`` (``j < i``) carries one of
five operations (:data:`OPS`). The network is the benchmark's skeleton: a 3x3 conv-BN stem
with ``C`` channels, three stages of ``N`` cells with ``C``, ``2C`` and ``4C`` channels, a
residual reduction block between stages, then BN-ReLU, global average pooling and a linear
classifier (C=16, N=5 by default: the 15,625 networks of the benchmark, parameter for
parameter).

A trial chooses one operation per edge, under the parameter names ``"1<-0"``, ``"2<-0"``,
``"2<-1"``, ``"3<-0"``, ``"3<-1"``, ``"3<-2"``; :meth:`NB201.describe` turns them into the
benchmark's arch string ``|nor_conv_3x3~0|+|...|``, and :func:`build` builds from one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from optnas.spaces.ops import ReLUConvBN, pool

if TYPE_CHECKING:
    import optuna

    from optnas.data import DataSpec

__all__ = ["EDGES", "OPS", "NB201", "arch_str", "build", "canonical", "nb201", "parse"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The benchmark's operations, in its own order (``ops6`` digits 0-4)."""
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""The cell's edges ``(to, from)`` in arch-string order."""

_ARCH = re.compile(r"\|([a-z0-9_]+)~(\d)(?=\|)")


def _edge_name(to: int, src: int) -> str:
    return f"{to}<-{src}"


def _make_edge_op(name: str, channels: int) -> nn.Module:
    # Cells keep their channels and stride, so every edge is channels -> channels, stride 1.
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, kernel_size=1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, kernel_size=3)
    if name == "avg_pool_3x3":
        return pool("avg", kernel_size=3)
    raise ValueError(f"Unknown NAS-Bench-201 operation {name!r}; valid: {', '.join(OPS)}.")


def _live_edges(ops: Mapping[tuple[int, int], str]) -> set[tuple[int, int]]:
    """Edges whose result reaches the cell output from a non-zero input."""
    fed = {0}  # nodes that carry something other than zeros
    for to, src in EDGES:
        if ops[to, src] != "none" and src in fed:
            fed.add(to)
    used = {3}  # nodes the output depends on
    for to, src in reversed(EDGES):
        if ops[to, src] != "none" and to in used:
            used.add(src)
    return {(to, src) for to, src in EDGES if ops[to, src] != "none" and src in fed and to in used}


class Cell(nn.Module):
    """One NAS-Bench-201 cell; every node is the sum of its incoming edges' outputs.

    Every edge's operation is built (the benchmark counts its parameters), but edges whose
    result cannot reach the output, or that read a node with no input, are not run: the
    output is the same and the work is saved.
    """

    def __init__(self, ops: Mapping[tuple[int, int], str], channels: int) -> None:
        super().__init__()
        self.ops = dict(ops)
        self.edges = nn.ModuleDict(
            {_edge_name(*e): _make_edge_op(op, channels) for e, op in ops.items() if op != "none"}
        )
        self.live = sorted(_live_edges(ops))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: dict[int, torch.Tensor] = {0: x}
        for to, src in self.live:
            out = self.edges[_edge_name(to, src)](nodes[src])
            nodes[to] = nodes[to] + out if to in nodes else out
        return nodes[3] if 3 in nodes else torch.zeros_like(x)


class ResidualReduction(nn.Module):
    """The benchmark's reduction block: a stride-2 ResNet basic block with an avg-pool and
    1x1-conv shortcut (ceil-mode pooling, so odd sizes work too; even ones are unchanged).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(in_channels, out_channels, kernel_size=3, stride=2)
        self.conv_b = ReLUConvBN(out_channels, out_channels, kernel_size=3)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, ceil_mode=True),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def parse(arch: str) -> dict[str, str]:
    """The trial parameters of a NAS-Bench-201 arch string.

    Example:
        >>> parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|")
        {'1<-0': 'nor_conv_3x3', '2<-0': 'none', '2<-1': 'skip_connect', '3<-0': 'none', \
'3<-1': 'none', '3<-2': 'avg_pool_3x3'}
    """
    nodes = arch.split("+")
    found = [(i + 1, _ARCH.findall(node)) for i, node in enumerate(nodes)]
    edges = [(to, int(src), op) for to, pairs in found for op, src in pairs]
    if len(nodes) != 3 or [(to, src) for to, src, _ in edges] != list(EDGES):
        raise ValueError(
            f"Not a NAS-Bench-201 arch string: {arch!r}; expected the form "
            "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|'."
        )
    bad = [op for _, _, op in edges if op not in OPS]
    if bad:
        raise ValueError(f"Unknown NAS-Bench-201 operation {bad[0]!r}; valid: {', '.join(OPS)}.")
    params = {_edge_name(to, src): op for to, src, op in edges}
    if arch_str(params) != arch:
        raise ValueError(f"Not a NAS-Bench-201 arch string: {arch!r} (stray characters).")
    return params


def arch_str(params: Mapping[str, Any]) -> str:
    """The benchmark's arch string for trial parameters (the inverse of :func:`parse`).

    Example:
        >>> p = parse("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
        ...           "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
        >>> arch_str(p) == ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+"
        ...                 "|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")
        True
    """
    nodes = []
    for to in (1, 2, 3):
        ops = [f"|{params[_edge_name(to, src)]}~{src}|" for src in range(to)]
        nodes.append("".join(ops).replace("||", "|"))
    return "+".join(nodes)


def canonical(params: Mapping[str, Any]) -> str:
    """A key equal for cells that compute the same function.

    ``skip_connect`` passes its input on, ``none`` adds nothing, an edge from a node that
    receives nothing adds nothing, and a node is the multiset of the terms it sums (sums
    flattened). This merges the 15,625 cells into 4,930 classes; the benchmark's own
    ``to_unique_str(consider_zero=True)`` finds 6,466 because it keeps zero terms and
    nested sums apart, which change nothing. :class:`Cell` runs exactly the edges this key
    keeps, so cells with equal keys build the same computation.

    Example:
        >>> a = parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
        >>> b = parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
        >>> canonical(a) == canonical(b) == "x"
        True
    """
    terms: dict[int, list[str]] = {0: ["x"]}
    for to, src in EDGES:
        op = params[_edge_name(to, src)]
        inputs = terms.get(src)
        if op == "none" or not inputs:
            continue
        new = inputs if op == "skip_connect" else [f"{op}({'+'.join(inputs)})"]
        terms[to] = sorted(terms.get(to, []) + new)
    return "+".join(terms.get(3, [])) or "zero"


def build(
    arch: str,
    num_classes: int,
    *,
    in_channels: int = 3,
    channels: int = 16,
    cells: int = 5,
) -> nn.Module:
    """Build the benchmark's network for a NAS-Bench-201 arch string.

    Args:
        arch: E.g. ``"|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|
            nor_conv_3x3~1|skip_connect~2|"``.
        num_classes: Outputs of the classifier.
        in_channels: Channels of the input images.
        channels: ``C``, the first stage's width.
        cells: ``N``, cells per stage.

    Example:
        >>> model = build("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
        ...               "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|", 10)
        >>> sum(p.numel() for p in model.parameters())  # the benchmark: 0.802426 M
        802426
    """
    return _network(parse(arch), num_classes, in_channels, channels, cells)


def _network(
    params: Mapping[str, Any], num_classes: int, in_channels: int, channels: int, cells: int
) -> nn.Module:
    ops = {(to, src): params[_edge_name(to, src)] for to, src in EDGES}
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
    ]
    width = channels
    for stage in range(3):
        if stage:
            layers.append(ResidualReduction(width, width * 2))
            width *= 2
        layers += [Cell(ops, width) for _ in range(cells)]
    layers += [
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(width, num_classes),
    ]
    return nn.Sequential(*layers)


class NB201:
    """The NAS-Bench-201 space as a define-by-run function.

    Args:
        channels: ``C``, the first stage's width (the benchmark: 16).
        cells: ``N``, cells per stage (the benchmark: 5).

    Example:
        >>> import optuna
        >>> from optnas.data import DataSpec
        >>> trial = optuna.trial.FixedTrial(parse(
        ...     "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+"
        ...     "|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"))
        >>> model = nb201(trial, DataSpec((3, 32, 32), 100))
        >>> sum(p.numel() for p in model.parameters())  # the benchmark: 0.808276 M
        808276
    """

    name = "nb201"

    def __init__(self, *, channels: int = 16, cells: int = 5) -> None:
        if channels < 1 or cells < 1:
            raise ValueError(
                f"channels and cells must be at least 1, but got {channels} and {cells}."
            )
        self.channels = channels
        self.cells = cells

    def __call__(self, trial: optuna.trial.BaseTrial, spec: DataSpec) -> nn.Module:
        """Build one network of the space, choosing with ``trial``."""
        if not spec.is_image:
            raise ValueError(
                "The nb201 space needs image inputs (C, H, W), but this data has samples "
                f"of shape {spec.input_shape}."
            )
        params = {
            _edge_name(to, src): trial.suggest_categorical(_edge_name(to, src), OPS)
            for to, src in EDGES
        }
        return _network(params, spec.num_classes, spec.input_shape[0], self.channels, self.cells)

    def build(self, arch: str, num_classes: int, *, in_channels: int = 3) -> nn.Module:
        """:func:`build` with this space's ``channels`` and ``cells``."""
        return build(
            arch, num_classes, in_channels=in_channels, channels=self.channels, cells=self.cells
        )

    def describe(self, params: Mapping[str, Any]) -> str:
        """The benchmark's arch string (see :func:`arch_str`)."""
        return arch_str(params)

    def key(self, params: Mapping[str, Any]) -> str:
        """The canonical key (see :func:`canonical`)."""
        return canonical(params)


nb201 = NB201()
"""The NAS-Bench-201 space with the benchmark's C=16, N=5."""
