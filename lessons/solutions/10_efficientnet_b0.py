"""Reference solutions of lesson 10's exercises."""
import math

from tinyeffnet.model.efficientnet import block_specs


def _se(channels, block_in):
    r = max(1, int(block_in * 0.25))
    return 2 * channels * r + r + channels


def seend_parameters(variant, base_count):
    total = base_count
    for spec in block_specs(variant):
        if spec.se_position == "end":
            total -= _se(spec.in_channels * spec.expand_ratio, spec.in_channels)
            total += _se(spec.out_channels, spec.in_channels)
    return total


def xavier_limit(kernel, c_in, c_out, depthwise):
    k = kernel * kernel
    fan_in, fan_out = (k * c_in, k) if depthwise else (k * c_in, k * c_out)
    return math.sqrt(6.0 / (fan_in + fan_out))
