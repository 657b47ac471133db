"""ModelSpec: the one record of a network, to and from checkpoint metadata, and what it refuses."""
import pytest

from tinyeffnet.model import DEFAULT_BN_EPS, DEFAULT_PADDING, ModelSpec, build_model
from tinyeffnet.training.checkpoint_dir import save_checkpoint
from tinyeffnet.training.state import load_model, model_tensors

TINY = dict(width=0.1, depth=0.1)


def test_names_are_made_canonical_and_metadata_round_trips():
    spec = ModelSpec("EfficientNet-B0-SEend@noskip", "EfficientNet-B0", 10, 0.25, 0.1, "symmetric", 1e-5,
                     image_size=32, data="default", normalization=((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
                     class_names=["a"] * 10)
    assert (spec.variant, spec.model) == ("seend@noskip", "b0")
    meta = spec.to_meta()
    assert meta["normalization"] == dict(mean=[0.5] * 3, std=[0.25] * 3) and meta["class_names"] == ["a"] * 10
    assert ModelSpec.from_meta(meta) == spec


def test_metadata_of_an_older_checkpoint_takes_the_defaults_of_its_time():
    spec = ModelSpec.from_meta(dict(variant="base", model="b0", num_classes=10, padding=None))
    assert (spec.padding, spec.bn_eps, spec.image_size, spec.data) == (DEFAULT_PADDING, DEFAULT_BN_EPS, None, "default")
    assert spec.resolution == 224 and spec.multipliers == (1.0, 1.0)
    # a normalization that is not three means and three positive stds is left out, not trusted
    assert ModelSpec.from_meta(dict(variant="base", model="b0", num_classes=10,
                                    normalization=dict(mean=[0.5], std=[0.2]))).normalization is None


@pytest.mark.parametrize("meta, says", [
    (dict(model="b0", num_classes=10), "no 'variant'"),
    (dict(variant="seend@nowhere", model="b0", num_classes=10), "unknown variant"),
    (dict(variant="base", model="b9", num_classes=10), "unknown model"),
    (dict(variant="base", model="b0", num_classes=0), "num_classes"),
    (dict(variant="base", model="b0", num_classes=10, padding="valid"), "unknown padding"),
    (dict(variant="base", model="b0", num_classes=10, bn_eps=2.0), "bn_eps"),
    (dict(variant="base", model="b0", num_classes=10, width=-1), "width"),
])
def test_metadata_that_builds_no_network_is_refused_naming_the_source(meta, says):
    with pytest.raises(ValueError) as e:
        ModelSpec.from_meta(meta, "ckpt.safetensors")
    assert "ckpt.safetensors" in str(e.value) and says in str(e.value)


def test_differences_backbone_and_flags():
    a = ModelSpec("base", "b0", 10, **TINY)
    b = a.replace(variant="nose@all", num_classes=3, bn_eps=1e-5)
    assert a.differences(b) == [("variant", "base", "nose@all"), ("num_classes", 10, 3), ("bn_eps", 1e-3, 1e-5)]
    assert a.differences(a.replace(image_size=64)) == []  # how it is fed is not the network
    assert a.same_backbone(b) and not a.same_backbone(a.replace(depth=0.2))
    assert ModelSpec("base", "b1").same_backbone(ModelSpec("base", "b0", depth=1.1))
    assert a.backbone_flags() == "--model b0 --width 0.1 --depth 0.1"


def test_build_model_from_a_spec_is_build_model_from_its_fields():
    spec = ModelSpec("seend@hasskip", "b0", 10, **TINY)
    by_spec = build_model(spec, seed=3, backend="python")
    by_name = build_model("seend@hasskip", "b0", 10, seed=3, backend="python", **TINY)
    assert by_spec.spec == by_name.spec == spec
    assert {n: t.to_flat() for n, t in by_spec.state_dict().items()} == \
        {n: t.to_flat() for n, t in by_name.state_dict().items()}
    with pytest.raises(TypeError, match="give num_classes in the spec"):
        build_model(spec, num_classes=3)


def test_a_checkpoint_rebuilds_the_network_its_spec_records(tmp_path):
    spec = ModelSpec("nose@noskip", "b0", 4, 0.1, 0.1, "symmetric", 1e-5, image_size=48,
                     normalization=((0.1, 0.2, 0.3), (0.4, 0.5, 0.6)))
    net = build_model(spec, seed=1, backend="python")
    arrays = net.arrays()
    save_checkpoint(tmp_path, 0, model_tensors({**arrays["params"], **arrays["buffers"]}, arrays["buffers"]),
                    net.backend, dict(spec.to_meta(), step=0))
    loaded, meta = load_model(str(tmp_path / "step-00000000.safetensors"), "python")
    assert loaded.spec == spec and loaded.spec.resolution == 48
    assert {n: t.to_flat() for n, t in loaded.state_dict().items()} == \
        {n: t.to_flat() for n, t in net.state_dict().items()}


def test_the_eval_view_round_trips_and_older_checkpoints_read_as_tensorflows():
    from data_tools.eval_view import TF_VIEW, EvalView
    view = EvalView("resize-crop", 0.875, "bilinear")
    spec = ModelSpec("base", "b0", 10, **TINY, eval_view=view)
    meta = spec.to_meta()
    assert meta["eval_view"] == dict(mode="resize-crop", crop_pct=0.875, interpolation="bilinear")
    assert ModelSpec.from_meta(meta) == spec and ModelSpec.from_meta(meta).eval_view == view
    # trained here: none recorded, TensorFlow's view
    assert ModelSpec("base", "b0", 10).to_meta()["eval_view"] is None and ModelSpec("base", "b0", 10).feed().view == TF_VIEW
    # format 2 and 3 converted checkpoints recorded TensorFlow's view as a sentence
    older = ModelSpec.from_meta(dict(variant="base", model="b0", num_classes=10,
                                     eval_view="center crop of 224/256 of the short side, bicubic resize to 224x224"))
    assert older.eval_view == TF_VIEW and older.eval_view.crop_fraction(224) == 224 / 256
    with pytest.raises(ValueError, match="ckpt.safetensors.*unknown eval view mode 'sideways'"):
        ModelSpec.from_meta(dict(variant="base", model="b0", num_classes=10, eval_view=dict(mode="sideways")),
                            "ckpt.safetensors")
    with pytest.raises(ValueError, match="crop_pct must be a number in"):
        ModelSpec.from_meta(dict(variant="base", model="b0", num_classes=10,
                                 eval_view=dict(mode="resize-crop", crop_pct=0)))
    assert EvalView("resize-crop", 380 / 384).resize_size(380) == 384  # not 383: float rounding is not a pixel
    assert EvalView("resize-crop", 0.875).describe(224) == "short side bicubic-resized to 256, center crop 224x224"
