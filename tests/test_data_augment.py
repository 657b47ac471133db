"""Augmentation (the official EfficientNet input pipeline): random resized crop, eval center
crop, JPEG draft decoding, AutoAugment's ImageNet policy, Fashion-MNIST flip+translation."""
import random

import pytest
from PIL import Image

from data_tools import autoaugment
from data_tools.augment import fashion_train_image, fashion_translation, random_resized_crop_box
from data_tools.eval_view import center_crop_box, tf_eval_image
from data_tools.images import decode_crop
from data_tools.pixels import IMAGENET_MEAN, IMAGENET_STD, Normalization, rgb_bytes
from data_tools.synthetic import write_photo


@pytest.mark.parametrize("width, height", [(500, 375), (375, 500), (64, 64), (1000, 120)])
def test_random_resized_crop_bounds(width, height):
    rng = random.Random(0)
    for _ in range(500):
        left, top, right, bottom = random_resized_crop_box(width, height, 224, rng)
        w, h = right - left, bottom - top
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        if (left, top, right, bottom) != center_crop_box(width, height, 224):
            # rounding w and h to pixels moves area and aspect by at most a pixel's worth
            assert 0.08 * width * height * 0.9 <= w * h
            assert 3 / 4 - 2 / min(w, h) <= w / h <= 4 / 3 + 2 / min(w, h)


def test_random_resized_crop_spreads_and_falls_back():
    rng = random.Random(1)
    areas = [(r - l) * (b - t) / (500 * 375) for l, t, r, b in
             (random_resized_crop_box(500, 375, 224, rng) for _ in range(2000))]
    assert min(areas) < 0.12 and max(areas) > 0.9
    # A 10000x10 strip admits no 3/4..4/3 crop: after 10 tries, the eval center crop.
    assert random_resized_crop_box(10000, 10, 224, random.Random(0)) == center_crop_box(10000, 10, 224)


def test_center_crop_is_224_over_256_of_the_short_side():
    assert center_crop_box(500, 375, 224) == (86, 24, 414, 352)  # side int(375 * 224 / 256) = 328
    assert center_crop_box(256, 256, 224) == (16, 16, 240, 240)


def test_draft_decodes_big_jpegs_at_reduced_scale_only_when_the_crop_allows(tmp_path, monkeypatch):
    path = tmp_path / "big.JPEG"
    write_photo(path, random.Random(0), size=(1600, 1200))
    scales = []
    original = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: scales.append(self.width) or
                        original(self, size, *a, **k))
    # eval crop 1050 px -> 1/4 scale keeps 262 >= 224; a 300 px crop needs full scale.
    decode_crop(path, lambda w, h: center_crop_box(w, h, 224), 224)
    decode_crop(path, lambda w, h: (0, 0, 300, 300), 224)
    assert scales == [400, 1600]
    full = Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC,
                                                  box=center_crop_box(1600, 1200, 224))
    drafted = tf_eval_image(path, 224)
    assert sum(abs(a - b) for a, b in zip(full.tobytes(), drafted.tobytes())) / (224 * 224 * 3) < 6


def test_normalization_values_and_nhwc_order():
    img = Image.new("RGB", (3, 2))
    img.putdata([(0, 128, 255), (10, 20, 30), (1, 2, 3), (4, 5, 6), (7, 8, 9), (255, 0, 100)])
    pixels = rgb_bytes(img)
    assert pixels == bytes([0, 128, 255, 10, 20, 30, 1, 2, 3, 4, 5, 6, 7, 8, 9, 255, 0, 100])
    values = Normalization(IMAGENET_MEAN, IMAGENET_STD).floats(pixels)
    expected = [(v / 255 - IMAGENET_MEAN[i % 3]) / IMAGENET_STD[i % 3] for i, v in enumerate(pixels)]
    assert len(values) == 18 and max(abs(a - b) for a, b in zip(values, expected)) < 1e-12
    gray = rgb_bytes(Image.new("L", (2, 2), 255))
    assert gray == bytes([255] * 12)
    assert Normalization.gray(0.5, 0.25).floats(gray) == [2.0] * 12
    with pytest.raises(ValueError, match="threes"):
        Normalization.gray(0.5, 0.25).floats(bytes(4))


def test_autoaugment_is_the_25_subpolicy_imagenet_policy():
    policy = autoaugment.POLICY_V0
    assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
    assert policy[0] == (("Equalize", 0.8, 1), ("ShearY", 0.8, 4))
    assert policy[24] == (("Color", 0.8, 6), ("Rotate", 0.4, 5))


def test_every_autoaugment_op_keeps_an_rgb_image(tmp_path):
    write_photo(tmp_path / "p.JPEG", random.Random(0), size=(64, 48))
    img = tf_eval_image(tmp_path / "p.JPEG", 32)
    names = {name for sub in autoaugment.POLICY_V0 for name, _, _ in sub}
    for name in names:
        for level in (0, 5, 10):
            out = autoaugment._apply(img, name, level, random.Random(level))
            assert (out.mode, out.size) == ("RGB", (32, 32)), name
    assert autoaugment._apply(img, "Posterize", 2, random.Random(0)).getextrema() == ((0, 0),) * 3
    assert set(autoaugment._apply(img, "Posterize", 6, random.Random(0)).tobytes()) <= {0, 64, 128, 192}
    assert autoaugment._apply(img, "Solarize", 10, random.Random(0)).tobytes() == img.tobytes()
    runs = [autoaugment.apply_autoaugment(img, random.Random(seed)).tobytes() for seed in (3, 3, 4)]
    assert runs[0] == runs[1]


def test_solarize_add_matches_tf():
    img = Image.new("RGB", (2, 1))
    img.putdata([(0, 100, 127), (128, 200, 255)])
    out = autoaugment._apply(img, "SolarizeAdd", 10, random.Random(0))  # +110 below 128
    assert out.tobytes() == bytes([110, 210, 237, 128, 200, 255])


def test_fashion_translation_and_flip():
    assert fashion_translation(28) == 3 and fashion_translation(224) == 28
    img = Image.new("L", (28, 28), 0)
    img.putpixel((10, 10), 255)
    seen = set()
    for seed in range(200):
        out = fashion_train_image(img, random.Random(seed))
        (x, y), = [(i % 28, i // 28) for i, v in enumerate(out.tobytes()) if v]
        seen.add((x, y))
        assert abs(y - 10) <= 3 and (abs(x - 10) <= 3 or abs(x - 17) <= 3)
    assert len(seen) > 20


def test_fashion_flip_only_and_no_augmentation():
    img = Image.new("L", (28, 28), 0)
    img.putpixel((10, 10), 255)
    flipped = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    outs = {fashion_train_image(img, random.Random(seed), "flip").tobytes() for seed in range(40)}
    assert outs == {img.tobytes(), flipped}
    assert all(fashion_train_image(img, random.Random(seed), "none").tobytes() == img.tobytes() for seed in range(5))


def test_augment_choices_on_datasets(tmp_path):
    from data_tools import DataError, open_dataset
    from data_tools.synthetic import make_image_folder
    plain = open_dataset("default", "train", 16, augment="none")
    # the same image of the train split, unaugmented, whatever the rng
    assert len({plain.example(7, random.Random(seed)) for seed in range(5)}) == 1
    assert len({open_dataset("default", "train", 16).example(7, random.Random(seed)) for seed in range(5)}) > 1
    make_image_folder(str(tmp_path), classes=2, train_per_class=2, val_per_class=0, odd_files=False)
    photos = open_dataset(str(tmp_path), "train", 32, augment="none")
    eval_view = open_dataset(str(tmp_path), "train", 32, training=False)
    assert photos.example(0, random.Random(3)) == eval_view.example(0, None)
    flips = {open_dataset(str(tmp_path), "train", 32, augment="flip").example(0, random.Random(s)) for s in range(20)}
    assert eval_view.example(0, None) in flips and len(flips) == 2
    with pytest.raises(DataError, match="unknown augmentation 'crop'"):
        open_dataset("default", "train", 16, augment="crop")
    with pytest.raises(DataError, match="AutoAugment is part of the full train augmentation"):
        open_dataset(str(tmp_path), "train", 32, augment="flip", autoaugment=True)
