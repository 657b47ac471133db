"""Checks of lesson 07's exercises: a stable softplus, and swish's derivative."""
import math
import random

from .common import Wrong, close, exercise, number


@exercise("07.1", "softplus", """Write softplus(x) = log(1 + exp(x)) for a float x so that it never overflows
          and keeps full precision where it is tiny (x = -40: about 4.2e-18), the way the stable sigmoid does:
          split on the sign of x and use math.log1p.""")
def check_softplus(softplus):
    from tinyeffnet import Tensor
    sigmoid = Tensor([-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0]).sigmoid().to_flat()
    values = {x: number(softplus(x)) for x in (-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0)}
    if not close(values[0.0], math.log(2), 1e-14):
        raise Wrong(f"softplus(0) = log 2 = {math.log(2):.15f}, yours {values[0.0]}")
    if not 0.0 <= values[-1000.0] < 1e-300 or not close(values[1000.0], 1000.0, 1e-15):
        raise Wrong(f"softplus(-1000) should be 0 (about 5e-435) and softplus(1000) 1000; yours give "
                    f"{values[-1000.0]} and {values[1000.0]}")
    if not close(values[-40.0], sigmoid[1], 1e-12, 0.0):  # for very negative x, softplus(x) = exp(x) = sigmoid(x)
        raise Wrong(f"softplus(-40) is {sigmoid[1]:.6e}; yours {values[-40.0]:.6e} lost it to round-off "
                    "(1 + 4e-18 is 1 in float64: use log1p)")
    for x, s in zip((-3.0, 2.5, 40.0), (sigmoid[2], sigmoid[4], sigmoid[5])):  # softplus' = sigmoid
        h = 1e-5
        slope = (number(softplus(x + h)) - number(softplus(x - h))) / (2 * h)
        if not close(slope, s, 1e-6):
            raise Wrong(f"the slope of softplus at {x} should be sigmoid({x}) = {s:.8f}; yours is {slope:.8f}")
        if not close(values[x] - number(softplus(-x)), x, 1e-12):
            raise Wrong(f"softplus(x) - softplus(-x) = x fails at x = {x}")
    return "no overflow at +-1000, full precision at -40, slope = the library's sigmoid"


@exercise("07.2", "swish_grad", """Write swish_grad(x): the derivative of swish(x) = x sigmoid(x) at a float x
          (product rule; sigmoid' = s (1 - s)).""")
def check_swish_grad(swish_grad):
    from tinyeffnet import Tensor
    rng = random.Random(702)
    for x0 in [-1.278, 0.0] + [rng.uniform(-8, 8) for _ in range(8)]:
        x = Tensor(x0, requires_grad=True)
        x.swish().backward()
        got = number(swish_grad(x0))
        if not close(got, x.grad.item(), 1e-12):
            raise Wrong(f"swish'({x0:.4f}) = {x.grad.item():.12f} by autograd, yours {got:.12f}")
    return "equal to autograd at ten points"
