"""The backend contract suite: every registered computing backend must pass all of it.

Values are compared with small, obviously-correct reference implementations written here
with plain nested loops, so the suite checks each backend independently.
"""
import itertools
import math
import random

import pytest

from backends import ContractError, PRIMITIVES, get_backend
from backends.contract import Backend
from tinyeffnet.benchmarks.conv import naive_conv2d

F64 = "float64"


def rand(shape, seed=0, lo=-1.0, hi=1.0):
    rng = random.Random(seed)
    return [rng.uniform(lo, hi) for _ in range(math.prod(shape))]


def close(a, b, tol=1e-12):
    assert len(a) == len(b), (len(a), len(b))
    for i, (x, y) in enumerate(zip(a, b)):
        if math.isnan(x) and math.isnan(y):
            continue
        assert abs(x - y) <= tol * max(1.0, abs(x), abs(y)), f"index {i}: {x} vs {y}"


def arr(b, data, shape, dtype=F64):
    return b.from_flat(data, shape, dtype)


def flat(b, x):
    return b.to_flat(x)


def index(shape, idx):
    out = 0
    for d, i in zip(shape, idx):
        out = out * d + i
    return out


# ----------------------------------------------------------------------------- references
def ref_conv(x, xs, w, ws, stride, padding, groups):
    """The textbook loop nest (tinyeffnet.bench.naive_conv2d) and the output shape."""
    n, h, wd, _ = xs
    kh, kw, _, co = ws
    (pt, pb), (pl, pr) = padding
    shape = (n, (h + pt + pb - kh) // stride + 1, (wd + pl + pr - kw) // stride + 1, co)
    return naive_conv2d(x, xs, w, ws, stride, padding, groups), shape


CONV_CASES = [
    # (x shape, kernel, stride, padding, groups, out channels)
    ((1, 5, 5, 3), 3, 1, ((1, 1), (1, 1)), 1, 4),
    ((2, 7, 7, 2), 3, 2, ((1, 1), (1, 1)), 1, 3),
    ((2, 6, 6, 2), 3, 2, ((0, 1), (0, 1)), 1, 3),      # TF SAME, stride 2, even size
    ((1, 5, 6, 4), 5, 2, ((2, 2), (1, 2)), 4, 4),      # depthwise 5x5, odd/even sizes
    ((2, 4, 4, 3), 1, 1, ((0, 0), (0, 0)), 1, 5),      # pointwise
    ((1, 1, 1, 6), 3, 1, ((1, 1), (1, 1)), 6, 6),      # 1x1 spatial depthwise
    ((1, 5, 5, 4), 3, 1, ((1, 1), (1, 1)), 2, 6),      # general groups
    ((1, 6, 5, 2), 3, 2, ((3, 0), (0, 2)), 1, 2),      # padding larger than kernel - 1
    ((1, 9, 9, 3), 5, 2, ((1, 2), (1, 2)), 3, 3),
    ((2, 8, 8, 4), 3, 2, ((0, 1), (0, 1)), 4, 4),      # depthwise, TF SAME, stride 2, even size
    ((1, 5, 6, 2), 1, 2, ((0, 0), (0, 0)), 2, 2),      # depthwise kernel smaller than its stride
    ((1, 5, 6, 2), 1, 2, ((0, 0), (0, 0)), 1, 3),      # dense 1x1 with stride 2
    ((2, 2, 2, 4), 5, 1, ((2, 2), (2, 2)), 4, 4),      # depthwise 5x5 on a 2x2 map: most taps see padding only
    ((1, 2, 3, 3), 5, 2, ((1, 2), (2, 2)), 3, 3),      # stride 2: taps 1-2 of the rows, every column
]


@pytest.mark.parametrize("xs,k,stride,padding,groups,co", CONV_CASES)
def test_conv2d_and_its_two_backward_convolutions(backend, xs, k, stride, padding, groups, co):
    b = backend
    ws = (k, k, xs[3] // groups, co)
    xd, wdat = rand(xs, 1), rand(ws, 2)
    x, w = arr(b, xd, xs), arr(b, wdat, ws)
    y = b.conv2d(x, w, stride, padding, groups)
    want, ys = ref_conv(xd, xs, wdat, ws, stride, padding, groups)
    assert tuple(b.shape(y)) == ys
    close(flat(b, y), want)
    # The backward convolutions are the adjoints of the forward one: for any dy,
    # <conv(x, w), dy> = <x, grad_input(dy, w)> = <w, grad_weight(x, dy)>.
    dyd = rand(ys, 3)
    dy = arr(b, dyd, ys)
    dx = flat(b, b.conv2d_grad_input(dy, w, xs, stride, padding, groups))
    dw = flat(b, b.conv2d_grad_weight(x, dy, ws, stride, padding, groups))
    # Reference gradients by linearity of the reference conv in each argument.
    ref_dx = [sum(d * v for d, v in zip(dyd, ref_conv([1.0 if j == i else 0.0 for j in range(len(xd))], xs,
                                                       wdat, ws, stride, padding, groups)[0]))
              for i in range(len(xd))]
    ref_dw = [sum(d * v for d, v in zip(dyd, ref_conv(xd, xs, [1.0 if j == i else 0.0 for j in range(len(wdat))],
                                                       ws, stride, padding, groups)[0]))
              for i in range(len(wdat))]
    close(dx, ref_dx, 1e-10)
    close(dw, ref_dw, 1e-10)


def test_elementwise_values(backend):
    b = backend
    xs = [-3.0, -0.5, 0.0, 0.25, 2.0, 40.0]
    pos = [0.1, 0.5, 1.0, 2.0, 3.0, 100.0]
    x, p = arr(b, xs, (2, 3)), arr(b, pos, (2, 3))
    close(flat(b, b.neg(x)), [-v for v in xs])
    close(flat(b, b.exp(x)), [math.exp(v) for v in xs])
    close(flat(b, b.log(p)), [math.log(v) for v in pos])
    close(flat(b, b.sqrt(p)), [math.sqrt(v) for v in pos])
    close(flat(b, b.reciprocal(p)), [1 / v for v in pos])
    close(flat(b, b.sigmoid(x)), [1 / (1 + math.exp(-v)) for v in xs])
    close(flat(b, b.add(x, p)), [u + v for u, v in zip(xs, pos)])
    close(flat(b, b.sub(x, p)), [u - v for u, v in zip(xs, pos)])
    close(flat(b, b.mul(x, p)), [u * v for u, v in zip(xs, pos)])
    close(flat(b, b.div(x, p)), [u / v for u, v in zip(xs, pos)])
    close(flat(b, b.maximum(x, p)), [max(u, v) for u, v in zip(xs, pos)])
    for op, f in [("lt", float.__lt__), ("le", float.__le__), ("gt", float.__gt__),
                  ("ge", float.__ge__), ("eq", float.__eq__), ("ne", float.__ne__)]:
        close(flat(b, b.compare(x, arr(b, [0.0, -0.5, 0.0, 1.0, 2.0, 3.0], (2, 3)), op)),
              [1.0 if f(u, v) else 0.0 for u, v in zip(xs, [0.0, -0.5, 0.0, 1.0, 2.0, 3.0])])
    c = arr(b, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], (2, 3))
    close(flat(b, b.where(c, x, p)), [u if k else v for k, u, v in zip([1, 0, 1, 0, 1, 0], xs, pos)])


def test_ieee_edge_values(backend):
    b = backend
    big = arr(b, [1000.0, -1000.0, 0.0], (3,))
    assert flat(b, b.exp(big))[0] == math.inf
    assert flat(b, b.log(arr(b, [0.0, 1.0, 2.0], (3,))))[0] == -math.inf
    assert math.isnan(flat(b, b.sqrt(arr(b, [-1.0], (1,))))[0])
    s = flat(b, b.sigmoid(big))  # stable for both signs: no overflow, exact limits
    assert s[0] == 1.0 and s[1] == 0.0 and s[2] == 0.5


def test_reductions_keep_rank(backend):
    b = backend
    shape = (2, 3, 4)
    d = rand(shape, 5)
    x = arr(b, d, shape)
    for axes in [(0,), (1,), (2,), (0, 2), (0, 1, 2), (-1,)]:
        ax = tuple(a % 3 for a in axes)
        out_shape = tuple(1 if i in ax else n for i, n in enumerate(shape))
        groups = {}
        for idx in itertools.product(*map(range, shape)):
            key = tuple(0 if i in ax else v for i, v in enumerate(idx))
            groups.setdefault(key, []).append(d[index(shape, idx)])
        keys = list(itertools.product(*map(range, out_shape)))
        s, m = b.sum(x, axes), b.max(x, axes)
        assert tuple(b.shape(s)) == out_shape and tuple(b.shape(m)) == out_shape
        close(flat(b, s), [sum(groups[k]) for k in keys])
        close(flat(b, m), [max(groups[k]) for k in keys])


def test_movement(backend):
    b = backend
    shape = (2, 3, 4)
    d = rand(shape, 6)
    x = arr(b, d, shape)
    close(flat(b, b.reshape(x, (4, 6))), d)
    for order in itertools.permutations(range(3)):
        out_shape = tuple(shape[a] for a in order)
        want = [d[index(shape, tuple(idx[order.index(a)] for a in range(3)))]
                for idx in itertools.product(*map(range, out_shape))]
        close(flat(b, b.permute(x, order)), want)
    e = b.expand(arr(b, d[:3], (1, 3, 1)), (2, 3, 4))
    close(flat(b, e), [d[j] for _ in range(2) for j in range(3) for _ in range(4)])
    pads = ((1, 0), (0, 2), (2, 1))
    p = b.pad(x, pads, 0.0)
    assert tuple(b.shape(p)) == (3, 5, 7)
    pshape = (3, 5, 7)
    pv = flat(b, p)
    for idx in itertools.product(*map(range, pshape)):
        src = tuple(i - lo for i, (lo, _) in zip(idx, pads))
        inside = all(0 <= s < n for s, n in zip(src, shape))
        assert pv[index(pshape, idx)] == (d[index(shape, src)] if inside else 0.0)
    s = b.slice(p, (1, 0, 2), (3, 3, 6))  # slice undoes pad
    close(flat(b, s), d)
    r = b.recompute_from(x)  # only how a compiler schedules what follows may change, never a value
    assert tuple(b.shape(r)) == shape and b.dtype(r) == F64
    assert flat(b, r) == d


def test_matmul_batched(backend):
    b = backend
    for (bs, m, k, n) in [((), 3, 4, 2), ((2,), 2, 5, 3), ((2, 1), 1, 1, 7), ((), 4, 1, 1)]:
        A, B = rand(bs + (m, k), 7), rand(bs + (k, n), 8)
        out = flat(b, b.matmul(arr(b, A, bs + (m, k)), arr(b, B, bs + (k, n))))
        nb = math.prod(bs)
        want = [sum(A[t * m * k + i * k + j] * B[t * k * n + j * n + c] for j in range(k))
                for t in range(nb) for i in range(m) for c in range(n)]
        close(out, want)


def test_creation_and_keys(backend):
    b = backend
    z = b.full((2, 3), 1.5, F64)
    assert tuple(b.shape(z)) == (2, 3) and flat(b, z) == [1.5] * 6
    k = b.key(0)
    k1, k2 = b.split_key(k, 2)
    u1 = flat(b, b.uniform(k1, (1000,), -2.0, 3.0, F64))
    assert u1 == flat(b, b.uniform(k1, (1000,), -2.0, 3.0, F64)), "same key, same numbers"
    assert u1 != flat(b, b.uniform(k2, (1000,), -2.0, 3.0, F64)), "split keys differ"
    assert min(u1) >= -2.0 and max(u1) <= 3.0 and abs(sum(u1) / 1000 - 0.5) < 0.2
    g = flat(b, b.normal(k1, (4000,), F64))
    mean = sum(g) / len(g)
    std = math.sqrt(sum((v - mean) ** 2 for v in g) / len(g))
    assert abs(mean) < 0.08 and abs(std - 1) < 0.08
    labels = b.from_flat([2, 0, 1], (3,), "int32")
    assert flat(b, b.one_hot(labels, 3, F64)) == [0, 0, 1, 1, 0, 0, 0, 1, 0]
    assert b.dtype(b.astype(labels, F64)) == F64


@pytest.mark.parametrize("call,needle", [
    (lambda b: b.add(b.full((2, 3), 0.0), b.full((3, 2), 0.0)), "add: shapes (2, 3) and (3, 2)"),
    (lambda b: b.matmul(b.full((2, 3), 0.0), b.full((2, 3), 0.0)), "matmul: cannot multiply (2, 3) by (2, 3)"),
    (lambda b: b.conv2d(b.full((1, 4, 4, 3), 0.0), b.full((3, 3, 2, 4), 0.0)), "conv2d: input (1, 4, 4, 3) has 3 channels"),
    (lambda b: b.reshape(b.full((2, 3), 0.0), (4, 2)), "reshape: cannot reshape (2, 3) to (4, 2)"),
    (lambda b: b.expand(b.full((2, 3), 0.0), (4, 3)), "expand: cannot expand (2, 3) to (4, 3)"),
    (lambda b: b.sum(b.full((2, 3), 0.0), (2,)), "sum: axis 2 out of range"),
    (lambda b: b.slice(b.full((2, 3), 0.0), (0, 0), (3, 3)), "slice: bounds"),
    (lambda b: b.from_flat([1.0, 2.0], (3,)), "from_flat: 2 values cannot fill shape (3,)"),
    (lambda b: b.compare(b.full((2,), 0.0), b.full((2,), 0.0), "lte"), "compare: unknown comparison"),
])
def test_bad_arguments_raise_one_clear_error(backend, call, needle):
    with pytest.raises(ContractError) as e:
        call(backend)
    assert needle in str(e.value)


def test_contract_catches_a_backend_that_returns_the_wrong_shape():
    class Broken(type(get_backend("python"))):
        name = "broken"

        def _add(self, a, b):
            out = super()._add(a, b)
            return type(out)(out.data[:-1], (len(out.data) - 1,), out.dtype)

    b = Broken()
    with pytest.raises(ContractError, match=r"broken backend broke the contract in add: returned shape \(5,\)"):
        b.add(b.full((2, 3), 1.0), b.full((2, 3), 2.0))


def test_every_primitive_is_implemented(backend):
    for name in PRIMITIVES:
        impl = getattr(type(backend), "_" + name, None)
        assert impl is not None and impl is not getattr(Backend, "_" + name, None), \
            f"{backend.name} backend does not implement {name}"


# ----------------------------------------------------------------------------- host bytes
# Values every float dtype holds exactly, so that a record round trip compares exactly.
RECORD_VALUES = {"float": [0.5, -2.5, 0.375, 1024.0, 0.0, -0.0], "int32": [1, -2, 3, 2 ** 31 - 1, 0, -7]}


def test_records_round_trip_every_dtype(backend):
    from array import array
    from backends.contract import RECORD_CODES
    for dtype in backend.dtypes:
        x = backend.from_flat(RECORD_VALUES["int32" if dtype == "int32" else "float"], (2, 3), dtype)
        stored, shape, raw = backend.to_record(x)
        assert stored == (dtype if dtype in RECORD_CODES else "float32") and shape == (2, 3), dtype
        unpacked = array(RECORD_CODES[stored])
        unpacked.frombytes(raw)
        assert unpacked.tolist() == backend.to_flat(x), dtype
        back = backend.from_record(stored, shape, raw)
        assert backend.dtype(back) == backend.record_dtype(stored) and backend.to_flat(back) == backend.to_flat(x)
    empty = backend.to_record(backend.from_flat([], (0, 3), backend.default_float))
    assert empty[1:] == ((0, 3), b"") and backend.shape(backend.from_record(*empty)) == (0, 3)


def test_records_load_as_a_dtype_the_backend_holds(backend):
    from array import array
    raw = array("f", [0.5, -1.25]).tobytes()
    x = backend.from_record("float32", (2,), raw)
    assert backend.dtype(x) == ("float32" if "float32" in backend.dtypes else backend.default_float)
    assert backend.to_flat(x) == [0.5, -1.25]
    with pytest.raises(ContractError, match=r"^from_record: 7 bytes cannot hold a float32 tensor of shape \(2,\)$"):
        backend.from_record("float32", (2,), raw[:7])
    with pytest.raises(ContractError, match=r"^from_record: unsupported tensor dtype 'uint8' \(supported: float32, "
                                            r"float64, int32\)$"):
        backend.from_record("uint8", (2,), b"ab")


def test_a_record_with_no_stand_in_is_refused():
    from array import array

    class FloatsOnly(type(get_backend("python"))):
        name = "floats-only"
        dtypes = (F64,)

    with pytest.raises(ContractError, match="^from_record: the floats-only backend has no int32 arrays$"):
        FloatsOnly().from_record("int32", (1,), array("i", [1]).tobytes())


def test_the_meta_backend_has_record_shapes_but_no_bytes():
    meta = get_backend("meta")
    x = meta.from_record("float32", (2, 3), bytes(24))
    assert (meta.shape(x), meta.dtype(x)) == ((2, 3), "float32")
    with pytest.raises(TypeError, match="holds shapes only"):
        meta.to_record(x)
