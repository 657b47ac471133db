"""Reference solutions of lesson 03's exercises."""
import math

from tinyeffnet import Tensor


def numeric_grad(f, x, index, eps=1e-5):
    def nudged(delta):
        values = x.to_flat()
        values[index] += delta
        return Tensor(values).reshape(*x.shape)
    return (f(nudged(eps)).item() - f(nudged(-eps)).item()) / (2 * eps)


def central_error(x, eps):
    # f(x +- eps) = f + f' eps + f'' eps^2 / 2 +- f''' eps^3 / 6 + ...: the difference quotient
    # is f' + f''' eps^2 / 6 + O(eps^4), and every derivative of exp is exp
    return math.exp(x) * eps ** 2 / 6
