"""Benchmark: training throughput (images/s) of child trainings, one process, side by side.

On the same small CNN (4 convs of width 64, batch norm, ReLU, a max-pool after every second
conv, or with ``--pool-each`` after every conv) and the same
CIFAR-shaped synthetic data (uint8 32x32x3 images, 10 classes), random crop (padding 4) and
horizontal flip, SGD with Nesterov momentum, batch 512:

(a) loader: the loop users write by habit: a ``torchvision`` dataset-style per-sample
    transform (``RandomCrop``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``) in a
    ``DataLoader`` (``--loader-workers`` processes, pinned memory), fp32;
(b) optnas: ``optnas.train.fit`` on one child: data resident on the device, augmentation
    batched on the device, bf16 autocast, channels_last, fused SGD, cuDNN autotuning;
    per-epoch validation included in its time;
(c) pool: ``optnas.pool.DevicePool`` with 1, 2, 4, 8 children training at once on the
    device, each in its worker process (aggregate images/s over the wall time of the
    concurrent trainings, validation included);
(d) compile (``--compile``): ``fit(compile=True)``: the first epoch's extra time (compiling)
    against the steady-state gain, i.e. how many images a child must train before
    ``torch.compile`` pays for itself.

Prints a Markdown table and writes it, with the device name, to ``--out`` if given.

Usage::

    python studies/gpu_throughput.py                       # on a CUDA machine
    python studies/gpu_throughput.py --parts b --compile   # (b) and (d) alone
    python studies/gpu_throughput.py --device cpu --train 2048 --epochs 1 --slots 1,2
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optnas.pool import DevicePool
from optnas.train import fit, to_device

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class SmallCNN(nn.Module):
    """4 convs of width 64 with batch norm and ReLU; max-pools after the 2nd and 4th conv,
    or, with ``pool_each``, after every conv (a quarter of the multiply-adds)."""

    def __init__(self, width: int = 64, num_classes: int = 10, pool_each: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(3 if i == 0 else width, width, 3, padding=1, bias=False)]
            layers += [nn.BatchNorm2d(width), nn.ReLU()]
            if pool_each or i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-shaped uint8 images (N, 32, 32, 3) whose class shifts a color, and labels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.int16)
    x[np.arange(n), :, :, y % 3] += (y * 8).astype(np.int16)[:, None, None]
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def standardized(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255
    return (t - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


class _Images(torch.utils.data.Dataset):
    """A dataset the habitual way: one PIL image and one transform call per sample."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from torchvision import transforms

        self.x, self.y = x, y
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), int(self.y[i])


def loader_loop(x: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> float:
    """(a): images/s of fp32 training fed by a per-sample-transform DataLoader."""
    device = torch.device(args.device)
    model = SmallCNN(pool_each=args.pool_each).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loader = torch.utils.data.DataLoader(
        _Images(x, y),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.loader_workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=args.loader_workers > 0,
    )

    def epoch(limit: int | None = None) -> int:
        seen = 0
        model.train()
        for i, (xb, yb) in enumerate(loader):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(xb)
            if limit is not None and i + 1 >= limit:
                break
        return seen

    epoch(limit=5)  # Warm-up: workers started, kernels chosen.
    _sync(device)
    start = time.perf_counter()
    seen = sum(epoch() for _ in range(args.epochs))
    _sync(device)
    return seen / (time.perf_counter() - start)


def fit_kwargs(args: argparse.Namespace, epochs: int) -> dict:
    return {
        "epochs": epochs,
        "batch_size": args.batch_size,
        "lr": 0.05,
        "optimizer": "sgd",
        "augment": "crop+flip",
        "autotune": True,  # one network trained for epochs: cuDNN's search pays here
    }


def optnas_one(train: tuple, val: tuple, args: argparse.Namespace, *, compile: bool) -> dict:
    """(b), or (d) with ``compile``: one child with ``optnas.train.fit``, the data on the
    device before the timing (as a search holds it: moved once for every child)."""
    device = torch.device(args.device)
    train, val = to_device(train, device), to_device(val, device)

    def child(epochs: int, compiled: bool) -> object:
        model = SmallCNN(pool_each=args.pool_each)
        return fit(model, train, val, device=device, compile=compiled, **fit_kwargs(args, epochs))

    warm = child(1, False)  # cuDNN autotuning and first-use costs, outside the timing
    first = child(1, compile)  # with compile: the compilation
    if compile:  # Said at once: a run stopped at its time limit still tells this much.
        print(f"(d) first epoch, compiling: {first.seconds:.1f} s", flush=True)
    result = child(args.epochs, compile)
    return {
        "images_per_s": result.images / result.seconds,
        "first_epoch_s": first.seconds,
        "warm_epoch_s": warm.seconds,
        "epoch_s": result.seconds / args.epochs,
    }


def pool_aggregate(pool: DevicePool, k: int, args: argparse.Namespace) -> float:
    """(c): aggregate images/s of ``k`` children training at once in ``pool``."""
    results: list = []
    barrier = threading.Barrier(k + 1, timeout=600)

    def child(seed: int) -> None:
        try:
            with pool.slot() as slot:
                slot.measure(SmallCNN(pool_each=args.pool_each), (3, 32, 32), 1)
                barrier.wait()
                kwargs = fit_kwargs(args, args.epochs)
                results.append(slot.fit(seed=seed, on_epoch=lambda e, a: None, **kwargs))
                barrier.wait()
        except BaseException:
            barrier.abort()  # The others stop waiting; the error is printed by the thread.
            raise

    threads = [threading.Thread(target=child, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    barrier.wait()
    seconds = time.perf_counter() - start
    for t in threads:
        t.join()
    return sum(r.images for r in results) / seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train", type=int, default=50_000, help="training images")
    parser.add_argument("--val", type=int, default=5_000, help="validation images")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per child")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--loader-workers", type=int, default=4)
    parser.add_argument("--slots", default="1,2,4,8", help="children at once, for (c)")
    parser.add_argument("--compile", action="store_true", help="also measure (d)")
    parser.add_argument(
        "--parts", default="a,b,c", help="which of a, b, c to measure ((d) needs b)"
    )
    parser.add_argument("--pool-each", action="store_true", help="pool after every conv")
    parser.add_argument("--out", type=Path, help="write the results here (JSON + table)")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    x, y = synthetic(args.train + args.val, seed=0)
    train = (standardized(x[: args.train]), torch.from_numpy(y[: args.train]))
    val = (standardized(x[args.train :]), torch.from_numpy(y[args.train :]))

    parts = set(args.parts.split(",")) | ({"b"} if args.compile else set())
    if parts - {"a", "b", "c"}:
        parser.error(f"--parts takes a, b, c; got {args.parts!r}")
    rows: list[tuple[str, float]] = []
    report: dict = {"device": name, "args": {k: str(v) for k, v in vars(args).items()}}
    loader = None
    if "a" in parts:
        loader = loader_loop(x[: args.train], y[: args.train], args)
        rows.append(("(a) DataLoader, per-sample transforms, fp32", loader))
        print(f"(a) {loader:,.0f} images/s", flush=True)
        write(args.out, report, rows, loader)
    if "b" in parts:
        one = optnas_one(train, val, args, compile=False)
        rows.append(("(b) optnas trainer, one child", one["images_per_s"]))
        print(f"(b) {one['images_per_s']:,.0f} images/s", flush=True)
        write(args.out, report, rows, loader)
    if "c" in parts:
        slots = [int(s) for s in args.slots.split(",")]
        with DevicePool([device], max(slots), train, val) as pool:
            pool_aggregate(pool, max(slots), argparse.Namespace(**{**vars(args), "epochs": 1}))
            for k in slots:
                rate = pool_aggregate(pool, k, args)
                rows.append((f"(c) optnas pool, {k} children at once (aggregate)", rate))
                print(f"(c) {k}: {rate:,.0f} images/s", flush=True)
                write(args.out, report, rows, loader)
    if args.compile:
        compiled = optnas_one(train, val, args, compile=True)
        report["compile"] = {"eager": one, "compiled": compiled}
        gain = 1 / one["images_per_s"] - 1 / compiled["images_per_s"]  # s saved per image
        cost = compiled["first_epoch_s"] - one["epoch_s"]
        breakeven = cost / gain if gain > 0 else float("inf")
        rows.append(("(d) optnas trainer, torch.compile, steady", compiled["images_per_s"]))
        report["compile"]["first_epoch_extra_s"] = cost
        report["compile"]["breakeven_images"] = breakeven
        steady = compiled["images_per_s"]
        print(f"(d) +{cost:.1f} s to compile; {steady:,.0f} images/s; pays after {breakeven:,.0f}")
    print(write(args.out, report, rows, loader))


def write(
    out: Path | None, report: dict, rows: list[tuple[str, float]], loader: float | None
) -> str:
    """The table so far; written with the report to ``out`` after every part, so that a
    run cut short by a time limit keeps what it measured."""
    name = report["device"]
    a = report["args"]
    table = [f"Device: {name}; batch {a['batch_size']}; {int(a['train']):,} training images.", ""]
    table += ["| loop | images/s | x (a) |", "| --- | ---: | ---: |"]
    table += [
        f"| {label} | {rate:,.0f} | {f'{rate / loader:.1f}' if loader else '-'} |"
        for label, rate in rows
    ]
    if out:
        out.write_text(json.dumps({**report, "rows": rows}, indent=2) + "\n\n" + "\n".join(table))
    return "\n".join(table)


if __name__ == "__main__":
    main()
