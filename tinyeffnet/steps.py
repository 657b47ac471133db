"""What one training or evaluation step computes, on any backend.

The JAX backend wraps these in one jit program (tinyeffnet.jax_step); the Python
backend calls them directly (tinyeffnet.python_step). Only the optimizer and the
compilation differ between the two.
"""
from . import functional as F
from .metrics import topk_correct
from .tensor import Tensor


def _loss_dtype(compute_dtype):
    # bfloat16 compute still takes its loss (and everything the optimizer sees) in float32.
    return "float64" if compute_dtype == "float64" else "float32"


def forward_loss(net, backend, params, buffers, images, labels, key, label_smoothing, compute_dtype):
    """Training-mode forward with `params` bound: (loss Tensor, logits Tensor, leaves, new buffers)."""
    net.train()
    with net.bind(params, buffers) as leaves:
        x = Tensor(backend.astype(images, compute_dtype), backend)
        logits = net(x, key=key).astype(_loss_dtype(compute_dtype))
        loss = F.cross_entropy(logits, labels, label_smoothing)
        new_buffers = {n: b.data for n, b in net.named_buffers()}
    return loss, logits, leaves, new_buffers


def gradients(net, backend, params, buffers, images, labels, key, label_smoothing, compute_dtype):
    """The forward and OUR backward: (loss, logits, grads, new buffers) as arrays."""
    loss, logits, leaves, new_buffers = forward_loss(net, backend, params, buffers, images, labels, key,
                                                     label_smoothing, compute_dtype)
    loss.backward()
    return loss.data, logits.data, {n: leaves[n].grad.data for n in params}, new_buffers


def train_metrics(backend, loss, logits, labels):
    """Mean loss, top-1 and top-5 of the batch, as backend scalars."""
    n = backend.shape(logits)[0]
    correct = topk_correct(backend, logits, labels, (1, 5))
    inv = backend.full((1,), 1.0 / n, backend.dtype(logits))
    mean = lambda v: backend.reshape(backend.mul(backend.sum(v, (0,)), inv), ())
    return dict(loss=loss, top1=mean(correct[1]), top5=mean(correct[5]))


def all_finite(backend, arrays):
    """1.0 if no array holds a NaN or an infinity, else 0.0 (x - x is 0 only for finite x)."""
    total = None
    for a in arrays:
        s = backend.reshape(backend.sum(a, tuple(range(len(backend.shape(a))))), (1,))
        total = s if total is None else backend.add(total, backend.astype(s, backend.dtype(total)))
    return backend.reshape(backend.compare(backend.sub(total, total), backend.full((1,), 0.0, backend.dtype(total)),
                                           "eq"), ())


def eval_sums(net, backend, params, buffers, images, labels, valid, compute_dtype):
    """Eval-mode sums over the valid rows: top1, top5, loss (negative log-likelihood), count."""
    net.eval()
    with net.bind(params, buffers):
        logits = net(Tensor(backend.astype(images, compute_dtype), backend)).astype(_loss_dtype(compute_dtype))
    logits = logits.data
    n, k = backend.shape(logits)
    dtype = backend.dtype(logits)
    valid = backend.astype(valid, dtype)
    correct = topk_correct(backend, logits, labels, (1, 5))
    logp = F.log_softmax(Tensor(logits, backend)).data
    nll = backend.neg(backend.reshape(backend.sum(backend.mul(logp, backend.one_hot(labels, k, dtype)), (1,)), (n,)))
    total = lambda v: backend.reshape(backend.sum(backend.mul(v, valid), (0,)), ())
    return dict(top1=total(correct[1]), top5=total(correct[5]), loss=total(nll),
                count=backend.reshape(backend.sum(valid, (0,)), ()))


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
