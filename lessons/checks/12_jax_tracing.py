"""Checks of lesson 12's exercise: a leaky ReLU that jax.jit can trace."""
import random

from .common import Wrong, close, exercise, given


@exercise("12.1", "leaky_relu", """Write leaky_relu(x, slope) on Tensors: x where x > 0, slope * x elsewhere
          (0 < slope < 1), with Tensor operations only, so that it runs under jax.jit: a Python `if` on a
          traced value cannot be decided. Hint: Tensor.maximum.""")
def check_leaky_relu(leaky_relu):
    import jax

    from backends import get_backend
    from tinyeffnet import Tensor
    jb = get_backend("jax")
    rng = random.Random(1201)
    values = [rng.uniform(-3, 3) for _ in range(6)] + [-0.01, 0.02]

    for slope in (0.1, 0.02, rng.uniform(0.3, 0.9)):
        def f(array):
            x = Tensor(array, jb, requires_grad=True)
            y = given(leaky_relu(x, slope))
            y.sum().backward()
            return y.data, x.grad.data

        try:
            y, grad = jax.jit(f)(jb.from_flat(values, (len(values),)))
        except jax.errors.ConcretizationTypeError:
            raise Wrong("a Python if (or bool()) on a traced value: jit cannot decide it; use Tensor operations") \
                from None
        for v, out, g in zip(values, y.tolist(), grad.tolist()):
            want, want_g = (v, 1.0) if v > 0 else (slope * v, slope)
            if not (close(out, want, 1e-6, 1e-7) and close(g, want_g, 1e-6)):
                raise Wrong(f"slope {slope:.3f}, at {v:.4f}: leaky_relu should be {want:.6f} with slope {want_g:.4f}; "
                            f"yours {out:.6f} with slope {g:.4f}")
    return "compiles under jax.jit; values and our gradients right for three slopes"
