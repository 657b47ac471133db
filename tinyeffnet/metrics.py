"""Top-k accuracy from logits, in backend primitives (works inside jax.jit too).

An example is top-k correct when fewer than k classes have a strictly higher logit than
its label: no sort, no argmax primitive needed.
"""


def topk_correct(backend, logits, labels, ks=(1, 5)):
    """{k: (N,) array of 0/1}: whether each example's label is among its k best logits."""
    b = backend
    n, num_classes = b.shape(logits)
    dtype = b.dtype(logits)
    label_logit = b.sum(b.mul(logits, b.one_hot(labels, num_classes, dtype)), (1,))
    higher = b.sum(b.compare(logits, b.expand(label_logit, (n, num_classes)), "gt"), (1,))
    return {k: b.reshape(b.compare(higher, b.full((n, 1), float(k), dtype), "lt"), (n,)) for k in ks}
