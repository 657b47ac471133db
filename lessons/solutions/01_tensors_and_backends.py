"""Reference solutions of lesson 01's exercises."""
import math


def flat_index(index, shape):
    position = 0
    for i, n in zip(index, shape):  # Horner's rule: each axis multiplies what came before by its size
        position = position * n + i
    return position


def conv_macs(x_shape, kernel_shape, stride, groups):
    n, h, w, _ = x_shape
    k_h, k_w, in_per_group, c_out = kernel_shape
    out_h, out_w = math.ceil(h / stride), math.ceil(w / stride)  # SAME padding
    return n * out_h * out_w * c_out * k_h * k_w * in_per_group
