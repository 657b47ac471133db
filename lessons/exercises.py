"""The course's exercises and their checks.

An exercise has an id ("04.2": lesson 04, second exercise), the name of what the learner
writes (a function, a class or a value), the task, and a check. A check gets the learner's
answer and returns a short note when it is right; raises `Unfinished` when it is not
written yet (a learner's `NotImplementedError`, a `None` or `...` answer count the same);
raises `Wrong` with what is wrong otherwise.

Most exercises build a piece of the engine (a backward, a convolution, batch norm, a block's
forward, the training step, a JAX kernel): the check runs the learner's piece on random
inputs, shapes and parameters against the library (its functions, autograd, finite
differences), never against a copy of the answer. The three counting exercises (05.1, 10.1,
16.2) must count by hand: building a model inside them is refused (`_counting_by_hand`).
tests/test_lessons.py feeds every check at least two plausible wrong answers.

`as_function(forward, backward)` plugs a learner's Tensor-level forward and backward into
the engine as a `Function`, so the lessons run their own checks (finite differences,
autograd) on the learner's piece.
"""
import contextlib
import decimal
import itertools
import math
import random
import struct
from dataclasses import dataclass


class Unfinished(Exception):
    """The answer is not written yet."""


class Wrong(Exception):
    """The answer is written, and wrong: the message says how."""


@dataclass
class Exercise:
    id: str
    name: str
    task: str
    check: object
    builds: str = ""  # what of the engine the learner writes ("" for a counting exercise)

    def run(self, answer, **context):
        """('passed' | 'todo' | 'wrong', message)."""
        if answer is None or answer is Ellipsis:
            return "todo", self.task
        try:
            note = self.check(answer, **context)
        except (Unfinished, NotImplementedError) as e:
            return "todo", (f"{e} " if isinstance(e, Unfinished) and str(e) else "") + self.task
        except Wrong as e:
            return "wrong", str(e)
        except AssertionError as e:
            return "wrong", str(e) or "an assertion failed"
        except RecursionError:
            return "wrong", "your code hit Python's recursion limit: walk the graph with an explicit stack"
        except Exception as e:  # the learner's code crashed: say where it hurts
            return "wrong", f"your code raised {type(e).__name__}: {e}"
        return "passed", note or ""


EXERCISES = {}


def exercise(exercise_id, name, task, builds=""):
    def register(check):
        EXERCISES[exercise_id] = Exercise(exercise_id, name, " ".join(task.split()), check, builds)
        return check
    return register


def of_lesson(number):
    return sorted(i for i in EXERCISES if i.startswith(number + "."))


def given(value):
    """A value the learner's code returned; None or ... mean it is not written yet."""
    if value is None or value is Ellipsis:
        raise Unfinished()
    return value


def _close(got, want, rel=1e-9, abs_=1e-12):
    return abs(got - want) <= max(abs_, rel * abs(want))


def _flat(value):
    """A Tensor, backend array or nested list as a flat list of floats."""
    from tinyeffnet import Tensor
    value = given(value)
    if isinstance(value, Tensor):
        return value.to_flat()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)] if value and isinstance(value[0], (list, tuple)) \
            else [float(v) for v in value]
    if hasattr(value, "shape"):  # a backend array
        from backends import get_backend
        return get_backend("python").to_flat(value)
    return [float(value)]


def _shape(value):
    from tinyeffnet import Tensor
    if isinstance(value, Tensor):
        return value.shape
    if isinstance(value, (list, tuple)):
        return (len(value),) + (_shape(value[0]) if value and isinstance(value[0], (list, tuple)) else ())
    return tuple(getattr(value, "shape", ()))


def _same(label, got, want, rel=1e-9, abs_=1e-10):
    """Raise Wrong unless `got` (Tensor or nested lists) has `want`'s (a Tensor's) shape and values."""
    shape = _shape(given(got))
    if shape != want.shape:
        raise Wrong(f"{label}: the result should have shape {want.shape}, yours has {shape}")
    mine, theirs = _flat(got), want.to_flat()
    worst = max((abs(a - b) for a, b in zip(mine, theirs)), default=0.0)
    if not all(_close(a, b, rel, abs_) for a, b in zip(mine, theirs)):
        raise Wrong(f"{label}: differs from the library's (largest difference {worst:.2e})")
    return worst


def _number(value):
    value = given(value)
    return value.item() if hasattr(value, "item") else float(value)


def _python():
    from backends import get_backend
    return get_backend("python")


@contextlib.contextmanager
def _counting_by_hand(what):
    """Counting exercises count by hand: any model, layer or meta-backend array made inside
    the learner's code is the shortcut the exercise is about, and is refused."""
    from backends import get_backend
    from tinyeffnet.nn.module import Module
    meta, init = get_backend("meta"), Module.__init__
    saved = meta.full

    def refuse(*args, **kwargs):
        raise Wrong(f"{what} must be counted by hand from the shapes, without building a model or layer "
                    "(build_model / the meta backend are the answer the check compares with)")
    Module.__init__, meta.full = refuse, refuse
    try:
        yield
    finally:
        Module.__init__, meta.full = init, saved


def as_function(forward, backward, name="Learners"):
    """A `Function` whose forward and backward are a learner's Tensor-level functions:
    forward(*tensors, **params) -> Tensor and backward(*tensors, dy, **params) -> one
    gradient (Tensor or None) per input. Inside, nothing is recorded on the tape."""
    from tinyeffnet import Function, Tensor, no_grad

    class Plugged(Function):
        def forward(self, *arrays, **params):
            self.inputs, self.params = [Tensor(a, self.backend) for a in arrays], params
            with no_grad():
                return self._array(given(forward(*self.inputs, **params)))

        def backward(self, grad):
            with no_grad():
                grads = given(backward(*self.inputs, Tensor(grad, self.backend), **self.params))
            if len(grads) != len(self.inputs):
                raise Wrong(f"the backward returned {len(grads)} gradients for {len(self.inputs)} inputs")
            return tuple(None if g is None else self._array(g) for g in grads)

        def _array(self, value):  # a Tensor or nested lists, as the exercises allow
            return value.data if isinstance(value, Tensor) else Tensor(value, self.backend).data

    Plugged.__name__ = Plugged.__qualname__ = name
    return Plugged


def _random_shape(rng, rank, low=1, high=4):
    return tuple(rng.randint(low, high) for _ in range(rank))


# ---------------------------------------------------------------------------- lesson 01
@exercise("01.1", "flat_index", """Write flat_index(index, shape): the position of element `index` (a tuple
          such as (n, h, w, c)) in the flat row-major list of an array of `shape`.""")
def _check_flat_index(flat_index):
    from tinyeffnet import Tensor
    rng = random.Random(101)
    shapes = [(5,), (2, 3), (3, 1, 5)] + [_random_shape(rng, rank, 1, 5) for rank in (2, 3, 4, 4)]
    for shape in shapes:
        values = Tensor(_python().from_flat(list(range(math.prod(shape))), shape)).tolist()
        for index in itertools.product(*map(range, shape)):
            want = values
            for i in index:
                want = want[i]
            got = given(flat_index(index, shape))
            if got != int(want):
                raise Wrong(f"flat_index({index}, {shape}) = {got}, but that element sits at {int(want)}")
    return f"right for every element of {len(shapes)} shapes"


@exercise("01.2", "expand_flat", """Write expand_flat(values, shape, new_shape): the backend primitive
          `expand` on flat row-major storage. `values` holds an array of `shape`; every axis of size 1 may
          grow to new_shape's size there (same rank), its values repeated along it. Return the flat list of
          the expanded array. Hint: for each position of the result, find the source position with
          flat_index, reading index 0 on the grown axes.""", builds="the backend's expand (broadcasting)")
def _check_expand_flat(expand_flat):
    py = _python()
    rng = random.Random(102)
    cases = [((1, 3), (2, 3)), ((2, 1), (2, 4)), ((1, 2, 1), (3, 2, 2))]
    for _ in range(6):
        new_shape = _random_shape(rng, rng.randint(2, 4), 1, 4)
        shape = tuple(1 if rng.random() < 0.5 else n for n in new_shape)
        cases.append((shape, new_shape))
    for shape, new_shape in cases:
        values = [round(rng.uniform(-9, 9), 3) for _ in range(math.prod(shape))]
        want = py.to_flat(py.expand(py.from_flat(values, shape), new_shape))
        got = [float(v) for v in given(expand_flat(list(values), shape, new_shape))]
        if got != want:
            raise Wrong(f"{shape} -> {new_shape}: the backend gives {want[:12]}{'...' if len(want) > 12 else ''}, "
                        f"yours {got[:12]}{'...' if len(got) > 12 else ''}")
    return f"equal to the python backend's expand on {len(cases)} shapes, grown axes first, middle and last"


# ---------------------------------------------------------------------------- lesson 02
def _function_class(cls):
    from tinyeffnet import Function
    if not (isinstance(cls, type) and issubclass(cls, Function)):
        raise Wrong(f"expected a subclass of tinyeffnet.Function, got {cls!r}")


@exercise("02.1", "expression_grads", """Write expression_grads(a, b) -> (dL/da, dL/db) for
          L = sigmoid(a*b + a*a) * 3, by hand with the chain rule (floats in, floats out; sigmoid' = s (1 - s)).""")
def _check_expression_grads(expression_grads):
    from tinyeffnet import Tensor
    rng = random.Random(201)
    points = [(2.0, -3.0)] + [(rng.uniform(-2, 2), rng.uniform(-2, 2)) for _ in range(5)]
    for a0, b0 in points:
        a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
        ((a * b + a * a).sigmoid() * 3.0).backward()
        got = given(expression_grads(a0, b0))
        want = (a.grad.item(), b.grad.item())
        if len(got) != 2 or not all(_close(g, w, 1e-9) for g, w in zip(got, want)):
            raise Wrong(f"at a={a0:.4f}, b={b0:.4f} autograd gives (dL/da, dL/db) = ({want[0]:.6f}, {want[1]:.6f}), "
                        f"yours {tuple(round(g, 6) for g in got)}")
    return f"matches autograd at {len(points)} points"


@exercise("02.2", "Tanh", """Write Tanh, a Function: forward returns tanh(x) from backend primitives
          (tanh(x) = 2 sigmoid(2x) - 1; there is no tanh primitive) and keeps what backward needs; backward
          returns the input's gradient (tanh' = 1 - tanh^2).""", builds="a Function (forward and backward)")
def _check_tanh(Tanh):
    from tinyeffnet import Tensor
    from tinyeffnet.engine.gradcheck import GradcheckError, check_elementwise
    _function_class(Tanh)
    v = Tensor.normal(202, (2, 5), std=1.5, requires_grad=True)
    for x, y in zip(v.to_flat(), Tanh.apply(v).to_flat()):
        if not _close(y, math.tanh(x), 1e-12):
            raise Wrong(f"forward: tanh({x}) is {math.tanh(x):.12f}, yours gives {y:.12f}")
    try:
        error = check_elementwise(lambda v: Tanh.apply(v), [v])
    except GradcheckError as e:
        raise Wrong(f"backward: {e}") from None
    return f"forward exact, backward within {error:.0e} of finite differences"


def _graphs(rng):
    """Pairs (make, leaves): `make(leaves)` builds a graph on fresh leaves; the same graph is
    built twice, once for the library's backward and once for the learner's."""
    from tinyeffnet import Tensor

    def leaves(*shapes):
        return lambda: [Tensor.normal(rng.randrange(10 ** 6), s, requires_grad=True) for s in shapes]

    def diamond(t):
        (a,) = t
        h = a.sigmoid()
        return (h * h + h * 3.0 + (h * a).exp()).sum()

    def shared(t):
        a, b, bias = t
        h = (a * b + bias).swish()
        return ((h * a - h / 3.0) * (h + b)).mean()

    def chain(t):
        (z,) = t
        h = z
        for i in range(3000):
            h = h + 0.001 * (i % 3)
        return (h * h).sum()

    def matmul(t):
        x, w, v = t
        h = (x @ w).sigmoid()
        return ((h @ v) * (h @ v)).sum() + (w * w).sum()

    return [(diamond, leaves((3,))), (shared, leaves((2, 3), (2, 3), (3,))), (chain, leaves((2,))),
            (matmul, leaves((2, 3), (3, 4), (4, 2)))]


@exercise("02.3", "run_backward", """Write run_backward(root): fill `.grad` of every leaf that `root` (a
          scalar Tensor) depends on, as Tensor.backward does. Order the tensors so that each comes after all
          of its inputs (an iterative depth-first search with an explicit stack: a chain of 3000 ops must
          work), then walk that order backwards from root's gradient 1.0, handing each node's complete
          gradient to ctx.backward and adding up what each parent receives; a leaf (no _ctx) adds its
          gradient to any .grad it already has. node._ctx.parents, ctx.needs_grad, ctx.backward(g) and
          node.backend.add are all you need.""", builds="backward: the topological order and gradient accumulation")
def _check_run_backward(run_backward):
    from tinyeffnet import Tensor
    rng = random.Random(203)
    for make, leaves in _graphs(rng):
        theirs = leaves()
        mine = [Tensor(t.data, requires_grad=True) for t in theirs]
        make(theirs).backward()
        run_backward(make(mine))
        for i, (m, t) in enumerate(zip(mine, theirs)):
            if m.grad is None:
                raise Wrong(f"graph '{make.__name__}': leaf {i} got no .grad")
            _same(f"graph '{make.__name__}', leaf {i}'s gradient", m.grad, t.grad, 1e-9, 1e-12)
    # calling it twice accumulates, as the library's does
    a = Tensor([1.0, 2.0], requires_grad=True)
    run_backward((a * a).sum())
    run_backward((a * 3.0).sum())
    if a.grad is None or a.grad.to_flat() != [5.0, 7.0]:
        raise Wrong(f"two backward passes must add up in .grad: 2a + 3 = [5, 7], yours {a.grad and a.grad.to_flat()}")
    return "equal to the library's backward on four graphs (shared nodes, a 3000-op chain), and it accumulates"


@exercise("02.4", "unbroadcast", """Write unbroadcast(grad, shape): the gradient of a broadcast input. `grad`
          (a Tensor) has the broadcast result's shape; sum it back to `shape`, which may have fewer axes
          (missing in front) and axes of size 1 where grad's are larger. Tensor.sum(axis=..., keepdims=...)
          and reshape do it.""", builds="the broadcast reduction (Expand's backward)")
def _check_unbroadcast(unbroadcast):
    from tinyeffnet import Tensor
    rng = random.Random(204)
    cases = [((2, 3), (3,)), ((2, 3), (2, 1)), ((4, 2, 3), (2, 1)), ((2, 3, 4), (1, 3, 1)), ((3,), ())]
    for _ in range(4):
        big = _random_shape(rng, rng.randint(2, 4), 2, 4)
        small = tuple(1 if rng.random() < 0.5 else n for n in big[rng.randint(0, len(big) - 1):])
        cases.append((big, small))
    for big, small in cases:
        x = Tensor.normal(rng.randrange(10 ** 6), big)
        b = Tensor.normal(rng.randrange(10 ** 6), small, requires_grad=True)
        dy = Tensor.normal(rng.randrange(10 ** 6), big)
        ((x + b) * dy).sum().backward()  # d/db = dy summed back to b's shape
        _same(f"unbroadcast(grad of shape {big}, {small})", given(unbroadcast(dy, small)), b.grad)
    return f"equal to autograd's broadcast gradient for {len(cases)} shape pairs"


# ---------------------------------------------------------------------------- lesson 03
def _taylor_leading_error(x, eps):
    """The central difference's error of exp at x, its leading term measured: the error at a
    tiny step in 60-digit arithmetic (no round-off), divided by that step squared, times eps^2."""
    with decimal.localcontext() as c:
        c.prec = 60
        d, h = decimal.Decimal(x), decimal.Decimal("1e-12")
        error = ((d + h).exp() - (d - h).exp()) / (2 * h) - d.exp()
        return float(error / (h * h)) * eps * eps


@exercise("03.1", "central_error", """Write central_error(x, eps): the PREDICTED error of the central difference
          (f(x + eps) - f(x - eps)) / (2 eps) - f'(x) for f = exp, its leading Taylor term (expand f(x + eps)
          and f(x - eps) to the eps^3 term and subtract). Not the measured error: at tiny eps round-off
          hides it, at large eps higher terms add to it.""")
def _check_central_error(central_error):
    rng = random.Random(301)
    for x in [1.0] + [rng.uniform(-2, 2) for _ in range(3)]:
        for eps in (0.5, 0.3, 1e-2, 1e-7):
            want = _taylor_leading_error(x, eps)
            got = _number(central_error(x, eps))
            if not _close(got, want, 1e-6):
                measured = abs((math.exp(x + eps) - math.exp(x - eps)) / (2 * eps) - math.exp(x))
                raise Wrong(f"at x = {x:.4f}, eps = {eps:g} the leading Taylor term is {want:.6e}, yours {got:.6e} "
                            f"(the measured float64 error is {measured:.6e}: a prediction differs from it)")
    return "equal to the leading Taylor term at four points, eps from 0.5 (higher terms matter) to 1e-7 (round-off)"


@exercise("03.2", "numeric_grad", """Write numeric_grad(f, x, index, eps=1e-5): the central difference
          (f(x + eps e_i) - f(x - eps e_i)) / (2 eps) of a scalar-valued f at Tensor x, nudging flat element
          `index` only. Build the nudged tensors from x.to_flat() and x.shape.""",
          builds="gradcheck's numerical gradient")
def _check_numeric_grad(numeric_grad):
    from tinyeffnet import Tensor
    functions = [("sum(x^3)", lambda t: (t * t * t).sum()), ("mean(x sigmoid(x))", lambda t: (t.sigmoid() * t).mean()),
                 ("log(sum(exp(x)))", lambda t: t.exp().sum().log())]
    for seed, (label, f) in enumerate(functions):
        shape = ((2, 3), (4,), (1, 2, 3))[seed]
        x = Tensor.normal(302 + seed, shape, requires_grad=True)
        f(x).backward()
        analytic = x.grad.to_flat()
        for index in range(x.size):
            got = _number(numeric_grad(f, Tensor(x.data), index))
            if not _close(got, analytic[index], 1e-7, 1e-9):
                raise Wrong(f"{label}, shape {shape}, element {index}: the derivative is {analytic[index]:.10f}, "
                            f"yours {got:.10f} (off by {abs(got - analytic[index]):.1e}: one-sided differences are "
                            "off by about eps, central ones by eps^2)")
    return "within 1e-7 of autograd for three functions and shapes, every element"


# ---------------------------------------------------------------------------- lesson 04
@exercise("04.1", "same_padding", """Write same_padding(n, k, s) -> (lo, hi), TensorFlow's SAME padding of one
          axis (the lesson's three sentences say how).""", builds="SAME padding")
def _check_same_padding(same_padding):
    from tinyeffnet import functional as F
    for n, k, s in itertools.product(range(1, 41), (1, 2, 3, 5, 7), (1, 2, 3)):
        got, want = tuple(given(same_padding(n, k, s))), F.same_padding(n, k, s)
        if got != want:
            raise Wrong(f"size {n}, kernel {k}, stride {s}: TensorFlow pads {want}, yours {got}")
    return "equal to TensorFlow's rule for 600 (size, kernel, stride) cases"


def _conv_cases(seed):
    """Random convolutions: (x, w, stride, padding) with odd and even sizes, kernels 1-5,
    strides 1-2, SAME and VALID and uneven explicit padding."""
    from tinyeffnet import Tensor, functional as F
    rng = random.Random(seed)
    cases = []
    for i in range(5):
        n, h, w, c_in, c_out = rng.randint(1, 2), rng.randint(4, 7), rng.randint(4, 7), rng.randint(1, 3), rng.randint(1, 3)
        k, stride = rng.choice((1, 2, 3, 3, 5)), rng.choice((1, 2, 2))
        kind = ("SAME", "SAME", "VALID", "explicit", "SAME")[i]
        if kind == "SAME":
            pad = (F.same_padding(h, k, stride), F.same_padding(w, k, stride))
        elif kind == "VALID":
            pad = ((0, 0), (0, 0))
        else:
            pad = ((rng.randint(0, 2), rng.randint(0, 2)), (rng.randint(0, 2), rng.randint(0, 2)))
        if h + sum(pad[0]) < k or w + sum(pad[1]) < k:
            pad = ((k, k), (k, k))
        cases.append((Tensor.normal(rng.randrange(10 ** 6), (n, h, w, c_in)),
                      Tensor.normal(rng.randrange(10 ** 6), (k, k, c_in, c_out)), stride, pad))
    return cases


def _dot(a, b):
    return sum(p * q for p, q in zip(_flat(a), _flat(b)))


@exercise("04.2", "conv_grad_weight", """Write conv_grad_weight(x, dy, k, stride, padding): the gradient of
          the kernel, shape (k, k, C_in, C_out), for y = conv2d(x, w, stride, padding) (x: (N, H, W, C_in),
          dy: (N, Ho, Wo, C_out), padding: ((top, bottom), (left, right))): dw[a, b, i, o] = sum over n, p, q of
          xpad[n, p s + a, q s + b, i] * dy[n, p, q, o]. Return a Tensor or nested lists.""",
          builds="conv2d's weight gradient")
def _check_conv_grad_weight(conv_grad_weight):
    from tinyeffnet import Tensor, functional as F
    for x, w, stride, pad in _conv_cases(402):
        dy = Tensor.normal(7, F.conv2d(x, w, stride, pad).shape)
        dw = _flat(conv_grad_weight(x, dy, w.shape[0], stride, pad))
        if len(dw) != w.size:
            raise Wrong(f"x {x.shape}, stride {stride}: dw needs {w.size} values {w.shape}, yours has {len(dw)}")
        for trial in range(2):  # <conv(x, w), dy> = <w, dw> for any w
            w = Tensor.normal(100 + trial, w.shape)
            lhs, rhs = _dot(F.conv2d(x, w, stride, pad), dy), _dot(w, dw)
            if not _close(lhs, rhs, 1e-9):
                raise Wrong(f"x {x.shape}, kernel {w.shape[0]}, stride {stride}, padding {pad}: <conv(x, w), dy> = "
                            f"{lhs:.9f} but <w, your dw> = {rhs:.9f}")
    return "adjoint to conv2d on five random convolutions (strides 1 and 2, SAME, VALID, uneven padding)"


@exercise("04.3", "conv2d_windows", """Write conv2d_windows(x, w, stride, padding): the forward convolution
          from its windows, no groups: x (N, H, W, C_in), w (k, k, C_in, C_out), padding ((top, bottom),
          (left, right)) of zeros; output row p starts at padded row p * stride; y[n, p, q, o] = sum over
          a, b, i of xpad[n, p s + a, q s + b, i] * w[a, b, i, o]. Return a Tensor or nested lists.""",
          builds="conv2d's forward")
def _check_conv2d_windows(conv2d_windows):
    from tinyeffnet import functional as F
    for x, w, stride, pad in _conv_cases(403):
        _same(f"x {x.shape}, kernel {w.shape}, stride {stride}, padding {pad}", conv2d_windows(x, w, stride, pad),
              F.conv2d(x, w, stride, pad))
    return "equal to the library's conv2d on five random convolutions"


@exercise("04.4", "conv_grad_input", """Write conv_grad_input(dy, w, x_shape, stride, padding): the input's
          gradient dx (shape x_shape) of y = conv2d(x, w, stride, padding): every x[n, r, c, i] collects
          dy[n, p, q, o] * w[a, b, i, o] from each window (p, q) and tap (a, b) that read it
          (r = p s + a - top, c = q s + b - left). Return a Tensor or nested lists.""",
          builds="conv2d's input gradient")
def _check_conv_grad_input(conv_grad_input):
    from tinyeffnet import Tensor, functional as F
    for x, w, stride, pad in _conv_cases(404):
        y = F.conv2d(x, w, stride, pad)
        dy = Tensor.normal(9, y.shape)
        dx = given(conv_grad_input(dy, w, x.shape, stride, pad))
        if _shape(dx) != x.shape:
            raise Wrong(f"dx must have x's shape {x.shape}, yours {_shape(dx)}")
        lhs, rhs = _dot(y, dy), _dot(x, dx)  # <conv(x, w), dy> = <x, dx>
        if not _close(lhs, rhs, 1e-9):
            raise Wrong(f"x {x.shape}, kernel {w.shape}, stride {stride}, padding {pad}: <conv(x, w), dy> = "
                        f"{lhs:.9f} but <x, your dx> = {rhs:.9f}")
        xg = Tensor(x.data, requires_grad=True)
        (F.conv2d(xg, w, stride, pad) * dy).sum().backward()
        _same(f"dx for x {x.shape}, stride {stride}, padding {pad}", dx, xg.grad)
    return "adjoint to conv2d and equal to autograd's dx on five random convolutions"


# ---------------------------------------------------------------------------- lesson 05
@exercise("05.1", "separable_cost", """Write separable_cost(h, w, c_in, c_out, k, stride) -> (macs, weights)
          of a depthwise k x k convolution (SAME padding, the stride) followed by a 1x1 convolution to c_out
          channels, on an (h, w, c_in) input, no biases; by hand, without building layers.""")
def _check_separable_cost(separable_cost):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    rng = random.Random(501)
    cases = [(56, 56, 144, 40, 5, 2), (112, 112, 32, 16, 3, 1), (15, 15, 24, 48, 3, 2)]
    cases += [(rng.randint(5, 60), rng.randint(5, 60), rng.randint(1, 200), rng.randint(1, 200), rng.choice((3, 5)),
               rng.choice((1, 2))) for _ in range(3)]
    for h, w, c_in, c_out, k, stride in cases:
        with _meta_counting() as meta:
            layers = [DepthwiseConv2d(c_in, k, stride, backend="meta"), Conv2d(c_in, c_out, 1, backend="meta")]
            meta.macs = 0
            x = Tensor(meta.full((1, h, w, c_in), 0.0), meta)
            for layer in layers:
                x = layer(x)
            want = (meta.macs, sum(layer.num_parameters() for layer in layers))
        with _counting_by_hand("separable_cost"):
            got = tuple(given(separable_cost(h, w, c_in, c_out, k, stride)))
        if got != want:
            raise Wrong(f"{(h, w, c_in, c_out, k, stride)}: the meta backend counts {want[0]:,} MACs and "
                        f"{want[1]:,} weights, yours {got}")
    return f"agrees with the meta backend on {len(cases)} layers"


@contextlib.contextmanager
def _meta_counting():
    """The meta backend, its MAC counter given back as the lesson left it."""
    from backends import get_backend
    meta = get_backend("meta")
    saved = meta.macs
    try:
        yield meta
    finally:
        meta.macs = saved


# ---------------------------------------------------------------------------- lesson 06
def _bn_cases():
    from tinyeffnet import Tensor
    rng = random.Random(601)
    cases = []
    for eps in (1e-3, 0.1, 1e-5):
        shape = (rng.randint(1, 3), rng.randint(1, 3), rng.randint(2, 3), rng.randint(1, 4))
        x = Tensor.normal(rng.randrange(10 ** 6), shape, std=rng.uniform(0.05, 3.0))
        x = x + rng.uniform(-2, 2)
        gamma = Tensor([rng.uniform(-2, 2) for _ in range(shape[-1])])
        beta = Tensor([rng.uniform(-1, 1) for _ in range(shape[-1])])
        cases.append((x, gamma, beta, eps))
    return cases


@exercise("06.1", "bn_forward", """Write bn_forward(x, gamma, beta, eps): training-mode batch norm of an NHWC
          Tensor x over N, H and W (the batch's own mean and biased variance per channel, eps inside the
          square root), with Tensor arithmetic.""", builds="batch norm's forward")
def _check_bn_forward(bn_forward):
    from tinyeffnet import functional as F
    for x, gamma, beta, eps in _bn_cases():
        _same(f"x of shape {x.shape}, eps {eps:g}", bn_forward(x, gamma, beta, eps),
              F.batch_norm_train(x, gamma, beta, eps)[0], 1e-9, 1e-10)
    return "equal to the library's batch_norm_train for three random shapes, eps 1e-3, 0.1, 1e-5"


@exercise("06.2", "bn_backward", """Write bn_backward(x, gamma, beta, dy, eps) -> (dx, dgamma, dbeta) for
          training-mode batch norm, with Tensor arithmetic, not autograd. Derive dx yourself: the output
          depends on each x_i directly and through the batch's mean and variance.""",
          builds="batch norm's backward")
def _check_bn_backward(bn_backward):
    from tinyeffnet import Tensor, functional as F
    for seed, (x, gamma, beta, eps) in enumerate(_bn_cases()):
        leaves = [Tensor(t.data, requires_grad=True) for t in (x, gamma, beta)]
        dy = Tensor.normal(610 + seed, x.shape)
        (F.batch_norm_train(*leaves, eps)[0] * dy).sum().backward()
        got = given(bn_backward(x, gamma, beta, dy, eps))
        if len(got) != 3:
            raise Wrong("return three things: (dx, dgamma, dbeta)")
        for label, mine, want in zip(("dx", "dgamma", "dbeta"), got, leaves):
            _same(f"{label} for x of shape {x.shape}, eps {eps:g}", mine, want.grad, 1e-8, 1e-10)
    return "dx, dgamma and dbeta equal autograd's for three random shapes and eps values"


# ---------------------------------------------------------------------------- lesson 07
@exercise("07.1", "softplus", """Write softplus(x) = log(1 + exp(x)) for a float x so that it never overflows
          and keeps full precision where it is tiny (x = -40: about 4.2e-18), the way the stable sigmoid does:
          split on the sign of x and use math.log1p.""")
def _check_softplus(softplus):
    from tinyeffnet import Tensor
    sigmoid = Tensor([-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0]).sigmoid().to_flat()
    values = {x: _number(softplus(x)) for x in (-1000.0, -40.0, -3.0, 0.0, 2.5, 40.0, 1000.0)}
    if not _close(values[0.0], math.log(2), 1e-14):
        raise Wrong(f"softplus(0) = log 2 = {math.log(2):.15f}, yours {values[0.0]}")
    if not 0.0 <= values[-1000.0] < 1e-300 or not _close(values[1000.0], 1000.0, 1e-15):
        raise Wrong(f"softplus(-1000) should be 0 (about 5e-435) and softplus(1000) 1000; yours give "
                    f"{values[-1000.0]} and {values[1000.0]}")
    if not _close(values[-40.0], sigmoid[1], 1e-12, 0.0):  # for very negative x, softplus(x) = exp(x) = sigmoid(x)
        raise Wrong(f"softplus(-40) is {sigmoid[1]:.6e}; yours {values[-40.0]:.6e} lost it to round-off "
                    "(1 + 4e-18 is 1 in float64: use log1p)")
    for x, s in zip((-3.0, 2.5, 40.0), (sigmoid[2], sigmoid[4], sigmoid[5])):  # softplus' = sigmoid
        h = 1e-5
        slope = (_number(softplus(x + h)) - _number(softplus(x - h))) / (2 * h)
        if not _close(slope, s, 1e-6):
            raise Wrong(f"the slope of softplus at {x} should be sigmoid({x}) = {s:.8f}; yours is {slope:.8f}")
        if not _close(values[x] - _number(softplus(-x)), x, 1e-12):
            raise Wrong(f"softplus(x) - softplus(-x) = x fails at x = {x}")
    return "no overflow at +-1000, full precision at -40, slope = the library's sigmoid"


@exercise("07.2", "swish_grad", """Write swish_grad(x): the derivative of swish(x) = x sigmoid(x) at a float x
          (product rule; sigmoid' = s (1 - s)).""")
def _check_swish_grad(swish_grad):
    from tinyeffnet import Tensor
    rng = random.Random(702)
    for x0 in [-1.278, 0.0] + [rng.uniform(-8, 8) for _ in range(8)]:
        x = Tensor(x0, requires_grad=True)
        x.swish().backward()
        got = _number(swish_grad(x0))
        if not _close(got, x.grad.item(), 1e-12):
            raise Wrong(f"swish'({x0:.4f}) = {x.grad.item():.12f} by autograd, yours {got:.12f}")
    return "equal to autograd at ten points"


# ---------------------------------------------------------------------------- lesson 08
@exercise("08.1", "se_forward", """Write se_forward(x, w_reduce, b_reduce, w_expand, b_expand): the SE module's
          forward on an NHWC Tensor x with C channels: the mean over H and W per (image, channel); a 1x1
          convolution to r channels (w_reduce (1, 1, C, r), bias b_reduce) and swish; a 1x1 convolution back
          to C (w_expand (1, 1, r, C), bias b_expand) and sigmoid: one gate per (image, channel); x times its
          gate. Tensor operations (mean, reshape, @ or F.conv2d, swish, sigmoid, *).""",
          builds="the SE module's forward")
def _check_se_forward(se_forward):
    from tinyeffnet import Tensor
    from tinyeffnet.nn import SqueezeExcite
    rng = random.Random(801)
    for trial in range(4):
        n, h, w, c, r = rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4), rng.randint(2, 6), rng.randint(1, 3)
        se = SqueezeExcite(c, r)
        for _, p in se.named_parameters():  # random weights and biases
            p.data = Tensor.normal(rng.randrange(10 ** 6), p.shape).data
        x = Tensor.normal(rng.randrange(10 ** 6), (n, h, w, c), requires_grad=True)
        want = se(x)
        (want * want).sum().backward()
        x_mine = Tensor(x.data, requires_grad=True)
        got = given(se_forward(x_mine, se.reduce.weight, se.reduce.bias, se.expand.weight, se.expand.bias))
        _same(f"x of shape {(n, h, w, c)}, r = {r}", got, want, 1e-9, 1e-12)
        if isinstance(got, Tensor) and got.requires_grad:
            (got * got).sum().backward()
            _same(f"the gradient through your SE (x of shape {(n, h, w, c)})", x_mine.grad, x.grad, 1e-8, 1e-11)
    return "equal to SqueezeExcite, values and gradients, for four random shapes and weights"


# ---------------------------------------------------------------------------- lesson 09
def _mbconv_cases():
    from tinyeffnet.model.efficientnet import BlockSpec
    rng = random.Random(901)
    cases = [BlockSpec(2, 4, 4, 1, 3, 1, "dw", 0.5), BlockSpec(3, 4, 6, 3, 3, 2, "dw", 0.0),
             BlockSpec(4, 5, 5, 2, 5, 1, "end", 0.5), BlockSpec(5, 4, 4, 2, 3, 1, None, 0.5),
             BlockSpec(6, 3, 5, 1, 3, 1, "end", 0.0)]
    cases.append(BlockSpec(7, 4, 4, rng.choice((1, 3)), 3, 2, rng.choice(("dw", "end", None)), 0.5))  # stride 2: no skip
    return cases


@exercise("09.1", "mbconv_forward", """Write mbconv_forward(block, x, key): an MBConv block's forward from its
          parts (block.expand_conv and block.bn0 when spec.expand_ratio != 1, block.depthwise_conv, block.bn1,
          block.se where spec.se_position puts it, block.project_conv, block.bn2, swish where the paper has
          it) and its skip when block.spec.has_skip, through block.drop_connect(h, key). Not block(x) or
          block.forward: that is the answer.""", builds="the MBConv block's forward with its skip")
def _check_mbconv_forward(mbconv_forward):
    from backends import get_backend
    from tinyeffnet import Tensor
    from tinyeffnet.model.efficientnet import MBConv
    from tinyeffnet.nn.init import initialize
    py = get_backend("python")

    def refuse(*args, **kwargs):
        raise Wrong("mbconv_forward called the block's own forward: build it from the block's parts")

    for i, spec in enumerate(_mbconv_cases()):
        block = initialize(MBConv(spec, bn_momentum=0.9, backend="meta"), "xavier", 900 + i, backend=py)
        x = Tensor.normal(910 + i, (2, 5, 5, spec.in_channels), requires_grad=True)
        key = py.key(920 + i)
        want = block(x, key)
        block.forward = refuse
        try:
            got = given(mbconv_forward(block, Tensor(x.data), key))
        finally:
            del block.forward
        _same(f"block {i} (expand {spec.expand_ratio}, stride {spec.stride}, SE {spec.se_position}, "
              f"skip {spec.has_skip})", got, want, 1e-9, 1e-11)
    return "equal to MBConv for six random blocks: expand 1 and >1, strides 1 and 2, SE dw/end/none, with drop-connect"


# ---------------------------------------------------------------------------- lesson 10
@exercise("10.1", "seend_parameters", """Write seend_parameters(variant, base_count): the parameter count of a
          seend@X variant from base's count, by hand: for every block whose SE moves (block_specs(variant)
          says "end"), take away the SE on in * expand channels and add one on the block's out channels;
          r stays max(1, int(in * 0.25)).""")
def _check_seend_parameters(seend_parameters):
    from tinyeffnet.model.efficientnet import EfficientNet
    base = EfficientNet("base", backend="meta").num_parameters()
    for variant in ("seend@hasskip", "seend@noskip", "seend@all", "seend@stage3-5"):
        want = EfficientNet(variant, backend="meta").num_parameters()
        with _counting_by_hand("seend_parameters"):
            got = given(seend_parameters(variant, base))
        if got != want:
            raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return "exact for seend@hasskip, seend@noskip, seend@all and seend@stage3-5"


@exercise("10.2", "xavier_limit", """Write xavier_limit(kernel, c_in, c_out, depthwise): the bound of the
          Glorot uniform initial weights of a k x k convolution, sqrt(6 / (fan_in + fan_out)), with
          TensorFlow's fans (the lesson says which, for plain and depthwise kernels).""")
def _check_xavier_limit(xavier_limit):
    from tinyeffnet.nn import Conv2d, DepthwiseConv2d
    rng = random.Random(1002)
    cases = [(3, 3, 32, False), (1, 16, 96, False), (3, 96, 96, True), (5, 240, 240, True)]
    cases += [(rng.choice((1, 3, 5)), c, rng.randint(1, 300), rng.random() < 0.5) for c in (7, 40, 200)]
    for k, c_in, c_out, depthwise in cases:
        layer = DepthwiseConv2d(c_in, k, backend="meta") if depthwise else Conv2d(c_in, c_out, k, backend="meta")
        want = math.sqrt(6.0 / sum(layer.fans))
        got = _number(xavier_limit(k, c_in, c_out, depthwise))
        if not _close(got, want, 1e-12):
            raise Wrong(f"{'depthwise ' if depthwise else ''}{k}x{k}, {c_in} -> {c_out if not depthwise else c_in}: "
                        f"the library's fans {layer.fans} give {want:.6f}, yours {got:.6f}")
    return f"equal to the library's fans for {len(cases)} plain and depthwise kernels"


# ---------------------------------------------------------------------------- lesson 11
@exercise("11.1", "smoothing_floor", """Write smoothing_floor(num_classes, smoothing): the lowest possible
          cross-entropy with label smoothing, the entropy of the smoothed target (1 - s + s/K on the label,
          s/K elsewhere).""")
def _check_smoothing_floor(smoothing_floor):
    from tinyeffnet import Tensor, functional as F
    rng = random.Random(1101)
    for k, s in [(10, 0.1), (1000, 0.1), (3, 0.25)] + [(rng.randint(2, 50), rng.uniform(0.01, 0.5)) for _ in range(3)]:
        target = [1 - s + s / k] + [s / k] * (k - 1)
        best = F.cross_entropy(Tensor([[math.log(t) for t in target]]), [0], label_smoothing=s).item()
        got = _number(smoothing_floor(k, s))
        if not _close(got, best, 1e-9):
            raise Wrong(f"{k} classes, smoothing {s:.4f}: logits log(target) reach loss {best:.6f} (the minimum); "
                        f"yours {got:.6f}")
    return "equal to the library's loss at its minimum for six cases"


@exercise("11.2", "nesterov_step", """Write nesterov_step(param, grad, velocity, lr, momentum, weight_decay)
          -> (new_param, new_velocity) for one float parameter that gets weight decay, as the lesson's
          optimizer does it (decay into the gradient, then the velocity, then Nesterov's look-ahead step).""")
def _check_nesterov_step(nesterov_step):
    from tinyeffnet.training.optimizer import NesterovSGD, apply_updates
    py = _python()
    rng = random.Random(1102)
    for _ in range(3):
        lr, momentum, wd = rng.uniform(0.01, 0.2), rng.uniform(0.5, 0.95), rng.choice([1e-4, 1e-2, 0.1])
        sgd = NesterovSGD(py, ["conv.weight"], momentum, wd)
        param = rng.uniform(-2, 2)
        params = {"conv.weight": py.from_flat([param], (1,))}
        state, velocity = sgd.init(params), 0.0
        for step in range(3):
            grad = rng.uniform(-1, 1)
            updates, state = sgd.update({"conv.weight": py.from_flat([grad], (1,))}, state, params)
            params = apply_updates(py, params, updates, lr)
            got = given(nesterov_step(param, grad, velocity, lr, momentum, wd))
            want = (py.to_flat(params["conv.weight"])[0], py.to_flat(state["trace"]["conv.weight"])[0])
            if len(got) != 2 or not (_close(got[0], want[0], 1e-12) and _close(got[1], want[1], 1e-12)):
                raise Wrong(f"step {step + 1} (lr {lr:.3f}, momentum {momentum:.3f}, weight decay {wd}): NesterovSGD "
                            f"gives param {want[0]:.10f}, velocity {want[1]:.10f}; yours {got}")
            param, velocity = got
    return "nine steps equal to NesterovSGD's"


def _tiny_training_case(seed, label_smoothing):
    from tinyeffnet.model import build_model
    from tinyeffnet.training import step as steps
    from tinyeffnet.training.optimizer import NesterovSGD
    py = _python()
    rng = random.Random(seed)
    net = build_model("base", num_classes=3, width=0.1, depth=0.1, seed=seed, bn_momentum=0.9, dropout=0.3,
                      drop_connect=0.3)
    optimizer = NesterovSGD(py, [n for n, _ in net.named_parameters()], 0.9, 1e-2)
    state = steps.init_state(net, optimizer)
    state["opt_state"] = dict(trace={n: py.from_flat([rng.uniform(-0.1, 0.1) for _ in range(math.prod(py.shape(t)))],
                                                     py.shape(t)) for n, t in state["opt_state"]["trace"].items()})
    images = py.from_flat([rng.uniform(-1, 1) for _ in range(2 * 8 * 8 * 3)], (2, 8, 8, 3))
    labels = py.from_flat([rng.randrange(3) for _ in range(2)], (2,), "int32")
    return net, optimizer, state, images, labels, py.key(seed), rng.uniform(0.05, 0.5), label_smoothing


@exercise("11.3", "train_step", """Write train_step(net, optimizer, state, images, labels, key, lr,
          label_smoothing) -> (new state, loss): one training step. state = dict(params, buffers, opt_state)
          of arrays. Put the net in training mode, bind the parameters and buffers into it
          (`with net.bind(params, buffers) as leaves`), run it on Tensor(images) with the key (dropout,
          drop-connect), take F.cross_entropy with label smoothing, run our backward, and read the gradients
          from the leaves and the updated BN statistics from net.named_buffers() inside the block; then
          optimizer.update and apply_updates(backend, params, updates, lr). It must equal the library's
          step.""", builds="the training step")
def _check_train_step(train_step):
    from tinyeffnet.training import step as steps
    py = _python()
    for seed, smoothing in ((1103, 0.1), (1104, 0.0)):
        net, optimizer, state, images, labels, key, lr, smoothing = _tiny_training_case(seed, smoothing)
        library = steps.make_train_step(net, optimizer, steps.StepOptions(label_smoothing=smoothing))
        want, metrics = library(state, images, labels, key, lr)
        got = given(train_step(net, optimizer, state, images, labels, key, lr, smoothing))
        if not isinstance(got, tuple) or len(got) != 2:
            raise Wrong("return two things: (the new state, the loss)")
        got, loss = got
        if not _close(_number(loss), py.to_flat(metrics["loss"])[0], 1e-9):
            raise Wrong(f"label smoothing {smoothing}: the library's step has loss {py.to_flat(metrics['loss'])[0]:.8f}, "
                        f"yours {_number(loss):.8f}")
        for group in ("params", "buffers"):
            for name, array in want[group].items():
                if name not in got.get(group, {}):
                    raise Wrong(f"the new state has no {group} entry {name!r}")
                mine, theirs = py.to_flat(got[group][name]), py.to_flat(array)
                if not all(_close(a, b, 1e-9, 1e-12) for a, b in zip(mine, theirs)):
                    worst = max(abs(a - b) for a, b in zip(mine, theirs))
                    unchanged = mine == py.to_flat(state[group][name])
                    raise Wrong(f"label smoothing {smoothing}, lr {lr:.3f}: {group} {name!r} differs from the library's "
                                f"step by up to {worst:.1e}" + (" (yours did not change it)" if unchanged else ""))
        for name, array in want["opt_state"]["trace"].items():
            if py.to_flat(got["opt_state"]["trace"][name]) != py.to_flat(array):
                raise Wrong(f"the optimizer state of {name!r} differs from the library's")
    return ("one step equal to the library's (loss, params, BN statistics, momentum) on a tiny B0 with dropout and "
            "drop-connect, with and without smoothing")


# ---------------------------------------------------------------------------- lesson 12
@exercise("12.1", "leaky_relu", """Write leaky_relu(x, slope) on Tensors: x where x > 0, slope * x elsewhere
          (0 < slope < 1), with Tensor operations only, so that it runs under jax.jit: a Python `if` on a
          traced value cannot be decided. Hint: Tensor.maximum.""")
def _check_leaky_relu(leaky_relu):
    import jax

    from backends import get_backend
    from tinyeffnet import Tensor
    jb = get_backend("jax")
    rng = random.Random(1201)
    values = [rng.uniform(-3, 3) for _ in range(6)] + [-0.01, 0.02]

    for slope in (0.1, 0.02, rng.uniform(0.3, 0.9)):
        def f(array):
            x = Tensor(array, jb, requires_grad=True)
            y = given(leaky_relu(x, slope))
            y.sum().backward()
            return y.data, x.grad.data

        try:
            y, grad = jax.jit(f)(jb.from_flat(values, (len(values),)))
        except jax.errors.ConcretizationTypeError:
            raise Wrong("a Python if (or bool()) on a traced value: jit cannot decide it; use Tensor operations") \
                from None
        for v, out, g in zip(values, y.tolist(), grad.tolist()):
            want, want_g = (v, 1.0) if v > 0 else (slope * v, slope)
            if not (_close(out, want, 1e-6, 1e-7) and _close(g, want_g, 1e-6)):
                raise Wrong(f"slope {slope:.3f}, at {v:.4f}: leaky_relu should be {want:.6f} with slope {want_g:.4f}; "
                            f"yours {out:.6f} with slope {g:.4f}")
    return "compiles under jax.jit; values and our gradients right for three slopes"


# ---------------------------------------------------------------------------- lesson 13
@exercise("13.1", "depthwise_taps", """Write depthwise_taps(x, w, stride, padding) in jax.numpy: a depthwise
          convolution of x (N, H, W, C) by w (k, k, 1, C) with padding ((top, bottom), (left, right)), as the
          JAX backend does it on a CPU: pad x once (jnp.pad), then add up k * k strided slices of it, each
          times its tap w[a, b, 0] (one weight per channel). It must run under jax.jit.""",
          builds="the JAX backend's depthwise convolution by taps")
def _check_depthwise_taps(depthwise_taps):
    import jax
    import jax.numpy as jnp

    from tinyeffnet import functional as F
    rng = random.Random(1301)
    for trial in range(3):  # SAME at stride 2 on an even size (padding (0, 1)), uneven explicit, SAME at stride 1
        n, h, w, c = rng.randint(1, 2), 2 * rng.randint(3, 4), 2 * rng.randint(3, 4) + trial % 2, rng.randint(1, 6)
        k, stride = rng.choice((3, 5)), (2, rng.choice((1, 2)), 1)[trial]
        pad = ((0, k - 1), (k - 1, 1)) if trial == 1 else (F.same_padding(h, k, stride), F.same_padding(w, k, stride))
        key = jax.random.PRNGKey(rng.randrange(10 ** 6))
        x = jax.random.normal(key, (n, h, w, c), jnp.float32)
        kernel = jax.random.normal(jax.random.fold_in(key, 1), (k, k, 1, c), jnp.float32)
        want = jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad,
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)
        got = given(jax.jit(lambda x, kernel: depthwise_taps(x, kernel, stride, pad))(x, kernel))
        if tuple(got.shape) != tuple(want.shape):
            raise Wrong(f"x {x.shape}, k {k}, stride {stride}, padding {pad}: the output has shape {tuple(want.shape)}, "
                        f"yours {tuple(got.shape)}")
        worst = float(jnp.max(jnp.abs(got - want)))
        if worst > 1e-4:
            raise Wrong(f"x {x.shape}, k {k}, stride {stride}, padding {pad}: differs from lax.conv_general_dilated "
                        f"by up to {worst:.2e}")
    return "equal to lax.conv_general_dilated (feature_group_count = C) under jit, three random shapes, strides and paddings"


# ---------------------------------------------------------------------------- lesson 14
def _bfloat16_cases():
    rng = random.Random(1401)
    cases = [rng.gauss(0, 1) * 10 ** rng.randint(-8, 8) for _ in range(300)]
    cases += [1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -(1.0 + 2 ** -8), 3.0e38, 3.3961776e38, 3.4e38, 1e-40, 0.0, 1.0]
    return cases  # ties to even up and down, values that round to inf, a subnormal


@exercise("14.1", "to_bfloat16", """Write to_bfloat16(x) in JAX: a float32 array x rounded to bfloat16
          precision (kept as float32): view its bits as uint32 (jax.lax.bitcast_convert_type), round away the
          low 16 bits to nearest, ties to even (add 0x7FFF plus the lowest kept bit, then clear the low 16
          bits), view them as float32 again. Without astype(bfloat16): that is what the check compares with.
          It must run under jax.jit.""", builds="bfloat16 rounding in JAX")
def _check_to_bfloat16(to_bfloat16):
    import jax
    import jax.numpy as jnp
    cases = _bfloat16_cases()
    x = jnp.asarray(cases, jnp.float32)
    program = str(jax.make_jaxpr(lambda v: given(to_bfloat16(v)))(x))
    if "bf16" in program:
        raise Wrong("your code converts to bfloat16 (astype): round the bits yourself")
    got = jax.jit(to_bfloat16)(x).tolist()
    want = x.astype(jnp.bfloat16).astype(jnp.float32).tolist()
    for v, g, w in zip(x.tolist(), got, want):
        if g != w:
            raise Wrong(f"{v!r} in bfloat16 is {w!r} (as JAX rounds it); yours {g!r}")
    return f"equal to JAX's rounding for {len(cases)} values, ties, overflow to inf and subnormals included"


# ---------------------------------------------------------------------------- lesson 15
@exercise("15.1", "paired_interval", """Write paired_interval(a, b) -> (mean, low, high): a and b map seed ->
          top-1 of two variants trained on the same seeds. Take the per-seed differences a[s] - b[s] over
          the seeds both have, their mean, and the 95% Student's t interval mean +- t * sd / sqrt(n) (sample
          standard deviation, t = t_quantile(0.975, n - 1) from tinyeffnet.experiments.paired).""")
def _check_paired_interval(paired_interval):
    from tinyeffnet.experiments.paired import paired_difference
    rng = random.Random(1501)
    cases = [({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.78, 1: 0.80, 2: 0.80}),
             ({0: 0.5, 1: 0.6}, {0: 0.52, 1: 0.58})]
    for _ in range(3):
        seeds = rng.sample(range(10), rng.randint(2, 6))
        common = rng.uniform(0.6, 0.9)
        base = {s: common + rng.gauss(0, 0.02) for s in seeds}
        cases.append(({s: v + rng.gauss(0.01, 0.005) for s, v in base.items()}, {**base, 99: 0.5}))  # 99: base only
    for a, b in cases:
        want = paired_difference(a, b)
        got = tuple(given(paired_interval(dict(a), dict(b))))
        if len(got) != 3 or not all(_close(g, w, 1e-9, 1e-12) for g, w in zip(got, (want["mean"], want["low"], want["high"]))):
            raise Wrong(f"a {a}, b {b}: the paired interval is ({want['mean']:.5f}, {want['low']:.5f}, "
                        f"{want['high']:.5f}), yours {tuple(round(g, 5) for g in got)}")
    return f"equal to the report's paired statistics on {len(cases)} cases"


# ---------------------------------------------------------------------------- lesson 16
@exercise("16.1", "my_variant", """Set my_variant to a variant of your own, a name build_model understands that
          builds none of the paper's seven networks: SE moved to the end (seend@stageA-B) or removed
          (nose@stageA-B) in a range of Table I's stages 2..8, e.g. nose@stage2-7 keeps SE only in the last
          stage. (seend@stage2-8 is the paper's seend@all.)""")
def _check_my_variant(my_variant):
    from tinyeffnet.model.efficientnet import block_specs
    from tinyeffnet.model.spec import VARIANTS, canonical_variant
    try:
        name = canonical_variant(given(my_variant))
    except ValueError as e:
        raise Wrong(str(e)) from None
    positions = [s.se_position for s in block_specs(name)]
    for paper in VARIANTS:
        if positions == [s.se_position for s in block_specs(paper)]:
            raise Wrong(f"{name} builds the same network as the paper's {paper}: pick another range of stages")
    return f"build_model understands {name!r}, a network none of the paper's seven"


@exercise("16.2", "my_variant_parameters", """Write my_variant_parameters(base_count): your variant's parameters
          (full B0, 1000 classes) from base's count and block_specs, as in lesson 10, by hand.""")
def _check_my_variant_parameters(my_variant_parameters, variant=None):
    from tinyeffnet.model.efficientnet import build_model
    if variant is None:
        raise Unfinished("Choose your variant first (exercise 16.1).")
    base = build_model("base", backend="meta").num_parameters()
    want = build_model(variant, backend="meta").num_parameters()
    with _counting_by_hand("my_variant_parameters"):
        got = given(my_variant_parameters(base))
    if got != want:
        raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return f"{variant}: {want:,} parameters, {want - base:+,} against base"
