"""--resume continues bit for bit under every source of randomness: augmentation, dropout,
drop-connect, with an EMA of the weights, resumed mid-epoch and at an epoch boundary and
running across boundaries, on both runtimes (the Python one with its `tiny` preset).

The data is 12 images with batch 4: an epoch is 3 steps. A straight run of 7 steps is
compared, every tensor of its last checkpoint byte for byte and every logged loss, with
the same run stopped and resumed.
"""
import json
import os

import pytest

from tinyeffnet.training.checkpoint import latest_checkpoint, read_records
from tinyeffnet.training.config import TrainConfig
from tinyeffnet.training.loop import train

# The tiny preset's recipe (augment full, dropout 0.2, drop-connect 0.2, label smoothing 0.1)
# plus an EMA; depth 0.4 has blocks with a skip and a drop-connect rate above 0.
RANDOM = dict(preset="tiny", variant="base", width=0.1, depth=0.4, image_size=16, batch_size=4, epochs=3,
              ema_decay=0.9, eval_examples=4, workers=0, log_every=1, checkpoint_every=100, seed=5)


def run(workdir, data, backend, stop, resume=False):
    cfg = TrainConfig(**dict(RANDOM, backend=backend, data=data, workdir=str(workdir), max_steps=stop, resume=resume))
    cfg = cfg.resolved().check()
    assert (cfg.augment, cfg.dropout, cfg.drop_connect) == ("full", 0.2, 0.2)
    train(cfg)


def final_state(workdir):
    """({tensor name: (dtype, shape, raw bytes)}, {step: loss}) of a run's last checkpoint and log."""
    records, meta = read_records(latest_checkpoint(os.path.join(workdir, "checkpoints")))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = {r["step"]: r["loss"] for r in map(json.loads, f) if r["kind"] == "step"}
    return meta["step"], records, losses


@pytest.mark.parametrize("backend, stops", [("python", [2, 7]), ("python", [3, 5, 7]), ("jax", [2, 4, 7])],
                         ids=["python-mid-epoch", "python-at-boundary", "jax"])
def test_resume_is_bit_identical_under_randomness(backend, stops, tiny_fashion_mnist, tmp_path):
    if backend == "jax":
        pytest.importorskip("jax")
    run(tmp_path / "straight", tiny_fashion_mnist, backend, stops[-1])
    for i, stop in enumerate(stops):
        run(tmp_path / "resumed", tiny_fashion_mnist, backend, stop, resume=i > 0)
    step, want, want_losses = final_state(tmp_path / "straight")
    got_step, got, got_losses = final_state(tmp_path / "resumed")
    assert step == got_step == stops[-1]
    assert any(n.startswith("ema/") for n in want) and any(n.startswith("opt/") for n in want)
    assert sorted(got) == sorted(want)
    differ = [n for n in want if got[n] != want[n]]
    assert not differ, f"{len(differ)} tensors differ after resuming, e.g. {differ[:3]}"
    assert got_losses == want_losses and sorted(want_losses) == list(range(1, stops[-1] + 1))
