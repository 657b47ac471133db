"""The JAX training step: ONE jax.jit program holding forward, OUR backward and the update.

Tracing runs the very layer code the Python backend runs: `net.bind` puts the traced
parameter arrays into the model, the forward builds our tape, `loss.backward()` walks it
(at trace time), and optax applies SGD with Nesterov momentum and weight decay. XLA then
sees one program; the Python graph costs nothing per step.

State is a dict pytree: params (float32 masters), buffers (BN moving statistics, float32),
opt_state, and optionally ema (moving averages of params and buffers). It is donated to
the step, so the update happens in place on the device.

Data parallelism: `make_mesh()` puts every device on one 'batch' axis; images and labels
are sharded along it and the state is replicated. Batch norm sums over the global batch
(XLA inserts the all-reduce), so results do not depend on the device count.
"""
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from backends import get_backend

from . import steps
from .optim import decay_mask

BATCH_AXIS = "batch"


def make_mesh(devices=None):
    devices = jax.devices() if devices is None else devices
    return Mesh(devices, (BATCH_AXIS,))


def batch_sharding(mesh):
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh):
    return NamedSharding(mesh, PartitionSpec())


def make_optimizer(param_names, momentum=0.9, weight_decay=1e-4, nesterov=True):
    """SGD + Nesterov with the learning rate fed in per step (see tinyeffnet.optim)."""
    mask = decay_mask(param_names)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=lambda params: {n: mask[n] for n in params}),
        optax.inject_hyperparams(optax.sgd)(learning_rate=0.0, momentum=momentum, nesterov=nesterov),
    )


def init_state(net, optimizer, ema=False):
    """A fresh training state from the model's arrays (copied: the step donates its state)."""
    params = {n: jnp.copy(p.data) for n, p in net.named_parameters()}
    buffers = {n: jnp.copy(b.data) for n, b in net.named_buffers()}
    state = dict(params=params, buffers=buffers, opt_state=optimizer.init(params))
    if ema:
        state["ema"] = jax.tree_util.tree_map(jnp.copy, dict(params=params, buffers=buffers))
    return state


def _set_lr(opt_state, lr):
    # inject_hyperparams keeps the rate in the state: replace it for this step.
    sgd_state = opt_state[1]
    hyper = dict(sgd_state.hyperparams, learning_rate=jnp.asarray(lr, sgd_state.hyperparams["learning_rate"].dtype))
    return (opt_state[0], sgd_state._replace(hyperparams=hyper)) + tuple(opt_state[2:])


def make_train_step(net, optimizer, label_smoothing=0.0, compute_dtype="float32", ema_decay=None,
                    mesh=None):
    """jit(step)(state, images, labels, key, lr) -> (state, metrics); state is donated."""
    backend = get_backend("jax")

    def step(state, images, labels, key, lr):
        params = state["params"]
        loss, logits, grads, buffers = steps.gradients(net, backend, params, state["buffers"], images, labels,
                                                       key, label_smoothing, compute_dtype)
        opt_state = _set_lr(state["opt_state"], lr)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        new = dict(params=optax.apply_updates(params, updates), buffers=buffers, opt_state=opt_state)
        if "ema" in state:
            new["ema"] = steps.ema_update(backend, state["ema"], dict(params=new["params"], buffers=buffers),
                                          ema_decay)
        metrics = steps.train_metrics(backend, loss, logits, labels)
        metrics["finite"] = steps.all_finite(backend, list(new["params"].values()))
        return new, metrics

    if mesh is None:
        return jax.jit(step, donate_argnums=(0,))
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(step, donate_argnums=(0,), in_shardings=(rep, data, data, rep, rep),
                   out_shardings=(rep, rep))


def make_eval_step(net, compute_dtype="float32", mesh=None):
    """jit(step)(params, buffers, images, labels, valid) -> sums of top1, top5, loss, count.

    `valid` is a 0/1 mask: the last eval batch is padded up to the batch size and the
    padding must not count.
    """
    backend = get_backend("jax")

    def step(params, buffers, images, labels, valid):
        return steps.eval_sums(net, backend, params, buffers, images, labels, valid, compute_dtype)

    if mesh is None:
        return jax.jit(step)
    rep, data = replicated(mesh), batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, rep, data, data, data), out_shardings=rep)
