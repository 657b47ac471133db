"""The eval views' crop offsets on every rounding case, pixel for pixel against the libraries.

Resize-then-crop (timm's crop_mode "center" and "squash", torchvision's presets) centres the
crop at round((side - crop) / 2) with Python's round, half to even: an offset of k + 0.5 goes
down when k is even and up when k is odd, so only photos whose offsets land on k + 0.5 with
an odd k tell it from truncation, and only an even k tells it from rounding half up. The
fixture tests/fixtures/eval_view_rounding.safetensors (written by
tests/fixtures/make_view_fixtures.py with timm's and torchvision's own transforms) holds such
photos on both axes, for both parities, and each library's pixels and crop offsets.

TensorFlow's crop-then-resize rounds the other way: the official EfficientNet preprocessing
(_decode_and_center_crop) takes a square of int(size / (size + 32) * short side) pixels at
offset ((side_length - crop + 1) // 2) on each axis, i.e. k + 0.5 always goes up. Its
arithmetic is restated here (TensorFlow is not installed) and the view's pixels must be that
square resized bicubic by Pillow, tinyeffnet's resize for this view.
"""
import json
import os

import pytest
from PIL import Image

from data_tools.eval_view import TF_VIEW, EvalView
from data_tools.pixels import rgb_bytes

import view_fixtures  # tests/view_fixtures.py

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "eval_view_rounding.safetensors")
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}
VIEWS = ["timm/center-r37", "timm/center-r39", "timm/squash-r37", "timm/squash-r39", "torchvision/r37",
         "torchvision/r39", "timm/tf_efficientnet_b0", "torchvision/b0"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(photo paths by name, {view: {photo: (size, uint8 RGB bytes)}}, view configs, {view: {photo: case}})."""
    photos, pixels, metadata = view_fixtures.load(FIXTURE, tmp_path_factory.mktemp("rounding-photos"))
    return photos, pixels, json.loads(metadata["views"]), json.loads(metadata["cases"])


def our_view(view_name, config):
    """(EvalView, size) of a library view, from how the fixture configured it."""
    if "data_config" in config:  # timm: create_transform(**data_config)
        data = config["data_config"]
        mode = {"center": "resize-crop", "squash": "squash-crop"}[data.get("crop_mode") or "center"]
        return EvalView(mode, data["crop_pct"], data["interpolation"]), data["input_size"][-1]
    if view_name == "torchvision/b0":  # EfficientNet_B0_Weights.IMAGENET1K_V1: resize 256, crop 224, bicubic
        return EvalView("resize-crop", 224 / 256, "bicubic"), 224
    return EvalView("resize-crop", config["crop_size"] / config["resize_size"], config["interpolation"]), \
        config["crop_size"]


def half_offsets(case, size):
    return tuple((side - size) / 2 for side in case["resized"])


def test_the_fixture_holds_every_rounding_case(reference):
    """Each library's resize-then-crop meets offsets of k + 0.5 with k odd and k even, on the
    horizontal and the vertical axis: the cases the test below needs to tell roundings apart."""
    _, pixels, configs, cases = reference
    assert sorted(cases) == sorted(VIEWS) == sorted(pixels)
    for family in ("timm/center", "timm/squash", "torchvision/r"):
        met = set()
        for view in (v for v in VIEWS if v.startswith(family)):
            _, size = our_view(view, configs[view])
            for case in cases[view].values():
                for axis, offset in zip("xy", half_offsets(case, size)):
                    if offset % 1 == 0.5:
                        met.add((axis, "odd" if int(offset) % 2 else "even"))
        missing = sorted({(a, p) for a in "xy" for p in ("odd", "even")} - met)
        assert not missing, (f"the fixture's {family}* views meet no crop offset k + 0.5 with k "
                             + ", ".join(f"{p} on the {a} axis" for a, p in missing)
                             + ": regenerate it with photos and views that do (tests/fixtures/make_view_fixtures.py)")


def where_is_our_crop(path, case, view, size):
    """The (left, top) at which our pixels sit in the photo resized as the library resizes it
    (Pillow's resize, which both libraries call), or None when no crop of it is ours."""
    with Image.open(path) as img:
        resized = img.convert("RGB").resize(tuple(case["resized"]), RESAMPLE[view.interpolation])
    ours = rgb_bytes(view.image(path, size))
    width, height = resized.size
    for top in range(height - size + 1):
        for left in range(width - size + 1):
            if resized.crop((left, top, left + size, top + size)).tobytes() == ours:
                return left, top
    return None


@pytest.mark.parametrize("view_name", VIEWS)
def test_resize_then_crop_offsets_round_as_the_library(view_name, reference):
    photos, pixels, configs, cases = reference
    view, size = our_view(view_name, configs[view_name])
    wrong = []
    for name, case in sorted(cases[view_name].items()):
        (width, height), theirs = pixels[view_name][name]
        assert (width, height) == (size, size)
        ours = rgb_bytes(view.image(photos[name], size))
        worst = max(abs(a - b) for a, b in zip(ours, theirs))
        if worst <= 1:  # the library's float round trip (to tensor, normalise, back to uint8) moves a step at most
            continue
        with Image.open(photos[name]) as img:
            photo = f"{img.width}x{img.height}"
        resized = "x".join(map(str, case["resized"]))
        offsets = ", ".join(f"{o:g}" for o in half_offsets(case, size))
        at = where_is_our_crop(photos[name], case, view, size)
        if at is None:
            wrong.append(f"the {photo} photo: our pixels differ by up to {worst} and are no crop of it resized to "
                         f"{resized} as the library resizes it")
        else:
            wrong.append(f"the {photo} photo resized to {resized}, centre offsets ({offsets}): our crop starts at "
                         f"{at}, the library's at {tuple(case['crop'])} (rounded half to even)")
    assert not wrong, f"{view_name} ({view.describe(size)}): " + "; ".join(wrong)


# ---------------------------------------------------------------- TensorFlow's crop, then resize
def tf_center_crop_box(width, height, size):
    """TensorFlow EfficientNet's eval crop (preprocessing._decode_and_center_crop), restated."""
    side = int(size / (size + 32) * min(width, height))
    left, top = (width - side + 1) // 2, (height - side + 1) // 2
    return left, top, left + side, top + side


# At size 32 the crop is half the short side: 52x42 crops 21 at (15.5 -> 16, 10.5 -> 11), 48x46
# crops 23 at (12.5 -> 13, 11.5 -> 12): k + 0.5 with k odd and even on both axes.
TF_PHOTOS = [(52, 42), (48, 46), (42, 52)]


@pytest.mark.parametrize("width, height", TF_PHOTOS, ids=[f"{w}x{h}" for w, h in TF_PHOTOS])
def test_the_tf_views_crop_rounds_as_tensorflow(width, height, tmp_path):
    size = 32
    path = tmp_path / "photo.png"
    Image.merge("RGB", (Image.effect_mandelbrot((width, height), (-2.0, -1.2, 0.8, 1.2), 80),
                        Image.linear_gradient("L").rotate(25).resize((width, height)),
                        Image.effect_mandelbrot((width, height), (-0.8, 0.05, -0.7, 0.15), 120))).save(path)
    box = tf_center_crop_box(width, height, size)
    assert any((box[i] * 2 - (d - (box[2] - box[0]))) == 1 for i, d in ((0, width), (1, height))), \
        "this photo's crop lands on no half pixel: it tests no rounding"
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    want = rgb.resize((size, size), Image.Resampling.BICUBIC, box=box).tobytes()
    ours = rgb_bytes(TF_VIEW.image(str(path), size))
    if ours != want:
        side = box[2] - box[0]
        found = [(left, top) for top in range(height - side + 1) for left in range(width - side + 1)
                 if rgb.resize((size, size), Image.Resampling.BICUBIC,
                               box=(left, top, left + side, top + side)).tobytes() == ours]
        pytest.fail(f"the tf view of the {width}x{height} photo (a {side}x{side} centre square, offsets "
                    f"{(width - side) / 2:g}, {(height - side) / 2:g}): our crop starts at "
                    f"{found[0] if found else 'no square of that side'}, TensorFlow's at {box[:2]} (rounded up)")
