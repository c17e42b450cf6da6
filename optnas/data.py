"""Datasets as tensor splits: train and validation for search, test for final reports only.

A :class:`Dataset` holds three fixed, stratified, seeded splits as tensors, standardized
with statistics of the training split alone. The search trains on ``train`` and selects on
``val``; nothing in a search reads ``test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["DATASETS", "DataSpec", "Dataset", "load"]

DATASETS = ("digits", "wine", "breast_cancer")
"""Names :func:`load` accepts; each is embedded in scikit-learn (no download): 8x8 digit
images (1,797, 10 classes), and two tabular sets, wine (178 samples, 13 features,
3 classes) and breast cancer (569 samples, 30 features, 2 classes)."""


@dataclass(frozen=True)
class DataSpec:
    """What a search space needs to know about the data.

    Attributes:
        input_shape: Shape of one sample: ``(C, H, W)`` for images, ``(F,)`` for features.
        num_classes: Number of classes; labels are ``0 .. num_classes - 1``.
    """

    input_shape: tuple[int, ...]
    num_classes: int

    @property
    def is_image(self) -> bool:
        """Whether samples are images ``(C, H, W)``."""
        return len(self.input_shape) == 3


@dataclass(frozen=True)
class Dataset:
    """Three splits of a classification dataset as ``(inputs, labels)`` tensor pairs.

    Attributes:
        name: A short name, used in default study names.
        spec: Input shape and number of classes.
        train: Training split, the only one a child trains on.
        val: Validation split, the only one a search selects on.
        test: Test split, for reporting a final architecture; never read by a search.
    """

    name: str
    spec: DataSpec
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


def load(
    data: str | tuple[Any, Any] | Dataset,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> Dataset:
    """Load a dataset by name, or split user arrays, into a :class:`Dataset`.

    Args:
        data: A name in :data:`DATASETS` (embedded in scikit-learn), an ``(X, y)`` pair of
            arrays or tensors, or a ready :class:`Dataset` (returned as is). ``X`` is
            ``(N, F)`` for features, ``(N, H, W)`` or ``(N, C, H, W)`` for images; ``y``
            holds ``N`` class labels of any hashable kind.
        val_fraction: Share of the samples in the validation split.
        test_fraction: Share of the samples in the test split.
        split_seed: Seed of the stratified split; the default keeps splits identical
            across searches so that their results compare.

    Returns:
        The splits as float32 inputs and int64 labels on the CPU.

    Example:
        >>> from optnas.data import load
        >>> ds = load("digits")
        >>> ds.spec
        DataSpec(input_shape=(1, 8, 8), num_classes=10)
        >>> len(ds.train[0]), len(ds.val[0]), len(ds.test[0])
        (1077, 360, 360)
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, str):
        name, x, y = _named(data)
    elif isinstance(data, tuple) and len(data) == 2:
        name, (x, y) = "arrays", data
    else:
        raise TypeError(
            "data must be a dataset name, an (X, y) pair or an optnas.data.Dataset, "
            f"but got {type(data).__name__}."
        )
    return _split(name, *_as_arrays(x, y), val_fraction, test_fraction, split_seed)


def _named(name: str) -> tuple[str, np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "digits":
        digits = datasets.load_digits()
        return name, digits.images[:, None].astype(np.float32) / 16.0, digits.target
    if name in ("wine", "breast_cancer"):
        table = getattr(datasets, f"load_{name}")()
        return name, table.data, table.target
    raise ValueError(f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}.")


def _as_arrays(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x.cpu() if hasattr(x, "cpu") else x, dtype=np.float32)
    y = np.asarray(y.cpu() if hasattr(y, "cpu") else y)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim not in (2, 4):
        raise ValueError(
            "X must be (N, F) features or (N, H, W) / (N, C, H, W) images, "
            f"but has shape {x.shape}."
        )
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(
            f"y must hold one label per sample of X ({len(x)}), but has shape {y.shape}."
        )
    if not np.isfinite(x).all():
        raise ValueError("X contains NaN or infinite values.")
    return x, y


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> Dataset:
    import torch
    from sklearn.model_selection import train_test_split

    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{key} must be between 0 and 1 exclusive, but got {value}.")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            "val_fraction + test_fraction must leave samples to train on, "
            f"but they add up to {val_fraction + test_fraction}."
        )
    classes, labels = np.unique(y, return_inverse=True)
    counts = np.bincount(labels)
    if len(classes) < 2 or counts.min() < 3:
        raise ValueError(
            "Need at least 2 classes with at least 3 samples each for a stratified "
            f"train/validation/test split; got class counts "
            f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))}."
        )
    idx = np.arange(len(x))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1.0 - test_fraction),
        stratify=labels[rest],
        random_state=seed,
    )
    # Standardize with training statistics only: per channel for images, per feature else.
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    mean = x[train].mean(axis=axes, keepdims=True)
    std = x[train].std(axis=axes, keepdims=True) + 1e-6
    x = (x - mean) / std

    def pair(i: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(x[i].copy()), torch.from_numpy(labels[i].astype(np.int64))

    spec = DataSpec(input_shape=tuple(x.shape[1:]), num_classes=len(classes))
    return Dataset(name=name, spec=spec, train=pair(train), val=pair(val), test=pair(test))
