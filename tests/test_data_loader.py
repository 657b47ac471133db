"""The batch loader: determinism, resume, eval padding, host sharding, worker processes."""
import os
import random
from array import array

import pytest

from data_tools.errors import DataError
from data_tools.batch import stable_seed
from data_tools.fashion_mnist import PIXEL_MEAN, PIXEL_STD
from data_tools.loader import Batch, Loader, epoch_order
from data_tools.pixels import Normalization
from data_tools.datasets import open_dataset
from data_tools.synthetic import make_image_folder

SIZE = 16


def as_lists(batches):
    return [(bytes(b.images), list(b.labels), b.valid) for b in batches]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_image_folder(root, classes=3, train_per_class=4, val_per_class=3, size=(48, 36))
    return str(root)


@pytest.fixture(scope="module")
def fashion_train():
    return open_dataset("default", "train", SIZE)


def test_batch_layout(fashion_train):
    loader = Loader(fashion_train, batch_size=8, seed=0)
    images, labels, valid = next(loader.batches(0))
    assert isinstance(images, bytes) and len(images) == 8 * SIZE * SIZE * 3  # uint8, normalised on the device
    assert isinstance(labels, array) and labels.typecode == "i" and valid == 8
    assert loader.batch_shape == (8, SIZE, SIZE, 3)
    assert (loader.num_examples, loader.num_classes, loader.class_names[0]) == (20000, 10, "T-shirt/top")
    assert loader.steps_per_epoch == len(loader) == 2500
    # gray replicated to 3 channels: each pixel's three values are equal
    assert images[0] == images[1] == images[2] and images[3 * 37] == images[3 * 37 + 2]
    assert loader.normalization == Normalization.gray(PIXEL_MEAN, PIXEL_STD)


def test_stable_seed_does_not_depend_on_the_process():
    assert stable_seed(1, 2, 3, 0) == 466742227807948897  # blake2b, not salted hash()
    assert epoch_order(10, 0, 0, shuffle=False) == list(range(10))
    assert sorted(epoch_order(100, 5, 1, shuffle=True)) == list(range(100))
    assert epoch_order(100, 5, 1, shuffle=True) != epoch_order(100, 5, 2, shuffle=True)


def test_same_seed_and_epoch_give_the_same_batches(fashion_train):
    first = as_lists(Loader(fashion_train, 16, seed=3).batches(4, start_step=1240))
    again = as_lists(Loader(fashion_train, 16, seed=3).batches(4, start_step=1240))
    other_epoch = as_lists(Loader(fashion_train, 16, seed=3).batches(5, start_step=1240))
    other_seed = as_lists(Loader(fashion_train, 16, seed=4).batches(4, start_step=1240))
    assert first == again and len(first) == 10
    assert first != other_epoch and first != other_seed


def test_workers_give_the_same_batches_as_in_process(photos):
    # Spec: per-sample RNG from (seed, epoch, index), so worker count cannot matter.
    dataset = open_dataset(photos, "train", SIZE, autoaugment=True)
    expected = as_lists(Loader(dataset, 4, seed=7).batches(1))
    with Loader(dataset, 4, seed=7, workers=2, prefetch=1) as loader:
        assert as_lists(loader.batches(1)) == expected
        partial = loader.batches(2)
        next(partial)
        partial.close()  # abandoning an epoch mid-way must not disturb the next one
        assert as_lists(loader.batches(1, start_step=1)) == expected[1:]
        assert loader.unreadable_count == 1


def test_eval_with_workers_matches_and_shuts_down_cleanly(photos):
    dataset = open_dataset(photos, "eval", SIZE)  # 9 images: batches of 4, 4, 1 + 3 padding
    expected = as_lists(Loader(dataset, 4).batches(0))
    assert [valid for _, _, valid in expected] == [4, 4, 1]
    loader = Loader(dataset, 4, workers=2)
    assert as_lists(loader.batches(0)) == expected
    blocks = list(loader._pool._paths)
    processes = list(loader._pool._processes)
    # The shared blocks lose their names as soon as the workers have mapped them.
    assert blocks and not any(os.path.exists(path) for path in blocks)
    try:
        for _ in loader.batches(0):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        loader.close()
    assert loader._pool is None
    assert not any(p.is_alive() for p in processes)


def test_start_step_resumes_exactly(photos):
    loader = Loader(open_dataset(photos, "train", SIZE), 3, seed=1)
    full = as_lists(loader.batches(0))
    for step in range(len(full) + 1):
        assert as_lists(loader.batches(0, start_step=step)) == full[step:]
    with pytest.raises(DataError, match="start_step must be in 0..5"):
        loader.batches(0, start_step=6)


def test_training_drops_the_last_partial_batch(photos):
    loader = Loader(open_dataset(photos, "train", SIZE), 5, seed=1)  # 16 examples
    assert [b.valid for b in loader.batches(0)] == [5, 5, 5]


def test_eval_pads_the_last_batch_and_keeps_every_image():
    dataset = open_dataset("default", "eval", 8)
    loader = Loader(dataset, 300)
    batches = list(loader.batches(0))
    assert [b.valid for b in batches] == [300] * 33 + [100]  # the 10,000 test images
    seen = [label for b in batches for label in b.labels[:b.valid]]
    assert seen == list(dataset.labels)
    last = batches[-1]
    per_image = 8 * 8 * 3
    # padding repeats real examples of the same batch
    assert last.images[100 * per_image:101 * per_image] == last.images[:per_image]
    assert list(last.labels[100:200]) == list(last.labels[200:]) == list(last.labels[:100])


@pytest.mark.parametrize("split, batch", [("train", 4), ("eval", 7)])
def test_host_shards_concatenate_to_the_global_batch(split, batch):
    dataset = open_dataset("default", split, 8)
    whole = Loader(dataset, 2 * batch, seed=5)
    hosts = [Loader(dataset, batch, seed=5, process_index=p, process_count=2) for p in range(2)]
    assert whole.steps_per_epoch == hosts[0].steps_per_epoch == hosts[1].steps_per_epoch
    start = whole.steps_per_epoch - 3
    for merged, a, b in zip(whole.batches(2, start), hosts[0].batches(2, start), hosts[1].batches(2, start)):
        assert merged.images == a.images + b.images or split == "eval" and merged.valid < 2 * batch
        assert merged.valid == a.valid + b.valid
        real = list(a.labels[:a.valid]) + list(b.labels[:b.valid])
        assert real == list(merged.labels[:merged.valid])


def test_host_past_the_end_gets_an_empty_masked_batch():
    dataset = open_dataset("default", "eval", 8)  # 10,000 examples: 10 left after 5 global batches
    last = list(Loader(dataset, 999, process_index=1, process_count=2).batches(0))[-1]
    assert last.valid == 0 and len(last.images) == 999 * 8 * 8 * 3 and set(last.images) == {0}


def test_loader_argument_errors(fashion_train):
    with pytest.raises(DataError, match="process_index must be in 0..1"):
        Loader(fashion_train, 8, process_index=2, process_count=2)
    with pytest.raises(DataError, match="batch_size must be an integer >= 1"):
        Loader(fashion_train, 0)
    with pytest.raises(DataError, match="fewer than one global batch"):
        Loader(fashion_train, 20001)


def test_all_unreadable_gives_a_clear_error(tmp_path):
    (tmp_path / "train" / "n0").mkdir(parents=True)
    for i in range(70):
        (tmp_path / "train" / "n0" / f"{i}.JPEG").write_bytes(b"not a jpeg")
    loader = Loader(open_dataset(str(tmp_path), "train", 8), 2)
    with pytest.raises(DataError, match="65 unreadable images in a row"):
        next(loader.batches(0))


def test_substitute_is_deterministic(tmp_path):
    make_image_folder(tmp_path, classes=1, train_per_class=4, val_per_class=0, size=(32, 24), odd_files=False)
    (tmp_path / "train" / "n00000000" / "n00000000_1.JPEG").write_bytes(b"broken")
    loader = Loader(open_dataset(str(tmp_path), "train", 8), 4, seed=2)
    first, again = as_lists(loader.batches(0)), as_lists(loader.batches(0))
    assert first == again and loader.unreadable_count == 1
    assert isinstance(next(loader.batches(1)), Batch)


def test_rng_is_the_documented_one(fashion_train):
    # Example index i of epoch e is augmented by Random(stable_seed(seed, e, i, 0)).
    loader = Loader(fashion_train, 1, seed=9)
    index = epoch_order(len(fashion_train), 9, 3, shuffle=True)[0]
    pixels = fashion_train.example(index, random.Random(stable_seed(9, 3, index, 0)))
    assert bytes(next(loader.batches(3)).images) == pixels
