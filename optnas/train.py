"""The child trainer: data on the training device, augmentation in batches, no data loader.

Inputs and labels are moved to the device once (on CUDA, inputs in bf16: half the memory and
half the bytes per gathered batch); an epoch is a random permutation of indices sliced into
batches, and random crops and flips are one batched gather on the device, so no per-sample
Python runs in the loop. On CUDA the model runs in bf16 autocast and channels_last, with
fused optimizer steps, and cuDNN autotuning on request.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from optnas.data import AUGMENTS, AugmentName

__all__ = [
    "AUGMENTS",
    "OPTIMIZERS",
    "DivergedError",
    "TrainResult",
    "augment_batch",
    "evaluate",
    "fit",
    "to_device",
]

Split = tuple[torch.Tensor, torch.Tensor]
OPTIMIZERS = ("adamw", "sgd")
"""AdamW, or SGD with Nesterov momentum 0.9; both under a one-cycle schedule."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What one child training produced.

    Attributes:
        accuracy: Validation accuracy after the last epoch trained.
        curve: Validation accuracy after each epoch.
        seconds: Wall time of the training, evaluations included.
        images: Training samples processed (epochs x training samples, augmented or not).
    """

    accuracy: float
    curve: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images: int = 0


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    *,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-2,
    optimizer: Literal["adamw", "sgd"] = "adamw",
    weight_decay: float = 1e-4,
    label_smoothing: float = 0.0,
    augment: AugmentName = "none",
    autotune: bool = False,
    compile: bool = False,
    precise_bn: int = 128,
    device: str | torch.device = "cpu",
    seed: int = 0,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` under a one-cycle schedule; evaluate after every epoch.

    Args:
        model: The network; moved to ``device``.
        train: ``(inputs, labels)`` to train on; moved to ``device`` unless already there.
        val: ``(inputs, labels)`` to measure accuracy on after each epoch.
        epochs: Passes over ``train``.
        batch_size: Samples per step.
        lr: Peak learning rate of the one-cycle schedule.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9).
        weight_decay: Weight decay (decoupled for AdamW).
        label_smoothing: Cross-entropy label smoothing.
        augment: For images: ``"crop"`` (random crop after zero-padding by an eighth of
            the side), ``"flip"`` (random horizontal flip), ``"crop+flip"`` or ``"none"``.
        autotune: Let cuDNN time its algorithms for each new layer shape (CUDA only). It
            pays over a long training of one network; search children are short and each
            brings new shapes to time, so it is off by default (``studies/pool_search.py
            --autotune-too`` measures both).
        compile: Train a ``torch.compile``-d model. It compiles per architecture, which
            costs more than a short child's training saves (see ``studies/gpu_throughput.py``),
            so it is off by default. Each epoch then trains on whole batches only (the
            reshuffled order leaves out other samples each epoch): a last, smaller batch
            would compile the model a second time.
        precise_bn: Evaluate on batch norm's statistics over the epoch's last batches
            holding at least ``precise_bn`` training samples, weighted by sample count,
            instead of its running averages (0: the running averages). Early in a short
            training the running averages still hold their initial values and lag the
            fast-moving weights, so far that a network scoring 0.9 on batch statistics
            scores chance on them, and a pruner would judge it on that. The statistics are
            gathered as those batches train, at no extra cost; with ``compile``, by forward
            passes over ``precise_bn`` training samples after the epoch, unaugmented, since
            changing the averaging mid-epoch would make a compiled model recompile (pass
            ``compile=True`` rather than a model compiled beforehand, for that reason).
        device: Where to train.
        seed: Seed of the batch order and the augmentation.
        on_epoch: Called as ``on_epoch(epoch, val_accuracy)`` after each epoch (from 0);
            it may raise (e.g. ``optuna.TrialPruned``) to stop the training.

    Returns:
        The final validation accuracy, the per-epoch curve, the wall time and the number of
        training samples processed.

    Raises:
        DivergedError: The training loss of an epoch is NaN or infinite.
        ValueError: An unknown optimizer or augmentation, augmentation of non-images, or a
            negative ``precise_bn``.

    Example:
        >>> import torch
        >>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
        >>> result = fit(torch.nn.Linear(4, 2), (x, y), (x, y), epochs=2, batch_size=16)
        >>> len(result.curve), result.images
        (2, 128)
    """
    start = time.perf_counter()
    device = torch.device(device)
    x_train, y_train = to_device(train, device)
    x_val, y_val = to_device(val, device)
    _check_augment(augment, x_train)
    if isinstance(precise_bn, bool) or not isinstance(precise_bn, int) or precise_bn < 0:
        raise ValueError(f"precise_bn must be a whole number >= 0, but got {precise_bn!r}.")
    model = _prepare(model, device, image=x_train.dim() == 4)
    steps = _batches_per_epoch(len(x_train), batch_size, whole=compile)
    opt = _optimizer(optimizer, model, lr=lr, weight_decay=weight_decay, device=device)
    schedule = _one_cycle(opt, lr=lr, total_steps=epochs * steps)
    step_fn = torch.compile(model) if compile else model
    sizes = [min(batch_size, len(x_train) - s * batch_size) for s in range(steps)]
    statistics = _LastSamples(model, precise_bn, sizes, in_training=not compile)
    generator = torch.Generator(device=device).manual_seed(seed)
    result = TrainResult(accuracy=0.0)
    with _cudnn_autotuning(device.type == "cuda" and autotune):
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(len(x_train), device=device, generator=generator)
            loss_sum = torch.zeros((), device=device)
            with statistics.epoch():
                for step in range(steps):
                    statistics.before_step(step)
                    idx = order[step * batch_size : (step + 1) * batch_size]
                    x = augment_batch(x_train[idx], augment, generator=generator)
                    with torch.autocast(device.type, torch.bfloat16, enabled=_bf16(device)):
                        loss = F.cross_entropy(
                            step_fn(x), y_train[idx], label_smoothing=label_smoothing
                        )
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    schedule.step()
                    loss_sum += loss.detach()
            if not math.isfinite(loss_sum.item()):
                raise DivergedError(f"training loss is {loss_sum.item()} in epoch {epoch}")
            result.images += min(steps * batch_size, len(x_train))
            statistics.after_epoch(x_train, order, batch_size)
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
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=_bf16(device)):
        for i in range(0, len(x), batch_size):
            correct += (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum()
    return correct.item() / max(len(x), 1)


class _LastSamples:
    """Batch norm's statistics over an epoch's last ``samples`` training samples, weighted
    by sample count, in place of its running averages (0 samples: the running averages).

    ``in_training``: gathered as the epoch's last batches (of ``sizes``) train, by setting
    each batch's momentum to its share of the samples so far; else by forward passes over
    ``samples`` training samples after the epoch. The momenta are restored either way.
    """

    def __init__(
        self, model: nn.Module, samples: int, sizes: list[int], *, in_training: bool
    ) -> None:
        self.model = model
        self.norms = [
            m
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        self.sizes = sizes
        self.start = len(sizes)  # the first step of the last batches; none by default
        if self.norms and samples and in_training:
            total = 0
            for self.start in reversed(range(len(sizes))):
                total += sizes[self.start]
                if total >= samples:
                    break
        self.after = bool(self.norms and samples and not in_training)
        self.samples = max(samples, 2)
        self.seen = 0

    @contextlib.contextmanager
    def epoch(self) -> Iterator[None]:
        momenta = [m.momentum for m in self.norms]
        self.seen = 0
        try:
            yield
        finally:
            for m, momentum in zip(self.norms, momenta, strict=True):
                m.momentum = momentum

    def before_step(self, step: int) -> None:
        if step >= self.start:
            self._weigh(self.sizes[step])

    def _weigh(self, size: int) -> None:
        """The next batch of ``size`` samples weighs its share of the samples so far (all,
        for the first)."""
        self.seen += size
        for m in self.norms:
            m.momentum = size / self.seen

    @torch.no_grad()
    def after_epoch(self, x: torch.Tensor, order: torch.Tensor, batch_size: int) -> None:
        """Unless gathered in training: forward passes over the first samples of ``order``,
        unaugmented, with the epoch's final weights."""
        if not self.after:
            return
        x = x[order[: self.samples]]
        self.model.train()
        with self.epoch(), torch.autocast(x.device.type, torch.bfloat16, enabled=_bf16(x.device)):
            for i in range(0, len(x), batch_size):
                batch = x[i : i + batch_size]
                if len(batch) > 1:  # a batch of one has no variance
                    self._weigh(len(batch))
                    self.model(batch)


def augment_batch(
    x: torch.Tensor, augment: AugmentName, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random crops and/or flips of an image batch ``(N, C, H, W)``, in one gather.

    A crop pads by ``max(1, H // 8)`` zeros (the mean, inputs being standardized) and cuts a
    random ``H x W`` window; a flip mirrors half the images. Each sample draws its own.

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> augment_batch(x, "crop+flip").shape
        torch.Size([1, 1, 4, 4])
        >>> augment_batch(x, "none") is x
        True
    """
    if augment == "none":
        return x
    n, c, h, w = x.shape
    device = x.device
    rows = torch.arange(h, device=device).expand(n, h)
    cols = torch.arange(w, device=device).expand(n, w)
    if "crop" in augment:
        pad = max(1, h // 8)
        x = F.pad(x, (pad, pad, pad, pad))
        shift = torch.randint(0, 2 * pad + 1, (2, n, 1), device=device, generator=generator)
        rows, cols = rows + shift[0], cols + shift[1]
    if "flip" in augment:
        mirror = torch.rand(n, 1, device=device, generator=generator) < 0.5
        cols = torch.where(mirror, cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(c, device=device)[None, :, None, None]
    out = x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
    return out.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else out


def to_device(split: Split, device: torch.device) -> Split:
    """``split`` on ``device``; on CUDA inputs in bf16, images channels_last. No copy where
    already so.

    Example:
        >>> import torch
        >>> x, y = to_device((torch.zeros(2, 3), torch.zeros(2)), torch.device("cpu"))
        >>> x.device.type, x.dtype
        ('cpu', torch.float32)
    """
    x, y = split
    if _bf16(device) and x.is_floating_point():
        x = x.to(torch.bfloat16)  # Before the move: no float32 copy on the device.
    x = x.to(device, non_blocking=True)
    if device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def _bf16(device: torch.device) -> bool:
    return device.type == "cuda"


def _check_augment(augment: str, x: torch.Tensor) -> None:
    if augment not in AUGMENTS:
        raise ValueError(f"Unknown augment {augment!r}; valid names: {', '.join(AUGMENTS)}.")
    if augment != "none" and x.dim() != 4:
        raise ValueError(
            f"augment={augment!r} needs images (N, C, H, W), but the inputs have shape "
            f"{tuple(x.shape)}; use augment='none'."
        )


def _optimizer(
    name: str, model: nn.Module, *, lr: float, weight_decay: float, device: torch.device
) -> torch.optim.Optimizer:
    # Fused steps: one kernel per step instead of several per parameter tensor.
    fused = device.type == "cuda"
    params = model.parameters()
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay, fused=fused
        )
    raise ValueError(f"Unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}.")


def _one_cycle(
    opt: torch.optim.Optimizer, *, lr: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A one-cycle schedule, a quarter warm-up; a constant rate for a handful of steps."""
    if total_steps < 4:  # too few steps to ramp up and down (OneCycleLR divides by zero)
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    # Each phase needs two steps or more, hence the longer warm-up of very short runs.
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps)
    )


@contextlib.contextmanager
def _cudnn_autotuning(on: bool) -> Iterator[None]:
    """cuDNN's algorithm search for the training's shapes, if ``on``; restored afterwards."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def _prepare(model: nn.Module, device: torch.device, *, image: bool) -> nn.Module:
    model = model.to(device)
    if device.type == "cuda" and image:
        model = model.to(memory_format=torch.channels_last)
    return model


def _batches_per_epoch(n: int, batch_size: int, *, whole: bool = False) -> int:
    """A trailing batch of one sample breaks batch norm on 1x1 feature maps: dropped. With
    ``whole`` (a compiled model, which a batch of another size would compile again), any
    trailing part batch is."""
    full, rest = divmod(n, batch_size)
    return max(full + (rest > 1 and not whole), 1)
