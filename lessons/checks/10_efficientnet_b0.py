"""Checks of lesson 10's exercises: the SEend parameter counts by hand, and the Xavier bound."""
import math
import random

from .common import Wrong, close, counting_by_hand, exercise, given, number


@exercise("10.1", "seend_parameters", """Write seend_parameters(variant, base_count): the parameter count of a
          seend@X variant from base's count, by hand: for every block whose SE moves (block_specs(variant)
          says "end"), take away the SE on in * expand channels and add one on the block's out channels;
          r stays max(1, int(in * 0.25)).""")
def check_seend_parameters(seend_parameters):
    from tinyeffnet.model.efficientnet import EfficientNet
    base = EfficientNet("base", backend="meta").num_parameters()
    for variant in ("seend@hasskip", "seend@noskip", "seend@all", "seend@stage3-5"):
        want = EfficientNet(variant, backend="meta").num_parameters()
        with counting_by_hand("seend_parameters"):
            got = given(seend_parameters(variant, base))
        if got != want:
            raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return "exact for seend@hasskip, seend@noskip, seend@all and seend@stage3-5"


@exercise("10.2", "xavier_limit", """Write xavier_limit(kernel, c_in, c_out, depthwise): the bound of the
          Glorot uniform initial weights of a k x k convolution, sqrt(6 / (fan_in + fan_out)), with
          TensorFlow's fans (the lesson says which, for plain and depthwise kernels).""")
def check_xavier_limit(xavier_limit):
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    rng = random.Random(1002)
    cases = [(3, 3, 32, False), (1, 16, 96, False), (3, 96, 96, True), (5, 240, 240, True)]
    cases += [(rng.choice((1, 3, 5)), c, rng.randint(1, 300), rng.random() < 0.5) for c in (7, 40, 200)]
    for k, c_in, c_out, depthwise in cases:
        layer = DepthwiseConv2d(c_in, k, backend="meta") if depthwise else Conv2d(c_in, c_out, k, backend="meta")
        want = math.sqrt(6.0 / sum(layer.fans))
        got = number(xavier_limit(k, c_in, c_out, depthwise))
        if not close(got, want, 1e-12):
            raise Wrong(f"{'depthwise ' if depthwise else ''}{k}x{k}, {c_in} -> {c_out if not depthwise else c_in}: "
                        f"the library's fans {layer.fans} give {want:.6f}, yours {got:.6f}")
    return f"equal to the library's fans for {len(cases)} plain and depthwise kernels"
