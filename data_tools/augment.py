"""EfficientNet's train and eval image transforms (Pillow, seeded by a random.Random).

Train: random resized crop (area 8%-100%, aspect 3/4-4/3 sampled log-uniformly, 10 tries,
then the eval center crop as fallback, like TF EfficientNet's _decode_and_random_crop),
bicubic resize to image_size, horizontal flip with p=0.5, optionally AutoAugment.
Eval: TensorFlow's view (data_tools/eval_view.py, with the views of published weights).
Fashion-MNIST (28x28 gray, pre-resized once): flip + random translation in train, nothing
in eval.

Every dataset takes one of AUGMENTATIONS for its train split: "full" (the above), "flip"
(the eval view, flipped with p=0.5) or "none" (the eval view). Short runs learn more from
clean images than from heavily augmented ones (config.py's default preset says how much).
"""
import math

from PIL import Image

from .autoaugment import apply_autoaugment
from .errors import DataError
from .eval_view import center_crop_box, tf_eval_image
from .images import decode_crop

CROP_AREA = (0.08, 1.0)
CROP_ASPECT = (3 / 4, 4 / 3)
CROP_TRIES = 10
FLIP = Image.Transpose.FLIP_LEFT_RIGHT
AUGMENTATIONS = ("full", "flip", "none")


def check_augmentation(augment, autoaugment=False):
    """A DataError for an unknown augmentation, or AutoAugment without the full augmentation."""
    if augment not in AUGMENTATIONS:
        raise DataError(f"unknown augmentation {augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
    if autoaugment and augment != "full":
        raise DataError(f"AutoAugment is part of the full train augmentation, not of {augment!r}: "
                        f"drop the AutoAugment option or use the full augmentation")


def random_resized_crop_box(width, height, size, rng, area=CROP_AREA, aspect=CROP_ASPECT, tries=CROP_TRIES):
    """(left, top, right, bottom) of a random crop covering `area` of the image at `aspect`."""
    total = width * height
    log_low, log_high = math.log(aspect[0]), math.log(aspect[1])
    for _ in range(tries):
        target_area = total * rng.uniform(*area)
        ratio = math.exp(rng.uniform(log_low, log_high))
        w = round(math.sqrt(target_area * ratio))
        h = round(math.sqrt(target_area / ratio))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return left, top, left + w, top + h
    return center_crop_box(width, height, size)


def imagenet_train_image(path, size, rng, autoaugment=False, augment="full"):
    """A training view of the photo at `path`: size x size RGB Pillow image."""
    if augment == "full":
        img = decode_crop(path, lambda w, h: random_resized_crop_box(w, h, size, rng), size)
    else:
        img = tf_eval_image(path, size)
    if augment != "none" and rng.random() < 0.5:
        img = img.transpose(FLIP)
    if autoaugment:
        img = apply_autoaugment(img, rng)
    return img


def fashion_translation(size):
    """Max shift in pixels for Fashion-MNIST's random crop: 3 px at 28 (= pad 3, crop 28)."""
    return max(1, size // 8)


def fashion_train_image(img, rng, augment="full"):
    """Random translation (zero padding + random crop, "full" only) and flip of a pre-resized gray image."""
    if augment == "full":
        limit = fashion_translation(img.width)
        dx, dy = rng.randint(-limit, limit), rng.randint(-limit, limit)
        # Pasting at an offset onto a black canvas is pad-and-crop in one step: Fashion-MNIST's
        # background is 0, so the padding looks like the rest of the background.
        shifted = Image.new("L", img.size, 0)
        shifted.paste(img, (dx, dy))
        img = shifted
    if augment != "none" and rng.random() < 0.5:
        img = img.transpose(FLIP)
    return img
