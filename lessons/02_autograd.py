# %% [markdown]
# # Lesson 02: reverse-mode autograd
#
# Training needs the gradient of one number (the loss) with respect to millions of
# parameters. Reverse mode gets all of them for the price of about two forward passes:
# record what the forward pass did (the *tape*), then walk it backwards once, applying
# the chain rule at every step.
#
# tinyeffnet's autograd is about 110 lines: `tinyeffnet/engine/autograd.py`. We build it up from
# one number to a tensor graph.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("02")
ROOT = course.ROOT

import inspect
import math

import tinyeffnet.engine.ops as fn
from tinyeffnet import Tensor, no_grad
from tinyeffnet.engine import autograd
from tinyeffnet.engine.autograd import Function, topological_order
from tinyeffnet.plotting.graph import draw_tape, record_tape

# %% [markdown]
# ## One number
#
# f(x) = x * x + 3 x at x = 2. By hand: f'(x) = 2x + 3 = 7.

# %%
x = Tensor(2.0, requires_grad=True)
f = x * x + x * 3.0
f.backward()
print("f =", f.item(), " df/dx =", x.grad.item())

# %% [markdown]
# What happened? Every operator on a Tensor calls `SomeFunction.apply(...)`. A
# `Function` has a `forward` (arrays in, array out, in backend primitives) and a
# `backward` (the output's gradient in, one gradient per input out). An *instance* of the
# Function is the **context** of that one call: `forward` stores on `self` whatever
# `backward` will need. Here is multiplication, which needs both inputs:

# %%
print(inspect.getsource(fn.Mul))

# %% [markdown]
# `Function.apply` runs `forward` and, when an input requires a gradient, hangs the
# context on the output tensor as `out._ctx`, with the inputs as `ctx.parents`. Those
# links are the tape:

# %%
print(course.source(Function.apply, cut=[("for t in inputs[1:]", "make every tensor")]))  # less a check of backends

# %% [markdown]
# Our `f` is an `Add` whose parents are two `Mul` outputs; `x` appears three times as a
# parent (twice in `x * x`, once in `x * 3`). The constant 3.0 became a Tensor that does
# not require a gradient.

# %%
x = Tensor(2.0, requires_grad=True)
f = x * x + x * 3.0


def describe(node, depth=0):
    name = type(node._ctx).__name__ if node._ctx is not None else ("leaf x" if node is x else "constant")
    print("  " * depth + f"{name}  value={node.item()}")
    if node._ctx is not None:
        for parent in node._ctx.parents:
            describe(parent, depth + 1)


describe(f)

# %% [markdown]
# ## Seeing the tape
#
# A picture says it faster. `tinyeffnet/plotting/graph.py: record_tape` reads the tape
# below a tensor (before `backward`, which frees it) and `draw_tape` draws every tensor with
# its value and, once `backward` has run, its gradient: the derivative of the final output
# with respect to that tensor. Functions are the orange nodes between them. A slightly
# bigger expression, L = sigmoid(a b + a a) * 3:

# %%
a = Tensor(2.0, requires_grad=True)
b = Tensor(-3.0, requires_grad=True)
ab = a * b
d = ab + a * a
L = d.sigmoid() * 3.0
tape = record_tape(L, dict(a=a, b=b, ab=ab, d=d, L=L))
L.backward()
lesson.show(draw_tape(tape, "L = sigmoid(a*b + a*a) * 3 at a = 2, b = -3"), "tape")
picture_grads = (a.grad.item(), b.grad.item())
print("dL/da =", picture_grads[0], " dL/db =", picture_grads[1])

# %% [markdown]
# Read it right to left, as `backward` does: L's gradient is 1; the `Mul` by 3 hands 3 to
# the sigmoid's output; the `Sigmoid` multiplies by s (1 - s) = 0.105 (s = sigmoid(-2)), so
# d gets 0.315; `Add` passes 0.315 to both of its inputs; each `Mul` multiplies by the
# *other* input. `a` is used twice (in a*b and a*a): its gradient is the sum of both
# paths, b * 0.315 + 2a * 0.315 = 0.315.
#
# ### Exercise 02.1: backward by hand
#
# Write `expression_grads(a, b)`: (dL/da, dL/db) for the L of the picture, as formulas in
# the floats a and b (chain rule; sigmoid'(d) = s (1 - s)). The check compares with
# autograd at four points.

# %%
# EXERCISE 02.1: your code here
def expression_grads(a, b):
    raise NotImplementedError


# %%
lesson.exercise("02.1", expression_grads)

# %% [markdown]
# ## Writing a Function
#
# A Function of our own, for x^3, to see the two halves. (The library's `Pow` does this
# for any constant power; this one is only for the lesson.) The context keeps `x`.

# %%
class Cube(Function):
    def forward(self, x):
        self.x = x
        b = self.backend
        return b.mul(b.mul(x, x), x)

    def backward(self, grad):
        b = self.backend
        three_x2 = b.mul(b.full(b.shape(self.x), 3.0, b.dtype(self.x)), b.mul(self.x, self.x))
        return (b.mul(grad, three_x2),)  # one gradient per input, as a tuple


u = Tensor([1.0, 2.0, -3.0], requires_grad=True)
Cube.apply(u).sum().backward()
print("d/du sum(u^3) = 3 u^2 =", u.grad.tolist())

# %% [markdown]
# ### Exercise 02.2: a Function of your own
#
# Write `Tanh` as a Function. The backend has no tanh primitive, but
# tanh(x) = 2 sigmoid(2x) - 1, and its derivative is 1 - tanh(x)^2: keep the *output* on
# `self` in `forward`, and `backward` needs nothing else. Use `self.backend`'s primitives
# (`full`, `mul`, `sub`, `sigmoid`, ...) as `Cube` does. The check compares the values with
# `math.tanh` and the gradient with finite differences (`check_elementwise`, lesson 03).

# %%
# EXERCISE 02.2: your code here
class Tanh(Function):
    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError


# %%
lesson.exercise("02.2", Tanh)

# %% [markdown]
# ## The walk: reverse topological order
#
# `backward(root)` must hand each tensor's gradient to its parents only when it is
# *complete*: when every use of that tensor has contributed. Visiting the nodes in reverse
# topological order (every node before its inputs) guarantees it. Two parts, then:
#
# 1. **The order.** A depth-first search from the root puts a node in the list after all of
#    its parents (the tensors it was computed from). It must be **iterative**, with an
#    explicit stack: a recursive one would hit Python's recursion limit (1000 frames) on a
#    long chain of ops. A trick for the stack: push `(node, False)` to visit a node, and
#    `(node, True)` to emit it once everything pushed after it (its parents) is done. And
#    it visits each node **once**, keeping a set of the visited ones: a tensor is reached
#    along every path that leads to it, networks share tensors everywhere, and a chain of
#    n "diamonds" (each tensor used twice by the next) has 2^n paths.
# 2. **The walk.** `grads` maps each tensor to its gradient *so far*, starting with 1.0 for
#    the root. In reverse order, each node hands its (now complete) gradient to
#    `node._ctx.backward(g)`, which returns one gradient per parent (None or unneeded where
#    `ctx.needs_grad` is False); a parent that already has a gradient gets the new one
#    **added** (`backend.add`). That is **gradient accumulation**, and it is what makes
#    `x * x` give 2x. A leaf (a tensor without `_ctx`) adds its gradient to `.grad`, so that
#    calling `backward` twice accumulates: the optimizer must reset it.
#
# ### Exercise 02.3: backward
#
# Write `run_backward(root)`, the two parts above, with the tape's own fields:
# `node._ctx`, `ctx.parents`, `ctx.needs_grad`, `ctx.backward(g)`, and `node.backend`'s
# `full` and `add`. The check builds six graphs twice (shared subexpressions, a tensor
# used near the root and deep below it, constants that need no gradient, a matrix
# product, a chain of 3000 ops, a chain of 60 diamonds on which a walk without a visited
# set stops at once) and compares your leaves' `.grad`, a Tensor each, with the library's
# backward. Once it passes, the rest of this lesson runs its examples on YOUR backward,
# each checked against the library's.

# %%
# EXERCISE 02.3: your code here
def run_backward(root):
    raise NotImplementedError


# %%
lesson.exercise("02.3", run_backward)


def engine_backward(root):
    """backward(root) on YOUR run_backward once exercise 02.3 passes, checked against the library's
    on the same tape (the leaves keep the library's gradients); else the library's."""
    yours = lesson.answer("02.3")
    if yours is None:
        return autograd.backward(root)
    nodes = topological_order(root)
    tape, leaves = [(n, n._ctx) for n in nodes], [n for n in nodes if n._ctx is None]
    before, mine = [n.grad for n in leaves], None
    with lesson.plugged("02.3"):
        yours(root)
        mine = [n.grad for n in leaves]
    for n, ctx in tape:  # put back the tape your walk may have freed, and the gradients before it
        n._ctx = ctx
    for n, grad in zip(leaves, before):
        n.grad = grad
    autograd.backward(root)
    if mine is not None:
        with lesson.plugged("02.3"):
            for i, (n, grad) in enumerate(zip(leaves, mine)):
                lesson.agrees(f"leaf {i}'s .grad after your run_backward", grad, n.grad)


print("the examples below run on", "your run_backward, checked against the library's" if lesson.passed("02.3")
      else "the library's backward")

# %% [markdown]
# The library's version (`tinyeffnet/engine/autograd.py`), once yours passes:

# %%
lesson.reveal("02.3", course.source(topological_order),
              course.source(autograd.backward, cut=[("if not root.requires_grad", "no input had"),
                                                    ("if root.size != 1", "reduce it to a scalar")]))

# %% [markdown]
# Besides what a backward needs, it keeps `.grad` on tensors that asked with `retain_grad()`
# (below) and sets `node._ctx = None` to free what each Function kept: the tape is used
# once.
#
# The order for our `f`:

# %%
x = Tensor(2.0, requires_grad=True)
f = x * x + x * 3.0
order = [type(n._ctx).__name__ if n._ctx else "leaf" for n in topological_order(f)]
print(order)
engine_backward(f)
print("df/dx =", x.grad.item())
f_grad = x.grad.item()

# %% [markdown]
# A deep chain: 3000 additions in a row, far past the recursion limit.

# %%
z = Tensor(1.0, requires_grad=True)
h = z
for _ in range(3000):
    h = h + 1.0
chain_nodes = len(topological_order(h))
engine_backward(h)
print(chain_nodes, "tensors on the tape; dh/dz =", z.grad.item(), "; recursion limit", sys.getrecursionlimit())

# %% [markdown]
# ## A tensor used twice
#
# g(a, b) = a * b + a. By hand: dg/da = b + 1, dg/db = a.

# %%
a = Tensor([1.0, 2.0], requires_grad=True)
b = Tensor([10.0, 20.0], requires_grad=True)
engine_backward((a * b + a).sum())
print("dg/da =", a.grad.tolist(), " dg/db =", b.grad.tolist())
grad_a_once = a.grad.tolist()
engine_backward((a * b + a).sum())  # a second backward adds to .grad
print("after a second backward, a.grad =", a.grad.tolist(), "(doubled: reset grads between steps)")
grad_a_twice = a.grad.tolist()

# %% [markdown]
# ## Broadcasting, reduced in ONE place
#
# `x + bias` with x of shape (2, 3) and bias of shape (3,) is everywhere in networks.
# The backend refuses different shapes (lesson 01), so `Tensor._broadcast` reshapes the
# bias to (1, 3) and **expands** it to (2, 3) with the `Expand` Function. Every binary
# Function then sees equal shapes and never thinks about broadcasting.
#
# The gradient of a broadcast must be summed back over the grown axes: each bias entry
# was used by both rows.
#
# ### Exercise 02.4: the broadcast reduction
#
# Write `unbroadcast(grad, shape)`: `grad` is a Tensor with the broadcast result's shape;
# sum it back to `shape`, which may have fewer axes (broadcasting adds them in front) and
# axes of size 1 where grad's are larger. `Tensor.sum(axis=..., keepdims=...)` and
# `reshape` are all it takes; return a Tensor of exactly `shape`. The check compares with
# autograd on fourteen shape pairs (size-1 axes in front, in the middle, at the end), some
# under `no_grad`, where the engine calls it; then your function becomes `Expand`'s
# backward for the bias below, compared with the library's.

# %%
# EXERCISE 02.4: your code here
def unbroadcast(grad, shape):
    raise NotImplementedError


# %%
lesson.exercise("02.4", unbroadcast)

# %% [markdown]
# The library does it in exactly one place, `Expand.backward` (it only ever sees equal
# ranks: `_broadcast` reshaped the bias first), shown once yours passes:

# %%
lesson.reveal("02.4", inspect.getsource(fn.Expand))


class YourExpand(fn.Expand):
    """Expand whose backward is your unbroadcast (exercise 02.4)."""

    def backward(self, g):
        with no_grad():
            return (lesson.answer("02.4")(Tensor(g, self.backend), self.src).data,)


# %%
xm = Tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
bias = Tensor([0.1, 0.2, 0.3], requires_grad=True)
out = xm + bias
describe_ops = []
node = out._ctx.parents[1]  # the bias side of the Add
while node._ctx is not None:
    describe_ops.append(type(node._ctx).__name__)
    node = node._ctx.parents[0]
print("the bias reaches Add through:", " <- ".join(describe_ops), "<- bias")
engine_backward((out * out).sum())
# by hand: 2 * (column sums of x + 2 * bias) = 2 * ([5, 7, 9] + [0.2, 0.4, 0.6])
print("d/dbias sum((x + bias)^2) =", bias.grad.tolist(), "shape", bias.grad.shape)
with lesson.plugged("02.4"):  # your unbroadcast as Expand's backward, compared with the library's
    if lesson.passed("02.4"):
        your_bias = Tensor(bias.data, requires_grad=True)
        grown = YourExpand.apply(your_bias.reshape(1, 3), shape=(2, 3))
        autograd.backward(((xm.detach() + grown) * (xm.detach() + grown)).sum())
        print("the same through YOUR Expand backward:", your_bias.grad.tolist())
        lesson.agrees("the bias gradient through your Expand backward", your_bias.grad, bias.grad)

# %% [markdown]
# ## no_grad
#
# Parameter updates and evaluation need no tape. Inside `no_grad()` Function.apply
# records nothing: outputs do not require gradients and hold no context.

# %%
w = Tensor([1.0, 2.0], requires_grad=True)
with no_grad():
    w_next = w * 0.9
print("under no_grad:", w_next.requires_grad, w_next._ctx)
w_taped = w * 0.9
print("outside:", w_taped.requires_grad, type(w_taped._ctx).__name__)

# %% [markdown]
# ## Intermediate gradients
#
# Only leaves keep `.grad`; an intermediate tensor keeps it when asked with
# `retain_grad()`.

# %%
p = Tensor([3.0], requires_grad=True)
q = (p * p).retain_grad()
(q * 2.0).sum().backward()
print("dL/dq =", q.grad.tolist(), " dL/dp =", p.grad.tolist())

# %% [markdown]
# That is the whole engine. Under `jax.jit` (lesson 12) exactly this walk runs once,
# while JAX traces, and becomes part of one compiled program.
#
# ## Checks

# %%
x = Tensor(2.0, requires_grad=True)
(x * x + x * 3.0).backward()
assert x.grad.item() == 7.0, f"d/dx (x^2 + 3x) at 2 is 7, got {x.grad.item()}"
assert u.grad.tolist() == [3.0, 12.0, 27.0], u.grad.tolist()
assert order[-1] == "Add", "the root comes last"
assert f_grad == 7.0, "the walk adds x's three uses: 2x + 3 at x = 2"
assert order[0] == "leaf", "a leaf comes first"
assert chain_nodes == 3001, "3000 sums and the leaf"
assert z.grad.item() == 1.0, "a chain of additions passes the gradient through unchanged"
assert grad_a_once == [11.0, 21.0] and b.grad.tolist() == [2.0, 4.0], (grad_a_once, b.grad.tolist())
assert grad_a_twice == [22.0, 42.0], "backward accumulates into leaves"
assert describe_ops == ["Expand", "Reshape"], describe_ops
assert bias.grad.shape == (3,), "the broadcast gradient is summed back to the bias's own shape"
assert all(abs(g - e) < 1e-12 for g, e in zip(bias.grad.tolist(), [10.4, 14.8, 19.2])), bias.grad.tolist()
assert not w_next.requires_grad and w_next._ctx is None, "no_grad records nothing"
assert q.grad.tolist() == [2.0] and p.grad.tolist() == [12.0]
s_picture = 1 / (1 + math.exp(2.0))  # sigmoid(a*b + a*a) at a = 2, b = -3
dL_dd = 3 * s_picture * (1 - s_picture)
assert abs(picture_grads[0] - dL_dd * (-3.0 + 2 * 2.0)) < 1e-12 and abs(picture_grads[1] - dL_dd * 2.0) < 1e-12
assert len(tape.ops) == 5 and len(tape.tensors) == 8, "3 Muls, Add, Sigmoid; a, b, 3.0 and five results"
lesson.finish()
