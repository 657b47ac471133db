"""The conv primitive's speed: forward + both backward convolutions on B0's shapes, in
multiply-accumulates per second, beside a textbook loop nest in the same process."""
import time

from backends import get_backend

from ..engine.functional import same_padding
from .timing import seconds_per_call


def naive_conv2d(x, xs, w, ws, stride, pad, groups):
    """The textbook loop nest, one multiply-add per Python step: the reference speed."""
    n, h, wd, c = xs
    kh, kw, cg, co = ws
    (pt, pb), (pl, pr) = pad
    oh, ow = (h + pt + pb - kh) // stride + 1, (wd + pl + pr - kw) // stride + 1
    cog = co // groups
    out = [0.0] * (n * oh * ow * co)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for o in range(co):
                    g, acc = o // cog, 0.0
                    for ky in range(kh):
                        iy = oy * stride + ky - pt
                        if 0 <= iy < h:
                            for kx in range(kw):
                                ix = ox * stride + kx - pl
                                if 0 <= ix < wd:
                                    for ci in range(cg):
                                        acc += (x[((b * h + iy) * wd + ix) * c + g * cg + ci]
                                                * w[((ky * kw + kx) * cg + ci) * co + o])
                    out[((b * oh + oy) * ow + ox) * co + o] = acc
    return out


# name, input NHWC, kernel, stride, groups, out channels: shapes from B0's stages 4 and 6
CONV_CASES = [
    ("depthwise 5x5 s1, 14x14x240", (1, 14, 14, 240), 5, 1, 240, 240),
    ("depthwise 5x5 s2, 28x28x144", (1, 28, 28, 144), 5, 2, 144, 144),
    ("1x1 conv 14x14, 40->240", (1, 14, 14, 40), 1, 1, 1, 240),
]


def bench_conv(backend_name, min_seconds=1.0):
    b = get_backend(backend_name)
    results = []
    for name, xs, k, stride, groups, co in CONV_CASES:
        ws = (k, k, xs[3] // groups, co)
        pad = (same_padding(xs[1], k, stride), same_padding(xs[2], k, stride))
        key_x, key_w, key_g = b.split_key(b.key(0), 3)
        x = b.uniform(key_x, xs, -1.0, 1.0)
        w = b.uniform(key_w, ws, -1.0, 1.0)
        y = b.conv2d(x, w, stride, pad, groups)
        dy = b.uniform(key_g, b.shape(y), -1.0, 1.0)
        n, oh, ow, _ = b.shape(y)
        macs = n * oh * ow * co * k * k * ws[2]

        def step():
            out = b.conv2d(x, w, stride, pad, groups)
            gx = b.conv2d_grad_input(dy, w, xs, stride, pad, groups)
            gw = b.conv2d_grad_weight(x, dy, ws, stride, pad, groups)
            return b.to_flat(out)[0] + b.to_flat(gx)[0] + b.to_flat(gw)[0]  # forces jax to finish

        seconds = seconds_per_call(step, min_seconds)
        entry = dict(case=name, macs_per_step=3 * macs, seconds=seconds, macs_per_s=3 * macs / seconds)
        if b.runs_in_python:  # beside the same forward conv written as a textbook loop nest: both pure Python
            xd, wd_ = b.to_flat(x), b.to_flat(w)
            t0 = time.perf_counter()
            naive_conv2d(xd, xs, wd_, ws, stride, pad, groups)
            naive_macs_per_s = macs / (time.perf_counter() - t0)
            entry.update(naive_macs_per_s=naive_macs_per_s, ratio=entry["macs_per_s"] / naive_macs_per_s)
        results.append(entry)
    return results
