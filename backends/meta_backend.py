"""A backend that computes shapes, not values: runs real layer code for free.

Every contract method already works out its result's shape and dtype before calling the
implementation, so this backend only has to skip the call. It also counts the
multiply-accumulates of conv2d and matmul, which is how `python -m tinyeffnet.summary` measures a
B7 at 600x600 in milliseconds on any machine.
"""
import math

from .contract import Backend, FLOAT_DTYPES, INT_DTYPES, PRIMITIVES


class MetaArray:
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype

    def __repr__(self):
        return f"MetaArray(shape={self.shape}, dtype={self.dtype})"


class MetaBackend(Backend):
    name = "meta"
    dtypes = FLOAT_DTYPES + INT_DTYPES
    default_float = "float32"
    shapes_only = True

    def __init__(self):
        self.macs = 0

    def shape(self, x):
        return x.shape

    def dtype(self, x):
        return x.dtype

    def _run(self, op, expected, impl, *args):
        return MetaArray(*expected)

    def __getattr__(self, name):
        # The contract hands _run an implementation it never calls here.
        if name.startswith("_") and name[1:] in PRIMITIVES:
            return None
        raise AttributeError(name)

    def _to_flat(self, x):
        raise TypeError("the meta backend holds shapes only: there are no values to read")

    def _key(self, seed):
        return seed

    def _split_key(self, key, n):
        return [(key, i) for i in range(n)]

    def conv2d(self, x, w, stride=1, padding=((0, 0), (0, 0)), groups=1):
        out = super().conv2d(x, w, stride, padding, groups)
        kh, kw, cin_g, _ = w.shape
        self.macs += math.prod(out.shape) * kh * kw * cin_g
        return out

    def matmul(self, a, b):
        out = super().matmul(a, b)
        self.macs += math.prod(out.shape) * a.shape[-1]
        return out
