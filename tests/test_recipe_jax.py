"""The recipe reaches the JAX step: the runtime's own optimizers against optax's SGD, and
`train --backend jax` with every step-changing flag on against a reference step built from
jax.grad (not our backward) and optax's transformations (clip_by_global_norm,
add_decayed_weights, sgd with Nesterov, smooth_labels, incremental_update for the EMA).
The Python step is checked the same way in tests/test_recipe.py. Three steps with the warmup
on: rate 0, then 2/3 of the peak (warmup), then the cosine."""
import functools
import math

import pytest

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

from backends import get_backend  # noqa: E402
from data_tools import Loader, open_dataset  # noqa: E402
from tinyeffnet.engine.tensor import Tensor  # noqa: E402
from tinyeffnet.model import build_model  # noqa: E402
from tinyeffnet.training.optimizer import apply_updates  # noqa: E402
from tinyeffnet.training.runtime import JaxRuntime, PythonRuntime  # noqa: E402

from test_recipe import (BASE, CLASSES, assert_the_schedule_is_the_recipes, decayed, largest_difference,  # noqa: E402
                         recipe_lr, run_train, schedule_culprit)

PY, JX = get_backend("python"), get_backend("jax")
NAMES = ["stem_conv.weight", "stem_bn.gamma", "stem_bn.beta", "fc.bias"]


def optax_sgd(names, momentum, weight_decay, nesterov=True):
    """optax's own SGD (its sign: updates are added), decay masked off BN gamma and beta."""
    return optax.chain(optax.add_decayed_weights(weight_decay, mask={n: decayed(n) for n in names}),
                       optax.sgd(learning_rate=1.0, momentum=momentum, nesterov=nesterov))


@pytest.mark.parametrize("runtime", ["jax", "python"])
def test_the_runtimes_optimizer_is_optax_sgd_with_nesterov(runtime):
    m, wd, lrs = 0.8, 0.03, [0.5, 0.25, 0.125]
    if runtime == "jax":
        rt, b = JaxRuntime("float32"), JX
        as_backend = lambda values: jnp.asarray(values, jnp.float64)
    else:
        rt, b = PythonRuntime(), PY
        as_backend = lambda values: PY.from_flat(values, (len(values),))
    start = {n: [1.0 + i, -0.5 * i, 0.25] for i, n in enumerate(NAMES)}
    grads = [{n: [math.sin(3 * s + i + k) for k in range(3)] for i, n in enumerate(NAMES)} for s in range(3)]
    opt = rt.make_optimizer(NAMES, m, wd)
    ours = {n: as_backend(v) for n, v in start.items()}
    state = opt.init(ours)
    for lr, g in zip(lrs, grads):
        updates, state = opt.update({n: as_backend(v) for n, v in g.items()}, state, ours)
        ours = apply_updates(b, ours, updates, lr)
    results = {}
    for nesterov in (True, False):
        ref = optax_sgd(NAMES, m, wd, nesterov)
        theirs = {n: jnp.asarray(v, jnp.float64) for n, v in start.items()}
        ref_state = ref.init(theirs)
        for lr, g in zip(lrs, grads):
            updates, ref_state = ref.update({n: jnp.asarray(v, jnp.float64) for n, v in g.items()}, ref_state, theirs)
            theirs = optax.apply_updates(theirs, jax.tree_util.tree_map(lambda u: lr * u, updates))
        results[nesterov] = largest_difference({n: b.to_flat(ours[n]) for n in NAMES},
                                               {n: [float(x) for x in theirs[n]] for n in NAMES})
    assert results[True] < 1e-6, f"the {runtime} runtime's optimizer is not optax's Nesterov SGD"
    assert results[False] > 1e-3  # plain momentum would be told apart


# Every flag that changes the step, on at once (drop-connect needs depth 0.4 to reach a block
# with a skip and a rate above 0), for three steps: the warmup's two and the cosine's first.
ALL_FLAGS = dict(label_smoothing=0.3, momentum=0.5, weight_decay=0.05, dropout=0.5, drop_connect=0.9, depth=0.4,
                 bn_momentum=0.5, clip_grad_norm=0.01, ema_decay=0.5, max_steps=3)


@functools.lru_cache(maxsize=None)
def _network_and_gradient(variant, width, depth, seed, bn_momentum, dropout, drop_connect, label_smoothing,
                          compute_dtype):
    """The network (its initial weights) and a jitted (loss, new BN statistics), gradient by jax.grad."""
    net = build_model(variant, "b0", CLASSES, "xavier", seed, backend="jax", bn_momentum=bn_momentum,
                      dropout=dropout, drop_connect=drop_connect, width=width, depth=depth)

    def loss_fn(params, buffers, images, labels, key):
        net.train()
        with net.bind(params, buffers):
            logits = net(Tensor(images.astype(compute_dtype), JX), key=key).data.astype(jnp.float32)
            new_buffers = {n: b.data for n, b in net.named_buffers()}
        targets = optax.smooth_labels(jax.nn.one_hot(labels, CLASSES), label_smoothing)
        return optax.softmax_cross_entropy(logits, targets).mean(), new_buffers

    return net, jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def jax_reference_run(data, nesterov=True, compute_dtype="float32", **flags):
    """The steps by jax.grad and optax: ({checkpoint name: floats}, [loss per step]), names as the
    JAX runtime's checkpoints (optax's state: opt/1/trace/...)."""
    r = dict(BASE, **flags)
    steps = r["max_steps"]
    net, grad_fn = _network_and_gradient(r["variant"], r["width"], r["depth"], r["seed"], r["bn_momentum"],
                                         r["dropout"], r["drop_connect"], r["label_smoothing"], compute_dtype)
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    clip = [optax.clip_by_global_norm(r["clip_grad_norm"])] if r["clip_grad_norm"] else []
    opt = optax.chain(*clip, optax_sgd(list(params), r["momentum"], r["weight_decay"], nesterov))
    opt_state = opt.init(params)
    ema = dict(params=params, buffers=buffers)
    loader = Loader(open_dataset(data, "train", r["image_size"], augment=r["augment"]), r["batch_size"],
                    seed=r["seed"])
    runtime = JaxRuntime("float32")
    losses = []
    for step in range(steps):
        epoch, within = divmod(step, loader.steps_per_epoch)
        batch = next(iter(loader.batches(epoch, within)))
        n, size = r["batch_size"], r["image_size"]
        images = jnp.asarray(loader.normalization.floats(batch.images), jnp.float32).reshape(n, size, size, 3)
        labels = jnp.asarray(list(batch.labels[:n]), jnp.int32)
        (loss, buffers), grads = grad_fn(params, buffers, images, labels, runtime.step_key(r["seed"], step))
        losses.append(float(loss))
        updates, opt_state = opt.update(grads, opt_state, params)
        lr = recipe_lr(r["lr"], step, loader.steps_per_epoch, r["warmup_epochs"], r["epochs"])
        params = optax.apply_updates(params, jax.tree_util.tree_map(lambda u: lr * u, updates))
        if r["ema_decay"]:
            ema = optax.incremental_update(dict(params=params, buffers=buffers), ema, 1.0 - r["ema_decay"])
    flat = lambda a: [float(x) for x in jnp.ravel(a)]
    out = {f"params/{n}": flat(a) for n, a in params.items()}
    out.update({f"buffers/{n}": flat(a) for n, a in buffers.items()})
    trace = opt_state[-1][1][0].trace  # chain(clip?, chain(decay, sgd = chain(trace, scale)))
    out.update({f"opt/1/trace/{n}": flat(a) for n, a in trace.items()})
    if r["ema_decay"]:
        out.update({f"ema/{g}/{n}": flat(a) for g, arrays in ema.items() for n, a in arrays.items()})
    return out, losses


@pytest.fixture(scope="module")
def jax_run(tiny_fashion_mnist, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("recipe-jax") / "w"
    return run_train(workdir, tiny_fashion_mnist, backend="jax", dtype="float32", **ALL_FLAGS) + (workdir,)


def test_every_flag_reaches_the_jax_step(jax_run, tiny_fashion_mnist, tmp_path):
    got, losses, _, workdir = jax_run
    assert_the_schedule_is_the_recipes(workdir, "the JAX step", **ALL_FLAGS)
    want, want_losses = jax_reference_run(tiny_fashion_mnist, **ALL_FLAGS)
    got = {n: v for n, v in got.items() if not n.startswith("opt/0/")}  # add_decayed_weights keeps no state
    if largest_difference(got, want) >= 1e-4:
        blame = schedule_culprit(tiny_fashion_mnist, tmp_path, "the flags", backend="jax", tolerance=1e-5,
                                 dtype="float32", max_steps=3)
        pytest.fail("the JAX step with every flag on is not the recipe's; to blame: "
                    + (blame or "the JAX step (it runs at the recipe's rates)"))
    assert max(abs(a - b) / b for a, b in zip(losses, want_losses)) < 1e-5, (losses, want_losses)
    plain, _ = jax_reference_run(tiny_fashion_mnist, nesterov=False, **ALL_FLAGS)
    assert largest_difference(got, plain) > 1e-2  # plain momentum would be told apart


class _StepBuilt(Exception):
    """Raised by the spy below once train() has built its step: nothing is compiled or run."""


def _train_step_of(monkeypatch, data, tmp_path, **flags):
    """(the train step `train` builds, its network, optimizer): train stops right after building it."""
    import tinyeffnet.training.loop as loop

    def spy(net, optimizer, options):
        raise _StepBuilt(loop_make_train_step(net, optimizer, options), net, optimizer)

    loop_make_train_step = loop.make_train_step
    monkeypatch.setattr(loop, "make_train_step", spy)
    with pytest.raises(_StepBuilt) as built:
        run_train(tmp_path, data, backend="jax", **flags)
    monkeypatch.undo()
    return built.value.args


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_dtype_reaches_the_jax_step(dtype, monkeypatch, tiny_fashion_mnist, tmp_path):
    """--dtype bfloat16 makes the step compute in bf16 (its float32 masters, statistics and loss:
    test_jax_training.py); float32 leaves no bf16 in it. The program is lowered, not compiled."""
    from tinyeffnet.training.step import init_state
    step, net, optimizer = _train_step_of(monkeypatch, tiny_fashion_mnist, tmp_path / "w", dtype=dtype)
    state = init_state(net, optimizer)
    images = jnp.zeros((4, 16, 16, 3), jnp.float32)
    labels = jnp.zeros((4,), jnp.int32)
    hlo = jax.jit(step).lower(state, images, labels, jax.random.key(0), 0.1).as_text()
    assert ("bf16" in hlo) == (dtype == "bfloat16")
