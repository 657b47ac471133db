"""The pure-Python reference backend: row-major flat lists of Python floats (float64).

Readable first: every primitive is a few lines you can step through. Not wasteful: inner
loops run inside C through `map`, slicing and `sum(map(operator.mul, row, col))` over
contiguous rows, never through per-element index arithmetic in nested Python loops.

Data lists are never mutated after an array is made, so reshape can share them.
"""
import math
import operator
import random

from .contract import Backend, conv2d_output_hw

_COMPARE = {"lt": operator.lt, "le": operator.le, "gt": operator.gt,
            "ge": operator.ge, "eq": operator.eq, "ne": operator.ne}


class PyArray:
    """A flat list of numbers plus a shape: all an n-dimensional array needs."""

    __slots__ = ("data", "shape", "dtype")

    def __init__(self, data, shape, dtype="float64"):
        self.data, self.shape, self.dtype = data, tuple(shape), dtype

    def __repr__(self):
        head = ", ".join(f"{v:.4g}" for v in self.data[:6])
        return f"PyArray(shape={self.shape}, dtype={self.dtype}, [{head}{', ...' if len(self.data) > 6 else ''}])"


def _strides(shape):
    """Row-major strides in elements: the last axis moves by 1."""
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return strides[::-1]


def _gather_index(shape, strides, offset=0):
    """Flat source positions of every element of a `shape` view with the given strides."""
    index = [offset]
    for n, stride in zip(shape, strides):
        if n != 1:
            steps = [j * stride for j in range(n)]
            index = [i + s for i in index for s in steps]
    return index


def _pad_flat(data, shape, pads, value):
    """Pad axis by axis from the innermost out, so every copy moves a whole row."""
    block = 1
    for axis in reversed(range(len(shape))):
        n, (lo, hi) = shape[axis], pads[axis]
        if lo or hi:
            row, left, right = n * block, [value] * (lo * block), [value] * (hi * block)
            out = []
            for start in range(0, len(data), row):
                out += left
                out += data[start:start + row]
                out += right
            data = out
        block *= n + lo + hi
    return data


def _slice_flat(data, shape, starts, stops):
    """The inverse of _pad_flat: keep [start, stop) of each axis, innermost first."""
    block = 1
    for axis in reversed(range(len(shape))):
        n, a, b = shape[axis], starts[axis], stops[axis]
        if a != 0 or b != n:
            row, out = n * block, []
            for start in range(0, len(data), row):
                out += data[start + a * block:start + b * block]
            data = out
        block *= b - a
    return data


def _transpose_flat(data, rows, cols):
    """(rows, cols) row-major -> (cols, rows) row-major, by strided slices."""
    out = []
    for c in range(cols):
        out += data[c::cols]
    return out


def _matmul_flat(a, b, m, k, n):
    """(m, k) @ (k, n) on flat row-major lists.

    Two loop orders give the same numbers. Dot products of rows with columns win in
    general (measured on B0's shapes); row updates ("axpy": out_row += a_ij * b_row) win
    when the inner dimension is tiny, as in a weight gradient over a batch of one.
    """
    if k > 4:
        cols = [b[j::n] for j in range(n)]
        out = []
        for i in range(0, m * k, k):
            row = a[i:i + k]
            out += [sum(map(operator.mul, row, col)) for col in cols]
        return out
    b_rows = [b[j * n:(j + 1) * n] for j in range(k)]
    out = []
    for i in range(0, m * k, k):
        acc = list(map(a[i].__mul__, b_rows[0]))
        for a_ij, b_row in zip(a[i + 1:i + k], b_rows[1:]):
            acc = list(map(operator.add, acc, map(a_ij.__mul__, b_row)))
        out += acc
    return out


def _add_into(acc, part):
    return part if acc is None else list(map(operator.add, acc, part))


def _safe(fn, value):
    """Elementwise math with IEEE results (inf, nan) where Python's math would raise."""
    try:
        return fn(value)
    except (OverflowError, ZeroDivisionError, ValueError):
        if fn is math.exp:
            return math.inf
        if fn is math.log:
            return -math.inf if value == 0 else math.nan
        if fn is math.sqrt:
            return math.nan
        raise


def _exp(v):
    return _safe(math.exp, v)


def _log(v):
    return _safe(math.log, v)


def _sqrt(v):
    return _safe(math.sqrt, v)


def _div(a, b):
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _sigmoid(v):
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


class PythonBackend(Backend):
    name = "python"
    dtypes = ("float64", "int32")  # a float32 record loads as float64 (from_record)
    compute_dtypes = ("float64",)
    default_float = "float64"
    runs_in_python = True

    def shape(self, x):
        return x.shape

    def dtype(self, x):
        return x.dtype

    # ----------------------------------------------------------------- creation
    def _from_flat(self, data, shape, dtype):
        cast = float if dtype == "float64" else int
        return PyArray([cast(v) for v in data], shape, dtype)

    def _to_flat(self, x):
        return list(x.data)

    def _full(self, shape, value, dtype):
        cast = float if dtype == "float64" else int
        return PyArray([cast(value)] * math.prod(shape), shape, dtype)

    def _key(self, seed):
        return seed

    def _split_key(self, key, n):
        rng = random.Random(key)
        return [rng.getrandbits(63) for _ in range(n)]

    def _uniform(self, key, shape, low, high, dtype):
        draw, span = random.Random(key).random, high - low
        return PyArray([low + span * draw() for _ in range(math.prod(shape))], shape, dtype)

    def _normal(self, key, shape, dtype):
        gauss = random.Random(key).gauss
        return PyArray([gauss(0.0, 1.0) for _ in range(math.prod(shape))], shape, dtype)

    def _astype(self, x, dtype):
        cast = float if dtype == "float64" else int
        return PyArray([cast(v) for v in x.data], x.shape, dtype)

    def _one_hot(self, labels, num_classes, dtype):
        out = [0.0] * (len(labels.data) * num_classes)
        for row, label in enumerate(labels.data):
            if 0 <= label < num_classes:  # out-of-range labels give a zero row, as in JAX
                out[row * num_classes + label] = 1.0
        return PyArray(out, (len(labels.data), num_classes), dtype)

    # ----------------------------------------------------------------- elementwise
    def _map(self, fn, *xs):
        return PyArray(list(map(fn, *(x.data for x in xs))), xs[0].shape, xs[0].dtype)

    def _neg(self, x):
        return self._map(operator.neg, x)

    def _exp(self, x):
        return self._map(_exp, x)

    def _log(self, x):
        return self._map(_log, x)

    def _sqrt(self, x):
        return self._map(_sqrt, x)

    def _reciprocal(self, x):
        return self._map(lambda v: _div(1.0, v), x)

    def _sigmoid(self, x):
        return self._map(_sigmoid, x)

    def _add(self, a, b):
        return self._map(operator.add, a, b)

    def _sub(self, a, b):
        return self._map(operator.sub, a, b)

    def _mul(self, a, b):
        return self._map(operator.mul, a, b)

    def _div(self, a, b):
        try:
            return self._map(operator.truediv, a, b)
        except ZeroDivisionError:
            return self._map(_div, a, b)

    def _maximum(self, a, b):
        return self._map(max, a, b)

    def _compare(self, a, b, op):
        return PyArray(list(map(float, map(_COMPARE[op], a.data, b.data))), a.shape, a.dtype)

    def _where(self, cond, a, b):
        return PyArray([x if c else y for c, x, y in zip(cond.data, a.data, b.data)],
                       a.shape, a.dtype)

    # ----------------------------------------------------------------- reductions
    def _reduce(self, x, axes, fn):
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        if list(axes) != list(range(axes[0], axes[-1] + 1)):  # not contiguous: move them last
            kept = [i for i in range(len(x.shape)) if i not in axes]
            x = self._permute(x, kept + list(axes))
            axes = tuple(range(len(kept), len(x.shape)))
        # View the data as (outer, reduced, inner): each output sums a strided run.
        outer = math.prod(x.shape[:axes[0]])
        m = math.prod([x.shape[a] for a in axes])
        inner = math.prod(x.shape[axes[-1] + 1:])
        data, step = x.data, m * inner
        if inner == 1:
            out = [fn(data[i:i + m]) for i in range(0, len(data), m)]
        else:
            out = [fn(data[o * step + i:(o + 1) * step:inner]) for o in range(outer) for i in range(inner)]
        return PyArray(out, shape, x.dtype)

    def _sum(self, x, axes):
        return self._reduce(x, axes, sum)

    def _max(self, x, axes):
        return self._reduce(x, axes, max)

    # ----------------------------------------------------------------- movement
    def _reshape(self, x, shape):
        return PyArray(x.data, shape, x.dtype)

    def _permute(self, x, order):
        shape = tuple(x.shape[a] for a in order)
        if list(order) == sorted(order):
            return PyArray(x.data, shape, x.dtype)
        rank = len(order)
        if rank >= 2 and list(order) == list(range(rank - 2)) + [rank - 1, rank - 2]:
            rows, cols = x.shape[-2:]
            out = []
            for i in range(0, len(x.data), rows * cols):  # a batch of matrix transposes
                out += _transpose_flat(x.data[i:i + rows * cols], rows, cols)
            return PyArray(out, shape, x.dtype)
        strides = _strides(x.shape)
        index = _gather_index(shape, [strides[a] for a in order])
        return PyArray(list(map(x.data.__getitem__, index)), shape, x.dtype)

    def _expand(self, x, shape):
        # From the innermost axis out, repeat each block along every axis that grows.
        data, block = x.data, 1
        for axis in reversed(range(len(shape))):
            n = shape[axis]
            if x.shape[axis] != n:
                if block == 1:
                    data = [v for v in data for _ in range(n)]
                else:
                    out = []
                    for start in range(0, len(data), block):
                        out += data[start:start + block] * n
                    data = out
            block *= n
        return PyArray(data, shape, x.dtype)

    def _pad(self, x, pads, value):
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(x.shape, pads))
        return PyArray(_pad_flat(x.data, x.shape, pads, float(value)), shape, x.dtype)

    def _slice(self, x, starts, stops):
        shape = tuple(b - a for a, b in zip(starts, stops))
        return PyArray(_slice_flat(x.data, x.shape, starts, stops), shape, x.dtype)

    def _recompute_from(self, x):
        return x  # every value here is computed when asked for: nothing is kept or merged

    # ----------------------------------------------------------------- processing
    def _matmul(self, a, b):
        *batch, m, k = a.shape
        n = b.shape[-1]
        out = []
        for i in range(math.prod(batch)):
            out += _matmul_flat(a.data[i * m * k:(i + 1) * m * k], b.data[i * k * n:(i + 1) * k * n], m, k, n)
        return PyArray(out, tuple(batch) + (m, n), a.dtype)

    # A convolution is a sum over kernel taps (ky, kx) of a shifted, strided window of
    # the padded input times that tap's weights: a matmul for a dense conv, a per-channel
    # scale for a depthwise one. Both backward convolutions reuse the same windows.

    @staticmethod
    def _window(xp, n, hp, wp, c, ky, kx, stride, oh, ow):
        """The (n*oh*ow, c) input rows that kernel tap (ky, kx) sees, as one flat list."""
        out = []
        if stride == 1:
            for b in range(n):
                for oy in range(oh):
                    start = ((b * hp + oy + ky) * wp + kx) * c
                    out += xp[start:start + ow * c]
            return out
        picks = [ox * stride * c + ch for ox in range(ow) for ch in range(c)]
        span = ((ow - 1) * stride + 1) * c
        for b in range(n):
            for oy in range(oh):
                start = ((b * hp + oy * stride + ky) * wp + kx) * c
                out += map(xp[start:start + span].__getitem__, picks)
        return out

    def _tap_windows(self, x, kernel_hw, stride, padding, out_hw):
        """(ky, kx, window) for every kernel tap, in row-major tap order: the window is the flat
        (N * OH * OW, C) input rows that tap multiplies (x itself for an unpadded 1x1 stride-1 conv)."""
        n, h, wd, c = x.shape
        (kh, kw), (oh, ow) = kernel_hw, out_hw
        xp, hp, wp = self._padded(x, padding)
        for ky in range(kh):
            for kx in range(kw):
                if kh == kw == stride == 1 and hp == h and wp == wd:
                    yield ky, kx, xp
                else:
                    yield ky, kx, self._window(xp, n, hp, wp, c, ky, kx, stride, oh, ow)

    def _padded(self, x, padding):
        n, h, w, c = x.shape
        (top, bottom), (left, right) = padding
        if top or bottom or left or right:
            data = _pad_flat(x.data, x.shape, ((0, 0), (top, bottom), (left, right), (0, 0)), 0.0)
        else:
            data = x.data
        return data, h + top + bottom, w + left + right

    def _conv2d(self, x, w, stride, padding, groups):
        n, h, wd, c = x.shape
        kh, kw, cin_g, cout = w.shape
        if groups != 1 and not (cin_g == 1 and cout == c):
            return self._grouped(self._conv2d, x, w, stride, padding, groups)
        oh, ow = conv2d_output_hw((h, wd), (kh, kw), stride, padding)
        rows, acc = n * oh * ow, None
        for ky, kx, win in self._tap_windows(x, (kh, kw), stride, padding, (oh, ow)):
            tap = (ky * kw + kx) * cin_g * cout
            if groups == 1:
                acc = _add_into(acc, _matmul_flat(win, w.data[tap:tap + c * cout], rows, c, cout))
            else:  # depthwise: every channel has its own weight for this tap
                acc = _add_into(acc, list(map(operator.mul, win, w.data[tap:tap + c] * rows)))
        return PyArray(acc, (n, oh, ow, cout), x.dtype)

    def _conv2d_grad_input(self, dy, w, x_shape, stride, padding, groups):
        # dL/dx is a stride-1 convolution of the stride-dilated output gradient with the
        # kernel flipped in H and W and its in/out channels swapped within each group.
        n, h, wd, c = x_shape
        kh, kw, cin_g, cout = w.shape
        _, oh, ow, _ = dy.shape
        (top, bottom), (left, right) = padding
        d = self._dilate(dy, stride)
        pads = [(kh - 1 - top, kh - 1 - bottom + (h + top + bottom - kh) - (oh - 1) * stride),
                (kw - 1 - left, kw - 1 - right + (wd + left + right - kw) - (ow - 1) * stride)]
        # A pad larger than the kernel leaves negative amounts here: crop those rows first.
        crop_lo = [max(0, -lo) for lo, _ in pads]
        crop_hi = [max(0, -hi) for _, hi in pads]
        if any(crop_lo) or any(crop_hi):
            d = self._slice(d, (0, crop_lo[0], crop_lo[1], 0),
                            (n, d.shape[1] - crop_hi[0], d.shape[2] - crop_hi[1], cout))
        pads = [(max(0, lo), max(0, hi)) for lo, hi in pads]
        return self._conv2d(d, self._flip_swap(w, groups), 1, pads, groups)

    def _conv2d_grad_weight(self, x, dy, w_shape, stride, padding, groups):
        # dL/dw[ky, kx] correlates each tap's input window with the output gradient.
        n, h, wd, c = x.shape
        kh, kw, cin_g, cout = w_shape
        if groups != 1 and not (cin_g == 1 and cout == c):
            return self._grouped_grad_weight(x, dy, w_shape, stride, padding, groups)
        _, oh, ow, _ = dy.shape
        rows, out = n * oh * ow, []
        for _, _, win in self._tap_windows(x, (kh, kw), stride, padding, (oh, ow)):
            if groups == 1:
                out += _matmul_flat(_transpose_flat(win, rows, c), dy.data, c, rows, cout)
            else:
                prod = list(map(operator.mul, win, dy.data))
                out += [sum(prod[ch::c]) for ch in range(c)]
        return PyArray(out, w_shape, x.dtype)

    # ----------------------------------------------------------------- conv helpers
    def _dilate(self, dy, stride):
        """Insert stride - 1 zeros between output gradient rows and columns."""
        if stride == 1:
            return dy
        n, oh, ow, c = dy.shape
        dw = (ow - 1) * stride + 1
        gap, zero_rows, out = [0.0] * ((stride - 1) * c), [0.0] * ((stride - 1) * dw * c), []
        for b in range(n):
            for oy in range(oh):
                if oy:
                    out += zero_rows
                start = (b * oh + oy) * ow * c
                for ox in range(ow):
                    if ox:
                        out += gap
                    out += dy.data[start + ox * c:start + (ox + 1) * c]
        return PyArray(out, (n, (oh - 1) * stride + 1, dw, c), dy.dtype)

    @staticmethod
    def _flip_swap(w, groups):
        """HWIO (kh, kw, cin_g, cout) -> (kh, kw, cout_g, cin): flipped, channels swapped per group."""
        kh, kw, cin_g, cout = w.shape
        cout_g, cin = cout // groups, cin_g * groups
        out = []
        for ky in reversed(range(kh)):
            for kx in reversed(range(kw)):
                tap = (ky * kw + kx) * cin_g * cout
                block = w.data[tap:tap + cin_g * cout]
                if groups == 1:
                    out += _transpose_flat(block, cin_g, cout)
                elif cin_g == 1 and cout_g == 1:
                    out += block
                else:
                    out += [block[(ci % cin_g) * cout + (ci // cin_g) * cout_g + o]
                            for o in range(cout_g) for ci in range(cin)]
        return PyArray(out, (kh, kw, cout_g, cin), w.dtype)

    def _channels(self, x, lo, hi):
        n, h, w, c = x.shape
        return self._slice(x, (0, 0, 0, lo), (n, h, w, hi))

    @staticmethod
    def _concat_channels(parts, shape):
        widths = [p.shape[-1] for p in parts]
        rows = [[p.data[i:i + wd] for i in range(0, len(p.data), wd)] for p, wd in zip(parts, widths)]
        return PyArray([v for row in zip(*rows) for piece in row for v in piece], shape, parts[0].dtype)

    def _grouped(self, conv, x, w, stride, padding, groups):
        """A general grouped conv: one dense conv per group, outputs side by side."""
        cin_g, cout_g = w.shape[2], w.shape[3] // groups
        parts = [conv(self._channels(x, g * cin_g, (g + 1) * cin_g),
                      self._channels(w, g * cout_g, (g + 1) * cout_g), stride, padding, 1)
                 for g in range(groups)]
        n, oh, ow, _ = parts[0].shape
        return self._concat_channels(parts, (n, oh, ow, w.shape[3]))

    def _grouped_grad_weight(self, x, dy, w_shape, stride, padding, groups):
        kh, kw, cin_g, cout = w_shape
        cout_g = cout // groups
        parts = [self._conv2d_grad_weight(self._channels(x, g * cin_g, (g + 1) * cin_g),
                                          self._channels(dy, g * cout_g, (g + 1) * cout_g),
                                          (kh, kw, cin_g, cout_g), stride, padding, 1)
                 for g in range(groups)]
        return self._concat_channels(parts, w_shape)
