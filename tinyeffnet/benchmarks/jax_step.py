"""The JAX half of `python -m tinyeffnet.bench --backend jax --variant V ...`.

Times our training step (forward + OUR backward + optax, one jit program) and, in the same
process on the same data, the reference: the same forward differentiated by jax.grad, with
the same optax update. This module is the only non-test place where jax.grad appears.
"""
import time

import jax
import jax.numpy as jnp

from ..model import build_model
from ..training.metrics import batch_metrics
from ..training.optimizer import apply_updates
from ..training.runtime import JaxRuntime
from ..training.step import StepOptions, forward_loss, init_state, make_train_step


def make_jaxgrad_train_step(net, optimizer, options=StepOptions()):
    """The reference step: identical forward and update, gradients from jax.grad."""
    backend = net.backend

    def train_step(state, images, labels, key, lr):
        def loss_fn(params):
            loss, logits, _, buffers = forward_loss(net, params, state["buffers"], images, labels, key, options)
            return loss.data, (logits.data, buffers)

        (loss, (logits, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new = dict(params=apply_updates(backend, state["params"], updates, lr), buffers=buffers, opt_state=opt_state)
        return new, batch_metrics(backend, loss, logits, labels)

    return train_step


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
    runtime = JaxRuntime(args.dtype)
    net = build_model(args.variant, args.model, args.num_classes, backend="jax")
    optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    options = StepOptions(label_smoothing=0.1, compute_dtype=args.dtype)
    key = jax.random.key(1)
    images = jax.random.normal(key, (args.batch_size, args.image_size, args.image_size, 3), jnp.float32)
    labels = jax.random.randint(key, (args.batch_size,), 0, args.num_classes, jnp.int32)
    ours = runtime.compile_train_step(make_train_step(net, optimizer, options))
    ref = runtime.compile_train_step(make_jaxgrad_train_step(net, optimizer, options))
    _, ours_compile, ours_s = _run(ours, runtime.put_state(init_state(net, optimizer)), images, labels, args.steps)
    ours_peak = _peak_memory()
    _, ref_compile, ref_s = _run(ref, runtime.put_state(init_state(net, optimizer)), images, labels, args.steps)
    ref_peak = _peak_memory()
    return dict(
        backend="jax", variant=net.variant, model=net.model_name, image_size=args.image_size,
        batch_size=args.batch_size, dtype=args.dtype, steps=args.steps,
        custom_img_per_s=args.batch_size / ours_s, jaxgrad_img_per_s=args.batch_size / ref_s,
        ratio=ref_s / ours_s, custom_compile_s=ours_compile, jaxgrad_compile_s=ref_compile,
        custom_peak_bytes=ours_peak, jaxgrad_peak_bytes=ref_peak,
        device=f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}",
    )
