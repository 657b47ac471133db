"""Checks of lesson 05's exercise: a depthwise separable convolution's cost, counted by hand."""
import contextlib
import random

from .common import Wrong, counting_by_hand, exercise, given


@exercise("05.1", "separable_cost", """Write separable_cost(h, w, c_in, c_out, k, stride) -> (macs, weights)
          of a depthwise k x k convolution (SAME padding, the stride) followed by a 1x1 convolution to c_out
          channels, on an (h, w, c_in) input, no biases; by hand, without building layers.""")
def check_separable_cost(separable_cost):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    rng = random.Random(501)
    cases = [(56, 56, 144, 40, 5, 2), (112, 112, 32, 16, 3, 1), (15, 15, 24, 48, 3, 2)]
    cases += [(rng.randint(5, 60), rng.randint(5, 60), rng.randint(1, 200), rng.randint(1, 200), rng.choice((3, 5)),
               rng.choice((1, 2))) for _ in range(3)]
    for h, w, c_in, c_out, k, stride in cases:
        with _meta_counting() as meta:
            layers = [DepthwiseConv2d(c_in, k, stride, backend="meta"), Conv2d(c_in, c_out, 1, backend="meta")]
            meta.macs = 0
            x = Tensor(meta.full((1, h, w, c_in), 0.0), meta)
            for layer in layers:
                x = layer(x)
            want = (meta.macs, sum(layer.num_parameters() for layer in layers))
        with counting_by_hand("separable_cost"):
            got = tuple(given(separable_cost(h, w, c_in, c_out, k, stride)))
        if got != want:
            raise Wrong(f"{(h, w, c_in, c_out, k, stride)}: the meta backend counts {want[0]:,} MACs and "
                        f"{want[1]:,} weights, yours {got}")
    return f"agrees with the meta backend on {len(cases)} layers"


@contextlib.contextmanager
def _meta_counting():
    """The meta backend, its MAC counter given back as the lesson left it."""
    from backends import get_backend
    meta = get_backend("meta")
    saved = meta.macs
    try:
        yield meta
    finally:
        meta.macs = saved
