"""SGD with Nesterov momentum and weight decay, in backend primitives.

The update (the same as optax.chain(add_decayed_weights(wd, mask), sgd(lr, momentum,
nesterov=True)), which the JAX training step uses):
    g = grad + wd * param                 (only where the decay mask is True)
    v = g + momentum * v
    param = param - lr * (g + momentum * v)

Weight decay applies to convolution and dense kernels and biases, not to batch-norm gamma
and beta, as in the official EfficientNet code (which adds wd * sum(w^2) / 2 over every
trainable variable outside batch norm to the loss; its gradient is the term above).
"""


def decay_mask(names):
    """name -> True where weight decay applies: everything but batch-norm gamma and beta."""
    return {n: not (n.endswith(".gamma") or n.endswith(".beta")) for n in names}


class SGD:
    """Nesterov SGD over {name: array}, for the pure-Python backend's training loop."""

    def __init__(self, backend, momentum=0.9, weight_decay=1e-4, nesterov=True):
        self.backend, self.momentum, self.weight_decay, self.nesterov = backend, momentum, weight_decay, nesterov

    def init(self, params):
        b = self.backend
        return {n: b.full(b.shape(p), 0.0, b.dtype(p)) for n, p in params.items()}

    def update(self, params, grads, velocity, lr):
        """New (params, velocity) after one step at learning rate `lr`."""
        b = self.backend
        mask = decay_mask(params)
        new_params, new_velocity = {}, {}
        for name, p in params.items():
            shape, dtype = b.shape(p), b.dtype(p)
            const = lambda v: b.full(shape, v, dtype)
            g = grads[name]
            if self.weight_decay and mask[name]:
                g = b.add(g, b.mul(const(self.weight_decay), p))
            v = b.add(g, b.mul(const(self.momentum), velocity[name]))
            step = b.add(g, b.mul(const(self.momentum), v)) if self.nesterov else v
            new_params[name] = b.sub(p, b.mul(const(lr), step))
            new_velocity[name] = v
        return new_params, new_velocity
