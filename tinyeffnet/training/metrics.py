"""What a step measures, in backend primitives (so it runs inside jax.jit too).

An example is top-k correct when fewer than k classes have a strictly higher logit than
its label (no sort, no argmax primitive needed) and all its logits are finite.
"""


def topk_correct(backend, logits, labels, ks=(1, 5)):
    """{k: (N,) array of 0/1}: whether each example's label is among its k best logits.

    A row holding a NaN or an infinity is never correct: NaN compares false with
    everything, so without this a diverged model would score 100%."""
    b = backend
    n, num_classes = b.shape(logits)
    dtype = b.dtype(logits)
    label_logit = b.sum(b.mul(logits, b.one_hot(labels, num_classes, dtype)), (1,))
    higher = b.sum(b.compare(logits, b.expand(label_logit, (n, num_classes)), "gt"), (1,))
    finite = _is_zero(b, b.sum(b.mul(logits, b.full((n, num_classes), 0.0, dtype)), (1,)))
    return {k: b.reshape(b.mul(b.compare(higher, b.full((n, 1), float(k), dtype), "lt"), finite), (n,)) for k in ks}


def _is_zero(b, x):
    return b.compare(x, b.full(b.shape(x), 0.0, b.dtype(x)), "eq")


def batch_metrics(backend, loss, logits, labels):
    """Mean loss, top-1 and top-5 of the batch, as backend scalars."""
    n = backend.shape(logits)[0]
    correct = topk_correct(backend, logits, labels, (1, 5))
    inv = backend.full((1,), 1.0 / n, backend.dtype(logits))
    mean = lambda v: backend.reshape(backend.mul(backend.sum(v, (0,)), inv), ())
    return dict(loss=loss, top1=mean(correct[1]), top5=mean(correct[5]))


def _sum_of_all(backend, arrays, each):
    """sum(each(a)) over every element of every array, as a (1,) array in the first's dtype.

    The per-array sums are added pairwise, not in one running chain: a chain through every
    array of the new state made XLA keep a large share more scratch memory in B0's TPU step."""
    dtype = backend.dtype(arrays[0])
    sums = [backend.astype(backend.reshape(backend.sum(each(a), tuple(range(len(backend.shape(a))))), (1,)), dtype)
            for a in arrays]
    while len(sums) > 1:
        sums = [backend.add(sums[i], sums[i + 1]) if i + 1 < len(sums) else sums[i] for i in range(0, len(sums), 2)]
    return sums[0]


def global_norm(backend, arrays):
    """The L2 norm of all arrays together, sqrt(sum of every element squared), as a scalar in
    the first array's dtype."""
    return backend.reshape(backend.sqrt(_sum_of_all(backend, arrays, lambda a: backend.mul(a, a))), ())


def all_finite(backend, arrays):
    """1.0 if no array holds a NaN or an infinity, else 0.0.

    x * 0 is 0 for a finite x and NaN otherwise, so the sum of every array times 0 is 0
    exactly when all are finite (a plain sum could overflow to infinity)."""
    times_zero = lambda a: backend.mul(a, backend.full(backend.shape(a), 0.0, backend.dtype(a)))
    return backend.reshape(_is_zero(backend, _sum_of_all(backend, arrays, times_zero)), ())
