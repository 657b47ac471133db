# %% [markdown]
# # Lesson 07: sigmoid and swish
#
# The paper's text says every layer is followed by ReLU. EfficientNet actually uses
# **swish**, x * sigmoid(x) (also called SiLU), and this project follows the official code.
# Sigmoid itself appears in the squeeze-and-excitation gate (lesson 08).
#
# Two details make these cheap and safe:
#
# 1. a sigmoid that cannot overflow for large |x|;
# 2. a swish backward that keeps only x and recomputes the sigmoid, instead of keeping
#    both x and sigmoid(x) alive until the backward pass.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("07")
ROOT = course.ROOT

import inspect
import math

import backends.python_backend as pb
import tinyeffnet.engine.ops as fn
from tinyeffnet import Tensor
from tinyeffnet.engine.gradcheck import check_elementwise
from tinyeffnet.plotting.charts import Series, line_chart

# %% [markdown]
# ## A stable sigmoid
#
# The textbook formula 1 / (1 + exp(-x)) computes exp(1000) for x = -1000: Python's
# `math.exp` raises OverflowError (NumPy would return inf with a warning). The answer,
# about 5e-435, is simply 0 in float64. The fix: for negative x use the equivalent
# exp(x) / (1 + exp(x)), whose exponential cannot overflow there.

# %%
def textbook_sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


try:
    textbook_sigmoid(-1000.0)
    overflowed = False
except OverflowError as e:
    overflowed = True
    print("textbook sigmoid(-1000): OverflowError:", e)

print(inspect.getsource(pb._sigmoid))
s = Tensor([-1000.0, -30.0, 0.0, 30.0, 1000.0]).sigmoid().tolist()
print("backend sigmoid:", s)

# %% [markdown]
# The contract names sigmoid as ONE primitive ("stable for both signs") rather than
# composing it from exp, add and reciprocal, so each backend can use its own stable
# version (the JAX backend calls `jax.nn.sigmoid`).
#
# Its derivative is s (1 - s), computed from the saved output:

# %%
print(course.source(fn.Sigmoid))

# %% [markdown]
# ### Exercise 07.1: a stable softplus
#
# softplus(x) = log(1 + exp(x)) (a smooth ReLU; its derivative is the sigmoid) has the same
# problem as the textbook sigmoid: exp(1000) overflows. It has a second one: for x = -40,
# 1 + exp(-40) is exactly 1 in float64, so the naive formula returns 0 instead of
# 4.2e-18. Write `softplus(x)` for a float x that avoids both: split on the sign of x as
# the stable sigmoid does (log(1 + e^x) = x + log(1 + e^-x)), and use `math.log1p`. The
# check compares its slope with the library's sigmoid.

# %%
# EXERCISE 07.1: your code here
def softplus(x):
    raise NotImplementedError


# %%
lesson.exercise("07.1", softplus)

# %% [markdown]
# ## Swish and its lean backward
#
# swish(x) = x s(x) with s = sigmoid. By the product rule,
#
#     swish'(x) = s + x s (1 - s) = s (1 + x (1 - s))
#
# The Function keeps only x; the backward recomputes s (reading x through `recompute_from`,
# lesson 01, so that a compiler recomputes it too). One more sigmoid in the backward
# costs almost nothing next to a convolution, while every saved array of a B0 activation
# (up to 112 x 112 x 96 values per image) costs memory for the whole forward pass.

# %%
print(course.source(fn.Swish))

# %% [markdown]
# Compare with swish written as the composition `x * x.sigmoid()`: the Sigmoid context
# keeps its output s, and the Mul context keeps both its inputs, x and s. Two arrays of
# x's size instead of one. We count the distinct arrays the contexts keep (attributes
# that hold backend arrays):

# %%
def saved_arrays(out):
    """Distinct arrays kept by the contexts on the tape below `out`."""
    kept, stack, seen = {}, [out], set()
    while stack:
        t = stack.pop()
        if t._ctx is None or id(t) in seen:
            continue
        seen.add(id(t))
        for value in vars(t._ctx).values():
            if isinstance(value, pb.PyArray):
                kept[id(value)] = value
        stack.extend(t._ctx.parents)
    return len(kept)


x = Tensor.normal(0, (4, 8), requires_grad=True)
lean = saved_arrays(x.swish())
composed = saved_arrays(x * x.sigmoid())
print("arrays kept for the backward: Swish Function", lean, "| x * sigmoid(x)", composed)

# %% [markdown]
# ## Checking the derivative
#
# Finite differences at generic points, then a number you can check: swish has a single
# minimum where s (1 + x (1 - s)) = 0, at x = -1.2785 where swish = -0.2785 (the same
# digits: at the minimum x (1 - s) = -1, so swish = x s = x + 1). We find it by bisection
# on the gradient that autograd gives.

# %%
v = Tensor([-6.0, -2.5, -1.0, -0.3, 0.4, 1.7, 5.0], requires_grad=True)
err = check_elementwise(lambda v: v.swish(), [v])
print(f"swish gradient vs finite differences: worst error {err:.1e}")


def swish_slope(value):
    t = Tensor(value, requires_grad=True)
    t.swish().backward()
    return t.grad.item()


lo, hi = -3.0, 0.0  # slope < 0 at -3, > 0 at 0
for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if swish_slope(mid) < 0 else (lo, mid)
x_min = (lo + hi) / 2
swish_min = Tensor(x_min).swish().item()
print(f"minimum of swish at x = {x_min:.6f}, value {swish_min:.6f} (x + 1 = {x_min + 1:.6f})")

# %% [markdown]
# Side by side with ReLU, values and derivatives (both from autograd, at 241 points):

# %%
grid_x = Tensor([-6 + 0.05 * i for i in range(241)], requires_grad=True)
grid_x.swish().sum().backward()
swish_slopes = grid_x.grad.to_flat()
grid_r = Tensor(grid_x.data, requires_grad=True)
grid_r.relu().sum().backward()
xs = grid_x.to_flat()
values = {"swish": Tensor(grid_x.data).swish().to_flat(), "ReLU": Tensor(grid_x.data).relu().to_flat()}
minimum = [(x_min, f"minimum x = {x_min:.3f}")]
lesson.show(line_chart([
    dict(title="swish(x) = x sigmoid(x) and ReLU(x)", xlabel="x", legend="top-left", vlines=minimum,
         series=[Series(list(zip(xs, values["swish"])), "swish"), Series(list(zip(xs, values["ReLU"])), "ReLU")]),
    dict(title="their derivatives (autograd)", xlabel="x", legend="bottom-right", vlines=minimum,
         series=[Series(list(zip(xs, swish_slopes)), "swish'"),
                 Series([(x, g) for x, g in zip(xs, grid_r.grad.to_flat()) if x < 0], "ReLU'", (255, 127, 14)),
                 Series([(x, g) for x, g in zip(xs, grid_r.grad.to_flat()) if x > 0], None, (255, 127, 14))])],
    "swish vs ReLU"), "swish_vs_relu")
decreasing = [x for x, g in zip(xs, swish_slopes) if g < 0]
print(f"swish decreases for x in [{min(decreasing)}, {max(decreasing):.2f}] of this grid, and everywhere below "
      f"{x_min:.3f}; its slope never goes below {min(swish_slopes):.4f} and tops out at {max(swish_slopes):.4f}")

# %% [markdown]
# Unlike ReLU, swish is smooth and lets a little negative signal through. It is not
# monotonic: it *decreases* for every x below its minimum at -1.278 (its slope is
# negative there: steepest, -0.0998, near x = -2.4, and tending to 0 from below as x goes
# to minus infinity) and increases above. Its gradient at 0 is 1/2 where ReLU's jumps from 0 to 1, and for large x it
# overshoots 1 slightly (about 1.0998 near x = 2.4) before settling to 1.
#
# ### Exercise 07.2: swish's derivative, by hand
#
# Write `swish_grad(x)`: the derivative of swish at a float x, from the product rule (the
# formula of the previous section). The check compares with autograd at ten points.

# %%
# EXERCISE 07.2: your code here
def swish_grad(x):
    raise NotImplementedError


# %%
lesson.exercise("07.2", swish_grad)

# %% [markdown]
# ## Checks

# %%
assert overflowed, "the textbook formula overflows for x = -1000"
assert s[0] == 0.0 and s[-1] == 1.0 and s[2] == 0.5, s
assert abs(s[1] - math.exp(-30) / (1 + math.exp(-30))) < 1e-25
assert lean == 1, "Swish keeps only its input"
assert composed == 2, "the composed version keeps x and sigmoid(x)"
assert err < 1e-6
assert abs(swish_slope(0.0) - 0.5) < 1e-15
assert abs(x_min - (-1.278464542761074)) < 1e-9 and abs(swish_min - (x_min + 1)) < 1e-9, (x_min, swish_min)
assert min(decreasing) == xs[0] and x_min - 0.05 < max(decreasing) < x_min, "decreasing on all of x < -1.278"
assert all(g > 0 for x, g in zip(xs, swish_slopes) if x > x_min), "increasing above the minimum"
assert abs(max(swish_slopes) - 1.0998) < 1e-3, max(swish_slopes)
lesson.finish()
