"""Every recipe flag that changes the training step is seen to reach it through the real path.

`train(cfg)` runs two steps with one flag changed; its checkpoint (parameters, BN statistics,
the optimizer's trace, the EMA) and its logged losses are compared with a reference step
written here from the recipe's formulas: the loss against hand-made smoothed targets, the
Nesterov update, the weight-decay mask, the clipping and the EMA by hand in Python floats.
The reference with the flag at its neutral value must differ, so each case shows the flag
has an effect and that the trainer applies exactly that effect. The JAX runtime is checked
the same way against jax.grad and optax's own SGD (tests/test_recipe_jax.py).

The warmup is on (half an epoch: the first step at rate 0, the second at 2/3 of the peak),
and the rates the run logs are checked against the recipe's before anything else. When a
case's step is not the recipe's, the same run with every flag neutral tells whether the flag
is to blame or what all cases share: the schedule (the rate the steps really ran at, read
from the weights with momentum 0) or the step itself. The schedule alone, at every step of
a longer run and across a resume: tests/test_schedule.py.
"""
import json
import math
import os

import pytest

from backends import get_backend
from data_tools import Loader, open_dataset
from tinyeffnet.engine import functional as F
from tinyeffnet.engine.tensor import Tensor
from tinyeffnet.model import build_model
from tinyeffnet.training.checkpoint import latest_checkpoint, load_checkpoint
from tinyeffnet.training.checkpoint_dir import save_checkpoint
from tinyeffnet.training.config import TrainConfig
from tinyeffnet.training.loop import train
from tinyeffnet.training.runtime import PythonRuntime
from tinyeffnet.training.state import model_tensors

PY = get_backend("python")
CLASSES = 10
# Neutral values: each case below changes one of them. Warmup over half an epoch (1.5 of the 3 steps):
# step 0 runs at rate 0, step 1 at 2/3 of the peak.
BASE = dict(variant="base", width=0.1, depth=0.1, image_size=16, batch_size=4, epochs=1, max_steps=2, workers=0,
            log_every=1, eval_examples=4, augment="none", lr=0.1, warmup_epochs=0.5, momentum=0.9,
            weight_decay=0.0, label_smoothing=0.0, dropout=0.0, drop_connect=0.0, bn_momentum=0.9,
            clip_grad_norm=0.0, ema_decay=0.0, checkpoint_every=1, keep_checkpoints=5, seed=3)


def run_train(workdir, data, backend="python", **flags):
    """Train as the command would; ({checkpoint name: floats} at the last step, [loss per step], meta)."""
    cfg = TrainConfig(**dict(BASE, backend=backend, data=data, workdir=str(workdir), preset="tiny", **flags))
    train(cfg.resolved().check())
    tensors, meta = load_checkpoint(latest_checkpoint(os.path.join(workdir, "checkpoints")), PY)
    return {n: PY.to_flat(a) for n, a in tensors.items()}, [r["loss"] for r in step_records(workdir)], meta


def step_records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "step"]


# --------------------------------------------------------------------- the reference step
def smoothed_targets(labels, smoothing):
    """(1 - smoothing) * one-hot + smoothing / K, row by row."""
    return [[(1.0 - smoothing) * (k == y) + smoothing / CLASSES for k in range(CLASSES)] for y in labels]


def decayed(name):
    """Weight decay applies to conv and dense kernels and biases, never to BN gamma and beta."""
    return not (name.endswith(".gamma") or name.endswith(".beta"))


def recipe_lr(peak, step, steps_per_epoch, warmup_epochs, epochs):
    """Linear warmup from 0 over `warmup_epochs`, then the cosine of the whole run (to 0 at `epochs`)."""
    t = step / steps_per_epoch
    if t < warmup_epochs:
        return peak * t / warmup_epochs
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(t, epochs) / epochs))


def reference_run(data, steps=2, nesterov=True, bn_eps=1e-3, **flags):
    """What the recipe says `steps` steps compute: ({checkpoint name: floats}, [loss per step])."""
    r = dict(BASE, **flags)
    net = build_model(r["variant"], "b0", CLASSES, "xavier", r["seed"], backend="python",
                      bn_momentum=r["bn_momentum"], dropout=r["dropout"], drop_connect=r["drop_connect"],
                      width=r["width"], depth=r["depth"], bn_eps=bn_eps)
    params = {n: PY.to_flat(p.data) for n, p in net.named_parameters()}
    buffers = {n: PY.to_flat(b.data) for n, b in net.named_buffers()}
    shapes = {n: t.shape for n, t in net.state_dict().items()}
    trace = {n: [0.0] * len(v) for n, v in params.items()}
    ema = dict(params=dict(params), buffers=dict(buffers))
    loader = Loader(open_dataset(data, "train", r["image_size"], augment=r["augment"]), r["batch_size"],
                    seed=r["seed"])
    arrays = lambda values: {n: PY.from_flat(v, shapes[n]) for n, v in values.items()}
    m, wd, d = r["momentum"], r["weight_decay"], r["ema_decay"]
    losses = []
    for step in range(steps):
        epoch, within = divmod(step, loader.steps_per_epoch)
        batch = next(iter(loader.batches(epoch, within)))
        n = r["batch_size"]
        images = PY.from_flat(loader.normalization.floats(batch.images), (n, r["image_size"], r["image_size"], 3))
        key = PythonRuntime().step_key(r["seed"], step)
        net.train()
        with net.bind(arrays(params), arrays(buffers)) as leaves:
            logp = F.log_softmax(net(Tensor(images, PY), key=key))
            targets = Tensor(PY.from_flat([t for row in smoothed_targets(batch.labels[:n], r["label_smoothing"])
                                           for t in row], (n, CLASSES)), PY)
            loss = -(logp * targets).sum() * (1.0 / n)
            new_buffers = {name: PY.to_flat(b.data) for name, b in net.named_buffers()}
        loss.backward()
        losses.append(PY.to_flat(loss.data)[0])
        grads = {name: PY.to_flat(leaves[name].grad.data) for name in params}
        norm = math.sqrt(sum(g * g for values in grads.values() for g in values))
        scale = min(1.0, r["clip_grad_norm"] / norm) if r["clip_grad_norm"] else 1.0
        lr = recipe_lr(r["lr"], step, loader.steps_per_epoch, r["warmup_epochs"], r["epochs"])
        new_params = {}
        for name, p in params.items():
            g = [scale * x for x in grads[name]]
            if wd and decayed(name):
                g = [x + wd * w for x, w in zip(g, p)]
            v = [x + m * t for x, t in zip(g, trace[name])]
            update = [x + m * y for x, y in zip(g, v)] if nesterov else v
            new_params[name] = [w - lr * u for w, u in zip(p, update)]
            trace[name] = v
        params, buffers = new_params, new_buffers
        if d:
            ema = {group: {name: [d * e + (1.0 - d) * x for e, x in zip(ema[group][name], values[name])]
                           for name in values} for group, values in (("params", params), ("buffers", buffers))}
    out = {f"params/{n}": v for n, v in params.items()}
    out.update({f"buffers/{n}": v for n, v in buffers.items()})
    out.update({f"opt/trace/{n}": v for n, v in trace.items()})
    if d:
        out.update({f"ema/{g}/{n}": v for g, values in ema.items() for n, v in values.items()})
    return out, losses


def largest_difference(got, want):
    """The largest difference between two {name: floats}, relative to max(1, |value|)."""
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    return max(abs(a - b) / max(1.0, abs(b)) for n in want for a, b in zip(got[n], want[n]))


# --------------------------------------------------------------------- what to blame
STEPS_PER_EPOCH = 3  # tiny_fashion_mnist: 12 training images, batch 4


def recipe_rates(**flags):
    r = dict(BASE, **flags)
    return [recipe_lr(r["lr"], s, STEPS_PER_EPOCH, r["warmup_epochs"], r["epochs"]) for s in range(r["max_steps"])]


def assert_the_schedule_is_the_recipes(workdir, case, **flags):
    """The rates a run logged (its step records) are the recipe's warmup and cosine; else the
    schedule is what broke, whatever the case tests."""
    logged, want = [r["lr"] for r in step_records(workdir)], recipe_rates(**flags)
    r = dict(BASE, **flags)
    assert len(logged) == len(want) and all(abs(a - b) <= 1e-12 for a, b in zip(logged, want)), \
        (f"the learning-rate schedule is not the recipe's (warmup {r['warmup_epochs']:g} epochs from 0, then cosine "
         f"over {r['epochs']} epochs): the run logged lr {logged} for steps 0..{len(logged) - 1}, the recipe's "
         f"{want}; the schedule broke, not {case}")


def applied_rates(workdir, **flags):
    """The rate each step of a run with momentum 0, no weight decay and no clipping really
    applied: |change of the parameters| / |gradient| (the logged grad_norm), step by step,
    from the initial weights and the checkpoint of every step."""
    r = dict(BASE, **flags)
    net = build_model(r["variant"], "b0", CLASSES, "xavier", r["seed"], backend="python", width=r["width"],
                      depth=r["depth"])
    before = {f"params/{n}": PY.to_flat(p.data) for n, p in net.named_parameters()}
    rates = []
    for record in step_records(workdir):
        path = os.path.join(workdir, "checkpoints", f"step-{record['step']:08d}.safetensors")
        tensors, _ = load_checkpoint(path, PY)
        after = {n: PY.to_flat(tensors[n]) for n in before}
        change = math.sqrt(sum((a - b) ** 2 for n in before for a, b in zip(after[n], before[n])))
        rates.append(change / record["grad_norm"])
        before = after
    return rates


def schedule_culprit(data, tmp_path, case, backend="python", tolerance=1e-9, **flags):
    """None, or the learning-rate schedule named as the culprit: a run with every flag
    neutral but momentum 0 (the update is then -lr x gradient: its size tells the rate it ran
    at) did not run at the recipe's rates."""
    plain = dict(flags, momentum=0.0)
    run_train(tmp_path / "neutral-sgd", data, backend=backend, **plain)
    ran, want = applied_rates(tmp_path / "neutral-sgd", **plain), recipe_rates(**plain)
    if all(abs(a - b) <= tolerance * dict(BASE, **plain)["lr"] for a, b in zip(ran, want)):
        return None
    return (f"the learning-rate schedule: with every flag neutral (and momentum 0) the steps ran at lr "
            f"{[round(x, 7) for x in ran]}, the recipe's warmup and cosine give {[round(x, 7) for x in want]}; "
            f"not {case}")


def culprit(data, tmp_path, case):
    """What to blame when `case`'s Python step is not the recipe's: the case's flag, or what
    every case shares (the learning-rate schedule, or the step itself), told apart by the same
    run with every flag neutral."""
    neutral, _, _ = run_train(tmp_path / "neutral", data)
    if largest_difference(neutral, reference_run(data)[0]) < 1e-10:
        return f"{case} (with it neutral the step is the recipe's)"
    return schedule_culprit(data, tmp_path, case) or (
        f"the step every case shares: with every flag neutral the step is not the recipe's either, at the recipe's "
        f"rates; not {case}")


# Each case: the flag and its value (drop-connect with depth 0.4: at depth 0.1 the one block with a
# skip is the first, whose rate is 0). The step must match the reference with it, not the one without.
CASES = {"label_smoothing": dict(label_smoothing=0.3), "momentum": dict(momentum=0.5),
         "weight_decay": dict(weight_decay=0.05), "dropout": dict(dropout=0.5),
         "drop_connect": dict(drop_connect=0.9, depth=0.4), "bn_momentum": dict(bn_momentum=0.5),
         "clip_grad_norm": dict(clip_grad_norm=0.01), "ema_decay": dict(ema_decay=0.5)}


@pytest.mark.parametrize("flag", CASES)
def test_the_flag_reaches_the_python_step(flag, tiny_fashion_mnist, tmp_path):
    flags = CASES[flag]
    case = f"--{flag} {flags[flag]}"
    got, losses, _ = run_train(tmp_path / "w", tiny_fashion_mnist, **flags)
    assert_the_schedule_is_the_recipes(tmp_path / "w", case, **flags)
    want, want_losses = reference_run(tiny_fashion_mnist, **flags)
    neutral = reference_run(tiny_fashion_mnist, **dict(flags, **{flag: BASE[flag]}))[0]
    if flag == "ema_decay":  # without an EMA there is none: compare the EMA with the raw weights
        neutral.update({f"ema/{n}": v for n, v in neutral.items() if n.split("/")[0] in ("params", "buffers")})
    if largest_difference(got, want) >= 1e-10:
        pytest.fail(f"the step is not the recipe's; to blame: {culprit(tiny_fashion_mnist, tmp_path, case)}")
    assert max(abs(a - b) for a, b in zip(losses, want_losses)) < 1e-10, (case, losses, want_losses)
    assert largest_difference(got, neutral) > 1e-6, f"--{flag} {flags[flag]} changes nothing: the case cannot fail"


def test_the_update_is_nesterovs_and_not_plain_momentum(tiny_fashion_mnist, tmp_path):
    got, _, _ = run_train(tmp_path / "w", tiny_fashion_mnist)
    assert_the_schedule_is_the_recipes(tmp_path / "w", "the Nesterov update")
    if largest_difference(got, reference_run(tiny_fashion_mnist)[0]) >= 1e-10:
        pytest.fail(f"the step is not the recipe's; to blame: {culprit(tiny_fashion_mnist, tmp_path, 'Nesterov')}")
    assert largest_difference(got, reference_run(tiny_fashion_mnist, nesterov=False)[0]) > 1e-6


def test_bn_momentum_moves_the_statistics_as_written(tiny_fashion_mnist):
    """The reference's BN statistics are the recipe's: moving = m * moving + (1 - m) * batch,
    here by hand for the stem's BN after one step (moving mean 0 and variance 1 before it)."""
    m = 0.5
    want, _ = reference_run(tiny_fashion_mnist, steps=1, bn_momentum=m)
    net = build_model("base", "b0", CLASSES, "xavier", BASE["seed"], backend="python", width=0.1, depth=0.1)
    loader = Loader(open_dataset(tiny_fashion_mnist, "train", 16, augment="none"), 4, seed=BASE["seed"])
    batch = next(iter(loader.batches(0)))
    images = PY.from_flat(loader.normalization.floats(batch.images), (4, 16, 16, 3))
    h = PY.to_flat(net.stem_conv(Tensor(images, PY)).data)
    channels = net.stem_conv.out_channels
    for c in range(channels):
        values = h[c::channels]
        mean = sum(values) / len(values)
        var = sum((x - mean) ** 2 for x in values) / len(values)
        assert abs(want["buffers/stem_bn.moving_mean"][c] - (1 - m) * mean) < 1e-12
        assert abs(want["buffers/stem_bn.moving_var"][c] - (m * 1.0 + (1 - m) * var)) < 1e-12


def test_bn_eps_of_the_starting_checkpoint_reaches_the_step(tiny_fashion_mnist, tmp_path):
    """BN eps is no flag: it comes with the weights (--init-from, --resume) and must reach the step."""
    eps = 0.5
    start = build_model("base", "b0", CLASSES, "xavier", BASE["seed"], backend="python", width=0.1, depth=0.1)
    arrays = start.arrays()
    tensors = model_tensors({**arrays["params"], **arrays["buffers"]}, arrays["buffers"])
    meta = start.spec.replace(bn_eps=eps).to_meta()
    save_checkpoint(tmp_path / "start", 0, tensors, PY, meta)
    got, _, written = run_train(tmp_path / "w", tiny_fashion_mnist, init_from=str(tmp_path / "start"))
    assert written["bn_eps"] == eps
    assert largest_difference(got, reference_run(tiny_fashion_mnist, bn_eps=eps)[0]) < 1e-10
    assert largest_difference(got, reference_run(tiny_fashion_mnist)[0]) > 1e-6
