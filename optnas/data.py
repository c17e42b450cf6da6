"""Datasets as tensor splits: train and validation for search, test for final reports only.

A :class:`Dataset` holds three fixed, stratified, seeded splits as tensors, standardized
with statistics of the training split alone. The search trains on ``train`` and selects on
``val``; nothing in a search reads ``test``. Sets with an official test split (MNIST,
CIFAR) keep it as ``test`` and draw ``val`` from their official training split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["AUGMENTS", "DATASETS", "AugmentName", "DataSpec", "Dataset", "load"]

AugmentName = Literal["none", "crop", "flip", "crop+flip"]
AUGMENTS: tuple[AugmentName, ...] = ("none", "crop", "flip", "crop+flip")
"""Training augmentations a :class:`Dataset` may ask for: random crop with padding and/or
random horizontal flip."""

DATASETS = (
    "digits",
    "wine",
    "breast_cancer",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
)
"""Names :func:`load` accepts. Embedded in scikit-learn (no download): ``digits``, 8x8
digit images (1,797, 10 classes); ``wine`` (178 samples, 13 features, 3 classes) and
``breast_cancer`` (569 samples, 30 features, 2 classes). Read by torchvision from
``data_dir`` (fetched there with ``download=True``): ``mnist`` and ``fashion_mnist``,
28x28 grayscale digits and clothes (60,000 training + 10,000 test images, 10 classes);
``cifar10`` and ``cifar100``, 32x32 colour photos (50,000 training + 10,000 test images,
10 and 100 classes)."""

# torchvision class, the folder under data_dir it reads, default augmentation. Digits are
# not mirror-symmetric, so MNIST is only cropped.
_TORCHVISION: dict[str, tuple[str, str, AugmentName]] = {
    "mnist": ("MNIST", "MNIST/raw", "crop"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", "crop+flip"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "crop+flip"),
    "cifar100": ("CIFAR100", "cifar-100-python", "crop+flip"),
}


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
        train: Training split, the only one a child trains on: float32 inputs of
            ``spec.input_shape``, int64 labels in ``0 .. num_classes - 1`` (checked, with
            ``val``'s, on construction: a ValueError names what is wrong).
        val: Validation split, the only one a search selects on.
        test: Test split, for reporting a final architecture; never read by a search.
        augment: The augmentation a search applies by default: random crop with padding
            and/or horizontal flip, batched on the device; one of :data:`AUGMENTS`.
        mean: What :func:`load` subtracted from the inputs as read (per channel of images,
            per feature else), before dividing by ``std``: an exported network takes
            inputs as read and standardizes them itself. None where unknown (a Dataset
            made by hand holds its inputs as given).
        std: What :func:`load` divided the centred inputs by.
        classes: The original label of each class index (a folder's or torchvision's
            class names, the distinct values of ``y`` in sorted order), where known.

    Example:
        >>> import torch
        >>> from optnas.data import DataSpec, Dataset
        >>> split = (torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
        >>> ds = Dataset("toy", DataSpec((1, 8, 8), 2), split, split, split, augment="flip")
        >>> ds.augment
        'flip'
    """

    name: str
    spec: DataSpec
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    augment: AugmentName = "none"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTS:
            raise ValueError(
                f"Unknown augment {self.augment!r}; valid names: {', '.join(AUGMENTS)}."
            )
        if self.augment != "none" and not self.spec.is_image:
            raise ValueError(
                f"augment={self.augment!r} needs images (C, H, W), but samples have shape "
                f"{self.spec.input_shape}; use augment='none'."
            )
        self._plain_preprocessing()
        self._check_preprocessing()
        # The test split is left alone: a search never reads it, not even to check it.
        for split in ("train", "val"):
            self._check_split(split, *getattr(self, split))

    def _plain_preprocessing(self) -> None:
        """``mean``, ``std`` and ``classes`` as plain numbers and strings (given as arrays or
        tensors, say), as a study records them."""
        import torch

        for key in ("mean", "std"):
            stats = getattr(self, key)
            if stats is not None:
                values = torch.as_tensor(stats).detach().cpu().flatten().tolist()
                object.__setattr__(self, key, tuple(float(v) for v in values))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(_plain(c) for c in self.classes))

    def _check_preprocessing(self) -> None:
        shape = self.spec.input_shape
        per = shape[0] if self.spec.is_image else int(np.prod(shape))  # channels, features
        for key in ("mean", "std"):
            stats = getattr(self, key)
            if stats is not None and len(stats) != per:
                raise ValueError(
                    f"Dataset {self.name!r}: {key} holds {len(stats)} values, but samples of "
                    f"shape {shape} need one per {'channel' if self.spec.is_image else 'feature'}"
                    f" ({per})."
                )
        if (self.mean is None) != (self.std is None):
            raise ValueError(f"Dataset {self.name!r}: give both mean and std, or neither.")
        if self.classes is not None and len(self.classes) != self.spec.num_classes:
            raise ValueError(
                f"Dataset {self.name!r}: {len(self.classes)} class names for "
                f"{self.spec.num_classes} classes."
            )

    def check_test(self) -> None:
        """Check the test split as the others are checked on construction (which leaves it
        alone: a search never reads it); :func:`optnas.retrain.retrain` calls this before
        it trains, so that a malformed test split costs no training.

        Raises:
            ValueError: Names the split and what is wrong with it.

        Example:
            >>> import torch
            >>> from optnas.data import DataSpec, Dataset
            >>> split = (torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
            >>> bad = (torch.zeros(4, 3), torch.tensor([0, 1, 2, 5]))
            >>> toy = Dataset("toy", DataSpec((3,), 2), split, split, bad)
            >>> toy.check_test()  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: Dataset 'toy', test split: labels range from 0 to 5, but the spec's ...
        """
        self._check_split("test", *self.test)

    def _check_split(self, split: str, x: Any, y: Any) -> None:
        """A split the trainer can use as it is, or a ValueError naming what is wrong."""
        import torch

        where = f"Dataset {self.name!r}, {split} split"
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(f"{where}: expected (inputs, labels) tensors, got {type(x).__name__}"
                             f" and {type(y).__name__}.")  # fmt: skip
        if x.dtype != torch.float32 or y.dtype != torch.int64 or y.ndim != 1:
            raise ValueError(
                f"{where}: expected float32 inputs and a 1-D int64 label vector, got "
                f"{x.dtype} inputs and {y.dtype} labels of shape {tuple(y.shape)} "
                "(.float() and .long() convert)."
            )
        if len(x) != len(y) or tuple(x.shape[1:]) != tuple(self.spec.input_shape):
            raise ValueError(
                f"{where}: inputs of shape {tuple(x.shape)} and {len(y)} labels; expected one "
                f"label per sample and samples of the spec's shape {self.spec.input_shape}."
            )
        if not len(y):
            needs = "a retraining is scored on it" if split == "test" else "a search uses it"
            raise ValueError(f"{where} is empty; {needs}.")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{where}: the inputs hold NaN or infinite values.")
        if not 0 <= int(y.min()) <= int(y.max()) < self.spec.num_classes:
            raise ValueError(
                f"{where}: labels range from {int(y.min())} to {int(y.max())}, but the spec's "
                f"{self.spec.num_classes} classes need labels in 0..{self.spec.num_classes - 1}."
            )


def load(
    data: str | os.PathLike[str] | tuple[Any, Any] | Dataset,
    *,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    data_dir: str | os.PathLike[str] = "data",
    download: bool = False,
    image_size: int | None = None,
) -> Dataset:
    """Load a dataset by name, read an image folder, or split user arrays, into a
    :class:`Dataset`.

    Args:
        data: A name in :data:`DATASETS`; the path of an image folder (a
            :class:`~pathlib.Path`, or a string naming an existing directory that is not a
            dataset name) with one subfolder of images per class, as torchvision's
            ``ImageFolder`` reads it; an ``(X, y)`` pair of arrays or tensors; or a ready
            :class:`Dataset` (returned as is). ``X`` is ``(N, F)`` for features,
            ``(N, H, W)`` or ``(N, C, H, W)`` for images; ``y`` holds ``N`` class labels of
            any hashable kind.
        val_fraction: Share of the samples in the validation split; for sets with an
            official test split, share of their official training split.
        test_fraction: Share of the samples in the test split; not used by sets with an
            official test split (MNIST, Fashion-MNIST, CIFAR), which is their test split.
        split_seed: Seed of the stratified split; the default keeps splits identical
            across searches so that their results compare.
        data_dir: Folder torchvision reads MNIST, Fashion-MNIST and CIFAR from.
        download: Whether torchvision may download those sets into ``data_dir`` when they
            are missing there (needs network access).
        image_size: For an image folder, the side every image is resized (stretched) to;
            needed when its images differ in size.

    Returns:
        The splits as float32 inputs and int64 labels on the CPU, images as
        ``(N, C, H, W)`` (an image folder's in RGB), with the default augmentation set:
        ``"crop+flip"`` for CIFAR, Fashion-MNIST and image folders, ``"crop"`` for MNIST,
        ``"none"`` else.

    Raises:
        FileNotFoundError: A torchvision set is missing from ``data_dir`` and ``download``
            is off, or an image folder does not exist or holds no images.
        OSError: A download failed, for instance without network access.
        ValueError: An unknown name, bad fractions or arrays, or images of differing sizes
            without ``image_size``.

    Example:
        >>> from optnas.data import load
        >>> ds = load("digits")
        >>> ds.spec
        DataSpec(input_shape=(1, 8, 8), num_classes=10)
        >>> len(ds.train[0]), len(ds.val[0]), len(ds.test[0])
        (1077, 360, 360)
        >>> ds.augment
        'none'
    """
    if isinstance(data, Dataset):
        return data
    folder = _as_folder(data)
    if image_size is not None:
        _check_image_size(image_size, data, folder)
    if folder is not None:
        name, x, y, names = _read_folder(folder, image_size)
        return _split(name, x, y, val_fraction, test_fraction, split_seed, "crop+flip", names)
    if isinstance(data, str) and data in _TORCHVISION:
        return _official(data, Path(data_dir), download, val_fraction, split_seed)
    names, scale = None, 1.0
    if isinstance(data, str):
        name, x, y, names, scale = _named(data)
    elif isinstance(data, tuple) and len(data) == 2:
        name, (x, y) = "arrays", data
    else:
        raise TypeError(
            "data must be a dataset name, an image folder path, an (X, y) pair or an "
            f"optnas.data.Dataset, but got {type(data).__name__}."
        )
    arrays = _as_arrays(x, y)
    return _split(name, *arrays, val_fraction, test_fraction, split_seed, names=names, scale=scale)


def _as_folder(data: Any) -> Path | None:
    # Names win over a same-named directory; pass a Path (or "./name") to read the folder.
    if isinstance(data, os.PathLike):
        return Path(data)
    if isinstance(data, str) and data not in DATASETS and os.path.isdir(data):
        return Path(data)
    return None


def _check_image_size(image_size: Any, data: Any, folder: Path | None) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, but got {image_size!r}.")
    if folder is None:
        raise ValueError(
            "image_size resizes the images of an image folder; "
            f"it does not apply to data={data!r}."
        )


_DIGITS_SCALE = 16.0
"""scikit-learn's digits hold pixel values 0 to 16; they are read divided by this (which
standardizing undoes, but studies' data hashes keep), and exported networks take them as
scikit-learn gives them."""


def _named(name: str) -> tuple[str, np.ndarray, np.ndarray, list[Any], float]:
    """The set's inputs, its labels, its class names, and what the inputs were divided by
    as they were read."""
    from sklearn import datasets

    if name == "digits":
        digits = datasets.load_digits()
        x = digits.images[:, None].astype(np.float32) / _DIGITS_SCALE
        return name, x, digits.target, list(range(10)), _DIGITS_SCALE
    if name in ("wine", "breast_cancer"):
        table = getattr(datasets, f"load_{name}")()
        return name, table.data, table.target, table.target_names.tolist(), 1.0
    raise ValueError(
        f"Unknown dataset {name!r}; valid names: {', '.join(DATASETS)}; "
        "or the path of an existing directory with one subfolder of images per class."
    )


# ---------------------------------------------------------------------------------------
# torchvision sets: official test split, validation drawn from the official training split


def _official(name: str, root: Path, download: bool, val_fraction: float, seed: int) -> Dataset:
    from sklearn.model_selection import train_test_split

    _check_fraction("val_fraction", val_fraction)
    (train_x, train_y), test, classes = _torchvision_splits(name, root, download)
    train, val = train_test_split(
        np.arange(len(train_y)), test_size=val_fraction, stratify=train_y, random_state=seed
    )
    splits = [(train_x[train], train_y[train]), (train_x[val], train_y[val]), test]
    return _dataset(name, splits, classes, _TORCHVISION[name][2])


def _torchvision_splits(
    name: str, root: Path, download: bool
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[Any]]:
    import torchvision.datasets

    class_name, folder, _ = _TORCHVISION[name]
    reader = getattr(torchvision.datasets, class_name)
    existing = _folders(root) if download else set()
    try:
        train, test = (reader(root=root, train=flag, download=download) for flag in (True, False))
    except (RuntimeError, OSError) as err:
        if download:
            _remove_empty_new_folders(root, existing)
            raise OSError(
                f"Could not download {name!r} into {root.resolve()}; downloading needs "
                "network access. Without it, point data_dir / --data-dir at a folder that "
                f"holds {name!r} already. torchvision said: {err}"
            ) from err
        raise FileNotFoundError(
            f"Dataset {name!r} is not in {root.resolve()}: torchvision found no complete, "
            f"intact copy under {(root / folder).resolve()}. Pass download=True / "
            "--download (needs network access) or point data_dir / --data-dir at a folder "
            "that holds it."
        ) from err
    # Read the whole arrays at once; the per-sample __getitem__ goes through PIL.
    arrays = [(_nchw(ds.data), np.asarray(ds.targets, dtype=np.int64)) for ds in (train, test)]
    return arrays[0], arrays[1], list(train.classes)


def _folders(root: Path) -> set[Path]:
    if not root.is_dir():
        return set()
    return {root, *(Path(top) / d for top, dirs, _ in os.walk(root) for d in dirs)}


def _remove_empty_new_folders(root: Path, existing: set[Path]) -> None:
    """Remove the empty folders a failed download made, deepest first; files stay."""
    for folder in sorted(_folders(root) - existing, key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


def _nchw(images: Any) -> np.ndarray:
    # MNIST holds a uint8 tensor (N, H, W), CIFAR a uint8 array (N, H, W, C).
    images = np.asarray(images)
    return images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)


# ---------------------------------------------------------------------------------------
# Image folders: one subfolder of images per class


def _read_folder(root: Path, image_size: int | None) -> tuple[str, np.ndarray, np.ndarray]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise FileNotFoundError(
            f"No image folder at {root.resolve()}; expected a directory with one subfolder "
            "of images per class."
        )
    # torchvision's rules for class folders and image extensions, without its loader.
    folder = ImageFolder(root)
    samples = folder.samples
    images = []
    for path, _ in samples:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        if image_size is not None:
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        images.append(np.asarray(rgb))
    for (path, _), image in zip(samples, images, strict=True):
        if image.shape != images[0].shape:
            raise ValueError(
                f"Images in {root} differ in size: {samples[0][0]} is {_size(images[0])}, "
                f"{path} is {_size(image)}; pass image_size (--image-size) to resize them "
                "all to one square size."
            )
    x = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
    y = np.array([label for _, label in samples])
    return root.resolve().name, x, y, list(folder.classes)


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]} (width x height)"


# ---------------------------------------------------------------------------------------
# User arrays and the shared split


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


def _check_fraction(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{key} must be between 0 and 1 exclusive, but got {value}.")


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    augment: AugmentName = "none",
    names: list[Any] | None = None,
    scale: float = 1.0,
) -> Dataset:
    """Split stratified into train, val and test; ``names`` are the classes' names, in
    the order of their labels' values (default: those values); ``scale``, what the
    inputs were divided by as they were read."""
    from sklearn.model_selection import train_test_split

    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
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
    splits = [(x[i], labels[i]) for i in (train, val, test)]
    return _dataset(name, splits, classes.tolist() if names is None else names, augment, scale)


def _dataset(
    name: str,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: list[Any],
    augment: AugmentName,
    scale: float = 1.0,
) -> Dataset:
    """Build a :class:`Dataset` from fresh ``(inputs, labels)`` arrays for train, val and
    test; standardizes the inputs in place, so they must not be views of the caller's data.
    """
    import torch

    xs = [_float32(x) for x, _ in splits]
    # Standardize with training statistics only: per channel for images, per feature else.
    # torch accumulates CPU float reductions in double, where numpy's float32 sums drift.
    dims = (0, 2, 3) if xs[0].dim() == 4 else (0,)
    std, mean = torch.std_mean(xs[0], dim=dims, keepdim=True, correction=0)
    std += 1e-6
    for x in xs:
        x.sub_(mean).div_(std)
    pairs = [
        (x, torch.from_numpy(y.astype(np.int64))) for x, (_, y) in zip(xs, splits, strict=True)
    ]
    spec = DataSpec(input_shape=tuple(xs[0].shape[1:]), num_classes=len(classes))
    # Dataset records the statistics (in the units read) and labels as plain values.
    return Dataset(name, spec, *pairs, augment=augment, mean=mean * scale, std=std * scale,
                   classes=tuple(classes))  # fmt: skip


def _plain(label: Any) -> Any:
    """A class label as JSON holds it (a study records it): numbers and strings stay."""
    if isinstance(label, np.generic) or getattr(label, "ndim", None) == 0:
        label = label.item()  # a numpy scalar, a 0-d array or tensor
    return label if isinstance(label, (str, int, float, bool)) else str(label)


def _float32(x: np.ndarray) -> torch.Tensor:
    import torch

    source = torch.from_numpy(x)
    if source.dtype == torch.float32 and source.is_contiguous():
        return source
    # torch converts and lays out (CIFAR is NHWC underneath) in one pass, and faster.
    return torch.empty(source.shape).copy_(source)
