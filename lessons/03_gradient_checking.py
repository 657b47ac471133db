# %% [markdown]
# # Lesson 03: gradient checking
#
# Every `backward` in tinyeffnet is written by hand. A wrong one does not crash: the
# network still trains, just worse, and nobody notices. So every gradient is checked
# against the definition of a derivative, computed numerically.
#
# **Central differences.** For a small step eps,
#
#     f'(x)  ~  (f(x + eps) - f(x - eps)) / (2 eps)
#
# The error of this formula is about eps^2 * f'''(x) / 6 (the even Taylor terms cancel),
# against eps * f''(x) / 2 for the one-sided (f(x + eps) - f(x)) / eps. For small eps, the
# round-off of the two evaluations (about 1e-16 relative in float64, divided by eps) takes
# over. In float64 with eps = 1e-5 the central error is around 1e-10 to 1e-11: far below
# the 1e-6 tolerance we demand. In float32 (round-off about 1e-7) the round-off term alone is
# 1e-7 / eps: about 1e-4 at eps = 1e-3, too coarse to catch a subtle bug. That is why
# the pure-Python backend computes in float64 and why gradient checks run there.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("03")
ROOT = course.ROOT

import math

import tinyeffnet.engine.ops as fn
from tinyeffnet import Tensor, functional as F
from tinyeffnet.engine import gradcheck
from tinyeffnet.engine.gradcheck import GradcheckError, check_elementwise, check_projection
from tinyeffnet.plotting.charts import Series, line_chart

# %% [markdown]
# ## The error, measured
#
# f(x) = exp(x) at x = 1, where f'(1) = e exactly.

# %%
def one_sided_error(eps):
    return abs((math.exp(1 + eps) - math.exp(1)) / eps - math.e)


def central_error_measured(eps):
    return abs((math.exp(1 + eps) - math.exp(1 - eps)) / (2 * eps) - math.e)


errors = {eps: (one_sided_error(eps), central_error_measured(eps))
          for eps in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10)}
lesson.table(["eps", "one-sided error", "central error"],
             [(f"{eps:.0e}", f"{one:.2e}", f"{central:.2e}") for eps, (one, central) in errors.items()])

# %% [markdown]
# Read the table from the top: each 10x smaller eps makes the one-sided error 10x smaller
# and the central error 100x smaller, as long as the Taylor term dominates. Then round-off
# (about 1e-16 * e / eps) catches up, and where it meets the Taylor term each formula has
# its best eps:
#
# - central: e eps^2 / 6 = 1e-16 e / eps near eps = 1e-5; below that (1e-6, 1e-7) the
#   error stops falling and wanders around 1e-10, then grows (1e-8 and smaller);
# - one-sided: e eps / 2 = 1e-16 e / eps near eps = 1e-8, so it keeps shrinking down to
#   1e-8 and only grows below (1e-9, 1e-10).
#
# The best central error (6e-11) is about a hundred times smaller than the best one-sided
# one (7e-9), at a thousand times larger a step. `gradcheck` uses eps = 1e-5. On a log-log plot the Taylor terms are straight
# lines of slope 1 and 2 (dashed), and round-off is the rising left edge:

# %%
sweep = [10 ** (-k / 4) for k in range(4, 49)]
lesson.show(line_chart([dict(
    title="exp'(1) by finite differences, float64", xlabel="eps (log scale)", ylabel="|error| (log scale)",
    xlog=True, ylog=True, legend="bottom-right",
    series=[Series([(e, one_sided_error(e)) for e in sweep], "one-sided"),
            Series([(e, central_error_measured(e)) for e in sweep], "central"),
            Series([(e, math.e * e / 2) for e in sweep if e > 1e-9], "e eps / 2", style="dashed"),
            Series([(e, math.e * e * e / 6) for e in sweep if e > 1e-6], "e eps^2 / 6", style="dashed")])],
    size=(760, 520)), "error_vs_eps")

# %% [markdown]
# ### Exercise 03.1: the error, predicted
#
# Write `central_error(x, eps)`: the *predicted* error of the central difference of
# f = exp at any x, the leading term of its Taylor expansion (expand f(x + eps) and
# f(x - eps) to the eps^3 term and subtract; the dashed line of slope 2 is this term at
# x = 1). A prediction, not the measured error: the check tries eps = 0.5 and 0.3, where
# the higher Taylor terms make the measured error differ from the leading one, and
# eps = 1e-7, where round-off swamps it; and x other than 1.

# %%
# EXERCISE 03.1: your code here
def central_error(x, eps):
    raise NotImplementedError


# %%
lesson.exercise("03.1", central_error)

# %% [markdown]
# ## `tinyeffnet/engine/gradcheck.py`
#
# Two ways to check a function `f(*inputs) -> Tensor`:
#
# - `check_elementwise`: nudge every input element, one at a time. Two forward passes per
#   element: slow, but a failure names the exact input and index.
# - `check_projection`: one random unit direction v over *all* inputs; compare
#   sum(grad * v) (from one backward) with (f(x + eps v) - f(x - eps v)) / (2 eps). Two
#   forward passes in all, so it works on whole networks.
#
# A non-scalar output is first reduced with fixed random weights (so every output
# element counts, with a different weight). The error is relative, with a floor: near a
# zero gradient a relative error means nothing.

# %%
print(course.source(gradcheck._error, docstring=True))
print(course.source(check_projection))

# %% [markdown]
# ### Exercise 03.2: a numerical gradient of your own
#
# Write `numeric_grad(f, x, index, eps=1e-5)`: the central difference of a function `f`
# (Tensor in, one-element Tensor out) at the Tensor `x`, nudging only flat element `index`.
# Build the two nudged tensors from `x.to_flat()` and `x.shape` (e.g.
# `Tensor(values).reshape(*x.shape)`). The check compares with autograd on three functions
# with a tolerance of 1e-7, which a one-sided difference cannot meet.

# %%
# EXERCISE 03.2: your code here
def numeric_grad(f, x, index, eps=1e-5):
    raise NotImplementedError


# %%
lesson.exercise("03.2", numeric_grad)

# %% [markdown]
# ## Checking real ops
#
# A small composite: sigmoid of a product, with a broadcast. Each input is a leaf that
# requires a gradient.

# %%
a = Tensor([[0.3, -1.2, 2.0], [0.7, 0.1, -0.4]], requires_grad=True)
b = Tensor([1.5, -0.5, 0.25], requires_grad=True)
err_elementwise = check_elementwise(lambda a, b: (a * b).sigmoid() * a, [a, b])
print(f"elementwise: worst error {err_elementwise:.1e}")

# %% [markdown]
# A bigger graph, convolution + swish + mean, checked by projection:

# %%
x = Tensor.normal(1, (2, 5, 5, 3), requires_grad=True)
w = Tensor.normal(2, (3, 3, 3, 4), std=0.3, requires_grad=True)
err_projection = check_projection(lambda x, w: F.swish(F.conv2d(x, w, stride=2)).mean(), [x, w])
print(f"projection: error {err_projection:.1e}")

# %% [markdown]
# ## Catching a wrong backward
#
# Now a deliberately wrong Function. We take the library's `Swish` (swish(x) = x *
# sigmoid(x), derivative s + x s (1 - s)), keep its forward, and replace its backward by
# one that forgets the second term (a classic slip: treating the sigmoid as a constant).

# %%
class BuggySwish(fn.Swish):
    def backward(self, g):
        return (self.backend.mul(g, self.backend.sigmoid(self.x)),)  # missing + x*s*(1-s)


v = Tensor([[-2.0, -0.5, 0.0, 0.5, 2.0]], requires_grad=True)
try:
    check_elementwise(lambda v: BuggySwish.apply(v), [v])
    caught = None
except GradcheckError as e:
    caught = str(e)
print("GradcheckError:", caught)

# %% [markdown]
# The message names the input, the flat index and both values. Where x = 0 the missing
# term x s (1 - s) is zero, so that element passes: a check at a single "nice" point can
# miss a bug. Use generic values.
#
# The projection check catches it too, with one pair of forward passes:

# %%
try:
    check_projection(lambda v: BuggySwish.apply(v), [v])
    caught_projection = None
except GradcheckError as e:
    caught_projection = str(e)
print("GradcheckError:", caught_projection)

# %% [markdown]
# And the library's own `Swish` passes the same check:

# %%
err_swish = check_elementwise(lambda v: v.swish(), [v])
print(f"the library's Swish: worst error {err_swish:.1e}")

# %% [markdown]
# The test suite (tests/test_autograd.py, tests/test_layers.py) runs these checks on
# every Function, every layer and every MBConv variant.
#
# ## Checks

# %%
one_sided_1e3, central_1e3 = errors[1e-3]
one_sided_1e4, central_1e4 = errors[1e-4]
assert 8 < one_sided_1e3 / one_sided_1e4 < 12, "one-sided error is O(eps)"
assert 80 < central_1e3 / central_1e4 < 120, "central error is O(eps^2)"
assert errors[1e-5][1] < 1e-9, "central differences at eps 1e-5 resolve 1e-9 in float64"
assert errors[1e-10][1] > 100 * errors[1e-5][1], "too small a step drowns in round-off"
assert errors[1e-8][0] < errors[1e-7][0] < errors[1e-6][0], "one-sided errors still shrink down to 1e-8"
assert errors[1e-9][0] > errors[1e-8][0] and errors[1e-10][0] > errors[1e-8][0], "and grow below it"
assert min(one for one, _ in errors.values()) > 50 * min(central for _, central in errors.values())
assert err_elementwise < 1e-6 and err_projection < 1e-6 and err_swish < 1e-6
assert caught is not None and "input 0" in caught and "analytic" in caught, "the wrong backward must be caught"
assert "flat index 0" in caught or "flat index 4" in caught or "flat index 1" in caught, caught
assert caught_projection is not None, "the projection check must catch the wrong backward too"
lesson.finish()
