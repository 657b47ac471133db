"""Every differentiable op, as a `Function` written in backend primitives only.

Each backward saves as little as it can: swish keeps its input and recomputes the
sigmoid, batch norm keeps its input and uses its closed-form gradient.
Binary ops here take same-shape inputs; `Tensor` broadcasts with `Expand`, and
`Expand.backward` is the one place where broadcast gradients are summed back.
"""
from .autograd import Function


def _ones_like(b, x):
    return b.full(b.shape(x), 1.0, b.dtype(x))


def _scalar_like(b, x, value):
    return b.full(b.shape(x), value, b.dtype(x))


def _bcast(b, small, shape):
    """Expand a reduced (keep-rank) array back to `shape`."""
    return b.expand(small, shape)


# ---------------------------------------------------------------- elementwise, binary
class Add(Function):
    def forward(self, a, b):
        return self.backend.add(a, b)

    def backward(self, g):
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return self.backend.sub(a, b)

    def backward(self, g):
        return g, self.backend.neg(g)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return self.backend.mul(a, b)

    def backward(self, g):
        bk = self.backend
        return (bk.mul(g, self.b) if self.needs_grad[0] else None,
                bk.mul(g, self.a) if self.needs_grad[1] else None)


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return self.backend.div(a, b)

    def backward(self, g):
        bk = self.backend
        ga = bk.div(g, self.b) if self.needs_grad[0] else None
        gb = None
        if self.needs_grad[1]:  # d(a/b)/db = -a / b^2
            gb = bk.neg(bk.div(bk.mul(g, self.a), bk.mul(self.b, self.b)))
        return ga, gb


class Maximum(Function):
    def forward(self, a, b):
        self.a_wins = self.backend.compare(a, b, "ge")  # ties send the gradient to a
        return self.backend.maximum(a, b)

    def backward(self, g):
        bk = self.backend
        ga = bk.mul(g, self.a_wins)
        return ga, bk.sub(g, ga)


# ---------------------------------------------------------------- elementwise, unary
class Neg(Function):
    def forward(self, x):
        return self.backend.neg(x)

    def backward(self, g):
        return (self.backend.neg(g),)


class Exp(Function):
    def forward(self, x):
        self.out = self.backend.exp(x)
        return self.out

    def backward(self, g):
        return (self.backend.mul(g, self.out),)


class Log(Function):
    def forward(self, x):
        self.x = x
        return self.backend.log(x)

    def backward(self, g):
        return (self.backend.div(g, self.x),)


class Sqrt(Function):
    def forward(self, x):
        self.out = self.backend.sqrt(x)
        return self.out

    def backward(self, g):
        bk = self.backend
        return (bk.div(g, bk.add(self.out, self.out)),)


def power(bk, x, p):
    """x ** p for a constant p, from primitives (integer powers by multiplication)."""
    if p == int(p) and abs(p) <= 8:
        out = _ones_like(bk, x)
        for _ in range(abs(int(p))):
            out = bk.mul(out, x)
        return bk.reciprocal(out) if p < 0 else out
    if p == 0.5:
        return bk.sqrt(x)
    if p == -0.5:
        return bk.reciprocal(bk.sqrt(x))
    return bk.exp(bk.mul(_scalar_like(bk, x, p), bk.log(x)))


class Pow(Function):
    def forward(self, x, exponent):
        self.x, self.p = x, float(exponent)
        return power(self.backend, x, self.p)

    def backward(self, g):
        bk = self.backend
        slope = bk.mul(_scalar_like(bk, self.x, self.p), power(bk, self.x, self.p - 1))
        return (bk.mul(g, slope),)


class Sigmoid(Function):
    def forward(self, x):
        self.out = self.backend.sigmoid(x)
        return self.out

    def backward(self, g):
        bk = self.backend
        return (bk.mul(g, bk.mul(self.out, bk.sub(_ones_like(bk, self.out), self.out))),)


class Swish(Function):
    """x * sigmoid(x). Keeps only x: the sigmoid is cheaper to recompute than to store."""

    def forward(self, x):
        self.x = x
        return self.backend.mul(x, self.backend.sigmoid(x))

    def backward(self, g):
        bk = self.backend
        # x through recompute_from: a compiler then recomputes s here too, instead of keeping
        # the forward's s in memory from the forward to the backward
        x = bk.recompute_from(self.x)
        s = bk.sigmoid(x)
        # d/dx x*s(x) = s + x*s*(1-s) = s * (1 + x*(1-s))
        one = _ones_like(bk, s)
        return (bk.mul(g, bk.mul(s, bk.add(one, bk.mul(x, bk.sub(one, s))))),)


class Relu(Function):
    def forward(self, x):
        self.positive = self.backend.compare(x, _scalar_like(self.backend, x, 0.0), "gt")
        return self.backend.mul(x, self.positive)

    def backward(self, g):
        return (self.backend.mul(g, self.positive),)


# ---------------------------------------------------------------- reductions (keep rank)
class Sum(Function):
    def forward(self, x, axes):
        self.shape = self.backend.shape(x)
        return self.backend.sum(x, axes)

    def backward(self, g):
        return (_bcast(self.backend, g, self.shape),)


class Max(Function):
    def forward(self, x, axes):
        bk = self.backend
        out = bk.max(x, axes)
        hit = bk.compare(x, _bcast(bk, out, bk.shape(x)), "eq")
        # Ties share the gradient equally, so it still sums to the output's gradient.
        self.share = bk.div(hit, _bcast(bk, bk.sum(hit, axes), bk.shape(x)))
        return out

    def backward(self, g):
        bk = self.backend
        return (bk.mul(_bcast(bk, g, bk.shape(self.share)), self.share),)


# ---------------------------------------------------------------- movement
class Reshape(Function):
    def forward(self, x, shape):
        self.shape = self.backend.shape(x)
        return self.backend.reshape(x, shape)

    def backward(self, g):
        return (self.backend.reshape(g, self.shape),)


class Permute(Function):
    def forward(self, x, order):
        self.inverse = tuple(sorted(range(len(order)), key=lambda i: order[i]))
        return self.backend.permute(x, order)

    def backward(self, g):
        return (self.backend.permute(g, self.inverse),)


class Expand(Function):
    """Broadcasting's forward. Its backward is the ONE place broadcast gradients are summed."""

    def forward(self, x, shape):
        self.src = tuple(self.backend.shape(x))
        return self.backend.expand(x, shape)

    def backward(self, g):
        bk = self.backend
        grown = tuple(i for i, (s, d) in enumerate(zip(self.src, bk.shape(g))) if s != d)
        return (bk.sum(g, grown) if grown else g,)


class Pad(Function):
    def forward(self, x, pads, value=0.0):
        self.starts = tuple(lo for lo, _ in pads)
        self.stops = tuple(lo + d for (lo, _), d in zip(pads, self.backend.shape(x)))
        return self.backend.pad(x, pads, value)

    def backward(self, g):
        return (self.backend.slice(g, self.starts, self.stops),)


class Slice(Function):
    def forward(self, x, starts, stops):
        self.pads = tuple((a, d - b) for a, b, d in zip(starts, stops, self.backend.shape(x)))
        return self.backend.slice(x, starts, stops)

    def backward(self, g):
        return (self.backend.pad(g, self.pads),)


# ---------------------------------------------------------------- processing
def _swap_last(bk, x):
    rank = len(bk.shape(x))
    return bk.permute(x, tuple(range(rank - 2)) + (rank - 1, rank - 2))


class Matmul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return self.backend.matmul(a, b)

    def backward(self, g):
        bk = self.backend
        return (bk.matmul(g, _swap_last(bk, self.b)) if self.needs_grad[0] else None,
                bk.matmul(_swap_last(bk, self.a), g) if self.needs_grad[1] else None)


class Conv2d(Function):
    """NHWC x HWIO convolution; its gradients are the backend's two backward convolutions."""

    def forward(self, x, w, stride, padding, groups):
        self.x, self.w, self.args = x, w, (stride, padding, groups)
        return self.backend.conv2d(x, w, stride, padding, groups)

    def backward(self, g):
        bk = self.backend
        gx = bk.conv2d_grad_input(g, self.w, bk.shape(self.x), *self.args) if self.needs_grad[0] else None
        gw = bk.conv2d_grad_weight(self.x, g, bk.shape(self.w), *self.args) if self.needs_grad[1] else None
        return gx, gw


class LogSoftmax(Function):
    """log softmax over the last axis, shifted by the row maximum so exp cannot overflow."""

    def forward(self, x):
        bk = self.backend
        shape, last = bk.shape(x), (len(bk.shape(x)) - 1,)
        z = bk.sub(x, _bcast(bk, bk.max(x, last), shape))
        self.out = bk.sub(z, _bcast(bk, bk.log(bk.sum(bk.exp(z), last)), shape))
        return self.out

    def backward(self, g):
        bk = self.backend
        shape, last = bk.shape(g), (len(bk.shape(g)) - 1,)
        return (bk.sub(g, bk.mul(bk.exp(self.out), _bcast(bk, bk.sum(g, last), shape))),)


class SoftmaxCrossEntropy(Function):
    """Mean over the batch of -sum(target * log_softmax(logits)), target label-smoothed.

    The target puts 1 - smoothing on the label and smoothing / classes on every class.
    The gradient is (softmax - target) / batch: no log-softmax graph is kept.
    """

    def forward(self, logits, labels, smoothing=0.0):
        bk = self.backend
        n, k = bk.shape(logits)
        target = bk.one_hot(labels, k, bk.dtype(logits))
        if smoothing:
            target = bk.add(bk.mul(target, _scalar_like(bk, target, 1.0 - smoothing)),
                            _scalar_like(bk, target, smoothing / k))
        logp = LogSoftmax.forward(self, logits)
        self.target, self.n = target, n
        total = bk.sum(bk.mul(target, logp), (0, 1))
        return bk.reshape(bk.mul(total, bk.full((1, 1), -1.0 / n, bk.dtype(logits))), ())

    def backward(self, g):
        bk = self.backend
        shape = bk.shape(self.target)
        scale = bk.mul(bk.reshape(g, (1, 1)), bk.full((1, 1), 1.0 / self.n, bk.dtype(self.target)))
        return (bk.mul(bk.sub(bk.exp(self.out), self.target), _bcast(bk, scale, shape)),)


class BatchNorm(Function):
    """Normalise x over every axis but the last (channels) with given batch statistics.

    y = (x - mean) * invstd * gamma + beta. The batch statistics depend on x too, and the
    closed form below includes that: with xhat = (x - mean) * invstd, dxhat = dy * gamma
    and M values per channel,
        dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)).
    `mean` and `invstd` come in as arrays of shape (1, ..., 1, C), computed by the caller,
    which also needs them for the moving averages.

    Both directions are written as one multiply-add per element with per-channel
    coefficients, and only x is kept, not xhat: XLA then folds the normalisation into the
    next op's input, and the backward into the two backward convolutions that read dx,
    instead of writing dx out (the docs' benchmarks page measures what that saves).
    """

    def forward(self, x, gamma, beta, mean, invstd):
        bk = self.backend
        shape = bk.shape(x)
        self.axes = tuple(range(len(shape) - 1))
        self.count = 1
        for a in self.axes:
            self.count *= shape[a]
        self.x, self.gamma, self.mean, self.invstd = x, gamma, mean, invstd
        scale = bk.mul(gamma, invstd)
        return bk.add(bk.mul(bk.sub(x, _bcast(bk, mean, shape)), _bcast(bk, scale, shape)), _bcast(bk, beta, shape))

    def backward(self, dy):
        bk = self.backend
        shape, axes = bk.shape(dy), self.axes
        centred = bk.sub(self.x, _bcast(bk, self.mean, shape))
        dbeta = bk.sum(dy, axes)
        dgamma = bk.mul(bk.sum(bk.mul(dy, centred), axes), self.invstd)  # sum(dy * xhat)
        dx = None
        if self.needs_grad[0]:
            # The closed form with sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) =
            # gamma * dgamma: dx = a * dy - b * (x - mean) - c, per channel
            # a = gamma * invstd, b = a * invstd * dgamma / M, c = a * dbeta / M.
            inv_m = bk.full(bk.shape(dbeta), 1.0 / self.count, bk.dtype(dbeta))
            a = bk.mul(self.gamma, self.invstd)
            b = bk.mul(bk.mul(a, self.invstd), bk.mul(dgamma, inv_m))
            c = bk.mul(a, bk.mul(dbeta, inv_m))
            dx = bk.sub(bk.sub(bk.mul(dy, _bcast(bk, a, shape)), bk.mul(centred, _bcast(bk, b, shape))),
                        _bcast(bk, c, shape))
        return dx, dgamma, dbeta


class Cast(Function):
    """A dtype cast; the gradient goes back in the input's dtype (bf16 compute, f32 masters)."""

    def forward(self, x, dtype):
        self.src = self.backend.dtype(x)
        return self.backend.astype(x, dtype)

    def backward(self, g):
        return (self.backend.astype(g, self.src),)
