"""Eval views: tinyeffnet's pixels are timm's and torchvision's, photo by photo, and evaluate
and predict feed a network the view its checkpoint records.

The reference pixels are in tests/fixtures/eval_views.safetensors, written once by
tests/fixtures/make_view_fixtures.py with the libraries' own eval transforms (torch, timm,
torchvision); read here with tinyeffnet's reader, without torch."""
import json
import os

import pytest
from PIL import Image

from data_tools import open_dataset
from data_tools.eval_view import TF_VIEW, EvalView, tf_eval_image
from data_tools.pixels import rgb_bytes
from tinyeffnet.model import ModelSpec
from tinyeffnet.weights.exchange import pretrained_cfg_view
from tinyeffnet.weights.families import FAMILIES
from tinyeffnet.weights.files import read_state_dict

import view_fixtures  # tests/view_fixtures.py

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "eval_views.safetensors")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(photo paths by name, {view: {name: uint8 RGB bytes}}, the views' recorded configs)."""
    photos, pixels, metadata = view_fixtures.load(FIXTURE, tmp_path_factory.mktemp("photos"))
    return photos, pixels, json.loads(metadata["views"])


def _ours(reference, view_name):
    """(EvalView, size): what tinyeffnet makes of each library view's configuration."""
    _, _, configs = reference
    family, name = view_name.split("/")
    if family == "torchvision":
        return FAMILIES["torchvision"].eval_view(name)
    config = configs[view_name]["data_config"]  # what timm's transform was made from
    view = pretrained_cfg_view(config)
    if "pretrained_cfg" in configs[view_name]:  # what a hub config.json holds, and convert reads
        assert pretrained_cfg_view(configs[view_name]["pretrained_cfg"]) == view
    if name.startswith("tf_efficientnet_"):  # the family's own table agrees with timm's config
        model = name[len("tf_efficientnet_"):]
        assert FAMILIES["timm"].eval_view(model) == (view, config["input_size"][-1])
    return view, config["input_size"][-1]


def _worst(a, b):
    return max(abs(x - y) for x, y in zip(a, b))


VIEWS = ["timm/tf_efficientnet_b0", "timm/tf_efficientnet_b1", "timm/squash64", "torchvision/b0", "torchvision/b3"]


@pytest.mark.parametrize("view_name", VIEWS)
def test_our_pixels_are_the_librarys_within_one_step(reference, view_name):
    photos, pixels, _ = reference
    view, size = _ours(reference, view_name)
    assert set(pixels[view_name]) == set(photos) and len(photos) == 4
    for name, path in photos.items():
        (width, height), theirs = pixels[view_name][name]
        assert (width, height) == (size, size), (name, width, height)
        ours = rgb_bytes(view.image(path, size))
        assert len(ours) == len(theirs) and _worst(ours, theirs) <= 1, (view_name, name, _worst(ours, theirs))


def test_tensorflows_view_is_other_pixels(reference):
    """What the test above tells apart: TF's crop-then-resize is not timm's resize-then-crop."""
    photos, pixels, _ = reference
    worst = max(_worst(rgb_bytes(TF_VIEW.image(path, 224)), pixels["timm/tf_efficientnet_b0"][name][1])
                for name, path in photos.items())
    assert worst > 16


def test_the_family_tables_are_the_libraries_defaults():
    _, metadata = read_state_dict(FIXTURE)
    recorded = json.loads(metadata["defaults"])
    modes = {"center": "resize-crop", "squash": "squash-crop"}
    for model in [f"b{i}" for i in range(8)]:
        for family in ("timm", "timm-pytorch"):
            size, crop_pct, interpolation, crop_mode = recorded[family][model]
            assert FAMILIES[family].eval_view(model) == (EvalView(modes[crop_mode], crop_pct, interpolation), size)
        crop, resize, interpolation = recorded["torchvision"][model]
        view, size = FAMILIES["torchvision"].eval_view(model)
        assert (size, view.resize_size(size), view.mode, view.interpolation) == (crop, resize, "resize-crop",
                                                                                   interpolation)


def test_the_eval_split_and_the_spec_use_the_recorded_view(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "n01").mkdir(parents=True)
    photo = tmp_path / "val" / "n01" / "a.jpg"
    Image.effect_mandelbrot((90, 60), (-2.0, -1.2, 1.0, 1.2), 50).convert("RGB").save(photo)
    Image.new("RGB", (40, 40)).save(tmp_path / "train" / "n01" / "b.jpg")
    view = EvalView("resize-crop", 0.5, "bilinear")
    eval_with_view = open_dataset(str(tmp_path), "eval", 32, eval_view=view)
    assert eval_with_view.example(0, None) == rgb_bytes(view.image(str(photo), 32))
    # networks trained here record none: TensorFlow's view, as before
    assert open_dataset(str(tmp_path), "eval", 32).example(0, None) == rgb_bytes(tf_eval_image(str(photo), 32))
    assert rgb_bytes(TF_VIEW.image(str(photo), 32)) == rgb_bytes(tf_eval_image(str(photo), 32))
    assert eval_with_view.example(0, None) != open_dataset(str(tmp_path), "eval", 32).example(0, None)
    converted = ModelSpec("base", "b0", 1000, data="imagenet", eval_view=view)
    assert converted.feed("imagenet:/photos").view == view and converted.feed(str(tmp_path)).view == view
    assert converted.feed("default").view == TF_VIEW  # other data: its own view (Fashion-MNIST has one)
    assert ModelSpec("base", "b0", 10, data=str(tmp_path)).feed(str(tmp_path)).view == TF_VIEW


def test_a_bad_view_is_refused_in_words():
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        EvalView("resize-crop", 0.9, "cubic")
    with pytest.raises(ValueError, match="needs a crop_pct"):
        EvalView("resize-crop")
    with pytest.raises(ValueError, match="crop_mode 'border' is not one tinyeffnet reproduces"):
        pretrained_cfg_view({"crop_mode": "border"})
