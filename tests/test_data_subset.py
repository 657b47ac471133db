"""The embedded default dataset shipped in data_tools/: a balanced 20,000-image sample of
Fashion-MNIST's train split and the whole official t10k test split (10,000 images, in order).

The checks against the official files need the Debian package dataset-fashion-mnist, which
.ci/run installs."""
import os
import random
from collections import Counter

import pytest

from data_tools.fashion_mnist import PIXEL_MEAN, PIXEL_STD, SIDE, pixel_mean_std, read_split
from data_tools.make_fashion_mnist_subset import DEFAULT_SOURCE, PER_CLASS, SEED, balanced_indices
from data_tools.datasets import EMBEDDED_SUBSET, open_dataset


@pytest.mark.parametrize("split, count", [("train", 20000), ("eval", 10000)])
def test_subset_is_balanced(split, count):
    images, labels = read_split(EMBEDDED_SUBSET, split)
    assert len(labels) == count and len(images) == count * SIDE * SIDE
    assert Counter(labels) == {label: count // 10 for label in range(10)}


def test_subset_ships_its_licence_and_readme():
    licence = open(os.path.join(EMBEDDED_SUBSET, "LICENSE")).read()
    assert "Copyright (c) 2017 Zalando SE" in licence and "MIT License" in licence
    readme = open(os.path.join(EMBEDDED_SUBSET, "README.md")).read()
    assert "make_fashion_mnist_subset --seed 0" in readme and "20,000" in readme


def test_normalisation_constants_fit_the_subset():
    images, _ = read_split(EMBEDDED_SUBSET, "eval")
    mean, std = pixel_mean_std(images)
    assert abs(mean - PIXEL_MEAN) < 0.01 and abs(std - PIXEL_STD) < 0.01


def test_default_spec_opens_the_subset():
    train = open_dataset("default", "train", 32)
    assert (len(train), train.num_classes, train.class_names[9]) == (20000, 10, "Ankle boot")
    assert len(open_dataset("default", "eval", 32)) == 10000


def test_balanced_indices_are_seeded_and_sorted():
    labels = [i % 10 for i in range(300)]
    first = balanced_indices(labels, 5, random.Random(SEED))
    assert first == balanced_indices(labels, 5, random.Random(SEED)) == sorted(first)
    assert Counter(labels[i] for i in first) == {label: 5 for label in range(10)}


needs_official_files = pytest.mark.skipif(not os.path.isdir(DEFAULT_SOURCE),
                                         reason="needs apt-get install dataset-fashion-mnist (.ci/run installs it)")


@needs_official_files
def test_subset_eval_split_is_the_whole_official_t10k_split_in_order():
    assert read_split(EMBEDDED_SUBSET, "eval") == read_split(DEFAULT_SOURCE, "eval")


@needs_official_files
def test_subset_train_split_is_the_documented_sample_of_the_official_train_split():
    images, labels = read_split(DEFAULT_SOURCE, "train")
    assert len(labels) == 60000
    chosen = balanced_indices(labels, 2000, random.Random(SEED))  # the README's "--seed 0", 2,000 per class
    assert PER_CLASS["train"] == 2000 and PER_CLASS["eval"] is None
    expected = b"".join(images[i * SIDE * SIDE:(i + 1) * SIDE * SIDE] for i in chosen)
    assert read_split(EMBEDDED_SUBSET, "train") == (expected, bytes(labels[i] for i in chosen))
