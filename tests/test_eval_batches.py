"""Evaluation batches are the plain eval images, in order, whatever the seed, the epoch or the
train augmentation asked for: no flip, shift, random crop or AutoAugment reaches them, and
nothing is shuffled or dropped.

"Plain" is computed here without the data pipeline: Fashion-MNIST's 28x28 image from its
IDX file resized bicubic to the eval size (gray replicated to RGB); a photo's eval view
(data_tools.eval_view.EvalView.image: the view itself is pinned to the libraries' pixels in
tests/test_eval_view.py and tests/test_eval_view_rounding.py).
"""
import itertools

import pytest
from PIL import Image

from data_tools import Loader, open_dataset
from data_tools.eval_view import TF_VIEW, EvalView
from data_tools.fashion_mnist import SIDE, read_split

SEEDS, EPOCHS = (0, 7), (0, 5)
AUGMENTS = ("full", "flip", "none")  # the strongest first: its failure is the clearest


def loader_images(dataset, batch_size, seed, epoch):
    """([uint8 RGB bytes of each eval image], [its label]) as the Loader batches them."""
    size = dataset.image_size * dataset.image_size * 3
    images, labels = [], []
    for batch in Loader(dataset, batch_size, seed=seed).batches(epoch):
        images += [batch.images[i * size:(i + 1) * size] for i in range(batch.valid)]
        labels += list(batch.labels[:batch.valid])
    return images, labels


def explain(got, want, what):
    """None when the loader's images are the plain ones in order, else what is wrong with them."""
    got_images, got_labels = got
    want_images, want_labels = want
    if got_images == want_images and got_labels == want_labels:
        return None
    strangers = [i for i, image in enumerate(got_images) if image not in want_images]
    if strangers:
        return (f"augmentation reached evaluation images ({what}): batch image {strangers[0]} is none of the plain "
                f"eval images ({len(strangers)} of {len(got_images)} are altered)")
    if len(got_images) != len(want_images):
        return f"the eval split gives {len(got_images)} images, not its {len(want_images)} ({what})"
    if sorted(got_images) == sorted(want_images):
        return f"the evaluation images are shuffled ({what}): the split's order is not kept"
    return f"the eval labels are not the images' own ({what}): {got_labels} for {want_labels}"


def check_every_combination(open_eval, plain, batch_size, extra=""):
    wrong = []
    for augment, seed, epoch in itertools.product(AUGMENTS, SEEDS, EPOCHS):
        what = f"{extra}augment {augment!r}, seed {seed}, epoch {epoch}"
        problem = explain(loader_images(open_eval(augment), batch_size, seed, epoch), plain, what)
        if problem:
            wrong.append(problem)
    assert not wrong, f"{len(wrong)} of {len(AUGMENTS) * len(SEEDS) * len(EPOCHS)} eval loaders are wrong: " + \
        "; ".join(wrong[:3])


def test_fashion_mnist_eval_batches_are_the_plain_images(tiny_fashion_mnist):
    size = 16
    directory = tiny_fashion_mnist.split(":", 1)[1]
    pixels, labels = read_split(directory, "eval")
    plain = []
    for i in range(len(labels)):
        gray = Image.frombytes("L", (SIDE, SIDE), pixels[i * SIDE * SIDE:(i + 1) * SIDE * SIDE])
        gray = gray.resize((size, size), Image.Resampling.BICUBIC)
        plain.append(Image.merge("RGB", (gray, gray, gray)).tobytes())
    # batch 3 of 8 images: the last batch is padded, and the padding must not count
    check_every_combination(lambda augment: open_dataset(tiny_fashion_mnist, "eval", size, augment=augment),
                            (plain, list(labels)), 3)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    """An image folder: two classes, five val photos of varied sizes and formats."""
    root = tmp_path_factory.mktemp("photos")
    sizes = [(90, 60, "JPEG"), (61, 83, "PNG"), (64, 64, "PNG"), (120, 45, "JPEG"), (33, 50, "PNG")]
    photos = []
    for i, (w, h, fmt) in enumerate(sizes):
        cls = f"n0{i % 2}"
        for split in ("train", "val"):
            (root / split / cls).mkdir(parents=True, exist_ok=True)
        img = Image.merge("RGB", (Image.effect_mandelbrot((w, h), (-2.1 + 0.2 * i, -1.2, 0.9, 1.2), 60),
                                  Image.linear_gradient("L").rotate(40 * i).resize((w, h)),
                                  Image.effect_mandelbrot((w, h), (-0.8, 0.05, -0.7, 0.15), 90)))
        path = root / "val" / cls / f"p{i}.{fmt.lower()}"
        img.save(path, fmt)
        img.save(root / "train" / cls / f"t{i}.{fmt.lower()}", fmt)
        photos.append((str(path), int(cls[-1])))
    return root, sorted(photos)


@pytest.mark.parametrize("view", [None, EvalView("resize-crop", 0.875, "bicubic")], ids=["tf-view", "resize-crop"])
def test_photo_eval_batches_are_the_plain_eval_views(view, photo_folder):
    size = 24
    root, photos = photo_folder
    plain = ([(view or TF_VIEW).image(path, size).tobytes() for path, _ in photos], [label for _, label in photos])

    def open_eval(augment):
        return open_dataset(str(root), "eval", size, augment=augment, autoaugment=augment == "full", eval_view=view)

    check_every_combination(open_eval, plain, 2, extra=f"{view.mode if view else 'tf'} view, ")
