"""Check our backward against central finite differences, in float64.

    d f / d x_j  ~  (f(x + eps e_j) - f(x - eps e_j)) / (2 eps)

Two ways to use it:
- `check_elementwise`: one pair of forward passes per input element; a failure points at
  the exact input and index. For small tensors.
- `check_projection`: one random unit direction v over all inputs and one pair of forward
  passes in all: compares sum(grad * v) with the directional difference quotient. For
  big graphs.

The error of a comparison is |analytic - numeric| / max(|analytic|, |numeric|, floor):
relative where gradients are large, absolute (scaled by `floor`) where they are near 0,
since a difference quotient cannot resolve a relative error there.
"""
import random

from .autograd import no_grad
from .tensor import Tensor


class GradcheckError(AssertionError):
    pass


def _scalar_loss(f, inputs, weights):
    """f's output reduced to a scalar with fixed random weights, so every output counts."""
    out = f(*inputs)
    if out.size == 1:
        return out.reshape(())
    if weights[0] is None:
        rng = random.Random(1234)
        weights[0] = out.backend.from_flat([rng.uniform(0.5, 1.5) for _ in range(out.size)], out.shape,
                                           out.dtype)
    return (out * Tensor(weights[0], out.backend)).sum()


def _value(f, inputs, weights):
    with no_grad():
        return _scalar_loss(f, inputs, weights).item()


def _analytic(f, inputs, weights):
    leaves = [Tensor(t.data, t.backend, requires_grad=t.requires_grad) for t in inputs]
    _scalar_loss(f, leaves, weights).backward()
    return [t.backend.to_flat(t.grad.data) if t.requires_grad and t.grad is not None
            else ([0.0] * t.size if t.requires_grad else None) for t in leaves]


def _with(t, flat):
    return Tensor(t.backend.from_flat(flat, t.shape, t.dtype), t.backend, requires_grad=t.requires_grad)


def _error(a, n, floor):
    return abs(a - n) / max(abs(a), abs(n), floor)


def check_elementwise(f, inputs, eps=1e-5, tol=1e-6, floor=1e-3):
    """Compare every gradient element of every input that requires a gradient.

    Returns the largest error; raises GradcheckError naming the first worst element.
    """
    weights = [None]
    analytic = _analytic(f, inputs, weights)
    worst = (0.0, None)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            continue
        base = t.backend.to_flat(t.data)
        for j in range(len(base)):
            def at(delta):
                flat = list(base)
                flat[j] += delta
                args = list(inputs)
                args[i] = _with(t, flat)
                return _value(f, args, weights)
            numeric = (at(eps) - at(-eps)) / (2 * eps)
            err = _error(analytic[i][j], numeric, floor)
            if err > worst[0]:
                worst = (err, (i, j, analytic[i][j], numeric))
    if worst[0] > tol:
        i, j, a, n = worst[1]
        raise GradcheckError(f"gradient of input {i} {tuple(inputs[i].shape)} at flat index {j}: "
                             f"analytic {a:.10g} vs numeric {n:.10g} (error {worst[0]:.2e} > {tol:.0e})")
    return worst[0]


def check_projection(f, inputs, eps=1e-5, tol=1e-6, floor=1e-3, seed=0):
    """Compare sum(grad * v) with (f(x + eps v) - f(x - eps v)) / (2 eps) for a random v."""
    weights = [None]
    analytic = _analytic(f, inputs, weights)
    rng = random.Random(seed)
    directions = [[rng.uniform(-1.0, 1.0) for _ in range(t.size)] if t.requires_grad else None
                  for t in inputs]
    # A unit direction makes eps the length of the step, however many inputs there are.
    norm = sum(d * d for v in directions if v for d in v) ** 0.5
    directions = [[d / norm for d in v] if v else None for v in directions]

    def at(scale):
        args = [_with(t, [x + scale * d for x, d in zip(t.backend.to_flat(t.data), v)]) if v else t
                for t, v in zip(inputs, directions)]
        return _value(f, args, weights)

    numeric = (at(eps) - at(-eps)) / (2 * eps)
    predicted = sum(sum(g * d for g, d in zip(grad, v)) for grad, v in zip(analytic, directions) if v)
    err = _error(predicted, numeric, floor)
    if err > tol:
        raise GradcheckError(f"directional derivative: analytic {predicted:.10g} vs numeric {numeric:.10g} "
                             f"(error {err:.2e} > {tol:.0e})")
    return err
