"""Reference solutions of lesson 07's exercises."""
import math


def swish_grad(x):
    s = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    return s * (1.0 + x * (1.0 - s))


def softplus(x):
    # log(1 + e^x) = x + log(1 + e^-x): pick the form whose exponential cannot overflow
    return math.log1p(math.exp(x)) if x < 0 else x + math.log1p(math.exp(-x))
