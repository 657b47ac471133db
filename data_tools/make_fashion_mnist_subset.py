"""Write the embedded default dataset: a balanced, seeded subset of Fashion-MNIST.

    python -m data_tools.make_fashion_mnist_subset [--source DIR] [--out DIR] [--seed N]

Picks 2,000 images per class from the official train split (20,000) and keeps the whole
official t10k test split (10,000, 1,000 per class), both in their original order, and writes
the four gzipped IDX files (gzip mtime 0: same input, same bytes), LICENSE and README.md.
The source is the Debian package dataset-fashion-mnist unless --source says otherwise.
"""
import argparse
import os
import random
import sys

from .errors import DataError
from .fashion_mnist import CLASS_NAMES, FILES, SIDE, pixel_mean_std, read_split
from .idx import write_idx

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_subset")
SEED = 0
# None: the whole split. The test split is kept whole so that a paired difference of two
# models is measured on the 10,000 images every Fashion-MNIST figure in the literature uses.
PER_CLASS = {"train": 2000, "eval": None}

LICENSE_TEXT = """\
The files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in this folder are a subset of
Fashion-MNIST (https://github.com/zalandoresearch/fashion-mnist), used under the MIT
License below.

The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def balanced_indices(labels, per_class, rng):
    """Sorted indices of `per_class` randomly chosen examples of every class."""
    by_class = [[] for _ in CLASS_NAMES]
    for index, label in enumerate(labels):
        by_class[label].append(index)
    chosen = []
    for label, indices in enumerate(by_class):
        if len(indices) < per_class:
            raise DataError(f"class {CLASS_NAMES[label]} has only {len(indices)} examples, "
                            f"fewer than the {per_class} the subset needs")
        chosen.extend(rng.sample(indices, per_class))
    return sorted(chosen)


def write_subset(source, out, seed=SEED):
    """Write the subset of the Fashion-MNIST files in `source` to `out`; {split: mean, std}."""
    os.makedirs(out, exist_ok=True)
    stats = {}
    pixels = SIDE * SIDE
    for split in ("train", "eval"):
        images, labels = read_split(source, split)
        # One generator per split, seeded alike, so either split can be regenerated alone.
        if PER_CLASS[split] is None:
            chosen = list(range(len(labels)))
        else:
            chosen = balanced_indices(labels, PER_CLASS[split], random.Random(seed))
        subset_images = b"".join(images[i * pixels:(i + 1) * pixels] for i in chosen)
        subset_labels = bytes(labels[i] for i in chosen)
        image_name, label_name = FILES[split]
        write_idx(os.path.join(out, image_name + ".gz"), (len(chosen), SIDE, SIDE), subset_images)
        write_idx(os.path.join(out, label_name + ".gz"), (len(chosen),), subset_labels)
        stats[split] = pixel_mean_std(subset_images)
    with open(os.path.join(out, "LICENSE"), "w") as f:
        f.write(LICENSE_TEXT)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(_readme(seed, stats))
    return stats


def _readme(seed, stats):
    train_mean, train_std = stats["train"]
    return f"""\
# Embedded Fashion-MNIST subset (the `default` dataset)

A balanced subset of Fashion-MNIST (MIT licence, Copyright (c) 2017 Zalando SE; see
LICENSE), small enough to ship with the package so that training and the tests run
without a download.

| split | source | images | per class |
|---|---|---|---|
| train | official train split (60,000) | {10 * PER_CLASS["train"]:,} | {PER_CLASS["train"]:,} |
| eval | official t10k test split (10,000) | 10,000 (all) | 1,000 |

Made with

    apt-get install dataset-fashion-mnist
    python -m data_tools.make_fashion_mnist_subset --seed {seed}

from the files in /usr/share/datasets/fashion-mnist. The test split is the official one,
whole and in its order. For the train split, a fresh `random.Random({seed})` samples the
images of class 0, then class 1, ... (`rng.sample` over that class's indices); the chosen
images keep their original relative order. The IDX files are gzipped with mtime 0, so
rerunning the command reproduces them byte for byte.

Pixel statistics of the subset's train images on [0, 1]: mean {train_mean:.4f}, std
{train_std:.4f} (the full 60,000-image train split: 0.2860 / 0.3530, the values the
loader normalises with).
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=DEFAULT_SOURCE, help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.source):
        print(f"error: {args.source} does not exist: run `apt-get install dataset-fashion-mnist` "
              f"or pass --source DIR", file=sys.stderr)
        return 2
    try:
        stats = write_subset(args.source, args.out, args.seed)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    mean, std = stats["train"]
    print(f"wrote {args.out}: train mean {mean:.4f} std {std:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
