"""Checks of lesson 13's exercise: a depthwise convolution by kernel taps, in jax.numpy."""
import math
import random

from .common import Wrong, exercise, flat, given

# (N, H, W, C, k, stride, padding): both kernel sizes of EfficientNet, both strides, TensorFlow's
# SAME split (different for rows and columns), uneven explicit padding, a one-row image.
CASES = [(2, 8, 9, 3, 3, 2, "SAME"), (1, 7, 6, 4, 5, 1, ((0, 4), (3, 1))), (2, 9, 8, 2, 5, 2, "SAME"),
         (2, 1, 6, 1, 3, 1, ((2, 0), (0, 2))), (1, 6, 7, 5, 3, 1, "SAME")]


def _normal(rng, shape):
    """float32 normal samples drawn on the host (eager jax.random compiles a program per shape)."""
    import jax.numpy as jnp
    return jnp.asarray([rng.gauss(0.0, 1.0) for _ in range(math.prod(shape))], jnp.float32).reshape(shape)


def _reference(x, w, stride, pad):
    import jax
    return jax.lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=x.shape[3])


@exercise("13.1", "depthwise_taps", """Write depthwise_taps(x, w, stride, padding) in jax.numpy: a depthwise
          convolution of x (N, H, W, C) by w (k, k, 1, C), k read from w (3 or 5 in EfficientNet), with padding
          ((top, bottom), (left, right)), as the JAX backend does it on a CPU: pad x once (jnp.pad), then add
          up k * k strided slices of it, each times its tap w[a, b, 0] (one weight per channel). It must run
          under jax.jit, and jax.grad must go through it.""",
          builds="the JAX backend's depthwise convolution by taps",
          answer=("backends.jax_backend:_depthwise_taps",))
def check_depthwise_taps(depthwise_taps):
    import jax
    import jax.numpy as jnp

    from tinyeffnet import functional as F
    rng = random.Random(1301)
    for n, h, w, c, k, stride, pad in CASES:
        if pad == "SAME":
            pad = (F.same_padding(h, k, stride), F.same_padding(w, k, stride))
        x, kernel = _normal(rng, (n, h, w, c)), _normal(rng, (k, k, 1, c))
        want = _reference(x, kernel, stride, pad)
        got = given(jax.jit(lambda x, kernel: depthwise_taps(x, kernel, stride, pad))(x, kernel))
        label = f"x {tuple(x.shape)}, kernel {k}x{k}, stride {stride}, padding {pad}"
        if not hasattr(got, "shape") or tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise Wrong(f"{label}: the output is a {want.dtype} array of shape {tuple(want.shape)}, yours "
                        f"{getattr(got, 'dtype', type(got).__name__)} of shape {tuple(getattr(got, 'shape', ()))}")
        worst = max(abs(a - b) for a, b in zip(flat(got), flat(want)))  # on the host: no program per shape
        if worst > 1e-4:
            raise Wrong(f"{label}: differs from lax.conv_general_dilated by up to {worst:.2e}")
    # the lesson's use: gradients through it, compared with XLA's convolution's (jax.grad as an oracle only)
    x, w = _normal(rng, (2, 8, 7, 3)), _normal(rng, (3, 3, 1, 3))
    pad = (F.same_padding(8, 3, 2), F.same_padding(7, 3, 2))
    loss = lambda conv: lambda x, w: (conv(x, w) ** 2).sum()  # noqa: E731
    mine = jax.jit(jax.grad(loss(lambda x, w: depthwise_taps(x, w, 2, pad)), argnums=(0, 1)))(x, w)
    theirs = jax.jit(jax.grad(loss(lambda x, w: _reference(x, w, 2, pad)), argnums=(0, 1)))(x, w)
    for name, m, t in zip(("x", "w"), mine, theirs):
        m, t = flat(m), flat(t)
        worst = max(abs(a - b) for a, b in zip(m, t)) / max(abs(b) for b in t)
        if not worst < 1e-4:
            raise Wrong(f"the gradient of {name} through yours differs from XLA's convolution's by {worst:.2e} "
                        "(relative): use differentiable jax.numpy operations only")
    return (f"equal to lax.conv_general_dilated (feature_group_count = C) under jit on {len(CASES)} convolutions "
            "(kernels 3 and 5, strides 1 and 2, SAME and uneven padding), and its gradients")
