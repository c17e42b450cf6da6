from __future__ import annotations

import re
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_image_folder

from optnas.data import AUGMENTS, DATASETS, Dataset, DataSpec, load


@pytest.fixture
def network_calls(monkeypatch):
    """Cut the network off: any name lookup or connection fails, and is recorded."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise socket.gaierror("network is off in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return calls


def _write_idx(path: Path, array: np.ndarray) -> None:
    # The idx format torchvision's MNIST reads: big-endian magic (uint8, ndim), dims, data.
    header = struct.pack(f">I{array.ndim}I", 0x0800 | array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root: Path, folder: str, n_train: int = 60, n_test: int = 20) -> None:
    """Write tiny MNIST-format files; pixel (0, 0) of image i is i, its label i % 10."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    ids = np.arange(n_train + n_test)
    images = np.random.default_rng(0).integers(0, 256, size=(len(ids), 28, 28))
    images[:, 0, 0] = ids
    for prefix, part in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images[part])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", ids[part] % 10)


def test_digits_splits_are_disjoint_stratified_and_fixed():
    ds = load("digits")
    assert ds.spec.input_shape == (1, 8, 8) and ds.spec.num_classes == 10
    sizes = [len(split[0]) for split in (ds.train, ds.val, ds.test)]
    assert sum(sizes) == 1797 and sizes == [1077, 360, 360]
    for _, y in (ds.train, ds.val, ds.test):
        share = torch.bincount(y, minlength=10).float() / len(y)
        assert share.min() > 0.08 and share.max() < 0.12
    rows = [{tuple(x.flatten().tolist()) for x in s[0]} for s in (ds.train, ds.val, ds.test)]
    for a, b in ((0, 1), (0, 2), (1, 2)):  # digits has a few duplicate images, no shared rows
        assert len(rows[a] & rows[b]) < 5
    assert len(set.union(*rows)) > 1797 - 10
    again = load("digits")
    assert torch.equal(again.val[0], ds.val[0]) and torch.equal(again.test[1], ds.test[1])
    assert not torch.equal(load("digits", split_seed=1).val[1], ds.val[1])


@pytest.mark.parametrize(
    ("name", "shape", "classes", "total"),
    [("wine", (13,), 3, 178), ("breast_cancer", (30,), 2, 569)],
)
def test_tabular_demos_are_embedded(name, shape, classes, total):
    ds = load(name)
    assert ds.name == name and ds.spec.input_shape == shape and ds.spec.num_classes == classes
    assert sum(len(split[1]) for split in (ds.train, ds.val, ds.test)) == total
    assert not ds.spec.is_image
    assert abs(ds.train[0].mean(0)).max() < 1e-4


def test_standardized_with_training_statistics():
    ds = load("digits")
    assert abs(ds.train[0].mean().item()) < 1e-4
    assert abs(ds.train[0].std().item() - 1) < 1e-2


def test_the_standardization_and_the_class_labels_are_kept():
    # In the units the data was read in: digits' pixel values 0..16, as scikit-learn has them.
    from sklearn.datasets import load_digits

    ds = load("digits")
    raw = torch.from_numpy(load_digits().images.astype("float32"))
    assert ds.mean == pytest.approx((raw.mean().item(),), rel=0.05)
    assert ds.classes == tuple(range(10))
    pixels = ds.train[0] * ds.std[0] + ds.mean[0]
    assert -1e-3 < pixels.min() and pixels.max() < 16.001  # noqa: SIM300
    # Given as arrays or tensors by hand: plain numbers, as a study records them.
    split = (torch.zeros(4, 3), torch.tensor([0, 1, 0, 1]))
    own = Dataset("own", DataSpec((3,), 2), split, split, split, mean=np.zeros(3),
                  std=torch.ones(3), classes=np.array(["no", "yes"]))  # fmt: skip
    assert own.mean == (0.0, 0.0, 0.0) and own.std == (1.0, 1.0, 1.0)
    assert own.classes == ("no", "yes")
    own = Dataset("own", DataSpec((3,), 2), split, split, split, mean=torch.zeros(3),
                  std=torch.ones(3, requires_grad=True), classes=torch.tensor([3, 7]))  # fmt: skip
    assert own.std == (1.0, 1.0, 1.0) and own.classes == (3, 7)
    with pytest.raises(ValueError, match="mean holds 2 values, but samples of shape"):
        Dataset("own", DataSpec((3,), 2), split, split, split, mean=[0, 0], std=[1, 1])


def test_user_arrays_flat_and_labels_encoded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 5)), np.array(["cat", "dog"] * 50)
    ds = load((x, y))
    assert ds.spec.input_shape == (5,) and ds.spec.num_classes == 2
    assert set(ds.train[1].tolist()) == {0, 1}
    assert ds.classes == ("cat", "dog")  # label k's original value


def test_user_images_gain_a_channel_axis():
    ds = load((torch.rand(60, 6, 6), torch.arange(60) % 3))
    assert ds.spec.input_shape == (1, 6, 6) and ds.spec.num_classes == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("mnist-typo", "Unknown dataset 'mnist-typo'; valid names: digits"),
        ("mnist-typo", "cifar100; or the path of an existing directory"),
        ((np.zeros((10, 2)), np.zeros(9)), "one label per sample"),
        ((np.zeros((10, 2, 2, 2, 2)), np.zeros(10)), "(N, F) features"),
        ((np.full((30, 2), np.nan), np.arange(30) % 2), "NaN"),
        ((np.zeros((4, 2)), np.array([0, 0, 0, 1])), "at least 3 samples"),
        (42, "data must be a dataset name"),
    ],
)
def test_bad_data_is_refused_with_the_reason(data, message):
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        load(data)


@pytest.mark.parametrize(
    ("name", "folder", "augment"),
    [("mnist", "MNIST", "crop"), ("fashion_mnist", "FashionMNIST", "crop+flip")],
)
def test_mnist_style_sets_keep_the_official_test_split(
    tmp_path, network_calls, name, folder, augment
):
    _fake_mnist(tmp_path, folder)
    ds = load(name, data_dir=tmp_path, val_fraction=0.5)
    assert ds.name == name and ds.augment == augment
    assert ds.spec == DataSpec(input_shape=(1, 28, 28), num_classes=10)
    assert [len(split[1]) for split in (ds.train, ds.val, ds.test)] == [30, 30, 20]
    assert all(split[0].dtype == torch.float32 for split in (ds.train, ds.val, ds.test))
    # Recover each sample's id from pixel (0, 0): one affine map standardized all splits.
    corner = torch.cat([split[0][:, 0, 0, 0] for split in (ds.train, ds.val, ds.test)])
    ids = ((corner - corner.min()) / (corner.max() - corner.min()) * 79).round().long()
    train_ids, val_ids, test_ids = ids.split([30, 30, 20])
    assert test_ids.tolist() == list(range(60, 80))  # the official test split, in order
    assert sorted(train_ids.tolist() + val_ids.tolist()) == list(range(60))  # disjoint
    for split, split_ids in ((ds.train, train_ids), (ds.val, val_ids), (ds.test, test_ids)):
        assert torch.equal(split[1], split_ids % 10)
    assert torch.equal(torch.bincount(ds.val[1]), torch.full((10,), 3))  # stratified
    # Standardized with training statistics only.
    assert abs(ds.train[0].mean().item()) < 1e-5 and abs(ds.train[0].std().item() - 1) < 1e-3
    assert abs(ds.val[0].mean().item()) > 1e-4
    assert torch.equal(load(name, data_dir=tmp_path, val_fraction=0.5).val[0], ds.val[0])
    assert not torch.equal(
        load(name, data_dir=tmp_path, val_fraction=0.5, split_seed=1).val[1], ds.val[1]
    )
    assert len(load(name, data_dir=str(tmp_path)).val[1]) == 12  # default val_fraction 0.2
    assert network_calls == []


def test_missing_torchvision_set_names_the_folder_and_the_fix(tmp_path, network_calls):
    root = tmp_path.resolve()
    message = (
        f"Dataset 'cifar10' is not in {root}: torchvision found no complete, intact copy "
        f"under {root / 'cifar-10-batches-py'}. Pass download=True / --download (needs "
        "network access) or point data_dir / --data-dir at a folder that holds it."
    )
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        load("cifar10", data_dir=tmp_path)
    assert network_calls == []


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_download_without_network_says_so(tmp_path, network_calls, name):
    (tmp_path / "kept").mkdir()
    root = tmp_path / "data"
    with pytest.raises(OSError, match=f"Could not download '{name}' into .*network access"):
        load(name, data_dir=root, download=True)
    assert network_calls
    # The empty folders the attempt made are gone; what was there stays.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_image_folder_is_read_split_and_augmented(tmp_path):
    root = write_image_folder(tmp_path / "shapes", {c: [(12, 10)] * 5 for c in ("a", "b", "c")})
    ds = load(root)
    assert ds.name == "shapes" and ds.augment == "crop+flip" and ds.classes == ("a", "b", "c")
    assert ds.spec == DataSpec(input_shape=(3, 10, 12), num_classes=3)
    assert [len(split[1]) for split in (ds.train, ds.val, ds.test)] == [9, 3, 3]
    for split in (ds.val, ds.test):
        assert torch.equal(torch.bincount(split[1]), torch.ones(3, dtype=torch.long))
    assert abs(ds.train[0].mean((0, 2, 3))).max() < 1e-5
    assert torch.equal(load(str(root)).test[0], ds.test[0])


def test_image_folder_of_grayscale_images_becomes_rgb(tmp_path):
    root = write_image_folder(tmp_path / "gray", {c: [(6, 6)] * 5 for c in "xy"}, mode="L")
    ds = load(root, image_size=4)
    assert ds.spec.input_shape == (3, 4, 4)
    assert torch.equal(ds.train[0][:, 0], ds.train[0][:, 2])


def test_image_folder_of_differing_sizes_needs_image_size(tmp_path):
    root = write_image_folder(
        tmp_path / "mixed", {"a": [(8, 8)] * 4, "b": [(8, 8), (9, 7), (8, 8), (8, 8)]}
    )
    message = f"{root / 'a' / '0.png'} is 8x8 (width x height), {root / 'b' / '1.png'} is 9x7"
    with pytest.raises(ValueError, match=re.escape(message) + ".*pass image_size"):
        load(root)
    assert load(root, image_size=5).spec.input_shape == (3, 5, 5)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "message"),
    [
        (Path("no/such/folder"), {}, FileNotFoundError, "No image folder at"),
        ("digits", {"image_size": 8}, ValueError, "does not apply to data='digits'"),
        (Path("."), {"image_size": 0}, ValueError, "positive integer, but got 0"),
    ],
)
def test_bad_image_folder_arguments_are_refused(data, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        load(data, **kwargs)


def test_augment_defaults_and_validation():
    assert set(DATASETS) >= {"mnist", "fashion_mnist", "cifar10", "cifar100"}
    assert load("digits").augment == load("wine").augment == "none"
    assert load((torch.rand(30, 4, 4), torch.arange(30) % 2)).augment == "none"
    split = (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape(f"valid names: {', '.join(AUGMENTS)}")):
        Dataset("x", DataSpec((3,), 2), split, split, split, augment="rotate")
    with pytest.raises(ValueError, match="needs images"):
        Dataset("x", DataSpec((3,), 2), split, split, split, augment="flip")


_LONG = torch.zeros(4, dtype=torch.long)


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            (torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])),
            "labels range from 0 to 2, but the spec's 2 classes need labels in 0..1",
        ),
        (
            (torch.zeros(4, 5), _LONG),
            "inputs of shape (4, 5) and 4 labels; expected one label per sample and samples "
            "of the spec's shape (3,)",
        ),
        ((torch.zeros(4, 3), _LONG[:3]), "inputs of shape (4, 3) and 3 labels"),
        (
            (torch.zeros(4, 3), torch.zeros(4)),
            "expected float32 inputs and a 1-D int64 label vector, got torch.float32 inputs "
            "and torch.float32 labels of shape (4,) (.float() and .long() convert)",
        ),
        ((torch.zeros(4, 3, dtype=torch.float64), _LONG), "got torch.float64 inputs"),
        ((torch.zeros(0, 3), _LONG[:0]), "is empty; a search uses it"),
        (([[0.0] * 3], [0]), "expected (inputs, labels) tensors, got list and list"),
    ],
)
def test_a_malformed_dataset_is_refused_naming_the_split_and_the_fault(train, message):
    good = (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        Dataset("x", DataSpec((3,), 2), train, good, good)
    assert str(error.value).startswith("Dataset 'x', train split")
