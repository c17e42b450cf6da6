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

import itertools
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from optnas.spaces.ops import Identity, ReLUConvBN, pool

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
        return Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, kernel_size=1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, kernel_size=3)
    if name == "avg_pool_3x3":
        return pool("avg", kernel_size=3)
    raise ValueError(f"Unknown NAS-Bench-201 operation {name!r}; valid: {', '.join(OPS)}.")


_CONVS = ("nor_conv_1x1", "nor_conv_3x3")


def _fed_and_used(ops: Mapping[tuple[int, int], str]) -> tuple[set[int], set[int]]:
    """Nodes that carry something other than zeros, and nodes the output depends on.

    A convolution of zeros is not zero: its batch norm adds its learned shift.
    """
    fed = {0}
    for to, src in EDGES:
        if ops[to, src] in _CONVS or (ops[to, src] != "none" and src in fed):
            fed.add(to)
    used = {3}
    for to, src in reversed(EDGES):
        if ops[to, src] != "none" and to in used:
            used.add(src)
    return fed, used


def _live_edges(ops: Mapping[tuple[int, int], str]) -> list[tuple[int, int]]:
    """Edges that change the cell's output: they reach it, and do not just pass on zeros."""
    fed, used = _fed_and_used(ops)
    return [
        (to, src)
        for to, src in EDGES
        if ops[to, src] != "none" and to in used and (src in fed or ops[to, src] in _CONVS)
    ]


class Cell(nn.Module):
    """One NAS-Bench-201 cell; every node is the sum of its incoming edges' outputs.

    Every edge's operation is built (the benchmark counts its parameters), but edges that
    cannot change the output (their result never reaches it, or they pool or pass on a node
    that is all zeros) are not run: the output is the same and the work is saved. FLOPs
    measured on this cell therefore count only the work that matters.
    """

    def __init__(self, ops: Mapping[tuple[int, int], str], channels: int) -> None:
        super().__init__()
        self.ops = dict(ops)
        self.edges = nn.ModuleDict(
            {_edge_name(*e): _make_edge_op(op, channels) for e, op in ops.items() if op != "none"}
        )
        self.live = _live_edges(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: dict[int, torch.Tensor] = {0: x}
        for to, src in self.live:
            source = nodes[src] if src in nodes else torch.zeros_like(x)
            out = self.edges[_edge_name(to, src)](source)
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
    """A key equal exactly for cells that compute the same thing (up to their weights).

    Built from the edges :class:`Cell` runs: ``skip_connect`` passes its input on, ``none``
    and edges whose result cannot change the output drop out, a convolution of an all-zero
    node is a learned shift (``bias``), and each node is the sum of the operations that
    reach it, counted with multiplicity (one convolution reached along two paths is not two
    convolutions). Cells get equal keys when their operations can be matched one to one,
    with the same types and the same inputs. The 15,625 cells form 5,650 such classes.
    Equal keys may still differ in parameters: the benchmark builds every edge.

    Example:
        >>> a = parse("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
        >>> b = parse("|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
        >>> canonical(a) == canonical(b) == "x"
        True
    """
    ops = {(to, src): params[_edge_name(to, src)] for to, src in EDGES}
    inputs: dict[tuple[int, int], tuple[str, Counter[Any]]] = {}
    value: dict[int, Counter[Any]] = {0: Counter({"x": 1})}
    for edge in _live_edges(ops):
        to, src = edge
        source = value.get(src, Counter())
        node = value.setdefault(to, Counter())
        if ops[edge] == "skip_connect":
            node.update(source)
        else:
            inputs[edge] = (ops[edge] if source else "bias", source)
            node[edge] += 1
    out = value.get(3, Counter())
    return _serialize(inputs, out) if out else "zero"


def _serialize(inputs: Mapping[Any, tuple[str, Counter[Any]]], out: Counter[Any]) -> str:
    """The smallest text of the computation over all numberings of look-alike operations."""
    if not inputs:
        return _terms(out, {"x": "x"})
    labels: dict[Any, str] = {"x": "x"}
    for edge, (op, source) in inputs.items():  # EDGES order: inputs come first
        labels[edge] = f"{op}({_terms(source, labels)})"
    ordered = sorted(inputs, key=labels.__getitem__)
    groups = [list(g) for _, g in itertools.groupby(ordered, key=labels.__getitem__)]
    texts = []
    for choice in itertools.product(*(itertools.permutations(g) for g in groups)):
        names = {"x": "x"} | {e: f"e{i}" for i, e in enumerate(itertools.chain(*choice))}
        parts = [f"{names[e]}={inputs[e][0]}({_terms(inputs[e][1], names)})" for e in inputs]
        texts.append("; ".join(sorted(parts)) + f" -> {_terms(out, names)}")
    return min(texts)


def _terms(counts: Counter[Any], names: Mapping[Any, str]) -> str:
    return "+".join(sorted(f"{n}*{names[a]}" if n > 1 else names[a] for a, n in counts.items()))


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
    OPS = OPS
    EDGES = EDGES

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

    @staticmethod
    def parse(arch: str) -> dict[str, str]:
        """The trial parameters of an arch string (see :func:`parse`)."""
        return parse(arch)

    def describe(self, params: Mapping[str, Any]) -> str:
        """The benchmark's arch string (see :func:`arch_str`)."""
        return arch_str(params)

    def key(self, params: Mapping[str, Any]) -> str:
        """The canonical key (see :func:`canonical`)."""
        return canonical(params)


nb201 = NB201()
"""The NAS-Bench-201 space with the benchmark's C=16, N=5."""
