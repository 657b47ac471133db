"""JAX-backend tests beyond the contract suite.

- The explicit backward convolutions equal jax's own autodiff of `lax.conv_general_dilated`
  (jax.vjp is the oracle here, and only here: project code never uses jax's autodiff).
- Every primitive traces under `jax.jit` and gives the eager values.
- The JAX and Python backends agree on every primitive for the same float64 inputs.
"""
import math
import pathlib
import random

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402

from backends import PRIMITIVES, ContractError, get_backend  # noqa: E402

F64, F32 = "float64", "float32"

# Same cases as CONV_CASES in tests/test_backend_contract.py (copied so that this file does
# not depend on pytest's import mode): (x shape, kernel, stride, padding, groups, out channels)
CONV_CASES = [
    ((1, 5, 5, 3), 3, 1, ((1, 1), (1, 1)), 1, 4),
    ((2, 7, 7, 2), 3, 2, ((1, 1), (1, 1)), 1, 3),
    ((2, 6, 6, 2), 3, 2, ((0, 1), (0, 1)), 1, 3),
    ((1, 5, 6, 4), 5, 2, ((2, 2), (1, 2)), 4, 4),
    ((2, 4, 4, 3), 1, 1, ((0, 0), (0, 0)), 1, 5),
    ((1, 1, 1, 6), 3, 1, ((1, 1), (1, 1)), 6, 6),
    ((1, 5, 5, 4), 3, 1, ((1, 1), (1, 1)), 2, 6),
    ((1, 6, 5, 2), 3, 2, ((3, 0), (0, 2)), 1, 2),
    ((1, 9, 9, 3), 5, 2, ((1, 2), (1, 2)), 3, 3),
    ((2, 8, 8, 4), 3, 2, ((0, 1), (0, 1)), 4, 4),
    ((1, 5, 6, 2), 1, 2, ((0, 0), (0, 0)), 2, 2),
    ((1, 5, 6, 2), 1, 2, ((0, 0), (0, 0)), 1, 3),
    ((2, 2, 2, 4), 5, 1, ((2, 2), (2, 2)), 4, 4),
    ((1, 2, 3, 3), 5, 2, ((1, 2), (2, 2)), 3, 3),
]
# EfficientNet-B0-like layers (TF SAME padding worked out by hand).
B0_CASES = [
    ((2, 15, 15, 40), 5, 2, ((2, 2), (2, 2)), 40, 40),    # depthwise 5x5 s2: out 8
    ((2, 7, 7, 320), 1, 1, ((0, 0), (0, 0)), 1, 1280),    # head 1x1 conv
    ((2, 32, 32, 3), 3, 2, ((0, 1), (0, 1)), 1, 32),      # stem 3x3 s2, even size
    ((2, 16, 16, 24), 3, 1, ((1, 1), (1, 1)), 24, 48),    # channel multiplier 2
    ((2, 8, 8, 12), 3, 2, ((1, 1), (1, 1)), 3, 6),        # grouped, cin_g 4, cout_g 2
]


@pytest.fixture(scope="module")
def jb():
    return get_backend("jax")


def _data(shape, seed, lo=-1.0, hi=1.0):
    rng = random.Random(seed)
    return [rng.uniform(lo, hi) for _ in range(math.prod(shape))]


def rand(shape, seed, dtype=F64):
    # Python numbers through from_flat: no per-shape XLA compile, unlike jax.random.
    return get_backend("jax").from_flat(_data(shape, seed), shape, dtype)


def _values(x):
    return jnp.asarray(x).astype(jnp.float64).reshape(-1).tolist()


def assert_close(got, want, tol):
    """max |got - want| <= tol * max(1, max |want|); nan and inf in the same places.
    Plain Python on host copies: eager jnp reductions would compile once per shape."""
    assert tuple(got.shape) == tuple(want.shape), (got.shape, want.shape)
    got, want = _values(got), _values(want)
    finite = [(u, v) for u, v in zip(got, want) if math.isfinite(v)]
    odd = [(i, u, v) for i, (u, v) in enumerate(zip(got, want))
           if not math.isfinite(v) and not (u == v or (math.isnan(u) and math.isnan(v)))]
    assert not odd, f"non-finite mismatch (index, got, want): {odd[:5]}"
    err = max((abs(u - v) for u, v in finite), default=0.0)
    scale = max([1.0] + [abs(v) for _, v in finite])
    assert err <= tol * scale, f"max error {err:.3g} > {tol:.1g} x {scale:.3g}"


def oracle(x, w, dy, stride, padding, groups):
    """Gradients of the convolution by jax.vjp (tests only)."""
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups,
                                        precision=lax.Precision.HIGHEST)
    y, pullback = jax.vjp(conv, x, w)
    return (y,) + pullback(dy)


# ----------------------------------------------------------------------------- conv oracle
@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (F32, 1e-4)])
@pytest.mark.parametrize("xs,k,stride,padding,groups,co", CONV_CASES + B0_CASES)
def test_backward_convs_equal_jax_vjp(jb, dtype, tol, xs, k, stride, padding, groups, co):
    ws = (k, k, xs[3] // groups, co)
    x, w = rand(xs, 1, dtype), rand(ws, 2, dtype)
    y = jb.conv2d(x, w, stride, padding, groups)
    dy = rand(y.shape, 3, dtype)
    want_y, want_dx, want_dw = oracle(x, w, dy, stride, padding, groups)
    dx = jb.conv2d_grad_input(dy, w, xs, stride, padding, groups)
    dw = jb.conv2d_grad_weight(x, dy, ws, stride, padding, groups)
    assert jb.dtype(dx) == jb.dtype(dw) == dtype
    assert_close(y, want_y, tol)
    assert_close(dx, want_dx, tol)
    assert_close(dw, want_dw, tol)


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (F32, 1e-4), ("bfloat16", 5e-2)])
def test_depthwise_weight_gradient_summed_in_batch_chunks(dtype, tol):
    """The depthwise weight gradient sums a large batch in chunks (a scan); the test's maps are
    small, so chunks of a few bytes force one chunk per image, and of 2 images each."""
    from backends.jax_backend import _depthwise_taps_grad_weight
    xs, k, stride, padding, groups, co = ((6, 9, 9, 4), 5, 2, ((1, 2), (1, 2)), 4, 4)
    ws = (k, k, 1, co)
    x, w = rand(xs, 1, F64), rand(ws, 2, F64)
    dy = rand(get_backend("jax").conv2d(x, w, stride, padding, groups).shape, 3, F64)
    _, _, want = oracle(x, w, dy, stride, padding, groups)
    x, dy = x.astype(dtype), dy.astype(dtype)
    image_bytes = math.prod(xs[1:]) * x.dtype.itemsize
    for chunk_bytes in (1, 2 * image_bytes, 1 << 30):
        got = _depthwise_taps_grad_weight(x, dy, ws, stride, padding, chunk_bytes)
        assert got.dtype == x.dtype
        assert_close(got, want, tol)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_convs_and_matmul_keep_their_dtype(jb, dtype):
    xs, k, stride, padding, groups, co = B0_CASES[0]
    ws = (k, k, xs[3] // groups, co)
    x32, w32 = rand(xs, 1, F32), rand(ws, 2, F32)
    y32 = jb.conv2d(x32, w32, stride, padding, groups)
    dy32 = rand(y32.shape, 3, F32)
    x, w, dy = (jb.astype(t, dtype) for t in (x32, w32, dy32))
    for got, want in [(jb.conv2d(x, w, stride, padding, groups), y32),
                      (jb.conv2d_grad_input(dy, w, xs, stride, padding, groups),
                       jb.conv2d_grad_input(dy32, w32, xs, stride, padding, groups)),
                      (jb.conv2d_grad_weight(x, dy, ws, stride, padding, groups),
                       jb.conv2d_grad_weight(x32, dy32, ws, stride, padding, groups))]:
        assert jb.dtype(got) == dtype
        assert_close(got, want, 5e-2)
    a, b = rand((3, 64, 256), 4, F32), rand((3, 256, 8), 5, F32)
    m = jb.matmul(jb.astype(a, dtype), jb.astype(b, dtype))
    assert jb.dtype(m) == dtype
    assert_close(m, jnp.matmul(a, b, precision="highest"), 5e-2)


# ----------------------------------------------------------------------------- jit
def every_primitive(b, x, w, dy, labels):
    """A small program that calls every primitive except to_flat; returns a dict of arrays."""
    k1, k2 = b.split_key(b.key(7), 2)
    u = b.uniform(k1, (2, 3), -1.0, 2.0, F64)
    g = b.normal(k2, (2, 3), F64)
    c = b.from_flat([0.5, -1.0, 2.0, 0.0, 3.0, -0.25], (2, 3), F64)
    p = b.add(b.exp(c), b.full((2, 3), 1.0, F64))
    e = b.mul(b.sub(b.log(p), b.sqrt(p)), b.div(b.reciprocal(p), b.sigmoid(c)))
    e = b.maximum(b.neg(e), c)
    e = b.where(b.compare(c, u, "lt"), e, g)
    s = b.add(b.sum(e, (1,)), b.expand(b.max(e, (0, 1)), (2, 1)))
    mm = b.matmul(b.permute(b.reshape(e, (3, 2)), (1, 0)), b.reshape(e, (3, 2)))
    pd = b.slice(b.pad(b.recompute_from(mm), ((1, 0), (0, 2)), 0.5), (0, 1), (3, 4))
    oh = b.one_hot(labels, 4, F64)
    ai = b.astype(b.astype(c, "int32"), F64)
    y = b.conv2d(x, w, 2, ((0, 1), (0, 1)), 2)
    dx = b.conv2d_grad_input(dy, w, b.shape(x), 2, ((0, 1), (0, 1)), 2)
    dw = b.conv2d_grad_weight(x, dy, b.shape(w), 2, ((0, 1), (0, 1)), 2)
    return {"u": u, "g": g, "e": e, "s": s, "mm": mm, "pd": pd, "oh": oh, "ai": ai,
            "y": y, "dx": dx, "dw": dw}


def test_every_primitive_traces_under_jit(jb):
    x, w = rand((2, 6, 6, 4), 1), rand((3, 3, 2, 6), 2)
    dy = rand((2, 3, 3, 6), 3)
    labels = jnp.asarray([3, 0, 5, -1], jnp.int32)  # 5 and -1: zero rows
    eager = every_primitive(jb, x, w, dy, labels)
    jitted = jax.jit(lambda *a: every_primitive(jb, *a))(x, w, dy, labels)
    for name in eager:
        assert jb.dtype(jitted[name]) == jb.dtype(eager[name]), name
        assert_close(jitted[name], eager[name], 1e-12)
    assert jb.to_flat(eager["oh"])[8:] == [0.0] * 8
    # The jitted program holds no host callbacks: it is pure XLA.
    text = jax.jit(lambda *a: every_primitive(jb, *a)).lower(x, w, dy, labels).as_text()
    assert "callback" not in text


def test_every_primitive_is_exercised_by_the_jit_program(jb):
    called = set()

    class Recording(type(jb)):
        def __getattribute__(self, name):
            if name.startswith("_") and name[1:] in PRIMITIVES:
                called.add(name[1:])
            return object.__getattribute__(self, name)

    x, w, dy = rand((2, 6, 6, 4), 1), rand((3, 3, 2, 6), 2), rand((2, 3, 3, 6), 3)
    jax.jit(lambda *a: every_primitive(Recording(), *a))(x, w, dy, jnp.zeros(4, jnp.int32))
    assert set(PRIMITIVES) - called == {"to_flat"}


# ----------------------------------------------------------------------------- parity
EDGE = [1000.0, -1000.0, 0.0, -0.0, -1.0, 1e-300, float("inf"), float("-inf"), float("nan"),
        2.5, -3.75, 40.0]


def _parity_programs():
    """name -> function of a backend giving one array; every primitive but to_flat and the
    random ones (whose numbers are backend-specific by design) is covered."""
    A = _data((2, 3, 4), 1)
    B = _data((2, 3, 4), 2, 0.1, 2.0)
    sh = (2, 3, 4)

    def a(b):
        return b.from_flat(A, sh, F64)

    def bb(b):
        return b.from_flat(B, sh, F64)

    def edge(b):
        return b.from_flat(EDGE, (3, 4), F64)

    def edge2(b):
        return b.from_flat(EDGE[::-1], (3, 4), F64)

    progs = {
        "from_flat": lambda b: b.from_flat([1, 2.5, -3], (3,), F64),
        "from_flat:int": lambda b: b.from_flat([1, -2, 7, 0], (2, 2), "int32"),
        "full": lambda b: b.full((2, 3), -1.25, F64),
        "astype:int": lambda b: b.astype(b.from_flat([1.9, -1.9, 0.4, -0.4, 3.0, 7.5], (6,), F64), "int32"),
        "astype:f64": lambda b: b.astype(b.from_flat([3, -2, 0], (3,), "int32"), F64),
        "one_hot": lambda b: b.one_hot(b.from_flat([2, 0, 4, -1, 1], (5,), "int32"), 4, F64),
        "neg": lambda b: b.neg(edge(b)),
        "exp": lambda b: b.exp(edge(b)),
        "log": lambda b: b.log(edge(b)),
        "sqrt": lambda b: b.sqrt(edge(b)),
        "reciprocal": lambda b: b.reciprocal(edge(b)),
        "sigmoid": lambda b: b.sigmoid(edge(b)),
        "add": lambda b: b.add(a(b), bb(b)),
        "sub": lambda b: b.sub(a(b), bb(b)),
        "mul": lambda b: b.mul(a(b), bb(b)),
        "div": lambda b: b.div(a(b), bb(b)),
        "div:edge": lambda b: b.div(edge(b), edge2(b)),
        "div:zero": lambda b: b.div(b.from_flat([1.0, -1.0, 0.0, 2.0], (4,), F64),
                                    b.from_flat([0.0, 0.0, 0.0, -0.0], (4,), F64)),
        "maximum": lambda b: b.maximum(a(b), bb(b)),
        "where": lambda b: b.where(b.compare(a(b), b.full(sh, 0.0, F64), "gt"), a(b), bb(b)),
        "sum": lambda b: b.sum(a(b), (0, 2)),
        "max": lambda b: b.max(a(b), (1,)),
        "reshape": lambda b: b.reshape(a(b), (6, 4)),
        "permute": lambda b: b.permute(a(b), (2, 0, 1)),
        "expand": lambda b: b.expand(b.sum(a(b), (1,)), (2, 5, 4)),
        "pad": lambda b: b.pad(a(b), ((0, 1), (2, 0), (1, 1)), -7.0),
        "slice": lambda b: b.slice(a(b), (1, 0, 1), (2, 2, 4)),
        "recompute_from": lambda b: b.mul(b.recompute_from(a(b)), bb(b)),
        "matmul": lambda b: b.matmul(a(b), b.permute(bb(b), (0, 2, 1))),
    }
    for op in ("lt", "le", "gt", "ge", "eq", "ne"):
        progs["compare:" + op] = (lambda op: lambda b: b.compare(
            a(b), b.where(b.compare(a(b), b.full(sh, 0.0, F64), "gt"), a(b), bb(b)), op))(op)
    for i, (xs, k, stride, padding, groups, co) in enumerate(CONV_CASES):
        ws, seed = (k, k, xs[3] // groups, co), 10 * i
        ys = (xs[0],) + tuple((n + lo + hi - k) // stride + 1 for n, (lo, hi) in zip(xs[1:3], padding)) + (co,)

        def case(xs=xs, ws=ws, ys=ys, seed=seed, s=stride, p=padding, g=groups):
            return (lambda b: b.from_flat(_data(xs, seed), xs, F64),
                    lambda b: b.from_flat(_data(ws, seed + 1), ws, F64),
                    lambda b: b.from_flat(_data(ys, seed + 2), ys, F64), s, p, g)

        x, w, dy, s, p, g = case()
        progs[f"conv2d:{i}"] = (lambda x, w, s, p, g: lambda b: b.conv2d(x(b), w(b), s, p, g))(x, w, s, p, g)
        progs[f"conv2d_grad_input:{i}"] = (lambda dy, w, xs, s, p, g: lambda b: b.conv2d_grad_input(
            dy(b), w(b), xs, s, p, g))(dy, w, xs, s, p, g)
        progs[f"conv2d_grad_weight:{i}"] = (lambda x, dy, ws, s, p, g: lambda b: b.conv2d_grad_weight(
            x(b), dy(b), ws, s, p, g))(x, dy, ws, s, p, g)
    return progs


PARITY = _parity_programs()


@pytest.mark.parametrize("name", sorted(PARITY))
def test_jax_and_python_backends_agree(jb, name):
    py = get_backend("python")
    got, want = PARITY[name](jb), PARITY[name](py)
    assert jb.shape(got) == tuple(py.shape(want))
    assert jb.dtype(got) == py.dtype(want)
    g, w = jb.to_flat(got), py.to_flat(want)
    if py.dtype(want) == "int32":
        assert g == w
        return
    for i, (u, v) in enumerate(zip(g, w)):
        if math.isnan(v) or math.isinf(v):
            assert (math.isnan(u) and math.isnan(v)) or u == v, f"{name}[{i}]: {u} vs {v}"
        else:
            assert abs(u - v) <= 1e-12 * max(1.0, abs(v)), f"{name}[{i}]: {u} vs {v}"


def test_parity_covers_every_deterministic_primitive():
    covered = {name.split(":")[0] for name in PARITY} | {"to_flat"}  # to_flat reads every result
    assert set(PRIMITIVES) - covered == {"key", "split_key", "uniform", "normal"}


def test_random_primitives_match_in_kind(jb):
    # Keys are backend-specific values; what must agree is shape, dtype, range and determinism.
    for b in (jb, get_backend("python")):
        k1, k2, k3 = b.split_key(b.key(3), 3)
        u = b.uniform(k1, (2, 500), -2.0, 3.0, F64)
        assert b.shape(u) == (2, 500) and b.dtype(u) == F64
        vals = b.to_flat(u)
        assert min(vals) >= -2.0 and max(vals) <= 3.0
        assert vals == b.to_flat(b.uniform(k1, (2, 500), -2.0, 3.0, F64))
        assert vals != b.to_flat(b.uniform(k2, (2, 500), -2.0, 3.0, F64))
        n = b.normal(k3, (3, 4), F64)
        assert b.shape(n) == (3, 4) and b.dtype(n) == F64


# ----------------------------------------------------------------------------- creation
def test_from_flat_round_trips_every_dtype(jb):
    vals = [0.0, 1.0, -2.5, 0.125, 1024.0, -0.75] * 1000
    for dtype in ("float64", "float32", "bfloat16", "float16"):
        x = jb.from_flat(vals, (6, 1000), dtype)
        assert jb.dtype(x) == dtype and jb.shape(x) == (6, 1000)
        back = jb.to_flat(x)
        assert all(type(v) is float for v in back[:6]) and back == vals  # all exact in 16 bits
    ints = jb.from_flat([3, -1, 2.9, -2.9], (4,), "int32")
    assert jb.to_flat(ints) == [3, -1, 2, -2]
    assert jb.shape(jb.from_flat([], (0, 3), F32)) == (0, 3)
    assert jb.to_flat(jb.from_flat([2.0], (), F32)) == [2.0]


def test_default_float_is_float32_and_keys_are_typed(jb):
    assert jb.dtype(jb.full((2,), 1.0)) == F32
    assert jb.dtype(jb.from_flat([1.0], (1,))) == F32
    assert jax.dtypes.issubdtype(jb.key(0).dtype, jax.dtypes.prng_key)
    # Seeds beyond 32 bits and negative seeds get distinct keys.
    keys = [jb.key(s) for s in (0, 1, 2 ** 32, 2 ** 32 + 1, -1, 2 ** 40, 2 ** 64 + 5)]
    data = [tuple(jax.random.key_data(k).tolist()) for k in keys]
    assert len(set(data)) == len(data)


def test_float64_without_x64_fails_clearly(jb):
    with jax.enable_x64(False):
        with pytest.raises(ContractError, match="jax_enable_x64"):
            jb.full((2,), 1.0, F64)


def test_float64_records_load_as_float32_without_x64(jb):
    from array import array
    raw = array("d", [0.1, -2.5]).tobytes()
    with jax.enable_x64(False):
        x = jb.from_record("float64", (2,), raw)
        assert jb.dtype(x) == F32 and jb.to_flat(x) == array("f", [0.1, -2.5]).tolist()
    assert jb.dtype(jb.from_record("float64", (2,), raw)) == F64


def test_a_record_of_a_donated_buffer_is_one_line(jb):
    x = jb.from_flat([1.0, 2.0], (2,), F32)
    x.delete()  # what donating it to a jitted step does
    with pytest.raises(ContractError, match=r"^to_record: cannot read a float32 array of shape \(2,\) back from the "
                                            r"device \(\w+\); save outside jit and before donating the buffer$"):
        jb.to_record(x)


def test_module_is_numpy_free():
    src = (pathlib.Path(__file__).parents[1] / "backends" / "jax_backend.py").read_text()
    assert "import numpy" not in src and "from numpy" not in src
    for banned in ("jax.vjp", "jax.grad", "linear_transpose"):
        assert banned not in src, f"{banned} in project code (jax's autodiff is for tests only)"


@pytest.mark.parametrize("kind", ["depthwise", "dense"])
@pytest.mark.parametrize("cpu_form", [True, False])
def test_cpu_formulations_and_conv_ops_agree(kind, cpu_form):
    """Both paths of each conv kind are exact in float64: depthwise by kernel taps or by conv
    ops, dense by matrix products (im2col) or by conv ops; forward and both gradients."""
    from test_backend_contract import CONV_CASES, ref_conv, rand
    forms = ("taps", "matmul") if cpu_form else ("conv", "conv")
    b = get_backend("jax", depthwise=forms[0], dense=forms[1])  # an instance per choice
    assert (b.depthwise, b.dense) == forms
    cases = [c for c in CONV_CASES if (c[4] == c[0][3] == c[5]) == (kind == "depthwise") and (kind == "depthwise"
                                                                                             or c[4] == 1)]
    assert len(cases) >= 3, cases
    py = get_backend("python")
    for xs, k, stride, padding, groups, co in cases:
        ws = (k, k, xs[3] // groups, co)
        xd, wd = rand(xs, 1), rand(ws, 2)
        x, w = b.from_flat(xd, xs, "float64"), b.from_flat(wd, ws, "float64")
        y = b.conv2d(x, w, stride, padding, groups)
        want, ys = ref_conv(xd, xs, wd, ws, stride, padding, groups)
        assert max(abs(u - v) for u, v in zip(b.to_flat(y), want)) < 1e-12
        dy = b.from_flat(rand(ys, 3), ys, "float64")
        pdy, pw, px = py.from_flat(rand(ys, 3), ys), py.from_flat(wd, ws), py.from_flat(xd, xs)
        gx = b.to_flat(b.conv2d_grad_input(dy, w, xs, stride, padding, groups))
        gw = b.to_flat(b.conv2d_grad_weight(x, dy, ws, stride, padding, groups))
        assert max(abs(u - v) for u, v in zip(gx, py.to_flat(py.conv2d_grad_input(pdy, pw, xs, stride, padding, groups)))) < 1e-12
        assert max(abs(u - v) for u, v in zip(gw, py.to_flat(py.conv2d_grad_weight(px, pdy, ws, stride, padding, groups)))) < 1e-12
