"""The pure-Python backend's training and evaluation steps (same interface as jax_step).

Nothing is compiled: each step runs the layer code, our backward and our SGD directly.
"""
from backends import get_backend

from . import steps
from .optim import SGD


def make_optimizer(param_names, momentum=0.9, weight_decay=1e-4, nesterov=True):
    return SGD(get_backend("python"), momentum, weight_decay, nesterov)


def init_state(net, optimizer, ema=False):
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    state = dict(params=params, buffers=buffers, opt_state=optimizer.init(params))
    if ema:
        state["ema"] = dict(params=dict(params), buffers=dict(buffers))  # arrays are immutable here
    return state


def make_train_step(net, optimizer, label_smoothing=0.0, compute_dtype="float64", ema_decay=None, mesh=None):
    backend = get_backend("python")

    def step(state, images, labels, key, lr):
        loss, logits, grads, buffers = steps.gradients(net, backend, state["params"], state["buffers"], images,
                                                       labels, key, label_smoothing, compute_dtype)
        params, velocity = optimizer.update(state["params"], grads, state["opt_state"], lr)
        new = dict(params=params, buffers=buffers, opt_state=velocity)
        if "ema" in state:
            new["ema"] = steps.ema_update(backend, state["ema"], dict(params=params, buffers=buffers), ema_decay)
        metrics = steps.train_metrics(backend, loss, logits, labels)
        metrics["finite"] = steps.all_finite(backend, list(params.values()))
        return new, metrics

    return step


def make_eval_step(net, compute_dtype="float64", mesh=None):
    backend = get_backend("python")

    def step(params, buffers, images, labels, valid):
        return steps.eval_sums(net, backend, params, buffers, images, labels, valid, compute_dtype)

    return step
