"""Reference solutions of lesson 03's exercises."""
import math

from tinyeffnet import Tensor


def numeric_grad(f, x, index, eps=1e-5):
    def nudged(delta):
        values = x.to_flat()
        values[index] += delta
        return Tensor(values).reshape(*x.shape)
    return (f(nudged(eps)).item() - f(nudged(-eps)).item()) / (2 * eps)


def central_error(eps):
    return eps ** 2 * math.e / 6  # f''' = exp, and exp(1) = e
