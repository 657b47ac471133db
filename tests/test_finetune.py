"""Runs that start from other weights: train --init-from (any backend's checkpoint or a
converted published one, any class count), --freeze-backbone, the finetune preset, and
--resume of such a run. The published-format fixtures come from tests/fixtures (see
test_convert.py); the trainer runs in this process, on the small network and shapes of
test_train.py and test_faults.py (so that their compiled programs are shared)."""
import json
import os

import pytest

from backends import get_backend
from tinyeffnet.convert import main as convert_main
from tinyeffnet.model import build_model
from tinyeffnet.train import main as train_main
from tinyeffnet.training.checkpoint import latest_checkpoint, load_checkpoint, read_records
from tinyeffnet.training.config import PRESETS, build_parser, config_from_args
from tinyeffnet.weights.files import read_state_dict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
PY = get_backend("python")
TRAINED = "tf_efficientnet_b0.fmnist"  # trained in PyTorch on the embedded subset at 16x16: width 0.25, 10 classes
SMALL = ["--backend", "jax", "--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16",
         "--batch-size", "16", "--epochs", "1", "--workers", "0", "--log-every", "1"]
# The same steps for both runs of the comparison: the default preset's from-scratch LR, no warmup.
COMPARED = SMALL + ["--eval-examples", "512", "--lr", "0.05", "--warmup-epochs", "0", "--max-steps", "30"]


def convert(tmp, name, width, *extra):
    out = os.path.join(tmp, f"{name}.tinyeffnet.safetensors")
    assert convert_main(["--from", "timm", os.path.join(FIXTURES, f"{name}.safetensors"), "--out", out,
                         "--width", str(width), "--depth", "0.1", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return convert(str(tmp_path_factory.mktemp("trained")), TRAINED, 0.25, "--image-size", "16")


def weights(path):
    """{name: raw bytes} of the model tensors of a checkpoint (no optimizer state)."""
    records, _ = read_records(str(path))
    return {n: r[2] for n, r in records.items() if n.startswith(("params/", "buffers/"))}


def top1(workdir):
    return json.load(open(os.path.join(workdir, "summary.json")))["top1"]


def _scored_images(directory):
    """A Fashion-MNIST folder whose eval split is the 2,000 test images the fixture was scored on
    in PyTorch: the balanced sample of t10k (200 per class, random.Random(0)) that the embedded
    eval split was before it became the whole t10k split, which it still holds in order."""
    import random

    from data_tools.fashion_mnist import FILES, SIDE, read_split
    from data_tools.idx import write_idx
    from data_tools.make_fashion_mnist_subset import balanced_indices
    from data_tools.datasets import EMBEDDED_SUBSET
    images, labels = read_split(EMBEDDED_SUBSET, "eval")
    chosen = balanced_indices(labels, 200, random.Random(0))
    os.makedirs(directory, exist_ok=True)
    image_name, label_name = FILES["eval"]
    write_idx(os.path.join(directory, image_name), (len(chosen), SIDE, SIDE),
              b"".join(images[i * SIDE * SIDE:(i + 1) * SIDE * SIDE] for i in chosen))
    write_idx(os.path.join(directory, label_name), (len(chosen),), bytes(labels[i] for i in chosen))
    return f"fashion-mnist:{directory}"


def test_the_trained_fixture_scores_in_tinyeffnet_what_it_scored_in_pytorch(trained, tmp_path):
    pytest.importorskip("jax")
    from tinyeffnet.training.evaluation import evaluate_checkpoint
    _, measured = read_state_dict(os.path.join(FIXTURES, "expected.safetensors"))
    correct = int(measured[f"{TRAINED}/eval_correct"])
    result = evaluate_checkpoint(trained, _scored_images(str(tmp_path / "scored")), "jax", batch_size=16)
    assert result["images"] == int(measured[f"{TRAINED}/eval_images"]) == 2000
    # the same network and pixels; float32 near-ties may flip an answer or two
    assert abs(round(result["top1"] * result["images"]) - correct) <= 3, (result["top1"], correct)


def test_finetuning_beats_training_from_scratch_in_the_same_steps(trained, tmp_path, capsys):
    pytest.importorskip("jax")
    tuned, scratch = tmp_path / "tuned", tmp_path / "scratch"
    assert train_main(COMPARED + ["--workdir", str(tuned), "--init-from", trained, "--freeze-backbone"]) == 0
    assert f"init from {trained}: loaded 140 of 140 tensors\n" in capsys.readouterr().out
    assert train_main(COMPARED + ["--workdir", str(scratch)]) == 0
    assert top1(tuned) > 0.7 and top1(tuned) > top1(scratch) + 0.25, (top1(tuned), top1(scratch))
    saved = json.load(open(tuned / "config.json"))
    assert saved["config"]["init_from"] == trained and saved["config"]["freeze_backbone"] is True
    assert saved["padding"] == "same" and saved["bn_eps"] == 1e-3
    # the frozen backbone left bit for bit as loaded; only the classifier trained and has optimizer state
    start, end = weights(trained), weights(latest_checkpoint(tuned / "checkpoints"))
    for name, raw in start.items():
        assert (end[name] != raw) == name.startswith("params/fc."), name
    records, _ = read_records(latest_checkpoint(tuned / "checkpoints"))
    optimizer_state = [n for n in records if n.startswith("opt/")]
    assert optimizer_state and all(n.rsplit("/", 1)[-1].startswith("fc.") for n in optimizer_state)

    # --resume continues from the run's own checkpoints: the --init-from file may be gone
    moved = str(tmp_path / "elsewhere.safetensors")
    os.rename(trained, moved)
    try:
        capsys.readouterr()
        assert train_main(COMPARED + ["--workdir", str(tuned), "--init-from", trained, "--freeze-backbone",
                                      "--resume", "--max-steps", "31"]) == 0
    finally:
        os.rename(moved, trained)
    out = capsys.readouterr().out
    assert "resumed from" in out and "init from" not in out
    again = weights(latest_checkpoint(tuned / "checkpoints"))
    assert all((again[n] != raw) == n.startswith("params/fc.") for n, raw in start.items())


def test_another_class_count_reinitialises_the_head_on_the_python_backend(tmp_path, capsys):
    # A 1000-class ImageNet network fine-tuned on the 10 Fashion-MNIST classes, backbone
    # frozen, with an EMA of the weights (which must not move the backbone either).
    ckpt = convert(str(tmp_path), "tf_efficientnet_b0.w010", 0.1)
    capsys.readouterr()
    workdir = tmp_path / "py"
    assert train_main(["--backend", "python", "--width", "0.1", "--depth", "0.1", "--image-size", "16",
                       "--batch-size", "4", "--max-steps", "2", "--eval-examples", "8", "--workdir", str(workdir),
                       "--init-from", ckpt, "--freeze-backbone", "--ema-decay", "0.9"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("init from"))
    assert line == (f"init from {ckpt}: loaded 138 of 140 tensors; initialised afresh 2: fc.weight 128x10 "
                    "(weights: 128x1000), fc.bias 10 (weights: 1000)"), line
    loaded, _ = load_checkpoint(ckpt, PY)
    trained_state, _ = load_checkpoint(latest_checkpoint(workdir / "checkpoints"), PY)
    fresh = build_model("base", "b0", 10, backend="python", width=0.1, depth=0.1).state_dict()
    for name in loaded:
        if name.startswith("params/fc."):
            assert PY.to_flat(trained_state[name]) != fresh[name[len("params/"):]].to_flat(), f"{name} did not train"
        else:  # float32 values, held in float64 by the python backend: exactly the same numbers
            assert PY.to_flat(trained_state[name]) == PY.to_flat(loaded[name]), name
            assert PY.to_flat(trained_state["ema/" + name]) == PY.to_flat(loaded[name]), f"the EMA of {name} moved"


def test_bad_init_from_requests_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    pytest.importorskip("jax")
    corrupt = tmp_path / "corrupt.safetensors"
    blob = bytearray(open(trained, "rb").read())
    blob[-5] ^= 0xFF
    corrupt.write_bytes(bytes(blob))
    cases = [
        (["--init-from", str(tmp_path / "nothing.safetensors")], "nothing.safetensors does not exist"),
        (["--init-from", str(corrupt)], "is corrupt"),
        (["--init-from", os.path.join(FIXTURES, f"{TRAINED}.safetensors")],
         "convert published timm or torchvision weights first (python -m tinyeffnet.convert)"),
        (["--init-from", trained, "--width", "0.5"], "holds a b0 network (width 0.25, depth 0.1) and this run "
                                                     "builds another: train with --model b0 --width 0.25 --depth 0.1"),
        (["--freeze-backbone"], "--freeze-backbone trains the classifier on top of loaded weights: give --init-from"),
    ]
    for extra, needle in cases:
        workdir = tmp_path / "w"
        status = train_main(SMALL + ["--workdir", str(workdir)] + extra)
        err = capsys.readouterr().err.strip()
        assert status == 2 and len(err.splitlines()) == 1 and err.startswith("error: ") and needle in err, err
        assert not workdir.exists()


def _resolved(*argv):
    return config_from_args(build_parser().parse_args(list(argv))).resolved()


def test_the_finetune_preset_is_for_image_folders_started_from_weights():
    cfg = _resolved("--data", "/photos", "--init-from", "w.safetensors")
    assert cfg.preset == "finetune" and cfg.image_size == 224 and cfg.lr == PRESETS["finetune"]["lr"]
    assert cfg.lr < _resolved("--data", "/photos", "--batch-size", "64").lr and cfg.warmup_epochs <= 1
    assert _resolved("--data", "/photos", "--init-from", "w", "--model", "b3").image_size == 300
    assert _resolved("--data", "/photos").preset == "imagenet"
    assert _resolved("--init-from", "w.safetensors").preset == "default"  # Fashion-MNIST keeps its preset
    assert _resolved("--preset", "finetune").image_size == 224
