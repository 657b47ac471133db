"""Dataset names: the one string a user types to name a dataset (`--data`).

    default               the embedded Fashion-MNIST subset (20,000 train / the whole 10,000-image test split)
    fashion-mnist         the full Fashion-MNIST from the Debian package dataset-fashion-mnist
    fashion-mnist:DIR     the full Fashion-MNIST from the four IDX files in DIR
    imagenet:DIR or DIR   an ImageNet-style folder (see data_tools/imagenet.py for layouts)

Splits are 'train' and 'eval' (Fashion-MNIST's eval split is the official t10k test set).
"""
import os

from . import fashion_mnist, imagenet
from .augment import check_augmentation
from .errors import DataError
from .eval_view import TF_VIEW
from .fashion_mnist import open_fashion_mnist
from .image_files import ImageFiles, find_images
from .imagenet import open_image_folder

EMBEDDED_SUBSET = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist_subset")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
PREFIXES = ("fashion-mnist", "imagenet")
DATA_HELP = "use default, fashion-mnist[:DIR], imagenet:DIR or a directory path"
# What each kind of data is normalised with unless the weights say otherwise.
NORMALIZATIONS = {"fashion-mnist": fashion_mnist.NORMALIZATION, "imagenet": imagenet.NORMALIZATION}


def data_kind(name):
    """'fashion-mnist' or 'imagenet': the kind of data a dataset name names, from the string
    alone (nothing is opened; a bad name is parse_data_name's and open_dataset's to report)."""
    text = str(name).strip().lower()
    if text in ("default", "fashion-mnist") or text.startswith("fashion-mnist:"):
        return "fashion-mnist"
    return "imagenet"


def parse_data_name(name):
    """(kind, directory) of a dataset name; kind is 'fashion-mnist' or 'imagenet'."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"empty dataset name: {DATA_HELP}")
    if name == "default":
        return "fashion-mnist", EMBEDDED_SUBSET
    if name == "fashion-mnist":
        if not os.path.isdir(DEBIAN_FASHION_MNIST):
            raise DataError(f"{DEBIAN_FASHION_MNIST} does not exist: run `apt-get install dataset-fashion-mnist` "
                            f"or give fashion-mnist:DIR")
        return "fashion-mnist", DEBIAN_FASHION_MNIST
    prefix, colon, rest = name.partition(":")
    if colon and prefix in PREFIXES:
        if not rest:
            raise DataError(f"{name!r} names no directory: write {prefix}:DIR")
        return prefix, rest
    # A colon may be part of a real path; only an unknown prefix of a missing path is an error.
    if colon and not os.path.exists(name) and "/" not in prefix and os.sep not in prefix:
        raise DataError(f"unknown dataset prefix {prefix + ':'!r} in {name!r}: {DATA_HELP}")
    return "imagenet", name


def _check_directory(directory, name):
    if not os.path.exists(directory):
        raise DataError(f"dataset directory {directory} does not exist (--data {name!r}): check the path")
    if not os.path.isdir(directory):
        raise DataError(f"dataset path {directory} is not a directory (--data {name!r}): {DATA_HELP}")
    if not os.listdir(directory):
        raise DataError(f"dataset directory {directory} is empty (--data {name!r}): put the dataset there "
                        f"(train/<class>/*.JPEG or the Fashion-MNIST IDX files)")


def open_dataset(name, split, image_size, training=None, autoaugment=False, augment="full", eval_view=None):
    """The `split` ('train' or 'eval') of the dataset named `name`, at `image_size`.

    `training` (default: split == 'train') selects train augmentation and, in the Loader,
    shuffling and dropping the last partial batch. `augment` is the train augmentation,
    one of data_tools.augment.AUGMENTATIONS ("full", "flip", "none"); `autoaugment` adds
    AutoAugment's ImageNet policy to the full augmentation of photo datasets. `eval_view`
    (data_tools.eval_view.EvalView, default TensorFlow's) is how a photo dataset's eval
    split crops and resizes; Fashion-MNIST has one view.
    """
    if split not in ("train", "eval"):
        raise DataError(f"unknown split {split!r}: use 'train' or 'eval'")
    if not isinstance(image_size, int) or image_size < 1:
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    training = split == "train" if training is None else bool(training)
    check_augmentation(augment, autoaugment)
    kind, directory = parse_data_name(name)
    directory = os.path.expanduser(directory)
    _check_directory(directory, name)
    if kind == "fashion-mnist":
        if autoaugment:
            raise DataError("AutoAugment's ImageNet policy is for RGB photos: Fashion-MNIST trains with "
                            "flip + translation; drop the AutoAugment option")
        return open_fashion_mnist(directory, split, image_size, training, description=f"{name} ({split})",
                                  augment=augment)
    return open_image_folder(directory, split, image_size, training, autoaugment, description=f"{name} ({split})",
                             augment=augment, eval_view=eval_view)


def open_files(name, paths, image_size, view=None):
    """The image files and folders `paths` (see data_tools.image_files.find_images) prepared as
    the eval split of the dataset named `name` prepares its images: a dataset for the Loader,
    with the data's Normalization. Photo models see `view` (data_tools.eval_view.EvalView,
    default TensorFlow's), Fashion-MNIST models a grayscale image resized to image_size.
    Items of `paths` may also be Pillow images. DataError for a path that does not exist or
    a folder without images."""
    kind = data_kind(name)
    files = find_images(paths)
    if kind == "fashion-mnist":
        return ImageFiles(files, image_size, NORMALIZATIONS[kind], gray=True)
    return ImageFiles(files, image_size, NORMALIZATIONS[kind], view or TF_VIEW)
