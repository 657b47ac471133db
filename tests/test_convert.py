"""Published weights in and out (python -m tinyeffnet.convert) and runs that start from them
(train --init-from, --freeze-backbone, the finetune preset).

The fixtures are small timm and torchvision EfficientNet-B0s with their own eval logits,
written once by tests/fixtures/make_timm_fixtures.py (which needs torch; these tests do
not): a converted network must give the library's logits, in float64 to rounding and in
float32 to float32's rounding, and converting back must give the file's bytes."""
import json
import os
import shutil
from array import array

import pytest

from backends import get_backend
from tinyeffnet import Tensor
from tinyeffnet.convert import main as convert_main
from tinyeffnet.model import build_model
from tinyeffnet.training.checkpoint import checkpoint_meta, load_checkpoint
from tinyeffnet.training.checkpoint_dir import save_checkpoint
from tinyeffnet.training.state import load_model
from tinyeffnet.weights.files import Record, read_state_dict, write_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
TF, USEFUL = "tf_efficientnet_b0.w010", "tf_efficientnet_b0.fmnist"
PT, TV = "efficientnet_b0.w010", "torchvision_b0.w010"
# fixture -> (--from, width)
FAMILY = {TF: ("timm", 0.1), USEFUL: ("timm", 0.25), PT: ("timm-pytorch", 0.1), TV: ("torchvision", 0.1)}
PY = get_backend("python")


def fixture(name):
    return os.path.join(FIXTURES, f"{name}.safetensors")


def convert(capsys, *args):
    """(exit status, stdout, stderr) of the convert command, run in this process."""
    try:
        status = convert_main([str(a) for a in args])
    except SystemExit as e:  # argparse's one-line errors
        status = e.code
    out = capsys.readouterr()
    return status, out.out, out.err


def converted_path(directory, name, *extra):
    out = os.path.join(directory, f"{name}.tinyeffnet.safetensors")
    family, width = FAMILY[name]
    assert convert_main(["--from", family, fixture(name), "--out", out, "--width", str(width), "--depth", "0.1",
                         *extra]) == 0
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("converted"))
    return {name: converted_path(directory, name) for name in FAMILY}


def expected():
    """{name: (shape, [floats])} of the fixed inputs and the libraries' logits."""
    records, _ = read_state_dict(os.path.join(FIXTURES, "expected.safetensors"))
    out = {}
    for name, r in records.items():
        values = array({"F32": "f", "F64": "d"}[r.dtype])
        values.frombytes(r.raw)
        out[name] = (r.shape, values.tolist())
    return out


def nhwc(shape, values):
    n, c, h, w = shape
    return [values[((i * c + k) * h + y) * w + x] for i in range(n) for y in range(h) for x in range(w)
            for k in range(c)], (n, h, w, c)


# ------------------------------------------------------------------ the same logits
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_converted_logits_equal_the_librarys_in_float64(converted, name):
    net, meta = load_model(converted[name], "python")
    tensorflow_trained = FAMILY[name][0] == "timm"
    assert (meta["padding"], meta["bn_eps"]) == (("same", 1e-3) if tensorflow_trained else ("symmetric", 1e-5))
    want = expected()
    for size in ("40", "37"):
        values, shape = nhwc(*want[f"input.{size}"])
        got = net(Tensor(PY.from_flat(values, shape, "float64"), PY)).to_flat()
        ref = want[f"{name}/logits64.{size}"][1]
        assert len(got) == len(ref)
        worst = max(abs(a - b) for a, b in zip(got, ref))
        # The same float32 weights, both sides computing in float64: only summation order differs.
        assert worst < 1e-9 * max(1.0, max(abs(v) for v in ref)), f"{name} at {size}x{size}: {worst}"


@pytest.mark.parametrize("name", [TF, PT])  # SAME and symmetric padding; float64 checks all four
def test_converted_logits_equal_the_librarys_in_float32_on_jax(converted, name):
    jax = pytest.importorskip("jax")
    jb = get_backend("jax")
    net, _ = load_model(converted[name], "jax")
    want = expected()
    values, shape = nhwc(*want["input.40"])
    forward = jax.jit(lambda x: net(Tensor(x, jb)).data)  # one compiled program, not one per op
    got = jb.to_flat(forward(jb.from_flat(values, shape, "float32")))
    ref, exact = want[f"{name}/logits.40"][1], want[f"{name}/logits64.40"][1]
    scale = max(1.0, max(abs(v) for v in exact))
    # float32 rounding: the library's own float32 logits are about as far from the exact ones
    ours, theirs = max(abs(a - b) for a, b in zip(got, exact)), max(abs(a - b) for a, b in zip(ref, exact))
    assert ours < 1e-4 * scale and ours < 20 * theirs + 1e-6 * scale, (name, ours, theirs)


def test_padding_and_bn_eps_are_what_make_the_pytorch_families_match(converted):
    # The same weights computed with TensorFlow's padding and eps: logits far outside rounding.
    net, _ = load_model(converted[PT], "python")
    other = build_model("base", "b0", 10, backend="python", width=0.1, depth=0.1)
    other.load_state_dict(net.state_dict())
    want = expected()
    values, shape = nhwc(*want["input.40"])
    x = Tensor(PY.from_flat(values, shape, "float64"), PY)
    right = net(x).to_flat()
    wrong = other.eval()(x).to_flat()
    ref = want[f"{PT}/logits64.40"][1]
    assert max(abs(a - b) for a, b in zip(right, ref)) < 1e-9 * max(1.0, max(map(abs, ref)))
    assert max(abs(a - b) for a, b in zip(wrong, ref)) > 1e-3


# ------------------------------------------------------------------ round trip, bit for bit
@pytest.mark.parametrize("name", sorted(FAMILY))
def test_round_trip_gives_back_the_file(converted, name, tmp_path, capsys):
    family = FAMILY[name][0]
    back = tmp_path / "back.safetensors"
    status, out, err = convert(capsys, "--to", "torchvision" if family == "torchvision" else "timm",
                               converted[name], "--out", back)
    assert status == 0, err
    assert ("tf_efficientnet_b0" if family == "timm" else "efficientnet_b0") in out and "load_state_dict" in out
    source, source_meta = read_state_dict(fixture(name))
    again, again_meta = read_state_dict(back)
    assert again == source and again_meta == source_meta  # names, dtypes, shapes, bytes; the file's metadata
    assert back.read_bytes() == open(fixture(name), "rb").read()


def test_a_trained_checkpoint_exports_with_zero_bn_counters_and_reimports_bit_for_bit(tmp_path, capsys):
    net = build_model("base", "b1", 7, backend="python", width=0.1, seed=3)
    ckpt = save_checkpoint(tmp_path / "ckpt", 1, {f"{group}/{n}": t.data for group, items in
                                                  (("params", net.named_parameters()), ("buffers", net.named_buffers()))
                                                  for n, t in items},
                           PY, dict(variant="base", model="b1", num_classes=7, width=0.1, depth=None))
    timm_file = tmp_path / "b1.safetensors"
    status, out, err = convert(capsys, "--to", "timm", ckpt, "--out", timm_file)
    assert status == 0 and "tf_efficientnet_b1" in out and "channel_multiplier=0.1" in out, err
    records, metadata = read_state_dict(timm_file)
    assert metadata == {"format": "pt"}
    counters = [r for n, r in records.items() if n.endswith("num_batches_tracked")]
    assert counters and all(r == Record("I64", (), bytes(8)) for r in counters)
    assert records["conv_stem.weight"].shape == (8, 3, 3, 3) and records["classifier.weight"].shape == (7, 128)
    # Another model's file: the first tensor b0 lacks is named, and the model that fits.
    status, out, err = convert(capsys, "--from", "timm", timm_file, "--out", tmp_path / "x.safetensors",
                               "--width", "0.1")
    line = err.strip()
    assert status == 2 and "\n" not in line and not (tmp_path / "x.safetensors").exists()
    assert line.startswith(f"error: {timm_file} holds blocks.0.1.") and "tf_efficientnet_b0 (width 0.1)" in line
    assert "convert with --model b1" in line, line
    status, out, err = convert(capsys, "--from", "timm", timm_file, "--out", tmp_path / "b1.ours.safetensors",
                               "--width", "0.1", "--model", "b1")
    assert status == 0, err
    # float64 weights go out as float32 (PyTorch's), and come back as those float32 values
    back, _ = load_checkpoint(str(tmp_path / "b1.ours.safetensors"), PY)
    for name, t in net.state_dict().items():
        group = "buffers" if name.endswith(("moving_mean", "moving_var")) else "params"
        want = array("f", t.to_flat()).tolist()
        assert PY.to_flat(back[f"{group}/{name}"]) == want, name


# ------------------------------------------------------------------ one-line errors, nothing written
def _refused(capsys, tmp_path, src, *args, needle):
    out = tmp_path / "out.safetensors"
    status, _, err = convert(capsys, *args[:2], src, "--out", out, *args[2:])
    line = err.strip()
    assert status == 2 and line.startswith("error: ") and "\n" not in line and needle in line, line
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    return line


def test_files_of_another_width_family_or_content_are_one_line_errors(tmp_path, capsys):
    src = fixture(TF)
    line = _refused(capsys, tmp_path, src, "--from", "timm", needle="conv_stem.weight has shape [8, 3, 3, 3], but "
                    "tf_efficientnet_b0 has [32, 3, 3, 3] there")
    assert "--width" in line
    _refused(capsys, tmp_path, fixture(TV), "--from", "timm", "--width", "0.1", "--depth", "0.1",
             needle="its names are torchvision's: convert with --from torchvision --model b0")
    records, metadata = read_state_dict(src)
    missing = dict(records)
    del missing["blocks.3.0.conv_dw.weight"]
    write_state_dict(tmp_path / "missing.safetensors", missing, metadata)
    _refused(capsys, tmp_path, tmp_path / "missing.safetensors", "--from", "timm", "--width", "0.1", "--depth", "0.1",
             needle="lacks blocks.3.0.conv_dw.weight (tf_efficientnet_b0 (width 0.1, depth 0.1) has it")
    extra = dict(records, **{"blocks.3.0.conv_extra.weight": records["blocks.3.0.conv_dw.weight"]})
    write_state_dict(tmp_path / "extra.safetensors", extra, metadata)
    _refused(capsys, tmp_path, tmp_path / "extra.safetensors", "--from", "timm", "--width", "0.1", "--depth", "0.1",
             needle="holds blocks.3.0.conv_extra.weight, which tf_efficientnet_b0 (width 0.1, depth 0.1) does not have")
    stem = records["conv_stem.weight"]
    half = dict(records, **{"conv_stem.weight": Record("F16", stem.shape, stem.raw[:len(stem.raw) // 2])})
    write_state_dict(tmp_path / "half.safetensors", half, metadata)
    _refused(capsys, tmp_path, tmp_path / "half.safetensors", "--from", "timm", "--width", "0.1", "--depth", "0.1",
             needle="conv_stem.weight is F16; tinyeffnet imports float32 or float64 weights")
    (tmp_path / "model.pth").write_bytes(b"PK\x03\x04 a torch.save zip archive")
    _refused(capsys, tmp_path, tmp_path / "model.pth", "--from", "timm", needle="is a PyTorch pickle (torch.save)")
    (tmp_path / "notes.txt").write_text("not weights at all")
    _refused(capsys, tmp_path, tmp_path / "notes.txt", "--from", "timm",
             needle="notes.txt is not a readable safetensors file (truncated or not a safetensors file)")
    _refused(capsys, tmp_path, tmp_path / "nothing.safetensors", "--from", "timm",
             needle="nothing.safetensors does not exist")
    _refused(capsys, tmp_path, src, "--from", "timm", "--ema", needle="--ema is for --to")
    _refused(capsys, tmp_path, src, "--to", "timm", "--model", "b0", needle="--model is for --from")


def test_a_tinyeffnet_checkpoint_is_not_converted_again(converted, tmp_path, capsys):
    _refused(capsys, tmp_path, converted[TF], "--from", "timm", needle="is a tinyeffnet checkpoint already")
    # the other way round: a published file is not a checkpoint to export
    _refused(capsys, tmp_path, fixture(TF), "--to", "timm", needle="no 'tinyeffnet' metadata")


def test_export_refuses_what_the_library_cannot_build(converted, tmp_path, capsys):
    _refused(capsys, tmp_path, converted[TF], "--to", "torchvision",
             needle="torchvision's efficientnet_b0 uses symmetric padding and eps 1e-05")
    seend = tmp_path / "seend.safetensors"
    assert convert_main(["--from", "timm", fixture(TF), "--out", str(seend), "--width", "0.1", "--depth", "0.1",
                         "--variant", "seend@noskip"]) == 0
    capsys.readouterr()
    _refused(capsys, tmp_path, seend, "--to", "timm", needle="is the variant seend@noskip")


def test_the_hub_config_beside_the_file_picks_model_and_normalization_and_refuses_another_family(tmp_path, capsys):
    hub = tmp_path / "hub"
    hub.mkdir()
    shutil.copy(fixture(TF), hub / "model.safetensors")
    cfg = {"architecture": "tf_efficientnet_b0", "num_classes": 1000,
           "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    (hub / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "ap.safetensors"
    status, text, err = convert(capsys, "--from", "timm", hub / "model.safetensors", "--out", out, "--width", "0.1",
                                "--depth", "0.1")
    assert status == 0 and "mean (0.5, 0.5, 0.5)" in text, err
    meta = checkpoint_meta(str(out))
    assert meta["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3} and meta["image_size"] == 224
    (hub / "config.json").write_text(json.dumps(dict(cfg, architecture="efficientnet_b0")))
    _refused(capsys, tmp_path, hub / "model.safetensors", "--from", "timm", "--width", "0.1", "--depth", "0.1",
             needle="says efficientnet_b0, which is --from timm-pytorch")


def test_the_checkpoint_records_the_eval_view_of_the_weights_own_library(converted, tmp_path, capsys):
    from data_tools.eval_view import TF_VIEW, EvalView
    view = lambda path: load_model(path, "python")[0].spec  # noqa: E731
    # no config.json: the family's own (timm: crop_pct 0.875 at b0, bicubic; torchvision's b0 preset: 224 of 256)
    assert view(converted[TF]).eval_view == EvalView("resize-crop", 0.875, "bicubic")
    assert view(converted[TV]).eval_view == EvalView("resize-crop", 224 / 256, "bicubic")
    assert view(converted[TV]).eval_view.resize_size(224) == 256 and view(converted[TV]).resolution == 224
    # --eval-view tf: TensorFlow's, crop 224/256 then resize
    tf = converted_path(str(tmp_path), TF, "--eval-view", "tf")
    assert view(tf).eval_view == TF_VIEW and checkpoint_meta(tf)["eval_view"]["mode"] == "tf"
    # a hub config's pretrained_cfg decides: crop_pct, interpolation, crop_mode, input size
    hub = tmp_path / "hub"
    hub.mkdir()
    shutil.copy(fixture(PT), hub / "model.safetensors")
    cfg = {"architecture": "efficientnet_b0", "pretrained_cfg": {"input_size": [3, 256, 256], "crop_pct": 0.95,
                                                                 "interpolation": "bilinear", "crop_mode": "squash"}}
    (hub / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "hub.safetensors"
    status, text, err = convert(capsys, "--from", "timm-pytorch", hub, "--out", out, "--width", "0.1", "--depth", "0.1")
    assert status == 0 and "eval view: both sides bilinear-resized to 269, center crop 256x256" in text, err
    assert view(str(out)).eval_view == EvalView("squash-crop", 0.95, "bilinear") and view(str(out)).resolution == 256
    cfg["pretrained_cfg"] = {"input_size": [3, 224, 224]}  # what it leaves out takes timm's defaults
    (hub / "config.json").write_text(json.dumps(cfg))
    assert convert(capsys, "--from", "timm-pytorch", hub, "--out", out, "--width", "0.1", "--depth", "0.1")[0] == 0
    assert view(str(out)).eval_view == EvalView("resize-crop", 0.875, "bilinear")
    cfg["pretrained_cfg"] = {"crop_mode": "border"}
    (hub / "config.json").write_text(json.dumps(cfg))
    _refused(capsys, tmp_path, hub, "--from", "timm-pytorch", "--width", "0.1", "--depth", "0.1",
             needle="crop_mode 'border' is not one tinyeffnet reproduces (center or squash); convert with --eval-view tf")
    assert convert_main(["--from", "timm-pytorch", str(hub), "--out", str(out), "--width", "0.1", "--depth", "0.1",
                         "--eval-view", "tf"]) == 0


def test_another_variant_keeps_what_fits_and_initialises_the_rest(converted, tmp_path, capsys):
    out = tmp_path / "nose.safetensors"
    status, text, err = convert(capsys, "--from", "timm", fixture(TF), "--out", out, "--width", "0.1", "--depth",
                                "0.1", "--variant", "nose@all")
    assert status == 0, err
    assert "variant nose@all: loaded " in text and "not used 28: blocks.0.se.reduce.weight" in text, text
    net, meta = load_model(str(out), "python")
    base, _ = load_model(converted[TF], "python")
    assert meta["variant"] == "nose@all" and len(meta["dropped"]) == 28 and meta["initialised"] == []
    for name, t in net.state_dict().items():
        assert t.to_flat() == base.state_dict()[name].to_flat(), name


# ------------------------------------------------------------------ predict: ImageNet classes
def test_predict_names_imagenet_classes_with_top5_probabilities(tmp_path, capsys):
    from PIL import Image

    from data_tools.imagenet import imagenet_class_names
    from tinyeffnet.predict import main as predict_main
    ckpt = tmp_path / "tf.safetensors"
    assert convert_main(["--from", "timm", fixture(TF), "--out", str(ckpt), "--width", "0.1", "--depth", "0.1",
                         "--image-size", "64"]) == 0
    meta = checkpoint_meta(str(ckpt))
    assert meta["class_names"] == imagenet_class_names() and meta["class_names"][0] == "tench, Tinca tinca"
    assert meta["data"] == "imagenet" and meta["normalization"]["mean"] == [0.485, 0.456, 0.406]
    photo = tmp_path / "photo.jpg"
    Image.effect_mandelbrot((120, 90), (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB").save(photo)
    capsys.readouterr()
    assert predict_main(["--checkpoint", str(ckpt), str(photo), "--backend", "python", "--json"]) == 0
    top = json.loads(capsys.readouterr().out.splitlines()[0])["top"]
    probabilities = [t["probability"] for t in top]
    assert len(top) == 5 and probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1
    assert all(t["name"] == imagenet_class_names()[t["class_index"]] for t in top)
    assert predict_main(["--checkpoint", str(ckpt), str(photo), "--backend", "python"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{photo}: {probabilities[0]:.2%} {top[0]['name']} | ")
    assert lines[0].count(" | ") == 4
