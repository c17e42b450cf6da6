"""A network's diagram as SVG: a vertical chain of its blocks, with output shapes.

The blocks are the children of the network, plain ``nn.Sequential`` / ``nn.ModuleList``
containers opened up (a subclass such as a conv-BN-act block stays one box). Each box names
the block's type, what it holds (a layer's settings, or a composite block's layers), its
parameters, and the shape of its output for one sample, found by running one zero sample
through the network in eval mode. A block the forward pass does not run (e.g. a dead edge of
a NAS-Bench-201 cell) shows no shape. Pure Python: no Graphviz binary needed.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Block", "blocks", "svg"]

_WIDTH = 460
_BOX_HEIGHT = 46
_GAP = 18
_MARGIN = 12
_MAX_TEXT = 58


@dataclass(frozen=True)
class Block:
    """One box of a diagram.

    Attributes:
        name: The block's path in the network (``"3"``, ``"cells.2"``).
        kind: Its class name.
        detail: What it holds, in a few words.
        params: Its parameters (each counted once).
        shape: Its output shape for one sample without the batch dimension, or None when the
            forward pass did not run it.
    """

    name: str
    kind: str
    detail: str
    params: int
    shape: tuple[int, ...] | None


def blocks(model: nn.Module, input_shape: Sequence[int]) -> list[Block]:
    """The boxes of ``model``'s diagram, in the order of its children.

    Example:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> [(b.kind, b.params, b.shape) for b in blocks(net, (4,))]
        [('Input', 0, (4,)), ('Flatten', 0, (4,)), ('Linear', 10, (2,))]
    """
    parts = list(_parts("", model))
    shapes = _output_shapes(model, [m for _, m in parts], input_shape)
    return [Block("input", "Input", "one sample", 0, tuple(input_shape))] + [
        Block(name, type(m).__name__, _detail(m), _params(m), shapes.get(id(m)))
        for name, m in parts
    ]


def svg(model: nn.Module, input_shape: Sequence[int], *, title: str = "") -> str:
    """``model`` as an SVG image: a vertical chain of its blocks with output shapes.

    Args:
        model: The network (left unchanged: it runs in eval mode, without gradients, and its
            training mode is restored).
        input_shape: The shape of one sample, e.g. ``(1, 8, 8)``.
        title: A line above the chain, e.g. the architecture string.

    Example:
        >>> from torch import nn
        >>> image = svg(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (4,), title="tiny")
        >>> image.startswith("<svg") and "Linear" in image and "4 → 2" in image
        True
    """
    chain = blocks(model, input_shape)
    top = _MARGIN + (24 if title else 0)
    height = top + len(chain) * (_BOX_HEIGHT + _GAP) - _GAP + _MARGIN
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="4" refY="4" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
    ]
    if title:
        parts.append(_text(_MARGIN, _MARGIN + 14, _clip(title, 70), weight="bold"))
    for i, block in enumerate(chain):
        y = top + i * (_BOX_HEIGHT + _GAP)
        parts += _box(block, y)
        if i + 1 < len(chain):
            x, y0 = _WIDTH // 2, y + _BOX_HEIGHT
            parts.append(
                f'<line x1="{x}" y1="{y0}" x2="{x}" y2="{y0 + _GAP - 3}" stroke="#555" '
                'marker-end="url(#arrow)"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def _parts(prefix: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules shown as boxes: children, with plain containers opened up."""
    out = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if type(child) in (nn.Sequential, nn.ModuleList) and len(child):
            out += _parts(f"{path}.", child)
        else:
            out.append((path, child))
    return out or [(prefix.rstrip(".") or type(module).__name__, module)]


@torch.no_grad()
def _output_shapes(
    model: nn.Module, shown: list[nn.Module], input_shape: Sequence[int]
) -> dict[int, tuple[int, ...]]:
    shapes: dict[int, tuple[int, ...]] = {}

    def hook(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            shapes[id(module)] = tuple(output.shape[1:])

    handles = [m.register_forward_hook(hook) for m in shown]
    modes = [(m, m.training) for m in model.modules()]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    return shapes


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _detail(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        groups = f", groups {module.groups}" if module.groups > 1 else ""
        return (
            f"{module.in_channels} → {module.out_channels}, {kh}×{kw}, "
            f"stride {module.stride[0]}{groups}"
        )
    if isinstance(module, nn.Linear):
        return f"{module.in_features} → {module.out_features}"
    children = list(module.children())
    while len(children) == 1 and any(True for _ in children[0].children()):
        children = list(children[0].children())  # a block wrapping one container
    if children:
        return " → ".join(type(m).__name__ for m in children)
    return module.extra_repr()


def _box(block: Block, y: int) -> list[str]:
    x, w = _MARGIN, _WIDTH - 2 * _MARGIN
    fill = "#eef3fb" if block.kind != "Input" else "#f4f4f4"
    shape = "×".join(map(str, block.shape)) if block.shape is not None else "not run"
    params = f"{block.params:,} params" if block.params else ""
    return [
        f"<g><title>{html.escape(block.name)}</title>",
        f'<rect x="{x}" y="{y}" width="{w}" height="{_BOX_HEIGHT}" rx="6" fill="{fill}" '
        'stroke="#4a6fa5"/>',
        _text(x + 10, y + 18, block.kind, weight="bold"),
        _text(x + w - 10, y + 18, shape, anchor="end"),
        _text(x + 10, y + 36, _clip(block.detail, _MAX_TEXT), fill="#444"),
        _text(x + w - 10, y + 36, params, anchor="end", fill="#444"),
        "</g>",
    ]


def _text(
    x: int, y: int, text: str, *, weight: str = "normal", anchor: str = "start", fill: str = "#000"
) -> str:
    return (
        f'<text x="{x}" y="{y}" font-weight="{weight}" text-anchor="{anchor}" '
        f'fill="{fill}">{html.escape(text)}</text>'
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
