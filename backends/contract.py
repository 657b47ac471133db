"""The backend contract: the only operations layer code may ask of an array library.

Every public method here does three things, in one place for every backend:
  1. validates its arguments and says, in one line, what is wrong (op name and shapes);
  2. works out the result's shape and dtype from the arguments alone;
  3. calls the backend's implementation (the method of the same name with a leading
     underscore) and checks that what came back has exactly that shape and dtype.

A backend subclasses `Backend` and writes the `_name` methods. It never repeats a shape
rule, so a new backend is either right or fails loudly at the first wrong result.

Conventions: images are NHWC, conv weights HWIO = (kh, kw, in_channels / groups, out);
reductions keep rank (the reduced axes become size 1); dtypes are named by strings.

Beside the array primitives, a backend says which dtypes it holds (`dtypes`) and computes a
network in (`compute_dtypes`), moves arrays to and from host bytes (`to_record`,
`from_record`: what a checkpoint stores) and compiles a function where it can (`compile`).
"""
import math
from array import array

FLOAT_DTYPES = ("float64", "float32", "bfloat16", "float16")
INT_DTYPES = ("int32",)
COMPARISONS = ("lt", "le", "gt", "ge", "eq", "ne")
# The dtypes of a record (to_record / from_record), by their array.array codes; the bytes are
# in the host's order (tinyeffnet._safetensors, which files them, runs on little-endian hosts
# only). 16-bit floats are stored as float32 (array.array has no 16-bit floats; float32 holds
# every bfloat16 and float16 value exactly).
RECORD_CODES = {"float32": "f", "float64": "d", "int32": "i"}
_STORE_AS_FLOAT32 = ("bfloat16", "float16")

assert array("i").itemsize == 4, "int32 records assume a 4-byte C int"


class ContractError(ValueError):
    """An op got arguments it cannot accept, or a backend broke its contract."""


def _shape_str(shape):
    return str(tuple(shape))


def conv2d_output_hw(in_hw, kernel_hw, stride, padding):
    """Spatial output size of a convolution with explicit (lo, hi) padding per axis."""
    return tuple((n + lo + hi - k) // stride + 1
                 for n, k, (lo, hi) in zip(in_hw, kernel_hw, padding))


class Backend:
    """Base class of every backend; see the module docstring for the contract."""

    name = "abstract"
    dtypes = FLOAT_DTYPES + INT_DTYPES   # every dtype an array of this backend can have
    compute_dtypes = FLOAT_DTYPES        # the float dtypes a network computes in here
    default_float = "float64"
    shapes_only = False     # True: arrays carry shapes and dtypes, no values (nothing is computed)
    runs_in_python = False  # True: every value is computed by Python code, one at a time (slow, steppable)
    compiles = False        # True: compile(fn) turns a traced function into one program for its devices

    @property
    def default_compute_dtype(self):
        """The float dtype a network computes in here unless told: the backend's own float."""
        return self.default_float

    def memory_stats(self):
        """What the backend knows of its device memory: {"device": words, "peak_bytes_in_use":
        bytes or None, "note": why it is None, or None}."""
        return dict(device=self.name, peak_bytes_in_use=None,
                    note=f"the {self.name} backend keeps no memory statistics")

    @classmethod
    def resolve_options(cls, **options):
        """The constructor's options with every default filled in: `get_backend` keeps one
        instance per resolved set, so two spellings of the same choice share an instance."""
        return options

    # ----------------------------------------------------------------- inspection
    def shape(self, x):
        raise NotImplementedError

    def dtype(self, x):
        raise NotImplementedError

    # ----------------------------------------------------------------- checking
    def _fail(self, op, message):
        raise ContractError(f"{op}: {message}")

    def _check_dtype(self, op, dtype, allowed=None):
        allowed = allowed or self.dtypes
        if dtype not in allowed:
            self._fail(op, f"dtype {dtype!r} is not supported by the {self.name} backend "
                           f"(use one of {', '.join(allowed)})")

    def _check_float(self, op, *xs):
        for x in xs:
            if self.dtype(x) not in FLOAT_DTYPES:
                self._fail(op, f"needs a float array, got dtype {self.dtype(x)} with shape "
                               f"{_shape_str(self.shape(x))}")

    def _same(self, op, *xs):
        """Same-shape, same-dtype arguments: returns their (shape, dtype)."""
        shapes = [tuple(self.shape(x)) for x in xs]
        dtypes = [self.dtype(x) for x in xs]
        if any(s != shapes[0] for s in shapes):
            self._fail(op, "shapes " + " and ".join(_shape_str(s) for s in shapes)
                       + " differ (broadcast explicitly with expand first)")
        if any(d != dtypes[0] for d in dtypes):
            self._fail(op, "dtypes " + " and ".join(dtypes) + " differ (cast with astype first)")
        return shapes[0], dtypes[0]

    def _axes(self, op, x, axes):
        shape = tuple(self.shape(x))
        rank = len(shape)
        for a in axes:
            if not -rank <= a < rank:
                self._fail(op, f"axis {a} out of range for shape {_shape_str(shape)}")
        axes = tuple(sorted(a % rank for a in axes))
        if len(set(axes)) != len(axes):
            self._fail(op, f"repeated axis in {axes}")
        return axes

    def _run(self, op, expected, impl, *args):
        """Call one implementation and hold it to the shape and dtype the contract expects."""
        out = impl(*args)
        shape, dtype = expected
        got_shape, got_dtype = tuple(self.shape(out)), self.dtype(out)
        if got_shape != tuple(shape) or got_dtype != dtype:
            raise ContractError(
                f"{self.name} backend broke the contract in {op}: returned shape "
                f"{_shape_str(got_shape)} dtype {got_dtype}, expected {_shape_str(shape)} {dtype}")
        return out

    # ----------------------------------------------------------------- creation
    def from_flat(self, data, shape, dtype=None):
        """An array of `shape` from a flat row-major sequence of Python numbers."""
        dtype = dtype or self.default_float
        self._check_dtype("from_flat", dtype)
        shape = tuple(int(d) for d in shape)
        data = list(data)
        if len(data) != math.prod(shape):
            self._fail("from_flat", f"{len(data)} values cannot fill shape {_shape_str(shape)}")
        return self._run("from_flat", (shape, dtype), self._from_flat, data, shape, dtype)

    def to_flat(self, x):
        """The array's values as a flat row-major list of Python numbers (host copy)."""
        return self._to_flat(x)

    # ----------------------------------------------------------------- host bytes
    def to_record(self, x):
        """(dtype, shape, raw bytes) of an array: its values row-major, each in native byte
        order (`RECORD_CODES`); bfloat16 and float16 are stored as float32."""
        dtype, shape = self.dtype(x), tuple(int(d) for d in self.shape(x))
        if dtype in _STORE_AS_FLOAT32:
            x, dtype = self.astype(x, "float32"), "float32"
        if dtype not in RECORD_CODES:
            self._fail("to_record", f"cannot store a {dtype} array of shape {shape} "
                                    f"(supported: {', '.join(RECORD_CODES)}; cast it with astype first)")
        raw = self._to_record(x, dtype)
        if len(raw) != math.prod(shape) * array(RECORD_CODES[dtype]).itemsize:
            raise ContractError(f"{self.name} backend broke the contract in to_record: {len(raw)} bytes "
                                f"for a {dtype} array of shape {shape}")
        return dtype, shape, raw

    def record_dtype(self, dtype):
        """The dtype a stored `dtype` array has once loaded here: its own where this backend
        holds it, else this backend's float (int32 has no stand-in)."""
        if dtype in self.dtypes:
            return dtype
        if dtype == "int32":
            self._fail("from_record", f"the {self.name} backend has no int32 arrays")
        return self.default_float

    def from_record(self, dtype, shape, raw):
        """The array of a (dtype, shape, raw bytes) record, in `record_dtype(dtype)`."""
        shape = tuple(int(d) for d in shape)
        if dtype not in RECORD_CODES:
            self._fail("from_record", f"unsupported tensor dtype {dtype!r} (supported: {', '.join(RECORD_CODES)})")
        if len(raw) != math.prod(shape) * array(RECORD_CODES[dtype]).itemsize:
            self._fail("from_record", f"{len(raw)} bytes cannot hold a {dtype} tensor of shape {shape}")
        target = self.record_dtype(dtype)
        return self._run("from_record", (shape, target), self._from_record, dtype, shape, raw, target)

    def _to_record(self, x, dtype):
        return array(RECORD_CODES[dtype], self.to_flat(x)).tobytes()

    def _from_record(self, dtype, shape, raw, target):
        values = array(RECORD_CODES[dtype])
        values.frombytes(raw)
        return self._from_flat(values.tolist(), shape, target)

    # ----------------------------------------------------------------- compiling
    def compile(self, fn):
        """`fn` (arrays and pytrees of them in and out) as this backend runs it best: one
        compiled program where the backend compiles (JAX: jax.jit), `fn` itself elsewhere."""
        return fn

    def full(self, shape, value, dtype=None):
        dtype = dtype or self.default_float
        self._check_dtype("full", dtype)
        shape = tuple(int(d) for d in shape)
        return self._run("full", (shape, dtype), self._full, shape, value, dtype)

    def key(self, seed):
        """A random key from an integer seed. Keys are values: nothing is global."""
        return self._key(int(seed))

    def split_key(self, key, n=2):
        """`n` independent keys derived from `key`."""
        return list(self._split_key(key, int(n)))

    def uniform(self, key, shape, low=0.0, high=1.0, dtype=None):
        dtype = dtype or self.default_float
        self._check_dtype("uniform", dtype, FLOAT_DTYPES)
        shape = tuple(int(d) for d in shape)
        return self._run("uniform", (shape, dtype), self._uniform, key, shape, low, high, dtype)

    def normal(self, key, shape, dtype=None):
        """Standard normal samples (mean 0, standard deviation 1)."""
        dtype = dtype or self.default_float
        self._check_dtype("normal", dtype, FLOAT_DTYPES)
        shape = tuple(int(d) for d in shape)
        return self._run("normal", (shape, dtype), self._normal, key, shape, dtype)

    def astype(self, x, dtype):
        self._check_dtype("astype", dtype)
        return self._run("astype", (tuple(self.shape(x)), dtype), self._astype, x, dtype)

    def one_hot(self, labels, num_classes, dtype=None):
        """(N,) int32 labels -> (N, num_classes) float rows of 0 and 1."""
        dtype = dtype or self.default_float
        shape = tuple(self.shape(labels))
        if len(shape) != 1 or self.dtype(labels) not in INT_DTYPES:
            self._fail("one_hot", f"labels must be a 1-D int32 array, got shape "
                                  f"{_shape_str(shape)} dtype {self.dtype(labels)}")
        return self._run("one_hot", ((shape[0], int(num_classes)), dtype),
                         self._one_hot, labels, int(num_classes), dtype)

    # ----------------------------------------------------------------- elementwise
    def _unary_op(self, op, x):
        self._check_float(op, x)
        return self._run(op, (tuple(self.shape(x)), self.dtype(x)), getattr(self, "_" + op), x)

    def neg(self, x):
        return self._unary_op("neg", x)

    def exp(self, x):
        return self._unary_op("exp", x)

    def log(self, x):
        return self._unary_op("log", x)

    def sqrt(self, x):
        return self._unary_op("sqrt", x)

    def reciprocal(self, x):
        return self._unary_op("reciprocal", x)

    def sigmoid(self, x):
        """1 / (1 + exp(-x)), evaluated so that neither sign overflows."""
        return self._unary_op("sigmoid", x)

    def _binary_op(self, op, a, b):
        expected = self._same(op, a, b)
        self._check_float(op, a)
        return self._run(op, expected, getattr(self, "_" + op), a, b)

    def add(self, a, b):
        return self._binary_op("add", a, b)

    def sub(self, a, b):
        return self._binary_op("sub", a, b)

    def mul(self, a, b):
        return self._binary_op("mul", a, b)

    def div(self, a, b):
        return self._binary_op("div", a, b)

    def maximum(self, a, b):
        return self._binary_op("maximum", a, b)

    def compare(self, a, b, op):
        """1.0 where `a op b` holds, else 0.0, in a's dtype; op is one of lt le gt ge eq ne."""
        if op not in COMPARISONS:
            self._fail("compare", f"unknown comparison {op!r} (use one of {', '.join(COMPARISONS)})")
        expected = self._same("compare", a, b)
        return self._run("compare", expected, self._compare, a, b, op)

    def where(self, cond, a, b):
        """a where cond != 0, else b; all three of one shape and dtype."""
        expected = self._same("where", cond, a, b)
        return self._run("where", expected, self._where, cond, a, b)

    # ----------------------------------------------------------------- reductions (keep rank)
    def _reduce_op(self, op, x, axes):
        self._check_float(op, x)
        axes = self._axes(op, x, axes)
        shape = tuple(1 if i in axes else d for i, d in enumerate(self.shape(x)))
        return self._run(op, (shape, self.dtype(x)), getattr(self, "_" + op), x, axes)

    def sum(self, x, axes):
        return self._reduce_op("sum", x, axes)

    def max(self, x, axes):
        return self._reduce_op("max", x, axes)

    # ----------------------------------------------------------------- movement
    def reshape(self, x, shape):
        shape = tuple(int(d) for d in shape)
        if math.prod(shape) != math.prod(self.shape(x)):
            self._fail("reshape", f"cannot reshape {_shape_str(self.shape(x))} to {_shape_str(shape)}")
        return self._run("reshape", (shape, self.dtype(x)), self._reshape, x, shape)

    def permute(self, x, order):
        order = tuple(int(a) for a in order)
        shape = tuple(self.shape(x))
        if sorted(order) != list(range(len(shape))):
            self._fail("permute", f"order {order} is not a permutation of the axes of {_shape_str(shape)}")
        return self._run("permute", (tuple(shape[a] for a in order), self.dtype(x)),
                         self._permute, x, order)

    def expand(self, x, shape):
        """Repeat size-1 axes up to `shape` (same rank; broadcasting's one primitive)."""
        shape = tuple(int(d) for d in shape)
        src = tuple(self.shape(x))
        if len(src) != len(shape) or any(s != d and s != 1 for s, d in zip(src, shape)):
            self._fail("expand", f"cannot expand {_shape_str(src)} to {_shape_str(shape)} "
                                 "(same rank, only size-1 axes grow; reshape first)")
        return self._run("expand", (shape, self.dtype(x)), self._expand, x, shape)

    def pad(self, x, pads, value=0.0):
        """Pad each axis by (lo, hi) >= 0 elements of `value`."""
        src = tuple(self.shape(x))
        pads = tuple((int(lo), int(hi)) for lo, hi in pads)
        if len(pads) != len(src) or any(lo < 0 or hi < 0 for lo, hi in pads):
            self._fail("pad", f"needs one non-negative (lo, hi) per axis of {_shape_str(src)}, got {pads}")
        shape = tuple(d + lo + hi for d, (lo, hi) in zip(src, pads))
        return self._run("pad", (shape, self.dtype(x)), self._pad, x, pads, value)

    def slice(self, x, starts, stops):
        """x[starts[0]:stops[0], starts[1]:stops[1], ...] (step 1; pad's inverse)."""
        src = tuple(self.shape(x))
        starts, stops = tuple(int(s) for s in starts), tuple(int(s) for s in stops)
        if (len(starts) != len(src) or len(stops) != len(src)
                or any(not 0 <= a <= b <= d for a, b, d in zip(starts, stops, src))):
            self._fail("slice", f"bounds {starts}..{stops} do not fit shape {_shape_str(src)}")
        shape = tuple(b - a for a, b in zip(starts, stops))
        return self._run("slice", (shape, self.dtype(x)), self._slice, x, starts, stops)

    # ----------------------------------------------------------------- recomputation
    def recompute_from(self, x):
        """x, unchanged. A backward reads what its forward saved through this: a compiling
        backend then computes what the backward derives from x (Swish's sigmoid) where the
        backward needs it, instead of keeping the forward's result of the same expression
        alive from the forward to the backward. Eager backends return x, and so does the JAX
        backend except on the CPU (backends/jax_backend.py says why)."""
        return self._run("recompute_from", (tuple(self.shape(x)), self.dtype(x)), self._recompute_from, x)

    # ----------------------------------------------------------------- processing
    def matmul(self, a, b):
        """(..., m, k) @ (..., k, n) -> (..., m, n); batch axes must match exactly."""
        sa, sb = tuple(self.shape(a)), tuple(self.shape(b))
        if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
            self._fail("matmul", f"cannot multiply {_shape_str(sa)} by {_shape_str(sb)} "
                                 "(need (..., m, k) and (..., k, n) with equal batch axes)")
        _, dtype = self._same_dtype("matmul", a, b)
        return self._run("matmul", (sa[:-1] + sb[-1:], dtype), self._matmul, a, b)

    def _same_dtype(self, op, a, b):
        if self.dtype(a) != self.dtype(b):
            self._fail(op, f"dtypes {self.dtype(a)} and {self.dtype(b)} differ (cast with astype first)")
        self._check_float(op, a)
        return None, self.dtype(a)

    def _conv_args(self, op, x_shape, w_shape, stride, padding, groups):
        stride, groups = int(stride), int(groups)
        padding = tuple((int(lo), int(hi)) for lo, hi in padding)
        if len(x_shape) != 4 or len(w_shape) != 4:
            self._fail(op, f"input {_shape_str(x_shape)} must be NHWC and weight "
                           f"{_shape_str(w_shape)} HWIO")
        n, h, w, c = x_shape
        kh, kw, cin_g, cout = w_shape
        if stride < 1 or groups < 1 or len(padding) != 2 or any(p < 0 for pp in padding for p in pp):
            self._fail(op, f"stride {stride}, groups {groups} and padding {padding} must be "
                           "positive, positive and two non-negative (lo, hi) pairs")
        if c != cin_g * groups or cout % groups:
            self._fail(op, f"input {_shape_str(x_shape)} has {c} channels but weight "
                           f"{_shape_str(w_shape)} expects {cin_g} x groups {groups} "
                           f"(and out channels {cout} divisible by groups)")
        oh, ow = conv2d_output_hw((h, w), (kh, kw), stride, padding)
        if oh < 1 or ow < 1:
            self._fail(op, f"kernel {kh}x{kw} does not fit input {_shape_str(x_shape)} "
                           f"padded by {padding}")
        return (n, oh, ow, cout), stride, padding, groups

    def conv2d(self, x, w, stride=1, padding=((0, 0), (0, 0)), groups=1):
        """Cross-correlation, NHWC input, HWIO weight, explicit (lo, hi) padding per axis."""
        _, dtype = self._same_dtype("conv2d", x, w)
        out, stride, padding, groups = self._conv_args(
            "conv2d", tuple(self.shape(x)), tuple(self.shape(w)), stride, padding, groups)
        return self._run("conv2d", (out, dtype), self._conv2d, x, w, stride, padding, groups)

    def conv2d_grad_input(self, dy, w, x_shape, stride=1, padding=((0, 0), (0, 0)), groups=1):
        """dL/dx of conv2d given dL/dy: itself a convolution, of dy dilated by the stride with
        the kernel flipped in space and its in/out channels swapped."""
        x_shape = tuple(int(d) for d in x_shape)
        _, dtype = self._same_dtype("conv2d_grad_input", dy, w)
        out, stride, padding, groups = self._conv_args(
            "conv2d_grad_input", x_shape, tuple(self.shape(w)), stride, padding, groups)
        if tuple(self.shape(dy)) != out:
            self._fail("conv2d_grad_input", f"output gradient {_shape_str(self.shape(dy))} does "
                                            f"not match the forward's output {_shape_str(out)}")
        return self._run("conv2d_grad_input", (x_shape, dtype), self._conv2d_grad_input,
                         dy, w, x_shape, stride, padding, groups)

    def conv2d_grad_weight(self, x, dy, w_shape, stride=1, padding=((0, 0), (0, 0)), groups=1):
        """dL/dw of conv2d given the input and dL/dy: a correlation of the two."""
        w_shape = tuple(int(d) for d in w_shape)
        _, dtype = self._same_dtype("conv2d_grad_weight", x, dy)
        out, stride, padding, groups = self._conv_args(
            "conv2d_grad_weight", tuple(self.shape(x)), w_shape, stride, padding, groups)
        if tuple(self.shape(dy)) != out:
            self._fail("conv2d_grad_weight", f"output gradient {_shape_str(self.shape(dy))} does "
                                             f"not match the forward's output {_shape_str(out)}")
        return self._run("conv2d_grad_weight", (w_shape, dtype), self._conv2d_grad_weight,
                         x, dy, w_shape, stride, padding, groups)


PRIMITIVES = (
    "from_flat", "to_flat", "full", "key", "split_key", "uniform", "normal", "astype", "one_hot",
    "neg", "exp", "log", "sqrt", "reciprocal", "sigmoid",
    "add", "sub", "mul", "div", "maximum", "compare", "where",
    "sum", "max",
    "reshape", "permute", "expand", "pad", "slice", "recompute_from",
    "matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight",
)
