"""Fashion-MNIST (Zalando, MIT licence): the four IDX files and a loader-ready dataset.

Each split is a pair of IDX files; a directory may hold them gzipped (`NAME.gz`, as
shipped) or plain (`NAME`). 28x28 grayscale images, labels 0-9.
"""
import os
from collections import Counter

from PIL import Image

from .augment import fashion_train_image
from .errors import DataError
from .idx import read_idx
from .labelled import LabelledImages
from .pixels import Normalization, rgb_bytes

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SIDE = 28
# The eval split is the official t10k test set (there is no separate validation split).
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "eval": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Mean and std of all pixels (on [0, 1]) of the 60,000 official train images, computed
# by pixel_mean_std below. The embedded 20,000-image subset gives 0.2870 / 0.3537; one pair
# of constants for both keeps the full set and the subset on the same input scale.
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530
NORMALIZATION = Normalization.gray(PIXEL_MEAN, PIXEL_STD)
# Resized images are cached per process up to this many bytes (all 60,000 at size 128 fit).
DEFAULT_CACHE_BYTES = 1 << 30


def find_file(directory, name):
    """Path of NAME.gz or NAME in `directory`."""
    for candidate in (name + ".gz", name):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    raise DataError(f"no Fashion-MNIST file {name}.gz (or {name}) in {directory}: "
                    f"the directory needs the four IDX files {', '.join(n for pair in FILES.values() for n in pair)}")


def read_split(directory, split):
    """(images, labels) of one split: images is bytes of count*28*28 pixels, labels bytes."""
    if split not in FILES:
        raise DataError(f"unknown split {split!r}: use 'train' or 'eval'")
    image_name, label_name = FILES[split]
    image_path, label_path = find_file(directory, image_name), find_file(directory, label_name)
    (count, rows, cols), images = read_idx(image_path, 3)
    (label_count,), labels = read_idx(label_path, 1)
    if (rows, cols) != (SIDE, SIDE):
        raise DataError(f"{image_path} holds {rows}x{cols} images; Fashion-MNIST images are 28x28")
    if count != label_count:
        raise DataError(f"{image_path} has {count} images but {label_path} has {label_count} labels: "
                        f"the files come from different downloads")
    if labels and max(labels) >= len(CLASS_NAMES):
        raise DataError(f"{label_path} has label {max(labels)}; Fashion-MNIST labels are 0-9")
    return images, labels


def pixel_mean_std(images):
    """Mean and (population) std of all pixels in `images` (bytes), on [0, 1]."""
    histogram = Counter(images)  # counted in C, no numpy needed
    n = len(images)
    mean = sum(v * c for v, c in histogram.items()) / n
    square = sum(v * v * c for v, c in histogram.items()) / n
    return mean / 255.0, (square - mean * mean) ** 0.5 / 255.0


class FashionMNISTDataset(LabelledImages):
    """Loader-facing Fashion-MNIST split at `image_size`, uint8 RGB (gray replicated).

    Images are resized (bicubic) once and kept as uint8 in a per-process cache, so every
    later epoch only pays for flip and translation.
    """

    class_names = CLASS_NAMES
    normalization = NORMALIZATION

    def __init__(self, images, labels, image_size, training, description,
                 cache_bytes=DEFAULT_CACHE_BYTES, augment="full"):
        super().__init__(labels, image_size, training, description)
        self.images = images
        self.augment = augment
        self.cache_bytes = cache_bytes
        self._cache = {}

    def __getstate__(self):
        # Worker processes build their own caches instead of receiving a copy.
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def source(self, index):
        return f"{self.description} image {index}"

    def example(self, index, rng):
        """Example `index` as uint8 HWC RGB bytes; `rng` (random.Random) drives augmentation."""
        img = self._resized(index)
        if self.training:
            img = fashion_train_image(img, rng, self.augment)
        return rgb_bytes(img)

    def _resized(self, index):
        size = self.image_size
        pixels = self._cache.get(index)
        if pixels is None:
            start = index * SIDE * SIDE
            img = Image.frombytes("L", (SIDE, SIDE), self.images[start:start + SIDE * SIDE])
            if size != SIDE:
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            pixels = img.tobytes()
            if (len(self._cache) + 1) * size * size <= self.cache_bytes:
                self._cache[index] = pixels
        return Image.frombytes("L", (size, size), pixels)


def open_fashion_mnist(directory, split, image_size, training, description=None, augment="full"):
    images, labels = read_split(directory, split)
    return FashionMNISTDataset(images, labels, image_size, training,
                               description or f"fashion-mnist:{directory} ({split})", augment=augment)
