"""The JAX half of `python -m tinyeffnet.bench --backend jax --variant V ...`.

Times our training step (forward + OUR backward + optax, one jit program) and, in the same
process on the same data, the reference: the same forward differentiated by jax.grad, with
the same optax update. This module is the only non-test place where jax.grad appears.

Beside images/s it reports what XLA says of each compiled program: its temporary memory
(`memory_analysis`) and the bytes it reads and writes (`cost_analysis`). Those depend on
the program, not on the machine, so a CPU can judge the accelerator-shaped program too:
`depthwise="conv"` and `dense="conv"` compile the convolutions as XLA conv ops, as on a
GPU or TPU, instead of the CPU's kernel taps and matrix products.
"""
import time

import jax
import jax.numpy as jnp

from backends import get_backend

from ..model import build_model
from ..training.metrics import batch_metrics
from ..training.optimizer import apply_updates
from ..training.runtime import JaxRuntime
from ..training.step import StepOptions, forward_loss, init_state, make_train_step

FORMULATIONS = {"depthwise": ("taps", "conv"), "dense": ("matmul", "conv")}
_ATTRS = {"depthwise": "depthwise_taps", "dense": "dense_matmul"}  # the JaxBackend switch of each


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


def _compile(step, state, images, labels):
    """The AOT-compiled program, its compile seconds, and XLA's memory and cost analyses."""
    t0 = time.perf_counter()
    compiled = step.lower(state, images, labels, jax.random.key(0), 0.1).compile()
    seconds = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return compiled, dict(compile_s=seconds, temp_bytes=getattr(memory, "temp_size_in_bytes", None),
                          bytes_accessed=(cost or {}).get("bytes accessed"), flops=(cost or {}).get("flops"))


def _seconds_per_step(compiled, state, images, labels, steps, repeats=3):
    """The median over `repeats` rounds of `steps` steps each (after one warm-up step)."""
    key = jax.random.key(0)
    state, metrics = compiled(state, images, labels, key, 0.1)
    jax.block_until_ready(metrics)
    rounds = []
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, metrics = compiled(state, images, labels, jax.random.fold_in(key, r * steps + i), 0.1)
        jax.block_until_ready(metrics)
        rounds.append((time.perf_counter() - t0) / steps)
    return sorted(rounds)[len(rounds) // 2]


def bench_model_jax(args):
    """One benchmark run; `args.depthwise` / `args.dense` pick the conv formulations for it
    (the backend's per-platform choice is restored afterwards)."""
    jb = get_backend("jax")
    saved = {attr: getattr(jb, attr) for attr in _ATTRS.values()}
    try:
        for name, choices in FORMULATIONS.items():
            wanted = getattr(args, name, None)
            if wanted is not None:
                setattr(jb, _ATTRS[name], wanted == choices[0])  # before tracing: it decides the program
        return _bench(args, {name: choices[0] if getattr(jb, _ATTRS[name]) else choices[1]
                             for name, choices in FORMULATIONS.items()})
    finally:
        for attr, value in saved.items():
            setattr(jb, attr, value)


def _bench(args, formulation):
    runtime = JaxRuntime(args.dtype)
    net = build_model(args.variant, args.model, args.num_classes, backend="jax")
    optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    options = StepOptions(label_smoothing=0.1, compute_dtype=args.dtype)
    key = jax.random.key(1)
    images = jax.random.normal(key, (args.batch_size, args.image_size, args.image_size, 3), jnp.float32)
    labels = jax.random.randint(key, (args.batch_size,), 0, args.num_classes, jnp.int32)
    result = dict(backend="jax", variant=net.variant, model=net.model_name, image_size=args.image_size,
                  batch_size=args.batch_size, dtype=args.dtype, steps=args.steps, formulation=formulation,
                  device=f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}")
    for name, make in (("custom", make_train_step), ("jaxgrad", make_jaxgrad_train_step)):
        state = runtime.put_state(init_state(net, optimizer))
        compiled, analysis = _compile(runtime.compile_train_step(make(net, optimizer, options)), state, images,
                                      labels)
        seconds = _seconds_per_step(compiled, state, images, labels, args.steps) if args.steps else None
        result.update({f"{name}_img_per_s": args.batch_size / seconds if seconds else None,
                       f"{name}_peak_bytes": _peak_memory(),
                       **{f"{name}_{k}": v for k, v in analysis.items()}})
    if args.steps:
        result["ratio"] = result["custom_img_per_s"] / result["jaxgrad_img_per_s"]
    return result
