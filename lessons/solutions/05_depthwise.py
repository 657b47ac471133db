"""Reference solutions of lesson 05's exercises."""
import math


def separable_cost(h, w, c_in, c_out, k, stride):
    out_h, out_w = math.ceil(h / stride), math.ceil(w / stride)
    depthwise = out_h * out_w * c_in * k * k
    pointwise = out_h * out_w * c_out * c_in
    return depthwise + pointwise, k * k * c_in + c_in * c_out
