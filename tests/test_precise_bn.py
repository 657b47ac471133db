"""Precise BN: the BN statistics recomputed over training batches before an evaluation.

Checked against the training path itself (a training-mode forward with BN momentum 0 leaves
each BN's moving statistics equal to its batch's statistics), against the stem BN's
statistics computed by hand, and end to end: the parameters' trajectory is unchanged, the
checkpoint holds the statistics the summary was scored with, and a resume is bit-identical."""
import json
import os

import pytest

from backends import get_backend
from tinyeffnet.engine.tensor import Tensor
from tinyeffnet.model import build_model
from tinyeffnet.training.step import StepOptions, forward_loss, make_bn_statistics_step

SIZE, BATCH = 8, 4


def _net(dropout=0.0, drop_connect=0.0, bn_momentum=0.9):
    return build_model("seend@hasskip", num_classes=3, seed=1, backend="python", width=0.1, depth=0.1,
                       bn_momentum=bn_momentum, dropout=dropout, drop_connect=drop_connect)


def _images(backend, seed):
    import random
    rng = random.Random(seed)
    return backend.from_flat([rng.gauss(0.0, 1.0) for _ in range(BATCH * SIZE * SIZE * 3)], (BATCH, SIZE, SIZE, 3),
                             "float64")


def _weights(net):
    return {n: p.data for n, p in net.named_parameters()}, {n: b.data for n, b in net.named_buffers()}


def _zeros(backend, buffers):
    return {n: backend.full(backend.shape(b), 0.0, backend.dtype(b)) for n, b in buffers.items()}


def test_one_batch_gives_that_batch_statistics_as_training_computes_them():
    net = _net()
    b = net.backend
    params, buffers = _weights(net)
    images = _images(b, 0)
    step = make_bn_statistics_step(net, StepOptions(compute_dtype="float64"))
    got = step(params, buffers, _zeros(b, buffers), images, 1.0)
    labels = b.from_flat([0, 1, 2, 0], (BATCH,), "int32")
    # the training path with momentum 0: moving = 0 * moving + 1 * batch
    _, _, _, want = forward_loss(_net(bn_momentum=0.0), params, buffers, images, labels, b.key(0),
                                 StepOptions(compute_dtype="float64"))
    assert set(got) == set(want) and len(got) > 10
    for name in got:
        assert b.to_flat(got[name]) == pytest.approx(b.to_flat(want[name]), rel=1e-12, abs=1e-12), name
    # the stem BN's statistics by hand: per channel mean and biased variance over N, H, W
    net.eval()
    stem = net.stem_conv(Tensor(images, b)).data
    channels = b.shape(stem)[-1]
    flat = b.to_flat(stem)
    for c in range(channels):
        xs = flat[c::channels]
        mean = sum(xs) / len(xs)
        assert b.to_flat(got["stem_bn.moving_mean"])[c] == pytest.approx(mean, abs=1e-12)
        assert b.to_flat(got["stem_bn.moving_var"])[c] == pytest.approx(sum((x - mean) ** 2 for x in xs) / len(xs),
                                                                        rel=1e-10)


def test_weights_average_the_batches_and_dropout_stays_off():
    net = _net(dropout=0.5, drop_connect=0.5)  # measuring runs as at eval time: no random key, nothing dropped
    b = net.backend
    params, buffers = _weights(net)
    step = make_bn_statistics_step(net, StepOptions(compute_dtype="float64"))
    one = [step(params, buffers, _zeros(b, buffers), _images(b, s), 1.0) for s in (1, 2)]
    both = step(params, buffers, step(params, buffers, _zeros(b, buffers), _images(b, 1), 0.5), _images(b, 2), 0.5)
    for name in both:
        mean = [(x + y) / 2 for x, y in zip(b.to_flat(one[0][name]), b.to_flat(one[1][name]))]
        assert b.to_flat(both[name]) == pytest.approx(mean, rel=1e-12, abs=1e-14), name
    assert not net.training and not net.stem_bn.training and net.stem_bn.measuring
    net.train()
    assert net.stem_bn.training and not net.stem_bn.measuring  # a mode change ends measuring


def test_eval_after_measuring_uses_the_moving_statistics():
    net = _net()
    b = net.backend
    params, buffers = _weights(net)
    make_bn_statistics_step(net, StepOptions(compute_dtype="float64"))(params, buffers, _zeros(b, buffers),
                                                                       _images(b, 3), 1.0)
    net.eval()
    assert not any(m.measuring for _, m in net.named_modules())


# ------------------------------------------------------------------ end to end (JAX)
SMALL = ["--backend", "jax", "--variant", "base", "--width", "0.1", "--depth", "0.1", "--image-size", "16",
         "--batch-size", "32", "--epochs", "2", "--max-steps", "0", "--eval-examples", "96", "--workers", "0",
         "--lr", "0.05", "--warmup-epochs", "0"]


def _train(workdir, *extra):
    from tinyeffnet.train import main
    assert main(SMALL + ["--workdir", str(workdir)] + list(extra)) == 0


def _tensors(path):
    from tinyeffnet.training.checkpoint import load_checkpoint
    python = get_backend("python")
    tensors, _ = load_checkpoint(str(path), python)
    return {k: python.to_flat(v) for k, v in tensors.items()}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """A Fashion-MNIST folder of 192 train and 96 test images: two epochs of 6 steps."""
    pytest.importorskip("jax")
    from data_tools.fashion_mnist import FILES, SIDE, read_split
    from data_tools.idx import write_idx
    from data_tools.datasets import EMBEDDED_SUBSET
    directory = tmp_path_factory.mktemp("fm")
    for split, count in (("train", 192), ("eval", 96)):
        images, labels = read_split(EMBEDDED_SUBSET, split)
        image_name, label_name = FILES[split]
        write_idx(os.path.join(directory, image_name), (count, SIDE, SIDE), images[:count * SIDE * SIDE])
        write_idx(os.path.join(directory, label_name), (count,), bytes(labels[:count]))
    return f"fashion-mnist:{directory}"


def test_precise_bn_leaves_the_parameters_and_scores_what_it_saves(tmp_path, small_data):
    _train(tmp_path / "plain", "--data", small_data)
    _train(tmp_path / "precise", "--data", small_data, "--precise-bn", "64")
    plain = _tensors(tmp_path / "plain" / "checkpoints" / "step-00000012.safetensors")
    precise = _tensors(tmp_path / "precise" / "checkpoints" / "step-00000012.safetensors")
    params = [k for k in plain if k.startswith(("params/", "opt/"))]
    assert params and all(plain[k] == precise[k] for k in params)  # training reads no moving statistic
    assert any(plain[k] != precise[k] for k in plain if k.startswith("buffers/"))
    summary = json.load(open(tmp_path / "precise" / "summary.json"))
    from tinyeffnet.training.evaluation import evaluate_checkpoint
    again = evaluate_checkpoint(str(tmp_path / "precise" / "checkpoints" / "step-00000012.safetensors"), small_data,
                                limit=96)
    assert again["top1"] == summary["top1"] and summary["eval_images"] == again["images"] == 96


def test_resume_with_precise_bn_is_bit_identical(tmp_path, small_data):
    flags = ["--data", small_data, "--precise-bn", "64", "--ema-decay", "0.9", "--checkpoint-every", "4"]
    _train(tmp_path / "whole", *flags)
    _train(tmp_path / "cut", *flags, "--max-steps", "8")  # past the epoch end (step 6) and its precise BN
    _train(tmp_path / "cut", *flags, "--resume")
    whole = _tensors(tmp_path / "whole" / "checkpoints" / "step-00000012.safetensors")
    resumed = _tensors(tmp_path / "cut" / "checkpoints" / "step-00000012.safetensors")
    assert whole == resumed
    # evaluating only at the end gives the same final state and result: the last precise BN
    # recomputes every statistic from the weights, which never read them
    _train(tmp_path / "end", *flags, "--eval-every", "2")
    assert _tensors(tmp_path / "end" / "checkpoints" / "step-00000012.safetensors") == whole
    summaries = [json.load(open(tmp_path / w / "summary.json")) for w in ("whole", "end")]
    assert summaries[0]["top1"] == summaries[1]["top1"] and summaries[0]["weights"] == "ema"


def test_precise_bn_with_a_frozen_backbone_is_one_line(capsys):
    from tinyeffnet.train import main
    assert main(["--precise-bn", "64", "--freeze-backbone", "--init-from", "x.safetensors"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--precise-bn" in err and "--freeze-backbone" in err
    assert main(["--precise-bn", "-1"]) == 2
