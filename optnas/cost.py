"""What a network costs, measured on the built module before any training.

Conventions (the most common confusion in NAS papers is MACs reported as FLOPs):

* ``params``: the number of elements of all distinct parameters (trainable or not).
* ``macs``: multiply-accumulates of one forward pass on a batch of one.
* ``flops``: floating-point operations of the same pass, counted by
  :class:`torch.utils.flop_counter.FlopCounterMode`, which counts one multiply-accumulate
  as two operations: ``flops == 2 * macs``. Like torchvision's published figures it counts
  convolutions and matrix products; element-wise layers (norms, activations, pooling)
  are not counted.
* ``latency``: milliseconds of one forward pass at a stated batch size on a stated device,
  in eval mode without gradients, in float32: the median of repeated timed passes after
  warm-up passes (CUDA is synchronized around each pass). It depends on the machine and
  on what else runs there, so compare latencies measured on the same machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["METRICS", "latency", "measure"]

METRICS = ("params", "flops", "macs")
"""What :func:`measure` returns; also the cost objectives and budgets a search accepts."""


def measure(model: torch.nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """Count the parameters, FLOPs and MACs of ``model`` for one input of ``input_shape``.

    Args:
        model: The network. It is run once, in eval mode and without gradients, on a batch
            of one zero input on the device of its first parameter; the train/eval mode of
            each of its modules is restored afterwards.
        input_shape: The shape of one sample, without the batch dimension, e.g. ``(1, 8, 8)``.

    Returns:
        ``{"params": ..., "flops": ..., "macs": ...}`` (integers; ``flops == 2 * macs``).

    Raises:
        ValueError: The forward pass failed, e.g. on a network built for another input
            shape; the message names the shape, and torch's error is its cause.

    Example:
        >>> import torch
        >>> from optnas.cost import measure
        >>> measure(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), (3, 32, 32))
        {'params': 216, 'flops': 442368, 'macs': 221184}
    """
    return measure_forward(model, input_shape)[0]


def measure_forward(
    model: torch.nn.Module, input_shape: Sequence[int]
) -> tuple[dict[str, int], torch.Tensor]:
    """:func:`measure`'s counts, and the output of the forward pass that counted them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, *input_shape), device=_device_of(model))
    counter = FlopCounterMode(display=False)
    try:
        with _eval_mode(model), torch.no_grad(), counter:
            out = model(x)
    except RuntimeError as error:
        if isinstance(error, torch.OutOfMemoryError) or "CUDA" in str(error):
            raise  # The device's fault, not the network's: the caller tells which.
        raise ValueError(
            f"The network failed on an input of shape {tuple(x.shape)} (one sample of shape "
            f"{tuple(input_shape)}): {error}"
        ) from error
    flops = int(counter.get_total_flops())
    params = sum(p.numel() for p in model.parameters())  # parameters() yields shared ones once
    return {"params": params, "flops": flops, "macs": flops // 2}, out


def latency(
    model: torch.nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    warmup: int = 5,
    repeats: int = 20,
) -> float:
    """Milliseconds of one forward pass of ``model`` on a batch of ``batch_size`` inputs.

    Args:
        model: The network; it is moved to ``device``, and the train/eval mode of each of
            its modules is restored afterwards.
        input_shape: The shape of one sample, without the batch dimension.
        batch_size: Samples per timed pass.
        device: Where to time it; by default the device of the model's first parameter.
        warmup: Untimed passes first (allocator, kernel selection, caches).
        repeats: Timed passes; the median is returned.

    Example:
        >>> import torch
        >>> ms = latency(torch.nn.Linear(64, 10), (64,), batch_size=32)
        >>> 0 < ms < 1000
        True
    """
    import statistics
    import time

    import torch

    if batch_size < 1 or warmup < 0 or repeats < 1:
        raise ValueError(
            "batch_size and repeats must be at least 1 and warmup at least 0, but got "
            f"{batch_size}, {repeats} and {warmup}."
        )
    device = torch.device(device) if device is not None else _device_of(model)
    model.to(device)
    x = torch.randn((batch_size, *input_shape), device=device)

    def sync() -> None:
        # Kernels run asynchronously on accelerators: wait for them on both sides of a pass.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type != "cpu":
            getattr(torch, device.type).synchronize()  # mps, xpu

    times = []
    with _eval_mode(model), torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            model(x)
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _device_of(model: torch.nn.Module) -> torch.device:
    import torch

    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every submodule's own train/eval mode back."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
