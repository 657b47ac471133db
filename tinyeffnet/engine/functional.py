"""Stateless neural-network functions on Tensors: what the layers in `nn` are made of."""
from . import ops
from .tensor import Tensor


def same_padding(size, kernel, stride):
    """TensorFlow 'SAME' padding for one axis: output = ceil(size / stride).

    The total padding is split with the extra element at the end (bottom / right), which
    is what TensorFlow does and what PyTorch's symmetric padding does not.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def conv2d(x, w, stride=1, padding="SAME", groups=1):
    """NHWC input, HWIO weight. padding: 'SAME', 'VALID', or ((top, bottom), (left, right))."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d: input {x.shape} must be NHWC and weight {w.shape} HWIO")
    if padding == "SAME":
        padding = (same_padding(x.shape[1], w.shape[0], stride), same_padding(x.shape[2], w.shape[1], stride))
    elif padding == "VALID":
        padding = ((0, 0), (0, 0))
    return ops.Conv2d.apply(x, w, stride=stride, padding=tuple(tuple(p) for p in padding), groups=groups)


def depthwise_conv2d(x, w, stride=1, padding="SAME"):
    """One k x k filter per channel: weight (k, k, 1, C), groups == channels."""
    return conv2d(x, w, stride, padding, groups=x.shape[-1])


def swish(x):
    return x.swish()


def sigmoid(x):
    return x.sigmoid()


def relu(x):
    return x.relu()


def global_avg_pool(x, keepdims=False):
    """Mean over H and W of an NHWC tensor: (N, H, W, C) -> (N, C) or (N, 1, 1, C)."""
    return x.mean(axis=(1, 2), keepdims=keepdims)


def linear(x, w, b=None):
    """x (N, in) @ w (in, out) + b (out,)."""
    y = x.matmul(w)
    return y if b is None else y + b


def log_softmax(x):
    """log softmax over the last axis."""
    return ops.LogSoftmax.apply(x)


def softmax(x):
    return log_softmax(x).exp()


def cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean softmax cross-entropy of (N, K) logits against (N,) integer labels.

    `labels` is a Tensor or backend array of int32 class indices, or a list of ints.
    """
    labels = _labels(logits, labels)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    if logits.ndim != 2 or logits.backend.shape(labels) != (logits.shape[0],):
        raise ValueError(f"cross_entropy: logits {logits.shape} need (N, K) with labels of shape (N,), "
                         f"got labels {tuple(logits.backend.shape(labels))}")
    return ops.SoftmaxCrossEntropy.apply(logits, labels=labels, smoothing=label_smoothing)


def _labels(logits, labels):
    if isinstance(labels, Tensor):
        return labels.data
    if isinstance(labels, (list, tuple)):
        return logits.backend.from_flat(labels, (len(labels),), "int32")
    return labels


def batch_norm_train(x, gamma, beta, eps):
    """Batch norm with this batch's statistics over all axes but the last.

    Returns (y, mean, var): mean and biased var are plain arrays of shape (C,), for the
    caller's moving averages; the gradient flows through them in closed form.
    """
    bk = x.backend
    axes = tuple(range(x.ndim - 1))
    stat_shape = (1,) * (x.ndim - 1) + (x.shape[-1],)
    count = 1
    for a in axes:
        count *= x.shape[a]
    inv_count = bk.full(stat_shape, 1.0 / count, x.dtype)
    # One pass over x, var = E[x^2] - E[x]^2: both sums read x once, and XLA computes them
    # in the convolution that produced x (a second pass over centred values would read x
    # again). The caller computes in float32 at least (BatchNorm2d), where the cancellation
    # costs about 1e-7 * (mean / std)^2 relative; where rounding takes var below 0, it is 0.
    mean = bk.mul(bk.sum(x.data, axes), inv_count)
    mean_square = bk.mul(bk.sum(bk.mul(x.data, x.data), axes), inv_count)
    var = bk.maximum(bk.sub(mean_square, bk.mul(mean, mean)), bk.full(stat_shape, 0.0, x.dtype))
    invstd = bk.reciprocal(bk.sqrt(bk.add(var, bk.full(stat_shape, eps, x.dtype))))
    y = ops.BatchNorm.apply(x, gamma.reshape(stat_shape), beta.reshape(stat_shape), mean=mean, invstd=invstd)
    return y, bk.reshape(mean, (x.shape[-1],)), bk.reshape(var, (x.shape[-1],))


def batch_norm_eval(x, gamma, beta, mean, var, eps):
    """Batch norm with fixed statistics: an affine map per channel."""
    scale = gamma * (var + eps) ** -0.5
    return x * scale + (beta - mean * scale)


def dropout(x, rate, key, training=True):
    """Zero each element with probability `rate`, scale the rest by 1 / (1 - rate)."""
    if not training or rate == 0.0:
        return x
    keep = Tensor(x.backend.compare(x.backend.uniform(key, x.shape, dtype=x.dtype),
                                    x.backend.full(x.shape, rate, x.dtype), "ge"), x.backend)
    return x * keep * (1.0 / (1.0 - rate))


def drop_connect(x, rate, key, training=True):
    """Stochastic depth: drop a whole sample's residual branch with probability `rate`.

    Kept samples are divided by the survival probability so the expectation is unchanged.
    """
    if not training or rate == 0.0:
        return x
    bk = x.backend
    mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    keep = bk.compare(bk.uniform(key, mask_shape, dtype=x.dtype), bk.full(mask_shape, rate, x.dtype), "ge")
    return x * Tensor(keep, bk) * (1.0 / (1.0 - rate))
