"""Reference solutions of lesson 08's exercises."""
from tinyeffnet import functional as F


def se_forward(x, w_reduce, b_reduce, w_expand, b_expand):
    s = x.mean(axis=(1, 2), keepdims=True)                             # (N, 1, 1, C): squeeze
    s = F.swish(F.conv2d(s, w_reduce) + b_reduce)                      # (N, 1, 1, r)
    gate = F.sigmoid(F.conv2d(s, w_expand) + b_expand)                 # (N, 1, 1, C): excite
    return x * gate
