"""Reference solutions of lesson 02's exercises."""
import math

from tinyeffnet import Function, Tensor


class Tanh(Function):
    def forward(self, x):
        b = self.backend
        two = b.full(b.shape(x), 2.0, b.dtype(x))
        one = b.full(b.shape(x), 1.0, b.dtype(x))
        self.y = b.sub(b.mul(two, b.sigmoid(b.mul(two, x))), one)  # tanh(x) = 2 sigmoid(2x) - 1
        return self.y

    def backward(self, grad):
        b = self.backend
        one = b.full(b.shape(self.y), 1.0, b.dtype(self.y))
        return (b.mul(grad, b.sub(one, b.mul(self.y, self.y))),)


def expression_grads(a, b):
    s = 1.0 / (1.0 + math.exp(-(a * b + a * a)))
    dL_dd = 3.0 * s * (1.0 - s)  # L = 3 sigmoid(d), d = a*b + a*a
    return dL_dd * (b + 2.0 * a), dL_dd * a


def run_backward(root):
    # every tensor after its inputs: iterative depth-first search, a node is appended once all
    # of its parents are
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                stack.extend((p, False) for p in node._ctx.parents if p.requires_grad)
    backend = root.backend
    grads = {id(root): backend.full(root.shape, 1.0, root.dtype)}
    for node in reversed(order):  # root first: a node's gradient is complete when it is reached
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if node._ctx is None:  # a leaf
            node.grad = Tensor(g, backend) if node.grad is None else Tensor(backend.add(node.grad.data, g), backend)
            continue
        ctx = node._ctx
        for parent, needed, pg in zip(ctx.parents, ctx.needs_grad, ctx.backward(g)):
            if needed and pg is not None:
                grads[id(parent)] = pg if id(parent) not in grads else backend.add(grads[id(parent)], pg)


def unbroadcast(grad, shape):
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))  # the axes broadcasting put in front
    grown = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if grown:
        grad = grad.sum(axis=grown, keepdims=True)  # the size-1 axes that grew
    return grad.reshape(*shape)
