"""Reference solutions of lesson 08's exercises."""


def se_parameters(channels, block_in):
    r = max(1, int(block_in * 0.25))
    return channels * r + r + r * channels + channels  # reduce: weights + biases; expand: weights + biases


def se_operations(h, w, c, r):
    pool_adds = h * w * c
    gate_multiplies = h * w * c
    fc_macs = c * r + r * c
    return pool_adds + fc_macs + gate_multiplies
