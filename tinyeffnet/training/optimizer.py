"""SGD with Nesterov momentum and weight decay, with optax's interface on both backends.

    opt_state = optimizer.init(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = apply_updates(backend, params, updates, lr)

`update` gives the step's direction (learning rate 1); `apply_updates` scales it by the
rate of this step, so the schedule feeds in a number per step and no optimizer needs to
keep a learning rate in its state. The update, per parameter:

    g = grad + wd * param                 (only where the decay mask is True)
    v = g + momentum * v                  (the trace, kept in opt_state)
    param = param - lr * (g + momentum * v)

On JAX it is optax.chain(add_decayed_weights(wd, mask), trace(momentum, nesterov=True));
on the pure-Python backend `NesterovSGD` below, the same arithmetic in backend primitives.

Weight decay applies to convolution and dense kernels and biases, not to batch-norm gamma
and beta, as in the official EfficientNet code (which adds wd * sum(w^2) / 2 over every
trainable variable outside batch norm to the loss; its gradient is the term above).
"""


def decay_mask(names):
    """name -> True where weight decay applies: everything but batch-norm gamma and beta."""
    return {n: not (n.endswith(".gamma") or n.endswith(".beta")) for n in names}


def apply_updates(backend, params, updates, lr):
    """param - lr * update for every parameter."""
    out = {}
    for name, p in params.items():
        out[name] = backend.sub(p, backend.mul(backend.full(backend.shape(p), lr, backend.dtype(p)), updates[name]))
    return out


class NesterovSGD:
    """The optimizer in backend primitives, for the pure-Python backend; state {"trace": ...}."""

    def __init__(self, backend, param_names, momentum=0.9, weight_decay=1e-4, nesterov=True):
        self.backend, self.momentum, self.weight_decay, self.nesterov = backend, momentum, weight_decay, nesterov
        self.mask = decay_mask(param_names)

    def init(self, params):
        b = self.backend
        return dict(trace={n: b.full(b.shape(p), 0.0, b.dtype(p)) for n, p in params.items()})

    def update(self, grads, state, params):
        b = self.backend
        updates, trace = {}, {}
        for name, p in params.items():
            shape, dtype = b.shape(p), b.dtype(p)
            const = lambda v: b.full(shape, v, dtype)
            g = grads[name]
            if self.weight_decay and self.mask[name]:
                g = b.add(g, b.mul(const(self.weight_decay), p))
            v = b.add(g, b.mul(const(self.momentum), state["trace"][name]))
            updates[name] = b.add(g, b.mul(const(self.momentum), v)) if self.nesterov else v
            trace[name] = v
        return updates, dict(trace=trace)


def optax_nesterov_sgd(param_names, momentum=0.9, weight_decay=1e-4, nesterov=True):
    """The same optimizer as an optax GradientTransformation (the JAX runtime's)."""
    import optax
    mask = decay_mask(param_names)
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=lambda params: {n: mask[n] for n in params}),
        optax.trace(decay=momentum, nesterov=nesterov),
    )
