"""Reference solutions of lesson 04's exercises."""
import math

from tinyeffnet import Tensor


def same_padding(n, k, s):
    out = math.ceil(n / s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _windows(x_shape, k, out_h, out_w, stride, padding):
    """(n, p, q, a, c, row, col) for every tap of every window that reads a real (unpadded) pixel."""
    (top, _), (left, _) = padding
    n, h, w, _ = x_shape
    for b in range(n):
        for p in range(out_h):
            for q in range(out_w):
                for a in range(k):
                    for c in range(k):
                        row, col = p * stride + a - top, q * stride + c - left  # position in the unpadded x
                        if 0 <= row < h and 0 <= col < w:
                            yield b, p, q, a, c, row, col


def _out_size(size, k, stride, pad):
    return (size + pad[0] + pad[1] - k) // stride + 1


def conv2d_windows(x, w, stride, padding):
    n, h, wd, c_in = x.shape
    k, _, _, c_out = w.shape
    out_h, out_w = _out_size(h, k, stride, padding[0]), _out_size(wd, k, stride, padding[1])
    xs, ws = x.tolist(), w.tolist()
    y = [[[[0.0] * c_out for _ in range(out_w)] for _ in range(out_h)] for _ in range(n)]
    for b, p, q, a, c, row, col in _windows(x.shape, k, out_h, out_w, stride, padding):
        out = y[b][p][q]
        for i in range(c_in):
            xv, taps = xs[b][row][col][i], ws[a][c][i]
            for o in range(c_out):
                out[o] += xv * taps[o]
    return Tensor(y)


def conv_grad_input(dy, w, x_shape, stride, padding):
    n, h, wd, c_in = x_shape
    k, _, _, c_out = w.shape
    _, out_h, out_w, _ = dy.shape
    dys, ws = dy.tolist(), w.tolist()
    dx = [[[[0.0] * c_in for _ in range(wd)] for _ in range(h)] for _ in range(n)]
    for b, p, q, a, c, row, col in _windows(x_shape, k, out_h, out_w, stride, padding):
        g, into = dys[b][p][q], dx[b][row][col]
        for i in range(c_in):
            taps = ws[a][c][i]
            into[i] += sum(g[o] * taps[o] for o in range(c_out))
    return Tensor(dx)


def conv_grad_weight(x, dy, k, stride, padding):
    c_in, c_out = x.shape[3], dy.shape[3]
    xs, dys = x.tolist(), dy.tolist()
    dw = [[[[0.0] * c_out for _ in range(c_in)] for _ in range(k)] for _ in range(k)]
    for b, p, q, a, c, row, col in _windows(x.shape, k, dy.shape[1], dy.shape[2], stride, padding):
        g = dys[b][p][q]
        for i in range(c_in):
            xv, into = xs[b][row][col][i], dw[a][c][i]
            for o in range(c_out):
                into[o] += xv * g[o]
    return Tensor(dw)
