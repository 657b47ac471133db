"""Reference solutions of lesson 09's exercises."""


def _se(channels, block_in):
    r = max(1, int(block_in * 0.25))
    return 2 * channels * r + r + channels


def mbconv_parameters(spec):
    c_in, c_out, k = spec.in_channels, spec.out_channels, spec.kernel
    mid = c_in * spec.expand_ratio
    total = (c_in * mid + 2 * mid) if spec.expand_ratio != 1 else 0  # expand 1x1 + BN
    total += k * k * mid + 2 * mid                                    # depthwise + BN
    total += mid * c_out + 2 * c_out                                  # project 1x1 + BN
    if spec.se_position == "dw":
        total += _se(mid, c_in)
    elif spec.se_position == "end":
        total += _se(c_out, c_in)
    return total
