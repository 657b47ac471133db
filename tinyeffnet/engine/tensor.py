"""`Tensor`: a backend array plus what autograd needs (`requires_grad`, `.grad`, the tape).

Operators broadcast NumPy-style: `_broadcast` reshapes and expands both sides to one
shape with the `Expand` Function, whose backward sums the gradient back. No other op
ever reduces a broadcast gradient.
"""
import math

from backends import get_backend

from . import autograd
from . import ops


def _flatten(values):
    """Nested lists -> (flat list, shape)."""
    if not isinstance(values, (list, tuple)):
        return [values], ()
    if not values:
        return [], (0,)
    parts = [_flatten(v) for v in values]
    inner = parts[0][1]
    if any(p[1] != inner for p in parts):
        raise ValueError("Tensor: nested lists are ragged (every row must have the same shape)")
    return [v for p in parts for v in p[0]], (len(values),) + inner


def _unflatten(flat, shape):
    if not shape:
        return flat[0]
    step = len(flat) // shape[0] if shape[0] else 0
    return [_unflatten(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


class Tensor:
    __slots__ = ("data", "backend", "requires_grad", "grad", "_ctx", "retains_grad")
    __array_priority__ = 1000  # let Tensor's reflected operators win over foreign arrays

    def __init__(self, data, backend=None, requires_grad=False, dtype=None):
        backend = get_backend(backend)
        if isinstance(data, (int, float, list, tuple)):
            flat, shape = _flatten(data)
            data = backend.from_flat(flat, shape, dtype)
        self.data, self.backend = data, backend
        self.requires_grad, self.grad, self._ctx, self.retains_grad = requires_grad, None, None, False

    # ------------------------------------------------------------ construction
    @classmethod
    def full(cls, shape, value, backend=None, dtype=None, requires_grad=False):
        b = get_backend(backend)
        return cls(b.full(shape, value, dtype), b, requires_grad)

    @classmethod
    def zeros(cls, shape, backend=None, dtype=None, requires_grad=False):
        return cls.full(shape, 0.0, backend, dtype, requires_grad)

    @classmethod
    def ones(cls, shape, backend=None, dtype=None, requires_grad=False):
        return cls.full(shape, 1.0, backend, dtype, requires_grad)

    @classmethod
    def uniform(cls, key, shape, low=0.0, high=1.0, backend=None, dtype=None, requires_grad=False):
        b = get_backend(backend)
        return cls(b.uniform(key, shape, low, high, dtype), b, requires_grad)

    @classmethod
    def normal(cls, key, shape, std=1.0, backend=None, dtype=None, requires_grad=False):
        b = get_backend(backend)
        out = b.normal(key, shape, dtype)
        if std != 1.0:
            out = b.mul(out, b.full(b.shape(out), std, b.dtype(out)))
        return cls(out, b, requires_grad)

    # ------------------------------------------------------------ inspection
    @property
    def shape(self):
        return tuple(self.backend.shape(self.data))

    @property
    def dtype(self):
        return self.backend.dtype(self.data)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def tolist(self):
        return _unflatten(self.backend.to_flat(self.data), self.shape)

    def to_flat(self):
        return self.backend.to_flat(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item: the tensor has shape {self.shape}, not a single value")
        return self.backend.to_flat(self.data)[0]

    def detach(self):
        return Tensor(self.data, self.backend)

    def retain_grad(self):
        """Keep this intermediate tensor's gradient in .grad after backward."""
        self.retains_grad = True
        return self

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, backend={self.backend.name}{grad})"

    def backward(self, grad=None):
        autograd.backward(self, grad)

    # ------------------------------------------------------------ broadcasting
    def _lift(self, other):
        if isinstance(other, Tensor):
            return other
        return Tensor(self.backend.full((), float(other), self.dtype), self.backend)

    def _broadcast(self, other):
        a, b = self, self._lift(other)
        if a.shape == b.shape:
            return a, b
        rank = max(a.ndim, b.ndim)
        sa, sb = (1,) * (rank - a.ndim) + a.shape, (1,) * (rank - b.ndim) + b.shape
        if any(x != y and x != 1 and y != 1 for x, y in zip(sa, sb)):
            raise ValueError(f"cannot broadcast shapes {a.shape} and {b.shape}")
        shape = tuple(max(x, y) for x, y in zip(sa, sb))
        return a.reshape(sa).expand(shape), b.reshape(sb).expand(shape)

    # ------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return ops.Add.apply(*self._broadcast(other))

    def __radd__(self, other):
        return ops.Add.apply(*reversed(self._broadcast(other)))

    def __sub__(self, other):
        return ops.Sub.apply(*self._broadcast(other))

    def __rsub__(self, other):
        return ops.Sub.apply(*reversed(self._broadcast(other)))

    def __mul__(self, other):
        return ops.Mul.apply(*self._broadcast(other))

    def __rmul__(self, other):
        return ops.Mul.apply(*reversed(self._broadcast(other)))

    def __truediv__(self, other):
        return ops.Div.apply(*self._broadcast(other))

    def __rtruediv__(self, other):
        return ops.Div.apply(*reversed(self._broadcast(other)))

    def __neg__(self):
        return ops.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: the exponent must be a Python number (x ** 2, x ** 0.5)")
        return ops.Pow.apply(self, exponent=exponent)

    def __matmul__(self, other):
        return self.matmul(other)

    def maximum(self, other):
        return ops.Maximum.apply(*self._broadcast(other))

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def swish(self):
        return ops.Swish.apply(self)

    def relu(self):
        return ops.Relu.apply(self)

    def matmul(self, other):
        """(..., m, k) @ (k, n) or (..., k, n): batch axes broadcast."""
        a, b = self, other
        if a.ndim < 2 or b.ndim < 2:
            raise ValueError(f"matmul: both operands need at least 2 axes, got {a.shape} and {b.shape}")
        batch = a.shape[:-2] if len(a.shape) >= len(b.shape) else b.shape[:-2]
        if b.shape[:-2] != batch:
            b = b.reshape((1,) * (len(batch) - b.ndim + 2) + b.shape).expand(batch + b.shape[-2:])
        if a.shape[:-2] != batch:
            a = a.reshape((1,) * (len(batch) - a.ndim + 2) + a.shape).expand(batch + a.shape[-2:])
        return ops.Matmul.apply(a, b)

    # ------------------------------------------------------------ reductions
    def _axes(self, axis):
        if axis is None:
            return tuple(range(self.ndim))
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        return tuple(a % self.ndim for a in axes)

    def _drop(self, out, axes, keepdims):
        if keepdims:
            return out
        return out.reshape(tuple(d for i, d in enumerate(self.shape) if i not in axes))

    def sum(self, axis=None, keepdims=False):
        axes = self._axes(axis)
        return self._drop(ops.Sum.apply(self, axes=axes), axes, keepdims)

    def mean(self, axis=None, keepdims=False):
        axes = self._axes(axis)
        count = 1
        for a in axes:
            count *= self.shape[a]
        return self.sum(axes, keepdims) * (1.0 / count)

    def max(self, axis=None, keepdims=False):
        axes = self._axes(axis)
        return self._drop(ops.Max.apply(self, axes=axes), axes, keepdims)

    # ------------------------------------------------------------ movement
    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            shape = tuple(self.size // known if d == -1 else d for d in shape)
        if tuple(shape) == self.shape:
            return self
        return ops.Reshape.apply(self, shape=tuple(shape))

    def permute(self, *order):
        order = tuple(order[0]) if len(order) == 1 and isinstance(order[0], (tuple, list)) else order
        return ops.Permute.apply(self, order=tuple(order))

    def transpose(self, a=-2, b=-1):
        order = list(range(self.ndim))
        order[a], order[b] = order[b], order[a]
        return self.permute(order)

    @property
    def T(self):
        return self.transpose()

    def expand(self, shape):
        shape = tuple(shape)
        if shape == self.shape:
            return self
        return ops.Expand.apply(self, shape=shape)

    def pad(self, pads, value=0.0):
        return ops.Pad.apply(self, pads=tuple(tuple(p) for p in pads), value=value)

    def slice(self, starts, stops):
        return ops.Slice.apply(self, starts=tuple(starts), stops=tuple(stops))

    def astype(self, dtype):
        """A cast. Its gradient is cast back, so mixed precision keeps float32 masters."""
        if dtype == self.dtype:
            return self
        return ops.Cast.apply(self, dtype=dtype)
