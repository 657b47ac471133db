"""Checks of lesson 03's exercises: the central difference's predicted error, and a numerical
gradient."""
import decimal
import math
import random

from .common import Wrong, close, exercise, number


def _taylor_leading_error(x, eps):
    """The central difference's error of exp at x, its leading term measured: the error at a
    tiny step in 60-digit arithmetic (no round-off), divided by that step squared, times eps^2."""
    with decimal.localcontext() as c:
        c.prec = 60
        d, h = decimal.Decimal(x), decimal.Decimal("1e-12")
        error = ((d + h).exp() - (d - h).exp()) / (2 * h) - d.exp()
        return float(error / (h * h)) * eps * eps


@exercise("03.1", "central_error", """Write central_error(x, eps): the PREDICTED error of the central difference
          (f(x + eps) - f(x - eps)) / (2 eps) - f'(x) for f = exp, its leading Taylor term (expand f(x + eps)
          and f(x - eps) to the eps^3 term and subtract). Not the measured error: at tiny eps round-off
          hides it, at large eps higher terms add to it.""")
def check_central_error(central_error):
    rng = random.Random(301)
    for x in [1.0] + [rng.uniform(-2, 2) for _ in range(3)]:
        for eps in (0.5, 0.3, 1e-2, 1e-7):
            want = _taylor_leading_error(x, eps)
            got = number(central_error(x, eps))
            if not close(got, want, 1e-6):
                measured = abs((math.exp(x + eps) - math.exp(x - eps)) / (2 * eps) - math.exp(x))
                raise Wrong(f"at x = {x:.4f}, eps = {eps:g} the leading Taylor term is {want:.6e}, yours {got:.6e} "
                            f"(the measured float64 error is {measured:.6e}: a prediction differs from it)")
    return "equal to the leading Taylor term at four points, eps from 0.5 (higher terms matter) to 1e-7 (round-off)"


@exercise("03.2", "numeric_grad", """Write numeric_grad(f, x, index, eps=1e-5): the central difference
          (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) of a scalar-valued f at Tensor x, nudging flat element
          `index` only. Build the nudged tensors from x.to_flat() and x.shape.""",
          builds="gradcheck's numerical gradient")
def check_numeric_grad(numeric_grad):
    from tinyeffnet import Tensor
    functions = [("sum(x^3)", lambda t: (t * t * t).sum()), ("mean(x sigmoid(x))", lambda t: (t.sigmoid() * t).mean()),
                 ("log(sum(exp(x)))", lambda t: t.exp().sum().log())]
    for seed, (label, f) in enumerate(functions):
        shape = ((2, 3), (4,), (1, 2, 3))[seed]
        x = Tensor.normal(302 + seed, shape, requires_grad=True)
        f(x).backward()
        analytic = x.grad.to_flat()
        for index in range(x.size):
            before, nudged = x.to_flat(), Tensor(x.data)
            got = number(numeric_grad(f, nudged, index))
            if nudged.to_flat() != before:
                raise Wrong(f"{label}: numeric_grad changed its input x (element {index}): build new tensors "
                            "from a copy of x.to_flat(), leave x as it was")
            if not close(got, analytic[index], 1e-7, 1e-9):
                raise Wrong(f"{label}, shape {shape}, element {index}: the derivative is {analytic[index]:.10f}, "
                            f"yours {got:.10f} (off by {abs(got - analytic[index]):.1e}: one-sided differences are "
                            "off by about eps, central ones by eps^2)")
    x = Tensor.normal(305, (3,))
    f = functions[0][1]
    for eps in (1e-3, 0.1):  # the step it is given, not one of its own
        values = x.to_flat()
        want = (f(Tensor([values[0] + eps] + values[1:])).item() - f(Tensor([values[0] - eps] + values[1:])).item()) \
            / (2 * eps)
        got = number(numeric_grad(f, Tensor(x.data), 0, eps))
        if not close(got, want, 1e-9):
            raise Wrong(f"with eps = {eps:g} the central difference of sum(x^3) at element 0 is {want:.10f}, yours "
                        f"{got:.10f}: use the eps you are given")
    return "within 1e-7 of autograd for three functions and shapes, every element, and with the eps given"
