"""The child trainer: data on the training device, mini-batches by index, no data loader.

Inputs and labels are moved to the device once; an epoch is a random permutation of
indices sliced into batches, so no per-sample Python runs in the loop. On CUDA the model
runs in bf16 autocast and channels_last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DivergedError", "TrainResult", "evaluate", "fit", "to_device"]

Split = tuple[torch.Tensor, torch.Tensor]


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What one child training produced.

    Attributes:
        accuracy: Validation accuracy after the last epoch trained.
        curve: Validation accuracy after each epoch.
        seconds: Wall time of the training, evaluations included.
    """

    accuracy: float
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` with AdamW and a one-cycle schedule; evaluate after every epoch.

    Args:
        model: The network; moved to ``device``.
        train: ``(inputs, labels)`` to train on; moved to ``device`` unless already there.
        val: ``(inputs, labels)`` to measure accuracy on after each epoch.
        epochs: Passes over ``train``.
        batch_size: Samples per step.
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: AdamW's decoupled weight decay.
        label_smoothing: Cross-entropy label smoothing.
        device: Where to train.
        seed: Seed of the batch order.
        on_epoch: Called as ``on_epoch(epoch, val_accuracy)`` after each epoch (from 0);
            it may raise (e.g. ``optuna.TrialPruned``) to stop the training.

    Returns:
        The final validation accuracy, the per-epoch curve and the wall time.

    Raises:
        DivergedError: The training loss of an epoch is NaN or infinite.

    Example:
        >>> import torch
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> result = fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=2, batch_size=16)
        >>> len(result.curve)
        2
    """
    start = time.perf_counter()
    device = torch.device(device)
    cuda = device.type == "cuda"
    x_train, y_train = to_device(train, device)
    x_val, y_val = to_device(val, device)
    model = _prepare(model, device, image=x_train.dim() == 4)
    steps = _batches_per_epoch(len(x_train), batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=max(epochs * steps, 1), pct_start=0.25
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    result = TrainResult(accuracy=0.0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        for step in range(steps):
            idx = order[step * batch_size : (step + 1) * batch_size]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = F.cross_entropy(
                    model(x_train[idx]), y_train[idx], label_smoothing=label_smoothing
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.detach()
        if not math.isfinite(loss_sum.item()):
            raise DivergedError(f"training loss is {loss_sum.item()} in epoch {epoch}")
        result.accuracy = evaluate(model, (x_val, y_val))
        result.curve.append(result.accuracy)
        if on_epoch is not None:
            on_epoch(epoch, result.accuracy)
    result.seconds = time.perf_counter() - start
    return result


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, *, batch_size: int = 4096) -> float:
    """Accuracy of ``model`` on ``split``, in eval mode, in large batches.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2)
        >>> 0.0 <= evaluate(model, (torch.randn(8, 2), torch.zeros(8, dtype=torch.long))) <= 1.0
        True
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else split[0].device
    x, y = to_device(split, device)
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for i in range(0, len(x), batch_size):
            correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()
    return correct.item() / max(len(x), 1)


def to_device(split: Split, device: torch.device) -> Split:
    """``split`` on ``device``; images channels_last on CUDA. No copy where already so.

    Example:
        >>> import torch
        >>> x, y = to_device((torch.zeros(2, 3), torch.zeros(2)), torch.device("cpu"))
        >>> x.device.type
        'cpu'
    """
    x, y = split
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _prepare(model: nn.Module, device: torch.device, *, image: bool) -> nn.Module:
    model = model.to(device)
    if device.type == "cuda" and image:
        model = model.to(memory_format=torch.channels_last)
    return model


def _batches_per_epoch(n: int, batch_size: int) -> int:
    # A trailing batch of one sample breaks batch norm on 1x1 feature maps: drop it.
    full, rest = divmod(n, batch_size)
    return max(full + (rest > 1), 1)
