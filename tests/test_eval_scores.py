"""The eval loss, top-1 and top-5 that a run reports are the checkpoint's own on the plain eval
images: in metrics.jsonl's epoch record, in summary.json, from `evaluate --json` and from
`predict --json`, all equal to a computation made here without the trainer's eval step.

The run trains with label smoothing 0.3 and an EMA of the weights. The independent
computation loads the checkpoint's tensors into a network built from its recorded spec
(tinyeffnet.model.build_model), runs a plain forward pass in eval mode on the eval images
(decoded here from the IDX file, resized bicubic, normalised with the recorded mean/std),
and takes the cross-entropy against the TRUE labels, unsmoothed: smoothing is a training
loss, the eval loss is the model's negative log-likelihood. Where a reported loss is the
smoothed one instead, the message says so.
"""
import io
import json
import math
import os

import pytest
from PIL import Image

from backends import get_backend
from data_tools.fashion_mnist import SIDE, read_split
from data_tools.pixels import Normalization
from tinyeffnet.engine.tensor import Tensor
from tinyeffnet.evaluate import main as evaluate_main
from tinyeffnet.model import ModelSpec, build_model
from tinyeffnet.predict import main as predict_main
from tinyeffnet.train import main as train_main
from tinyeffnet.training.checkpoint import load_checkpoint

PY = get_backend("python")
SMOOTHING, SIZE, CLASSES = 0.3, 16, 10
# 12 training images in batches of 3: 4 steps, then one evaluation of all 8 eval images in
# batches of 3 (the last padded: the padding must not count).
RUN = ["--backend", "python", "--preset", "tiny", "--variant", "base", "--width", "0.1", "--depth", "0.1",
       "--image-size", str(SIZE), "--batch-size", "3", "--epochs", "1", "--lr", "0.01", "--warmup-epochs", "0",
       "--label-smoothing", str(SMOOTHING), "--ema-decay", "0.5", "--precise-bn", "12", "--dropout", "0", "--drop-connect", "0",
       "--augment", "none", "--eval-examples", "0", "--workers", "0", "--log-every", "1", "--seed", "1"]
TOLERANCE = 1e-9


@pytest.fixture(scope="module")
def run(tiny_fashion_mnist, tmp_path_factory):
    """(work dir, its last checkpoint's path, eval images as uint8 RGB bytes, labels, folder of them as PNGs)."""
    root = tmp_path_factory.mktemp("eval-scores")
    workdir = root / "run"
    assert train_main(RUN + ["--data", tiny_fashion_mnist, "--workdir", str(workdir)]) == 0
    checkpoint = str(workdir / "checkpoints" / "step-00000004.safetensors")
    assert os.path.isfile(checkpoint), sorted(os.listdir(workdir / "checkpoints"))
    pixels, labels = read_split(tiny_fashion_mnist.split(":", 1)[1], "eval")
    images, folder = [], root / "eval-images"
    folder.mkdir()
    for i in range(len(labels)):
        gray = Image.frombytes("L", (SIDE, SIDE), pixels[i * SIDE * SIDE:(i + 1) * SIDE * SIDE])
        gray.save(folder / f"image{i}.png")
        small = gray.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
        images.append(Image.merge("RGB", (small, small, small)).tobytes())
    return workdir, checkpoint, images, list(labels), folder


def independent_logits(checkpoint, images, ema):
    """[[K logits] per image]: the checkpoint's raw or EMA weights in a network built from its
    spec, one plain forward pass in eval mode."""
    tensors, meta = load_checkpoint(checkpoint, PY)
    spec = ModelSpec.from_meta(meta)
    net = build_model(spec, backend=PY)
    prefix = "ema/" if ema else ""
    net.load_state_dict({name[len(prefix):].split("/", 1)[1]: value for name, value in tensors.items()
                         if name.startswith(prefix + "params/") or name.startswith(prefix + "buffers/")})
    net.eval()
    floats = Normalization(*spec.normalization).floats(b"".join(images))
    logits = PY.to_flat(net(Tensor(PY.from_flat(floats, (len(images), SIZE, SIZE, 3)), PY)).data)
    return [logits[i * CLASSES:(i + 1) * CLASSES] for i in range(len(images))]


def log_softmax(row):
    top = max(row)
    log_total = top + math.log(sum(math.exp(x - top) for x in row))
    return [x - log_total for x in row]


def scores(logits, labels):
    """What the eval must report: top-1, top-5, the loss against the true labels, and (to name
    the mistake when it is made) the loss against the training's smoothed targets."""
    n = len(labels)
    logp = [log_softmax(row) for row in logits]
    ranked = [sorted(range(CLASSES), key=lambda k: -row[k]) for row in logits]
    return dict(top1=sum(r[0] == y for r, y in zip(ranked, labels)) / n,
                top5=sum(y in r[:5] for r, y in zip(ranked, labels)) / n,
                loss=-sum(lp[y] for lp, y in zip(logp, labels)) / n,
                smoothed_loss=-sum((1 - SMOOTHING) * lp[y] + SMOOTHING / CLASSES * sum(lp)
                                   for lp, y in zip(logp, labels)) / n)


@pytest.fixture(scope="module")
def truth(run):
    _, checkpoint, images, labels, _ = run
    raw, ema = (independent_logits(checkpoint, images, e) for e in (False, True))
    out = dict(raw=scores(raw, labels), ema=scores(ema, labels), ema_logits=ema)
    assert out["raw"]["loss"] != out["ema"]["loss"], "the EMA weights are the raw ones: the test cannot tell them apart"
    assert abs(out["raw"]["loss"] - out["raw"]["smoothed_loss"]) > 1e-3  # smoothing is told apart
    return out


def check(where, got, want):
    """`got`'s loss, top1 and top5 (those it has) against `want` (scores()); the message names
    what differs."""
    wrong = []
    if "loss" in got and not math.isclose(got["loss"], want["loss"], rel_tol=TOLERANCE):
        if math.isclose(got["loss"], want["smoothed_loss"], rel_tol=1e-6):
            wrong.append(f"its loss {got['loss']!r} is the cross-entropy against the SMOOTHED targets (label "
                         f"smoothing {SMOOTHING}), not against the true labels ({want['loss']!r}): the eval loss "
                         f"must not smooth")
        else:
            wrong.append(f"its loss {got['loss']!r} is not the cross-entropy against the true labels "
                         f"({want['loss']!r}; against smoothed targets {want['smoothed_loss']!r})")
    for k in ("top1", "top5"):
        if k in got and not math.isclose(got[k], want[k], rel_tol=TOLERANCE):
            wrong.append(f"its {k} {got[k]!r} is not the network's ({want[k]!r})")
    assert not wrong, f"{where}: " + "; ".join(wrong)


def test_the_epoch_record_holds_the_checkpoints_eval_scores(run, truth):
    workdir = run[0]
    with open(workdir / "metrics.jsonl") as f:
        epochs = [r for r in map(json.loads, f) if r["kind"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["step"] == 4 and epochs[0]["eval_images"] == 8, epochs
    record = epochs[0]
    check("metrics.jsonl's epoch record (raw weights: eval_*)",
          dict(loss=record["eval_loss"], top1=record["eval_top1"], top5=record["eval_top5"]), truth["raw"])
    check("metrics.jsonl's epoch record (EMA weights: ema_*)",
          dict(loss=record["ema_loss"], top1=record["ema_top1"], top5=record["ema_top5"]), truth["ema"])


def test_the_summary_holds_the_checkpoints_eval_scores(run, truth):
    with open(run[0] / "summary.json") as f:
        summary = json.load(f)
    assert summary["weights"] == "ema" and summary["eval_images"] == 8, summary
    check("summary.json (its result: the EMA weights)",
          dict(loss=summary["eval_loss"], top1=summary["top1"], top5=summary["top5"]), truth["ema"])
    check("summary.json (raw_top1, raw_top5)", dict(top1=summary["raw_top1"], top5=summary["raw_top5"]), truth["raw"])


@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_evaluate_reports_the_checkpoints_eval_scores(weights, run, truth, tiny_fashion_mnist, capsys):
    _, checkpoint, _, _, _ = run
    argv = ["--checkpoint", checkpoint, "--data", tiny_fashion_mnist, "--backend", "python", "--json",
            "--batch-size", "3"] + (["--raw"] if weights == "raw" else [])
    assert evaluate_main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 8, f"evaluate --json scored {result['images']} of the 8 eval images"
    assert result["ema"] == (weights == "ema"), f"evaluate{' --raw' if weights == 'raw' else ''} used the " \
        f"{'EMA' if result['ema'] else 'raw'} weights"
    check(f"evaluate --json ({weights} weights)", result, truth[weights])


def test_predict_gives_the_networks_probabilities_and_scores(run, truth, capsys):
    _, checkpoint, _, labels, folder = run
    assert predict_main(["--checkpoint", checkpoint, "--backend", "python", "--json", "--top", str(CLASSES),
                         str(folder)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_image = {int(os.path.basename(r["image"])[len("image"):-len(".png")]): r["top"] for r in lines}
    assert sorted(by_image) == list(range(len(labels))), sorted(by_image)
    probabilities = []
    for i in range(len(labels)):
        row = {t["class_index"]: t["probability"] for t in by_image[i]}
        probabilities.append([row[k] for k in range(CLASSES)])
        want = [math.exp(x) for x in log_softmax(truth["ema_logits"][i])]
        assert all(math.isclose(p, q, rel_tol=1e-9, abs_tol=1e-300) for p, q in zip(probabilities[-1], want)), \
            (f"predict's probabilities of image {i} are not the softmax of the checkpoint's EMA network: "
             f"{[f'{p:.4g}' for p in probabilities[-1]]}, the network's {[f'{q:.4g}' for q in want]}")
    # The scores predict's probabilities give: log p is the logits up to a constant per image.
    got = scores([[math.log(p) for p in row] for row in probabilities], labels)
    check("predict --json (EMA weights)", got, truth["ema"])
