"""One training step and one evaluation step, written once for every backend.

    train_step(state, images, labels, key, lr) -> (new state, metrics)
    eval_step(params, buffers, images, labels, valid) -> sums of top1, top5, loss, count
    bn_statistics_step(params, buffers, totals, images, weight) -> totals + weight x this
        batch's BN statistics (precise BN, before an evaluation)

The state is a dict: params, buffers (BN moving statistics), opt_state and, with an EMA,
ema = {params, buffers}. Nothing here knows which backend runs it: the runtime compiles
these functions (JAX: a jit program each, with donation and shardings, the train step as
two programs on the CPU: its `halves`; Python: nothing) and
the optimizer has optax's init/update shape on both (see tinyeffnet.training.optimizer).
"""
from dataclasses import dataclass

from ..engine import functional as F
from ..engine.tensor import Tensor
from .metrics import all_finite, batch_metrics, global_norm, topk_correct
from .optimizer import apply_updates
from .state import state_to_tensors


@dataclass(frozen=True)
class StepOptions:
    """What the step computes besides the model: the loss, the arithmetic, what trains."""
    label_smoothing: float = 0.0
    compute_dtype: str = None       # None: the backend's own float; bfloat16 keeps float32 masters,
                                    # BN statistics and loss
    ema_decay: float = 0.0          # 0: no moving average of the weights
    freeze_backbone: bool = False   # only the classifier trains; the backbone runs as at eval time
    clip_grad_norm: float = 0.0     # > 0: scale the gradients down to at most this global L2 norm


def trainable_names(net, freeze_backbone=False):
    """The parameters the optimizer updates: all, or with a frozen backbone the classifier's.

    Frozen parameters get no update at all (not a zero gradient: weight decay and momentum
    would still move them), so they stay bit for bit as loaded; on JAX their gradients are
    then unused and XLA drops the backbone's backward pass."""
    names = [n for n, _ in net.named_parameters()]
    if not freeze_backbone:
        return names
    return [n for n in names if n.split(".")[0] == net.CLASSIFIER]


def logits_of(net, images, options, key=None):
    """The model's logits in the loss dtype: float64 for float64 compute, float32 otherwise."""
    compute = options.compute_dtype or net.backend.default_float
    logits = net(Tensor(net.backend.astype(images, compute), net.backend), key=key)
    return logits.astype("float64" if compute == "float64" else "float32")


def forward_loss(net, params, buffers, images, labels, key=None, options=StepOptions()):
    """Training-mode forward with `params` bound: (loss, logits, leaves, new buffers).

    `leaves` are the parameter Tensors whose .grad a backward fills; the new buffers are
    the BN moving statistics this batch updated (with a frozen backbone: none, see
    EfficientNet.train_classifier_only)."""
    if options.freeze_backbone:
        net.train_classifier_only()
    else:
        net.train()
    with net.bind(params, buffers) as leaves:
        logits = logits_of(net, images, options, key)
        loss = F.cross_entropy(logits, labels, options.label_smoothing)
        new_buffers = net.arrays()["buffers"]
    return loss, logits, leaves, new_buffers


def gradients(net, params, buffers, images, labels, key=None, options=StepOptions()):
    """The forward and OUR backward: (loss, logits, grads, new buffers), all arrays."""
    loss, logits, leaves, new_buffers = forward_loss(net, params, buffers, images, labels, key, options)
    loss.backward()
    return loss.data, logits.data, {n: leaves[n].grad.data for n in params}, new_buffers


def init_state(net, optimizer, ema=False, freeze_backbone=False):
    """A fresh training state from the model's arrays; the optimizer state covers the
    parameters that train (trainable_names)."""
    arrays = net.arrays()
    params, buffers = arrays["params"], arrays["buffers"]
    trained = {n: params[n] for n in trainable_names(net, freeze_backbone)}
    state = dict(params=params, buffers=buffers, opt_state=optimizer.init(trained))
    if ema:
        state["ema"] = dict(params=dict(params), buffers=dict(buffers))
    return state


def make_train_step(net, optimizer, options=StepOptions()):
    """train_step(state, images, labels, key, lr) -> (new state, metrics).

    It is also given in two halves, `train_step.halves = (gradient_step, update_step)`:
        gradient_step(state, images, labels, key) -> (grads, buffers, loss, logits)
            the forward and OUR backward: the trained parameters' gradients, the BN
            moving statistics this batch updated, the loss and the logits;
        update_step(state, grads, buffers, loss, logits, labels, lr) -> (new state, metrics)
            the optimizer, the EMA and the metrics.
    train_step is the one after the other, the same arithmetic; a runtime may compile the
    halves as programs of their own (tinyeffnet/training/runtime.py says where and why)."""
    backend = net.backend
    trained = trainable_names(net, options.freeze_backbone)

    def gradient_step(state, images, labels, key):
        loss, logits, grads, buffers = gradients(net, state["params"], state["buffers"], images, labels, key,
                                                 options)
        return {n: grads[n] for n in trained}, buffers, loss, logits

    def update_step(state, grads, buffers, loss, logits, labels, lr):
        current = {n: state["params"][n] for n in trained}
        grad_norm = global_norm(backend, list(grads.values()))
        if options.clip_grad_norm:
            grads = clip_by_global_norm(backend, grads, grad_norm, options.clip_grad_norm)
        updates, opt_state = optimizer.update(grads, state["opt_state"], current)
        params = {**state["params"], **apply_updates(backend, current, updates, lr)}
        new = dict(params=params, buffers=buffers, opt_state=opt_state)
        if "ema" in state:
            # What does not change is not averaged either: d * x + (1 - d) * x may round off x.
            moving = dict(params={n: params[n] for n in trained}, buffers={} if options.freeze_backbone else buffers)
            averaged = ema_update(backend, state["ema"], moving, options.ema_decay)
            new["ema"] = {group: {**state["ema"][group], **averaged[group]} for group in ("params", "buffers")}
        metrics = batch_metrics(backend, loss, logits, labels)
        metrics["grad_norm"] = grad_norm  # of the loss gradient, before clipping and weight decay
        metrics["finite"] = all_finite(backend, list(state_to_tensors(new).values()))
        return new, metrics

    def train_step(state, images, labels, key, lr):
        return update_step(state, *gradient_step(state, images, labels, key), labels, lr)

    train_step.halves = (gradient_step, update_step)
    return train_step


def clip_by_global_norm(backend, grads, norm, max_norm):
    """The gradients times max_norm / max(norm, max_norm): unchanged while their global norm is
    at most max_norm, else scaled down to it (the direction is kept)."""
    dtype = backend.dtype(norm)
    limit = backend.full((), max_norm, dtype)
    scale = backend.div(limit, backend.maximum(norm, limit))
    return {n: backend.mul(g, backend.expand(backend.reshape(backend.astype(scale, backend.dtype(g)),
                                                             (1,) * len(backend.shape(g))), backend.shape(g)))
            for n, g in grads.items()}


def make_eval_step(net, options=StepOptions()):
    """eval_step(params, buffers, images, labels, valid) -> sums over the valid rows.

    `valid` is a 0/1 mask: the last eval batch is padded up to the batch size and the
    padding must not count."""
    backend = net.backend

    def eval_step(params, buffers, images, labels, valid):
        net.eval()
        with net.bind(params, buffers):
            logits = logits_of(net, images, options).data
        n, k = backend.shape(logits)
        valid = backend.astype(valid, backend.dtype(logits))
        correct = topk_correct(backend, logits, labels, (1, 5))
        logp = F.log_softmax(Tensor(logits, backend)).data
        nll = backend.neg(backend.reshape(backend.sum(backend.mul(logp, backend.one_hot(labels, k, backend.dtype(logp))),
                                                      (1,)), (n,)))
        total = lambda v: backend.reshape(backend.sum(backend.mul(v, valid), (0,)), ())
        return dict(top1=total(correct[1]), top5=total(correct[5]), loss=total(nll),
                    count=backend.reshape(backend.sum(valid, (0,)), ()))

    return eval_step


def make_bn_statistics_step(net, options=StepOptions()):
    """bn_statistics_step(params, buffers, totals, images, weight) -> {buffer name: totals[name]
    + weight * this batch's statistic}.

    Precise BN: the moving averages that BN keeps during training trail the weights (they
    mix statistics of the last ~1 / (1 - momentum) steps' networks) and carry the noise of
    the last few batches. Summing the statistics of K batches of the current network with
    weight 1 / K gives its own statistics over K x batch images; evaluation then uses those.
    The batches are normalised as at training time; the rest of the network runs as at eval
    time (Module.measure_statistics)."""
    backend = net.backend

    def bn_statistics_step(params, buffers, totals, images, weight):
        net.measure_statistics()
        with net.bind(params, buffers):
            logits_of(net, images, options)
            batch = net.arrays()["buffers"]
        return {n: backend.add(totals[n], backend.mul(backend.full(backend.shape(v), weight, backend.dtype(v)), v))
                for n, v in batch.items()}

    return bn_statistics_step


def ema_update(backend, ema, new, decay):
    """ema = decay * ema + (1 - decay) * new, for every array of a {group: {name: array}} dict."""
    out = {}
    for group, arrays in new.items():
        out[group] = {}
        for name, value in arrays.items():
            shape, dtype = backend.shape(value), backend.dtype(value)
            out[group][name] = backend.add(backend.mul(backend.full(shape, decay, dtype), ema[group][name]),
                                           backend.mul(backend.full(shape, 1.0 - decay, dtype), value))
    return out
