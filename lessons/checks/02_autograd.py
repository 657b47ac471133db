"""Checks of lesson 02's exercises: a backward by hand, a Function, backward itself, and the
broadcast reduction."""
import math
import random

from .common import ReadBudget, Wrong, a_tensor, close, exercise, given, random_shape, same


@exercise("02.1", "expression_grads", """Write expression_grads(a, b) -> (dL/da, dL/db) for
          L = sigmoid(a*b + a*a) * 3, by hand with the chain rule (floats in, floats out; sigmoid' = s (1 - s)).""")
def check_expression_grads(expression_grads):
    from tinyeffnet import Tensor
    rng = random.Random(201)
    points = [(2.0, -3.0)] + [(rng.uniform(-2, 2), rng.uniform(-2, 2)) for _ in range(5)]
    for a0, b0 in points:
        a, b = Tensor(a0, requires_grad=True), Tensor(b0, requires_grad=True)
        ((a * b + a * a).sigmoid() * 3.0).backward()
        got = given(expression_grads(a0, b0))
        want = (a.grad.item(), b.grad.item())
        if len(got) != 2 or not all(close(g, w, 1e-9) for g, w in zip(got, want)):
            raise Wrong(f"at a={a0:.4f}, b={b0:.4f} autograd gives (dL/da, dL/db) = ({want[0]:.6f}, {want[1]:.6f}), "
                        f"yours {tuple(round(g, 6) for g in got)}")
    return f"matches autograd at {len(points)} points"


def _function_class(cls):
    from tinyeffnet import Function
    if not (isinstance(cls, type) and issubclass(cls, Function)):
        raise Wrong(f"expected a subclass of tinyeffnet.Function, got {cls!r}")


@exercise("02.2", "Tanh", """Write Tanh, a Function: forward returns tanh(x) from backend primitives
          (tanh(x) = 2 sigmoid(2x) - 1; there is no tanh primitive) and keeps what backward needs; backward
          returns the input's gradient (tanh' = 1 - tanh^2).""", builds="a Function (forward and backward)")
def check_tanh(Tanh):
    from tinyeffnet import Tensor
    from tinyeffnet.engine.gradcheck import GradcheckError, check_elementwise
    _function_class(Tanh)
    v = Tensor.normal(202, (2, 5), std=1.5, requires_grad=True)
    for x, y in zip(v.to_flat(), Tanh.apply(v).to_flat()):
        if not close(y, math.tanh(x), 1e-12):
            raise Wrong(f"forward: tanh({x}) is {math.tanh(x):.12f}, yours gives {y:.12f}")
    try:
        error = check_elementwise(lambda v: Tanh.apply(v), [v])
    except GradcheckError as e:
        raise Wrong(f"backward: {e}") from None
    return f"forward exact, backward within {error:.0e} of finite differences"


# ---------------------------------------------------------------------------- 02.3
def _graphs(rng):
    """(make, leaves): `make(tensors)` builds a graph on fresh tensors from `leaves()`; the same
    graph is built twice, once for the library's backward and once for the learner's. Together
    they reach every branch of a walk: shared tensors, a tensor used both near the root and deep
    below it, constants that need no gradient, a broadcast, a matrix product, a long chain."""
    from tinyeffnet import Tensor

    def leaves(*shapes, constant=()):
        return lambda: [Tensor.normal(rng.randrange(10 ** 6), s, requires_grad=i not in constant)
                        for i, s in enumerate(shapes)]

    def diamond(t):
        (a,) = t
        h = a.sigmoid()
        return (h * h + h * 3.0 + (h * a).exp()).sum()

    def shared(t):
        a, b, bias = t
        h = (a * b + bias).swish()
        return ((h * a - h / 3.0) * (h + b)).mean()

    def near_and_deep(t):  # `a` feeds the root directly and through five ops: an order by depth is wrong
        a, c = t
        h = a
        for _ in range(5):
            h = (h * c).sigmoid()
        return (h * a + a).sum()

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

    return [(diamond, leaves((3,))), (shared, leaves((2, 3), (2, 3), (3,))),
            (near_and_deep, leaves((2, 3), (2, 3), constant=(1,))), (chain, leaves((2,))),
            (matmul, leaves((2, 3), (3, 4), (4, 2), constant=(0,)))]


def _diamonds(x, count):
    """A chain of `count` diamonds: each tensor is used twice by the next, so the tape has about
    3 * count tensors but 2 ** count paths from the root to x."""
    h = x
    for _ in range(count):
        h = h.sigmoid() + h * 0.5
    return h.sum()


DIAMONDS = 60


def _check_leaves(label, mine, theirs):
    from tinyeffnet import Tensor
    for i, (m, t) in enumerate(zip(mine, theirs)):
        if not m.requires_grad:
            if m.grad is not None:
                raise Wrong(f"graph '{label}': leaf {i} does not require a gradient (requires_grad=False), yours "
                            "gave it one: skip the parents whose ctx.needs_grad is False")
            continue
        if m.grad is None:
            raise Wrong(f"graph '{label}': leaf {i} got no .grad")
        if not isinstance(m.grad, Tensor):
            raise Wrong(f"graph '{label}': leaf {i}'s .grad is a {type(m.grad).__name__}; it must be a Tensor, "
                        "as Tensor.backward leaves it (Tensor(array, backend))")
        a_tensor(f"graph '{label}', leaf {i}'s .grad", m.grad, t.grad)
        same(f"graph '{label}', leaf {i}'s gradient", m.grad, t.grad, 1e-9, 1e-12)


@exercise("02.3", "run_backward", """Write run_backward(root): fill `.grad` of every leaf that `root` (a
          scalar Tensor) depends on, as Tensor.backward does. Order the tensors so that each comes after all
          of its inputs, visiting each tensor once (an iterative depth-first search with an explicit stack
          and a set of visited tensors: a chain of 3000 ops must work, and so must a chain of diamonds with
          2^60 paths), then walk that order backwards from root's gradient 1.0, handing each node's complete
          gradient to ctx.backward and adding up what each parent receives; a leaf (no _ctx) adds its
          gradient to any .grad it already has, as a Tensor. node._ctx.parents, ctx.needs_grad,
          ctx.backward(g) and node.backend's full and add are all you need.""",
          builds="backward: the topological order and gradient accumulation",
          answer=("tinyeffnet.engine.autograd:backward", "tinyeffnet.engine.autograd:topological_order"))
def check_run_backward(run_backward):
    from tinyeffnet import Tensor
    from tinyeffnet.engine.autograd import topological_order
    rng = random.Random(203)
    for make, leaves in _graphs(rng):
        theirs = leaves()
        mine = [Tensor(t.data, requires_grad=t.requires_grad) for t in theirs]
        make(theirs).backward()
        run_backward(make(mine))
        _check_leaves(make.__name__, mine, theirs)
    # visiting each tensor once: a walk per path never ends on a chain of diamonds
    x_theirs, x_mine = Tensor.normal(7, (2,), requires_grad=True), None
    x_mine = Tensor(x_theirs.data, requires_grad=True)
    _diamonds(x_theirs, DIAMONDS).backward()
    root = _diamonds(x_mine, DIAMONDS)
    nodes = topological_order(root)
    budget = ReadBudget(reads=20 * len(nodes) + 100, seconds=10.0, message=(
        f"on a chain of {DIAMONDS} diamonds ({len(nodes)} tensors, 2^{DIAMONDS} paths from the root to its leaf) "
        f"your run_backward read ctx.parents more than {20 * len(nodes) + 100:,} times: it walks a shared tensor "
        "once per path, which takes exponential time. Visit each tensor once (keep a set of the visited ones), and "
        "hand a tensor's gradient on only once it is complete (add up what it receives first)"))
    budget.watch(nodes)
    run_backward(root)
    _check_leaves(f"{DIAMONDS} diamonds", [x_mine], [x_theirs])
    # calling it twice accumulates, as the library's does
    a = Tensor([1.0, 2.0], requires_grad=True)
    run_backward((a * a).sum())
    run_backward((a * 3.0).sum())
    if a.grad is None or not isinstance(a.grad, Tensor) or a.grad.to_flat() != [5.0, 7.0]:
        raise Wrong("two backward passes must add up in .grad: 2a + 3 = [5, 7], yours "
                    f"{a.grad.to_flat() if isinstance(a.grad, Tensor) else a.grad}")
    return (f"equal to the library's backward on six graphs (shared tensors, a tensor near the root and deep, "
            f"constants, a 3000-op chain, {DIAMONDS} diamonds in linear time), and it accumulates")


# ---------------------------------------------------------------------------- 02.4
@exercise("02.4", "unbroadcast", """Write unbroadcast(grad, shape): the gradient of a broadcast input. `grad`
          (a Tensor) has the broadcast result's shape; sum it back to `shape`, which may have fewer axes
          (missing in front) and axes of size 1 where grad's are larger, and return a Tensor of exactly
          `shape`. Tensor.sum(axis=..., keepdims=...) and reshape do it.""",
          builds="the broadcast reduction (Expand's backward)", answer=("tinyeffnet.engine.ops:Expand",))
def check_unbroadcast(unbroadcast):
    from tinyeffnet import Tensor, no_grad
    import tinyeffnet.engine.ops as fn
    rng = random.Random(204)
    cases = [((2, 3), (3,)), ((2, 3), (2, 1)), ((4, 2, 3), (2, 1)), ((2, 3, 4), (1, 3, 1)), ((3,), ()),
             ((2, 4, 3), (2, 1, 3)), ((2, 3), (2, 3)), ((5, 1, 3), (1, 3)), ((3, 1, 4), (1, 1, 4)), ((2, 2), (1,))]
    for _ in range(4):
        big = random_shape(rng, rng.randint(2, 4), 2, 4)
        small = tuple(1 if rng.random() < 0.5 else n for n in big[rng.randint(0, len(big) - 1):])
        cases.append((big, small))
    for i, (big, small) in enumerate(cases):
        x = Tensor.normal(rng.randrange(10 ** 6), big)
        b = Tensor.normal(rng.randrange(10 ** 6), small, requires_grad=True)
        dy = Tensor.normal(rng.randrange(10 ** 6), big)
        ((x + b) * dy).sum().backward()  # d/db = dy summed back to b's shape
        label = f"unbroadcast(grad of shape {big}, {small})"
        if i % 2:
            with no_grad():  # where the engine calls it: inside a backward
                got = unbroadcast(dy, small)
        else:
            got = unbroadcast(dy, small)
        same(label, a_tensor(label, got, b.grad), b.grad)

    class Plugged(fn.Expand):  # the lesson's use: the backward of Expand (equal ranks), under no_grad
        def backward(self, g):
            with no_grad():
                return (unbroadcast(Tensor(g, self.backend), self.src).data,)

    for src, shape in (((1, 3), (2, 3)), ((2, 1, 4), (2, 5, 4))):
        b = Tensor.normal(rng.randrange(10 ** 6), src, requires_grad=True)
        dy = Tensor.normal(rng.randrange(10 ** 6), shape)
        (Plugged.apply(b, shape=shape) * dy).sum().backward()
        same(f"as Expand's backward, {src} -> {shape}", b.grad, dy.sum(axis=tuple(
            i for i, (m, n) in enumerate(zip(src, shape)) if m != n), keepdims=True))
    return f"equal to autograd's broadcast gradient for {len(cases)} shape pairs, and as Expand's backward"
