"""The JAX half of `python -m tinyeffnet.bench --backend jax --variant V ...`.

Times our training step (forward + OUR backward + optax, one jit program) and, in the same
process on the same data, the reference: the same forward differentiated by jax.grad, with
the same optax update. This module is the only non-test place where jax.grad appears.
"""
import time

import jax
import jax.numpy as jnp
import optax

from .efficientnet import build_model
from backends import get_backend

from . import steps
from .jax_step import _set_lr, init_state, make_optimizer, make_train_step


def make_jaxgrad_step(net, optimizer, label_smoothing=0.0, compute_dtype="float32"):
    """The reference step: identical forward and update, gradients from jax.grad."""

    backend = get_backend("jax")

    def step(state, images, labels, key, lr):
        def loss_fn(params):
            loss, logits, _, buffers = steps.forward_loss(net, backend, params, state["buffers"], images, labels,
                                                          key, label_smoothing, compute_dtype)
            return loss.data, (logits.data, buffers)

        (loss, (logits, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        opt_state = _set_lr(state["opt_state"], lr)
        updates, opt_state = optimizer.update(grads, opt_state, state["params"])
        new = dict(params=optax.apply_updates(state["params"], updates), buffers=buffers, opt_state=opt_state)
        return new, steps.train_metrics(backend, loss, logits, labels)

    return jax.jit(step, donate_argnums=(0,))


def _peak_memory():
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else int(peak)


def _run(step, state, images, labels, steps):
    key = jax.random.key(0)
    t0 = time.perf_counter()
    state, metrics = step(state, images, labels, key, 0.1)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        state, metrics = step(state, images, labels, jax.random.fold_in(key, i), 0.1)
    jax.block_until_ready(metrics)
    return state, compile_s, (time.perf_counter() - t0) / steps


def bench_model_jax(args):
    dtype = args.dtype
    net = build_model(args.variant, args.model, args.num_classes, backend="jax")
    names = [n for n, _ in net.named_parameters()]
    optimizer = make_optimizer(names)
    key = jax.random.key(1)
    images = jax.random.normal(key, (args.batch_size, args.image_size, args.image_size, 3), jnp.float32)
    labels = jax.random.randint(key, (args.batch_size,), 0, args.num_classes, jnp.int32)
    ours = make_train_step(net, optimizer, 0.1, dtype)
    ref = make_jaxgrad_step(net, optimizer, 0.1, dtype)
    _, ours_compile, ours_s = _run(ours, init_state(net, optimizer), images, labels, args.steps)
    ours_peak = _peak_memory()
    _, ref_compile, ref_s = _run(ref, init_state(net, optimizer), images, labels, args.steps)
    ref_peak = _peak_memory()
    return dict(
        backend="jax", variant=net.variant, model=net.model_name, image_size=args.image_size,
        batch_size=args.batch_size, dtype=dtype, steps=args.steps,
        custom_img_per_s=args.batch_size / ours_s, jaxgrad_img_per_s=args.batch_size / ref_s,
        ratio=ref_s / ours_s, custom_compile_s=ours_compile, jaxgrad_compile_s=ref_compile,
        custom_peak_bytes=ours_peak, jaxgrad_peak_bytes=ref_peak,
        device=f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
    )
