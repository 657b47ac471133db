"""The learning-rate schedule on its own: linear warmup from 0, then the cosine of the whole
run (tinyeffnet/training/schedule.py states the formula, the paper's section IV-B), at its
first and last steps, as the trainer logs it, as the step applies it, and across a resume
in the middle of the warmup.

The recipe is restated here, not imported: the rate at `step` of a run with
`steps_per_epoch` steps per epoch is, with t = step / steps_per_epoch (epochs),

    peak * t / warmup                                   while t < warmup
    0.5 * peak * (1 + cos(pi * min(t, horizon) / horizon))   afterwards
"""
import json
import math
import os

import pytest

from backends import get_backend
from tinyeffnet.model import ModelSpec, build_model
from tinyeffnet.train import main as train_main
from tinyeffnet.training.checkpoint import load_checkpoint
from tinyeffnet.training.schedule import learning_rate

PY = get_backend("python")


def recipe_lr(step, steps_per_epoch, peak, warmup, horizon):
    t = step / steps_per_epoch
    if t < warmup:
        return peak * t / warmup
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(t, horizon) / horizon))


def close(a, b):
    return abs(a - b) <= 1e-12 * max(1.0, abs(b))


# ---------------------------------------------------------------- the function
@pytest.mark.parametrize("steps_per_epoch, warmup, epochs, horizon",
                         [(3, 1.0, 4, 4.0), (5, 0.4, 3, 3.0), (4, 2.0, 5, 4.0), (7, 0.0, 2, 2.0)],
                         ids=["one-epoch-warmup", "fractional-warmup", "horizon-before-the-end", "no-warmup"])
def test_the_schedule_is_warmup_then_cosine_at_every_step(steps_per_epoch, warmup, epochs, horizon):
    peak = 0.4
    total = steps_per_epoch * epochs
    wrong = []
    for step in range(total + 1):
        got = learning_rate(step / steps_per_epoch, peak, warmup, horizon)
        want = recipe_lr(step, steps_per_epoch, peak, warmup, horizon)
        if not close(got, want):
            part = "warmup" if step / steps_per_epoch < warmup else "cosine"
            wrong.append(f"step {step} ({part}): {got!r}, the recipe's {want!r}")
    assert not wrong, (f"the learning-rate schedule (warmup {warmup} epochs, cosine horizon {horizon}, "
                       f"{steps_per_epoch} steps per epoch) is not the recipe's at {len(wrong)} steps: "
                       + "; ".join(wrong[:4]))


def test_the_first_and_last_steps_and_the_warmups_end():
    peak, spe, warmup, epochs = 0.1, 3, 1.0, 4
    first = learning_rate(0.0, peak, warmup, epochs)
    assert first == 0.0, f"warmup: the first step's rate is {first!r}, the recipe's warmup starts at 0"
    second = learning_rate(1 / spe, peak, warmup, epochs)
    assert close(second, peak / 3), f"warmup: step 1 of 3 runs at {second!r}, the recipe's peak / 3 = {peak / 3!r}"
    last_warm = learning_rate(2 / spe, peak, warmup, epochs)
    assert close(last_warm, 2 * peak / 3), f"warmup: its last step runs at {last_warm!r}, not 2/3 of the peak"
    # the cosine counts from the start of training, as the paper writes it: at the warmup's end it is already
    # cos(pi / 4) of the way down, not at the peak
    after = learning_rate(1.0, peak, warmup, epochs)
    assert close(after, 0.5 * peak * (1 + math.cos(math.pi / epochs))), \
        f"cosine: the first step after the warmup runs at {after!r}, the recipe's cosine of the whole run gives " \
        f"{0.5 * peak * (1 + math.cos(math.pi / epochs))!r}"
    last = learning_rate((epochs * spe - 1) / spe, peak, warmup, epochs)
    assert close(last, 0.5 * peak * (1 + math.cos(math.pi * (epochs * spe - 1) / (epochs * spe)))) and last > 0, \
        f"cosine: the last step runs at {last!r}"
    assert learning_rate(float(epochs), peak, warmup, epochs) < 1e-18, "cosine: the rate does not reach 0 at T"
    assert learning_rate(epochs + 1.0, peak, warmup, epochs) < 1e-18, "cosine: the rate rises again after T"


# ---------------------------------------------------------------- in a run
SPE = 3  # 12 training images, batch 4
PEAK, WARMUP, EPOCHS = 0.1, 1.0, 2
RUN = ["--backend", "python", "--preset", "tiny", "--variant", "base", "--width", "0.1", "--depth", "0.1",
       "--image-size", "16", "--batch-size", "4", "--epochs", str(EPOCHS), "--lr", str(PEAK),
       "--warmup-epochs", str(WARMUP), "--momentum", "0", "--weight-decay", "0", "--label-smoothing", "0",
       "--dropout", "0", "--drop-connect", "0", "--augment", "none", "--ema-decay", "0", "--clip-grad-norm", "0",
       "--eval-examples", "4", "--workers", "0", "--log-every", "1", "--checkpoint-every", "1",
       "--keep-checkpoints", "100", "--seed", "3"]


def train(data, workdir, *extra):
    status = train_main(RUN + ["--data", data, "--workdir", str(workdir)] + list(extra))
    assert status == 0, f"the run in {workdir} exited {status}"


def logged_rates(workdir):
    """{step: lr} of the step records: the record of step s (1-based) holds the rate of its update."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["lr"] for r in map(json.loads, f) if r["kind"] == "step"}


def grad_norms(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["grad_norm"] for r in map(json.loads, f) if r["kind"] == "step"}


def params_after(workdir, step):
    tensors, meta = load_checkpoint(os.path.join(workdir, "checkpoints", f"step-{step:08d}.safetensors"), PY)
    assert meta["step"] == step
    return {n[len("params/"):]: PY.to_flat(a) for n, a in tensors.items() if n.startswith("params/")}, meta


def initial_params(meta):
    net = build_model(ModelSpec.from_meta(meta), init="xavier", seed=3, backend=PY)
    return {n: PY.to_flat(p.data) for n, p in net.named_parameters()}


@pytest.fixture(scope="module")
def straight(tiny_fashion_mnist, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("schedule") / "straight"
    train(tiny_fashion_mnist, workdir)
    return workdir


def test_the_run_logs_the_recipes_rate_at_every_step(straight):
    got = logged_rates(straight)
    assert sorted(got) == list(range(1, SPE * EPOCHS + 1)), sorted(got)
    wrong = [f"step {s} ({'warmup' if (s - 1) / SPE < WARMUP else 'cosine'}): logged lr {got[s]!r}, the recipe's "
             f"{recipe_lr(s - 1, SPE, PEAK, WARMUP, EPOCHS)!r}"
             for s in sorted(got) if not close(got[s], recipe_lr(s - 1, SPE, PEAK, WARMUP, EPOCHS))]
    assert not wrong, "the learning-rate schedule in metrics.jsonl is not the recipe's: " + "; ".join(wrong)


def test_each_step_moves_the_weights_by_its_rate_times_the_gradient(straight):
    """With momentum 0 and no weight decay or clipping, step s changes the parameters by
    -lr_s * gradient: the norm of the change over the logged gradient norm is the rate the
    step really ran at, compared with the recipe's (and so with what its record says)."""
    norms = grad_norms(straight)
    previous, meta = params_after(straight, 1)
    before = initial_params(meta)
    wrong = []
    for step in range(1, SPE * EPOCHS + 1):
        after, _ = params_after(straight, step)
        change = math.sqrt(sum((a - b) ** 2 for n in after for a, b in zip(after[n], before[n])))
        applied, want = change / norms[step], recipe_lr(step - 1, SPE, PEAK, WARMUP, EPOCHS)
        if abs(applied - want) > 1e-9 * max(PEAK, 1.0):
            part = "warmup" if (step - 1) / SPE < WARMUP else "cosine"
            wrong.append(f"step {step} ({part}) ran at lr {applied:.9g}, the recipe's {want:.9g}")
        before = after
    assert not wrong, "the rate the steps apply is not the schedule's: " + "; ".join(wrong)


def test_a_run_resumed_in_the_middle_of_the_warmup_keeps_the_rates(straight, tiny_fashion_mnist, tmp_path):
    """Stopped after 2 of the 3 warmup steps and resumed: every step's rate (the step records
    of metrics.jsonl) is the uninterrupted run's, and so are the weights."""
    stop = 2
    workdir = tmp_path / "resumed"
    train(tiny_fashion_mnist, workdir, "--max-steps", str(stop))
    train(tiny_fashion_mnist, workdir, "--resume")
    want, got = logged_rates(straight), logged_rates(workdir)
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    wrong = [f"step {s}: {got[s]!r}, uninterrupted {want[s]!r}" for s in sorted(want) if got[s] != want[s]]
    assert not wrong, (f"resumed after step {stop}, in the middle of the {WARMUP:g}-epoch warmup, the run's learning "
                       f"rates are not the uninterrupted run's: " + "; ".join(wrong))
    last = SPE * EPOCHS
    assert params_after(workdir, last)[0] == params_after(straight, last)[0], \
        f"resumed after step {stop} mid-warmup, the rates are right but the weights after step {last} differ"
