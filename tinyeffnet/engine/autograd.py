"""Reverse-mode automatic differentiation: `Function`, the tape, and `backward`.

A `Function` is one differentiable op. Its `forward` turns input arrays into an output
array with backend primitives, and may keep what its `backward` will need on `self`
(the context). Its `backward` turns the gradient of the output into one gradient per
input. `Function.apply` runs `forward` on the inputs' data and, if any input requires a
gradient, records the Function on the output tensor: that record is the tape.

`backward(tensor)` walks the tape from the output to the leaves in reverse topological
order, so every tensor's gradient is complete (summed over all its uses) before it is
passed on. Under `jax.jit` this walk happens once, at trace time, and becomes part of
the compiled program.
"""
import contextlib

_GRAD_ENABLED = [True]


@contextlib.contextmanager
def no_grad():
    """Inside this block no op is recorded: for evaluation and for parameter updates."""
    _GRAD_ENABLED.append(False)
    try:
        yield
    finally:
        _GRAD_ENABLED.pop()


def is_grad_enabled():
    return _GRAD_ENABLED[-1]


class Function:
    """Base class of every differentiable op; an instance is the context of one call."""

    def __init__(self, backend, needs_grad):
        self.backend = backend
        self.needs_grad = needs_grad  # one bool per input: whose gradients backward must give
        self.parents = ()

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad):
        """Gradients for the inputs, in order; None where an input needs none."""
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        from .tensor import Tensor  # Tensor's methods call apply, so import late
        backend = inputs[0].backend
        for t in inputs[1:]:
            if t.backend is not backend:
                raise ValueError(f"{cls.__name__}: one input is on the {backend.name} backend, another on "
                                 f"{t.backend.name}; make every tensor and layer with the same backend=")
        needs_grad = tuple(t.requires_grad for t in inputs)
        ctx = cls(backend, needs_grad)
        out = Tensor(ctx.forward(*(t.data for t in inputs), **params), backend)
        if is_grad_enabled() and any(needs_grad):
            out.requires_grad = True
            out._ctx = ctx
            ctx.parents = inputs
        return out


def topological_order(root):
    """Every tensor that `root` depends on through the tape, each after all of its inputs.

    Iterative depth-first search: a deep network must not hit Python's recursion limit.
    """
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root, grad=None):
    """Accumulate d(root)/d(leaf) into `leaf.grad` for every leaf that requires a gradient."""
    from .tensor import Tensor
    if not root.requires_grad:
        raise RuntimeError("backward: this tensor does not require a gradient "
                           "(no input had requires_grad=True, or it was made under no_grad)")
    backend = root.backend
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward: the output has shape {root.shape}; pass grad= "
                               "for a non-scalar output, or reduce it to a scalar first")
        grad = backend.full(root.shape, 1.0, root.dtype)
    elif isinstance(grad, Tensor):
        grad = grad.data
    grads = {id(root): grad}
    for node in reversed(topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        ctx = node._ctx
        if ctx is None or node.retains_grad:
            node.grad = Tensor(g, backend) if node.grad is None else Tensor(backend.add(node.grad.data, g), backend)
        if ctx is None:
            continue
        for parent, needed, pg in zip(ctx.parents, ctx.needs_grad, ctx.backward(g)):
            if needed and pg is not None:
                seen = grads.get(id(parent))
                grads[id(parent)] = pg if seen is None else backend.add(seen, pg)
        node._ctx = None  # the tape is used once: free what the Function kept
