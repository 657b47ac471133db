"""Reference solutions of lesson 04's exercises."""
import math

from tinyeffnet import Tensor


def same_padding(n, k, s):
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv_grad_weight(x, dy, k, stride, padding):
    (top, _), (left, _) = padding
    xs, dys = x.tolist(), dy.tolist()
    n, h, w, c_in = x.shape
    _, out_h, out_w, c_out = dy.shape
    dw = [[[[0.0] * c_out for _ in range(c_in)] for _ in range(k)] for _ in range(k)]
    for b in range(n):
        for p in range(out_h):
            for q in range(out_w):
                for a in range(k):
                    for c in range(k):
                        row, col = p * stride + a - top, q * stride + c - left  # position in the unpadded x
                        if 0 <= row < h and 0 <= col < w:
                            for i in range(c_in):
                                xv = xs[b][row][col][i]
                                for o in range(c_out):
                                    dw[a][c][i][o] += xv * dys[b][p][q][o]
    return Tensor(dw)
