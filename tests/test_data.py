from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from optnas.data import load


def test_digits_splits_are_disjoint_stratified_and_fixed():
    ds = load("digits")
    assert ds.spec.input_shape == (1, 8, 8) and ds.spec.num_classes == 10
    sizes = [len(split[0]) for split in (ds.train, ds.val, ds.test)]
    assert sum(sizes) == 1797 and sizes == [1077, 360, 360]
    for _, y in (ds.train, ds.val, ds.test):
        share = torch.bincount(y, minlength=10).float() / len(y)
        assert share.min() > 0.08 and share.max() < 0.12
    rows = [{tuple(x.flatten().tolist()) for x in split[0]} for split in (ds.train, ds.val)]
    assert len(rows[0] & rows[1]) < 5  # digits has a few duplicate images, no shared rows
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


def test_user_arrays_flat_and_labels_encoded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 5)), np.array(["cat", "dog"] * 50)
    ds = load((x, y))
    assert ds.spec.input_shape == (5,) and ds.spec.num_classes == 2
    assert set(ds.train[1].tolist()) == {0, 1}


def test_user_images_gain_a_channel_axis():
    ds = load((torch.rand(60, 6, 6), torch.arange(60) % 3))
    assert ds.spec.input_shape == (1, 6, 6) and ds.spec.num_classes == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("mnist-typo", "Unknown dataset 'mnist-typo'; valid names: digits"),
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
