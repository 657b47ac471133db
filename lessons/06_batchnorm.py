# %% [markdown]
# # Lesson 06: batch normalisation
#
# Every convolution in EfficientNet is followed by batch norm (BN). Per channel c, over
# the M = N * H * W values of that channel in the batch:
#
#     mean_c = sum(x) / M,   var_c = sum((x - mean_c)^2) / M          (biased variance)
#     xhat   = (x - mean_c) / sqrt(var_c + eps)
#     y      = gamma_c * xhat + beta_c
#
# gamma and beta are trained. TensorFlow's EfficientNet uses eps = 1e-3 and keeps
# **moving averages** of mean and var with momentum 0.99:
#
#     moving = 0.99 * moving + 0.01 * batch_statistic
#
# Training normalises with the batch's own statistics; evaluation uses the moving ones
# (a test image should not depend on the others in its batch).

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("06")
ROOT = course.ROOT

import math

import tinyeffnet.engine.ops as fn
from tinyeffnet import Tensor, functional as F
from tinyeffnet.engine.autograd import topological_order
from tinyeffnet.engine.gradcheck import check_elementwise
from tinyeffnet.nn import BatchNorm2d
from tinyeffnet.plotting.charts import Series, line_chart

# %% [markdown]
# ## Train mode
#
# Two channels over a batch of two 2x2 images: M = 8 values per channel. Channel 0 holds
# 1..8 (mean 4.5, variance 5.25), channel 1 is 10 times channel 0.

# %%
x = Tensor([[[[v, 10 * v] for v in (1 + 4 * n + 2 * r, 2 + 4 * n + 2 * r)] for r in range(2)]
            for n in range(2)])                                        # (2, 2, 2, 2)
bn = BatchNorm2d(2)
print("momentum", bn.momentum, "eps", bn.eps)
y = bn(x)
ch0 = y.to_flat()[0::2]
mean0 = sum(ch0) / 8
var0 = sum((v - mean0) ** 2 for v in ch0) / 8
print("channel 0 after BN: mean", round(mean0, 12), "variance", round(var0, 6))
print("by hand: variance 5.25 / (5.25 + 0.001) =", round(5.25 / 5.251, 6))
print("moving mean after one step:", bn.moving_mean.tolist(), " (0.01 * [4.5, 45])")
print("moving var after one step: ", bn.moving_var.tolist(), " (0.99 * 1 + 0.01 * [5.25, 525])")

# %% [markdown]
# ### Exercise 06.1: the forward of batch norm
#
# Write `bn_forward(x, gamma, beta, eps)`: training-mode batch norm of an NHWC Tensor by
# the formulas at the top (biased variance, eps inside the square root), with Tensor
# arithmetic: `x.mean(axis=(0, 1, 2), keepdims=True)`, `-`, `*`, `** -0.5`, returning a
# Tensor of x's shape. The check compares with the library's `batch_norm_train` for four
# shapes (several images, size-1 axes in the middle, so statistics over only some of N, H
# and W show) and eps = 1e-3, 0.1 (where eps outside the root shows) and 1e-5. Your
# version then normalises the example above.

# %%
# EXERCISE 06.1: your code here
def bn_forward(x, gamma, beta, eps):
    raise NotImplementedError


# %%
lesson.exercise("06.1", bn_forward)
with lesson.plugged("06.1"):  # your forward on the example, compared with the layer's
    if lesson.passed("06.1"):
        yours = lesson.answer("06.1")(x, Tensor([1.0, 1.0]), Tensor([0.0, 0.0]), 1e-3)
        print("your bn_forward, channel 0:", [round(v, 6) for v in yours.to_flat()[0::2]])
        lesson.agrees("your bn_forward on the example", yours, y)

# %% [markdown]
# The output has mean 0 and variance *slightly below* 1: eps is added to the variance.
#
# ## The moving averages are slow
#
# After n steps on batches with the same statistics, the moving mean has moved a fraction
# 1 - 0.99^n of the way from 0 to the batch mean: 63% after 100 steps, 99% after 459. In a
# short run the moving statistics are still close to their initial values (0 and 1), so
# evaluation normalises with the wrong numbers and accuracy collapses. That is why the
# trainer's `default` preset (a few hundred steps on the embedded data) uses momentum 0.9
# (`tinyeffnet/training/config.py`), while the `imagenet` preset keeps the paper's 0.99.

# %%
progress, layers = {}, {}
for momentum in (0.99, 0.9):
    layer = layers[momentum] = BatchNorm2d(2, momentum=momentum)
    progress[momentum] = [(0, 0.0)]
    for step in range(1, 201):
        layer(x)
        progress[momentum].append((step, layer.moving_mean.tolist()[0] / 4.5))
fraction, fast_fraction = progress[0.99][50][1], progress[0.9][50][1]
print(f"after 50 steps the moving mean is {fraction:.1%} of the way there; 1 - 0.99^50 = {1 - 0.99 ** 50:.1%}")
print(f"with momentum 0.9: {fast_fraction:.1%}")
lesson.show(line_chart([dict(
    title="BN moving mean / batch mean, same batch every step", xlabel="training step", ylabel="fraction of the way",
    integer_x=True, legend="bottom-right", hlines=[(1.0, "the batch statistic")],
    series=[Series(progress[0.99], "momentum 0.99 (the paper's)"), Series(progress[0.9], "momentum 0.9 (short runs)")])],
    size=(760, 460)), "bn_moving_mean")

# %% [markdown]
# ## Eval mode
#
# `bn.eval()` switches every module below it to the moving statistics: BN becomes a fixed
# affine map per channel, y = x * scale + shift with scale = gamma / sqrt(moving_var + eps).

# %%
bn = layers[0.99]  # after 200 steps
bn.eval()
y_eval = bn(x)
mm, mv = bn.moving_mean.tolist()[0], bn.moving_var.tolist()[0]
by_hand = (1.0 - mm) / math.sqrt(mv + 1e-3)
print("eval output [0,0,0,0]:", y_eval.to_flat()[0], " by hand:", by_hand)
print(course.source(F.batch_norm_eval))

# %% [markdown]
# ## The backward, in closed form
#
# We could let autograd differentiate the chain of small ops (mean, subtract, square,
# mean, add, sqrt, divide, multiply, add). It would be right, but it saves many
# intermediate arrays and makes the compiled program bigger. Deriving the gradient once
# by hand gives one `Function`.
#
# Write dxhat = dy * gamma (the gradient reaching xhat). The output depends on x_i directly
# and through mean and var:
#
#     dL/dx_i = dxhat_i * invstd
#             + dL/dmean * 1/M                          (dmean/dx_i = 1/M)
#             + dL/dvar * 2 (x_i - mean) / M            (dvar/dx_i, the mean term sums to 0)
#
# with dL/dmean and dL/dvar what the chain rule gives through xhat = (x - mean) * invstd
# and invstd = (var + eps)^-1/2. And for the affine part, dgamma and dbeta.
#
# ### Exercise 06.2: the backward of batch norm
#
# Work out dL/dmean and dL/dvar, substitute them (x_i - mean = xhat_i / invstd helps),
# and write `bn_backward(x, gamma, beta, dy, eps)` -> (dx, dgamma, dbeta) with Tensor
# arithmetic (`mean`, `sum` over `axis=(0, 1, 2)` with `keepdims=True`, `*`, `-`,
# `** -0.5`), not `backward()`: the engine runs a Function's backward under `no_grad`,
# where nothing is taped, and so does the check. dgamma and dbeta have gamma's shape (C,).
# The check compares with autograd through the library's `batch_norm_train` for four
# shapes and eps values, and once more with your backward inside a Function. Then your
# forward and backward become one Function, compared with the library's, and the checks
# below run on it.

# %%
# EXERCISE 06.2: your code here
def bn_backward(x, gamma, beta, dy, eps):
    raise NotImplementedError


# %%
lesson.exercise("06.2", bn_backward)

# %% [markdown]
# Two facts any right dx has: it is orthogonal to the constant vector (sum(dx) = 0 per
# channel: adding a constant to a channel changes nothing after BN), and, up to the small
# eps, to xhat (scaling a channel changes almost nothing either).
#
# The closed form the library uses, and its `BatchNorm.backward`, are shown once yours
# passes. The library writes dx as one multiply-add per element with three numbers per
# channel, and keeps x, not xhat; both choices are for the compiler: the per-element work is
# so small that XLA recomputes it inside the two backward convolutions that read dx, instead
# of writing xhat and dx to memory and reading them back (the README's TPU table counts the
# bytes).

# %%
lesson.reveal("06.2", """The closed form: dL/dmean = -invstd * sum(dxhat) and dL/dvar = -1/2 * invstd^2 * sum(dxhat * xhat), so

    dx = invstd / M * (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))

The library's Function also reuses sum(dxhat) = gamma * dbeta and sum(dxhat * xhat) = gamma * dgamma, and writes
dx = a * dy - b * (x - mean) - c, with three numbers per channel (a, b, c):""",
              course.source(fn.BatchNorm.backward))

# %% [markdown]
# ## Checking it, two ways
#
# 1. Against finite differences, through `functional.batch_norm_train` (which computes
#    the batch statistics and applies the Function).

# %%
xr = Tensor.normal(5, (2, 3, 3, 4), requires_grad=True)
gamma = Tensor([1.5, 0.5, -1.0, 2.0], requires_grad=True)
beta = Tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
err_fd = check_elementwise(lambda x, g, b: F.batch_norm_train(x, g, b, 1e-3)[0], [xr, gamma, beta])
print(f"closed form vs finite differences: worst error {err_fd:.1e}")

# %% [markdown]
# 2. Against autograd of the naive chain of small ops, written here with Tensor methods:

# %%
def naive_bn(x, g, b, eps=1e-3):
    centred = x - x.mean(axis=(0, 1, 2), keepdims=True)
    var = (centred * centred).mean(axis=(0, 1, 2), keepdims=True)
    return centred * (var + eps) ** -0.5 * g + b


dy = Tensor.normal(6, xr.shape)
grads = {}
for name, f in (("closed form", lambda x, g, b: F.batch_norm_train(x, g, b, 1e-3)[0]), ("naive chain", naive_bn)):
    leaves = [Tensor(t.data, requires_grad=True) for t in (xr, gamma, beta)]
    out = f(*leaves)
    tape = len(topological_order(out))
    (out * dy).sum().backward()
    grads[name] = [t.grad.to_flat() for t in leaves]
    print(f"{name}: {tape} tensors on the tape")
largest = max(abs(p - q) for a, b in zip(grads["closed form"], grads["naive chain"]) for p, q in zip(a, b))
print(f"largest difference between the two gradients: {largest:.1e}")
dx = grads["closed form"][0]
sum_dx_channel0 = sum(dx[0::4])
print(f"sum of dx over channel 0: {sum_dx_channel0:.1e}")

# %% [markdown]
# ## Your batch norm, as a Function
#
# Exercises 06.1 and 06.2 together are a batch-norm Function: `course.as_function` plugs
# them into the engine, and the two checks above run on it: finite differences, and
# autograd's gradient of the naive chain.

# %%
your_bn_error = your_bn_largest = None
with lesson.plugged("06.2"):  # your backward, with your forward (the forward alone was compared above)
    if lesson.passed("06.1") and lesson.passed("06.2"):
        YourBatchNorm = course.as_function(lambda x, g, b, eps: lesson.answer("06.1")(x, g, b, eps),
                                           lambda x, g, b, dy, eps: lesson.answer("06.2")(x, g, b, dy, eps),
                                           name="YourBatchNorm")
        leaves = [Tensor(t.data, requires_grad=True) for t in (xr, gamma, beta)]
        out = YourBatchNorm.apply(*leaves, eps=1e-3)
        lesson.agrees("your batch norm's output", out, F.batch_norm_train(xr, gamma, beta, 1e-3)[0])
        (out * dy).sum().backward()
        your_bn_largest = max(lesson.agrees(f"your batch norm's gradient of {name}", t.grad, want, 1e-9, 1e-10)
                              for name, t, want in zip(("x", "gamma", "beta"), leaves, grads["naive chain"]))
        your_bn_error = check_elementwise(lambda x, g, b: YourBatchNorm.apply(x, g, b, eps=1e-3), [xr, gamma, beta])
        print(f"YOUR batch norm: finite differences {your_bn_error:.1e}; against the naive chain {your_bn_largest:.1e}")
    else:
        print("runs once exercises 06.1 and 06.2 pass")

# %% [markdown]
# ## Checks

# %%
assert abs(mean0) < 1e-12 and abs(var0 - 5.25 / 5.251) < 1e-9, (mean0, var0)
assert abs(fraction - (1 - 0.99 ** 50)) < 1e-9, "moving = 0.99 moving + 0.01 batch, 50 times"
assert abs(fast_fraction - (1 - 0.9 ** 50)) < 1e-9
assert all(abs(f - (1 - 0.99 ** n)) < 1e-9 for n, f in progress[0.99]), "the whole curve is 1 - 0.99^n"
assert abs(y_eval.to_flat()[0] - by_hand) < 1e-12, "eval uses the moving statistics"
assert err_fd < 1e-6, err_fd
assert largest < 1e-10, "the closed form equals autograd through the naive chain"
assert abs(sum_dx_channel0) < 1e-10, "BN's input gradient sums to zero per channel"
lesson.finish()
