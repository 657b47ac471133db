"""Reference solutions of lesson 02's exercises."""
import math

from tinyeffnet import Function


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
