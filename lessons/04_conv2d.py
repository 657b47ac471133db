# %% [markdown]
# # Lesson 04: convolution, forward and backward
#
# Almost all of EfficientNet's arithmetic is convolution. This lesson pins down the
# three things that must match TensorFlow exactly for the paper's network to be the
# paper's network, and the two backward passes.
#
# 1. **Layouts.** Images are NHWC (batch, height, width, channels); kernels are HWIO
#    (kernel height, kernel width, input channels, output channels). TensorFlow and
#    `jax.lax.conv_general_dilated(..., ('NHWC', 'HWIO', 'NHWC'))` use these.
# 2. **A convolution is a cross-correlation**: the kernel is *not* flipped in the forward.
# 3. **SAME padding, TensorFlow's way**: output = ceil(input / stride), with the odd pixel
#    of padding at the bottom/right.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("04")
ROOT = course.ROOT

import operator

import tinyeffnet.engine.ops as fn
from backends import get_backend
from backends.python_backend import PythonBackend
from tinyeffnet import Tensor, functional as F
from tinyeffnet.engine.gradcheck import check_projection
from tinyeffnet.plotting.diagrams import conv_windows

py = get_backend("python")


def dot(a, b):
    """<a, b>: the sum of elementwise products of two arrays (or Tensors) of one shape."""
    a = a.to_flat() if isinstance(a, Tensor) else py.to_flat(a)
    b = b.to_flat() if isinstance(b, Tensor) else py.to_flat(b)
    return sum(map(operator.mul, a, b))


def grid(t):
    """A (1, H, W, 1) tensor as rows of numbers, for printing."""
    return [[row[0] for row in r] for r in t.tolist()[0]]

# %% [markdown]
# ## Layouts
#
# In NHWC, element [n, h, w, c] of an (N, H, W, C) array is at flat position
# ((n H + h) W + w) C + c: the channels of one pixel are contiguous. A 1x1 convolution is
# therefore a plain matrix product of the (N H W, C_in) pixel rows with the (C_in, C_out)
# kernel.
#
# ## A convolution is a correlation
#
# A 3x3 image holding 1..9 and a 2x2 kernel [[1, 0], [0, -1]], no padding ('VALID'):
# output[i, j] = sum over (a, b) of x[i + a, j + b] * w[a, b] = x[i, j] - x[i + 1, j + 1].
# 1 - 5 = -4, and the same everywhere.

# %%
x3 = Tensor([[[[v] for v in row] for row in ([1, 2, 3], [4, 5, 6], [7, 8, 9])]])   # (1, 3, 3, 1)
k2 = Tensor([[[[1.0]], [[0.0]]], [[[0.0]], [[-1.0]]]])                            # (2, 2, 1, 1)
y_valid = F.conv2d(x3, k2, padding="VALID")
print("input", x3.shape, "kernel", k2.shape, "->", y_valid.shape, grid(y_valid))

# %% [markdown]
# ## TensorFlow SAME padding
#
# out = ceil(n / s); the total padding is whatever makes the last window fit,
# max((out - 1) s + k - n, 0), split with the extra pixel at the END:

# ### Exercise 04.1: SAME padding
#
# Before reading the library's version below, write `same_padding(n, k, s)` -> (lo, hi)
# for one axis of size n, kernel k and stride s, from the three sentences above. The check
# compares with the library on 600 cases.

# %%
# EXERCISE 04.1: your code here
def same_padding(n, k, s):
    raise NotImplementedError


# %%
lesson.exercise("04.1", same_padding)

# %% [markdown]
# The library's, once yours passes:

# %%
lesson.reveal("04.1", course.source(F.same_padding))
cases = [(224, 3, 1), (224, 3, 2), (112, 3, 2), (56, 5, 2), (14, 5, 2), (7, 5, 2), (225, 3, 2)]
pads = {c: F.same_padding(*c) for c in cases}
lesson.table(["size", "kernel", "stride", "pad top", "pad bottom", "output"],
             [(n, k, s, lo, hi, (n + lo + hi - k) // s + 1) for (n, k, s), (lo, hi) in pads.items()])

# %% [markdown]
# With stride 2 on an even size, the padding is (0, 1): nothing on top, one row at the
# bottom. PyTorch's `padding=k // 2` pads (1, 1) instead. The output *shape* is the same,
# but every window is shifted by one pixel, so the numbers differ and pretrained weights
# would not transfer. B0's stem (3x3, stride 2, 224 -> 112) is exactly this case.
#
# Seen on a 4x4 image holding 1..16 and a 3x3 kernel of ones: output [0, 0] is the sum of
# the first window.

# %%
tf_pads = ((0, 1), (0, 1))
x4 = Tensor([[[[float(4 * r + c + 1)] for c in range(4)] for r in range(4)]])  # (1, 4, 4, 1)
ones3 = Tensor.ones((3, 3, 1, 1))
y_tf = F.conv2d(x4, ones3, stride=2, padding="SAME")
y_sym = F.conv2d(x4, ones3, stride=2, padding=((1, 1), (1, 1)))
print("TensorFlow SAME:", grid(y_tf), " first window = rows 0-2, cols 0-2: 1+2+3+5+6+7+9+10+11 = 54")
print("symmetric (1,1):", grid(y_sym), " first window = rows -1..1: 1+2+5+6 = 14")
four_by_four = [[4 * r + c + 1 for c in range(4)] for r in range(4)]
lesson.show(conv_windows([
    dict(title="TensorFlow SAME: pad (0, 1)", values=four_by_four, pad=tf_pads, kernel=3, stride=2,
         notes=[f"y = {grid(y_tf)}"]),
    dict(title="PyTorch padding=1: pad (1, 1)", values=four_by_four, pad=((1, 1), (1, 1)), kernel=3, stride=2,
         notes=[f"y = {grid(y_sym)}"])],
    "3x3 kernel of ones, stride 2: the four windows of the 2x2 output"), "same_vs_symmetric")

# %% [markdown]
# The windows tell it: TensorFlow's first window (blue) starts on the image's first pixel
# and the padding only completes the last windows (green and red, bottom and right);
# symmetric padding shifts every window up and left by one, so its first window is mostly
# zeros and the image's last row and column are never the centre of anything.

# %% [markdown]
# ### Exercise 04.2: the forward convolution, from its windows
#
# Write `conv2d_windows(x, w, stride, padding)` for x (N, H, W, C_in), w (k, k, C_in,
# C_out) and explicit padding ((top, bottom), (left, right)) of zeros, no groups: output
# pixel (p, q) is the window of the padded input starting at row p * stride, column
# q * stride, and y[n, p, q, o] = sum over the window's k x k taps (a, b) and the input
# channels i of xpad[n, p s + a, q s + b, i] * w[a, b, i, o]. The output has
# (H + top + bottom - k) // stride + 1 rows. Plain loops over `x.tolist()` and
# `w.tolist()` are fine (padded row p s + a is row p s + a - top of x, a zero outside x);
# return a Tensor or nested lists. Rows and columns have their own sizes and padding: read
# top and bottom from padding[0], left and right from padding[1]. The check compares with
# `conv2d` on eight convolutions (SAME, VALID and uneven padding, rows and columns padded
# differently, kernels 1 to 5, strides 1 to 3, one-row and one-column images). Your
# convolution becomes a Function at the end of the lesson.

# %%
# EXERCISE 04.2: your code here
def conv2d_windows(x, w, stride, padding):
    raise NotImplementedError


# %%
lesson.exercise("04.2", conv2d_windows)

# %% [markdown]
# `functional.conv2d` turns 'SAME' into explicit (lo, hi) pairs and calls the `Conv2d`
# Function; the backend primitive only ever sees explicit padding.

# %%
print(course.source(fn.Conv2d))

# %% [markdown]
# ## The gradient with respect to the input, derived in one dimension
#
# The smallest case with everything in it: a row x0..x3, a kernel (w0, w1, w2), stride 2,
# TensorFlow SAME padding (0, 1), so one zero after x3. Two outputs:
#
#     y0 = w0 x0 + w1 x1 + w2 x2
#     y1 = w0 x2 + w1 x3 + w2 0
#
# Each x collects the gradient of every output it took part in, times the weight it met
# there:
#
#     dx0 = w0 dy0
#     dx1 = w1 dy0
#     dx2 = w2 dy0 + w0 dy1
#     dx3 = w1 dy1
#
# Now read these right-hand sides as a sliding window. **Dilate** dy by the stride (s - 1
# zeros between its entries: dy0, 0, dy1), **pad** it with k - 1 - lo = 2 zeros in front
# and k - 1 - hi = 1 behind (0, 0, dy0, 0, dy1, 0), and slide the **flipped** kernel
# (w2, w1, w0) over it with stride 1:
#
#     window 0: (0,   0,   dy0) . (w2, w1, w0) = w0 dy0          = dx0
#     window 1: (0,   dy0, 0  ) . (w2, w1, w0) = w1 dy0          = dx1
#     window 2: (dy0, 0,   dy1) . (w2, w1, w0) = w2 dy0 + w0 dy1 = dx2
#     window 3: (0,   dy1, 0  ) . (w2, w1, w0) = w1 dy1          = dx3
#
# Why each step: the dilation's zeros stand for the positions the stride skipped (no
# output started at x1 or x3); the flip, because output j met x[j s + a] with weight w[a],
# so seen from x the weights come in reverse order; the padding, so that the first and last
# x see every window that reached them. One more case: when the forward's last window
# stops short of the end (VALID padding, or an odd size), the input rows it never reached
# get zero gradient, which `skipped` extra zeros at the back provide.
#
# The same four equations, with numbers, by the recipe in plain Python:

# %%
x_1d, w_1d, dy_1d = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 5.0], [7.0, 11.0]
by_chain_rule = [w_1d[0] * dy_1d[0], w_1d[1] * dy_1d[0], w_1d[2] * dy_1d[0] + w_1d[0] * dy_1d[1], w_1d[1] * dy_1d[1]]
dilated_padded = [0.0, 0.0, dy_1d[0], 0.0, dy_1d[1], 0.0]
flipped = w_1d[::-1]
by_recipe = [sum(d * f for d, f in zip(dilated_padded[i:i + 3], flipped)) for i in range(4)]
print("dx by the chain rule:", by_chain_rule, " by dilate, pad, flip:", by_recipe)

# %% [markdown]
# ## The same in two dimensions
#
# In 2-D the recipe runs on both axes at once:
#
# **dx = a stride-1 convolution of the output gradient, dilated by the stride (s - 1
# zeros inserted between its rows and columns) and padded by (k - 1 - lo, k - 1 - hi +
# skipped), with the kernel flipped in H and W** (and, with several channels, its input
# and output channels swapped). `skipped` counts input rows the forward's last window
# never reached.
#
# Built by hand for the 4x4, 3x3, stride-2 example. SAME pads (0, 1); output 2x2.
# - dilate dy = [[1, 2], [3, 4]] to [[1, 0, 2], [0, 0, 0], [3, 0, 4]];
# - pad: lo' = 3 - 1 - 0 = 2; skipped = (4 + 0 + 1 - 3) - (2 - 1) * 2 = 0, hi' = 3 - 1 - 1 + 0 = 1;
# - flip the kernel and convolve with stride 1: (3 + 2 + 1) - 3 + 1 = 4 rows. Back to 4x4.
#
# A kernel with distinct weights 1..9 makes a wrong flip visible.

# %%
w9 = Tensor([[[[float(3 * r + c + 1)]] for c in range(3)] for r in range(3)])      # (3, 3, 1, 1)
dy = Tensor([[[[1.0], [2.0]], [[3.0], [4.0]]]])                                      # (1, 2, 2, 1)
dy_dilated = Tensor([[[[1.0], [0.0], [2.0]], [[0.0], [0.0], [0.0]], [[3.0], [0.0], [4.0]]]])
w9_flipped = Tensor(py.from_flat(list(reversed(w9.to_flat())), (3, 3, 1, 1)))       # 1 channel: reverse
dx_by_hand = F.conv2d(dy_dilated, w9_flipped, stride=1, padding=((2, 1), (2, 1)))

dx_primitive = Tensor(py.conv2d_grad_input(dy.data, w9.data, (1, 4, 4, 1), 2, tf_pads))
xg = Tensor(x4.data, requires_grad=True)
(F.conv2d(xg, w9, stride=2) * dy).sum().backward()       # autograd: the Conv2d Function's backward
print("dx by hand:     ", grid(dx_by_hand))
print("dx (primitive): ", grid(dx_primitive))
print("dx (autograd):  ", grid(xg.grad))

# %% [markdown]
# ### Exercise 04.3: the input gradient, from the windows
#
# The recipe above is how a fast implementation does it. The direct way reads the forward
# backwards: every tap of every window that read x[n, r, c, i] (r = p s + a - top,
# c = q s + b - left, inside x) hands it dy[n, p, q, o] * w[a, b, i, o], summed over o.
# Write `conv_grad_input(dy, w, x_shape, stride, padding)` that way, loops over the same
# windows as exercise 04.2, and return dx of shape x_shape (a Tensor or nested lists). The
# check compares with autograd's dx on the eight convolutions of exercise 04.2.

# %%
# EXERCISE 04.3: your code here
def conv_grad_input(dy, w, x_shape, stride, padding):
    raise NotImplementedError


# %%
lesson.exercise("04.3", conv_grad_input)

# %% [markdown]
# The pure-Python backend's implementation (`backends/python_backend.py:
# PythonBackend._conv2d_grad_input`) is the recipe, for any channels and groups; it is
# shown once your direct version passes:

# %%
lesson.reveal("04.3", course.source(PythonBackend._conv2d_grad_input))

# %% [markdown]
# ## The gradient with respect to the weight is a correlation
#
# dw[a, b] = sum over outputs (i, j) of xpad[i s + a, j s + b] * dy[i, j]: the padded
# input correlated with the dilated output gradient. With one image and one channel it
# is literally a VALID convolution of the padded input by the dilated dy as the kernel
# (with more images and channels, N and C swap roles: N is summed over, C_in becomes the
# "batch"). Padded input: 4 + 0 + 1 = 5 rows; 5 - 3 + 1 = 3: a 3x3 kernel gradient.

# %%
x4_padded = x4.pad(((0, 0), (0, 1), (0, 1), (0, 0)))
dilated_as_kernel = dy_dilated.reshape(3, 3, 1, 1)
dw_by_hand = F.conv2d(x4_padded, dilated_as_kernel, padding="VALID")
dw_primitive = Tensor(py.conv2d_grad_weight(x4.data, dy.data, (3, 3, 1, 1), 2, tf_pads))
print("dw by hand:     ", grid(dw_by_hand))
print("dw (primitive): ", [row for row in dw_primitive.reshape(3, 3).tolist()])

# %% [markdown]
# ## Adjointness: one identity checks both backward convolutions
#
# For a fixed kernel, the convolution is a linear map x -> A x, and the input gradient is
# its transpose: dx = A^T dy. Hence <A x, dy> = <x, A^T dy>. The same holds for the
# kernel. So for ANY x, w, dy:
#
#     <conv(x, w), dy>  =  <x, dx>  =  <w, dw>
#
# One number, three ways, exact up to round-off. We check it with several channels, an
# odd size, stride 2, groups (groups == channels is the depthwise case of lesson 05), and
# a VALID stride-2 case on 6 rows whose last row no window reaches (skipped = 1).

# %%
adjoint = []
for (n, h, c_in, c_out, k, s, groups, same) in [(2, 7, 4, 6, 3, 2, 1, True), (2, 6, 4, 6, 3, 2, 2, True),
                                               (2, 6, 4, 4, 5, 2, 4, True), (1, 6, 3, 2, 3, 2, 1, False)]:
    x = Tensor.normal(10 + h, (n, h, h, c_in))
    w = Tensor.normal(20 + k, (k, k, c_in // groups, c_out))
    pad = (F.same_padding(h, k, s), F.same_padding(h, k, s)) if same else ((0, 0), (0, 0))
    y = F.conv2d(x, w, s, pad, groups)
    dyr = Tensor.normal(30 + s, y.shape)
    dx = py.conv2d_grad_input(dyr.data, w.data, x.shape, s, pad, groups)
    dw = py.conv2d_grad_weight(x.data, dyr.data, w.shape, s, pad, groups)
    three = (dot(y, dyr), dot(x.data, dx), dot(w.data, dw))
    adjoint.append(three)
    print(f"x {x.shape} w {w.shape} stride {s} groups {groups} pad {pad[0]}: "
          f"<y,dy> {three[0]:.10f}  <x,dx> {three[1]:.10f}  <w,dw> {three[2]:.10f}")

# %% [markdown]
# Adjointness proves the backward convolutions are the transposes of the forward. A
# finite-difference check (lesson 03) confirms the forward itself is what autograd
# differentiates:

# %%
xs = Tensor.normal(3, (1, 6, 6, 2), requires_grad=True)
ws = Tensor.normal(4, (3, 3, 2, 3), requires_grad=True)
err = check_projection(lambda x, w: F.conv2d(x, w, stride=2), [xs, ws])
print(f"finite differences, stride 2: error {err:.1e}")

# %% [markdown]
# ### Exercise 04.4: the weight gradient of a strided convolution
#
# Write `conv_grad_weight(x, dy, k, stride, padding)`: the kernel's gradient, shape
# (k, k, C_in, C_out), for y = conv2d(x, w, stride, padding), from the formula of the
# weight-gradient section: dw[a, b, i, o] = sum over images n and outputs (p, q) of
# xpad[n, p s + a, q s + b, i] * dy[n, p, q, o]. Plain loops over `x.tolist()` and
# `dy.tolist()` are fine (an index of the padded x maps to p s + a - top in x; outside
# x it is a zero). The check compares with autograd's dw (which adjointness, above, ties
# to the forward) on the eight convolutions of exercise 04.2.

# %%
# EXERCISE 04.4: your code here
def conv_grad_weight(x, dy, k, stride, padding):
    raise NotImplementedError


# %%
lesson.exercise("04.4", conv_grad_weight)

# %% [markdown]
# ## Your convolution, as a Function
#
# With exercises 04.2 to 04.4 done you have a whole convolution: a forward and both
# gradients. Each is first compared with the library's on one more convolution (stride 2,
# SAME padding). Then `course.as_function` plugs them into the engine as a `Function`
# (forward and backward given as Tensor-level functions), and the lesson's own check,
# finite differences along a random direction (lesson 03), runs on it, and so does
# autograd through a small expression around it, compared with the library's `conv2d`.

# %%
yours = ("04.2", "04.3", "04.4")
pad = (F.same_padding(6, 3, 2), F.same_padding(6, 3, 2))
if all(lesson.passed(i) for i in yours):
    xa, wa = Tensor(xs.data, requires_grad=True), Tensor(ws.data, requires_grad=True)
    y_library = F.conv2d(xa, wa, 2, pad)
    dy_random = Tensor.normal(5, y_library.shape)
    (y_library * dy_random).sum().backward()
    for i, what, piece, want in (
            ("04.2", "forward", lambda: lesson.answer("04.2")(xs, ws, 2, pad), y_library),
            ("04.3", "input gradient", lambda: lesson.answer("04.3")(dy_random, ws, xs.shape, 2, pad), xa.grad),
            ("04.4", "weight gradient", lambda: lesson.answer("04.4")(xs, dy_random, 3, 2, pad), wa.grad)):
        with lesson.plugged(i):
            lesson.agrees(f"your {what} (stride 2, SAME)", piece(), want, 1e-9, 1e-10)
your_conv_error = None
with lesson.plugged(*yours):
    if all(lesson.passed(i) for i in yours):
        forward, grad_input, grad_weight = (lesson.answer(i) for i in yours)
        YourConv2d = course.as_function(
            lambda x, w, stride, padding: forward(x, w, stride, padding),
            lambda x, w, dy, stride, padding: (grad_input(dy, w, x.shape, stride, padding),
                                               grad_weight(x, dy, w.shape[0], stride, padding)),
            name="YourConv2d")
        your_conv_error = check_projection(lambda x, w: YourConv2d.apply(x, w, stride=2, padding=pad).swish(), [xs, ws])
        print(f"finite differences on YOUR conv2d Function, stride 2: error {your_conv_error:.1e}")
        pair = []
        for conv in (lambda x, w: YourConv2d.apply(x, w, stride=2, padding=pad), lambda x, w: F.conv2d(x, w, 2, pad)):
            xa, wa = Tensor(xs.data, requires_grad=True), Tensor(ws.data, requires_grad=True)
            (conv(xa, wa).sigmoid() * 3.0).sum().backward()
            pair.append(xa.grad.to_flat() + wa.grad.to_flat())
        print(f"gradients through yours and the library's: largest difference "
              f"{lesson.agrees('gradients through your conv2d Function', *pair, 1e-9, 1e-10):.1e}")
        if not your_conv_error < 1e-6:
            raise course.Differs(f"finite differences on your conv2d Function: error {your_conv_error:.1e}")
    else:
        print("exercises", ", ".join(i for i in yours if not lesson.passed(i)), "still open: this runs once all "
              "three pass")

# %% [markdown]
# ## Checks

# %%
assert grid(y_valid) == [[-4.0, -4.0], [-4.0, -4.0]], "convolution is correlation: no kernel flip"
assert pads[(224, 3, 2)] == (0, 1) and pads[(224, 3, 1)] == (1, 1), "TF SAME: extra pad at the bottom"
assert pads[(225, 3, 2)] == (1, 1) and pads[(7, 5, 2)] == (2, 2) and pads[(14, 5, 2)] == (1, 2)
assert grid(y_tf)[0][0] == 54.0 and grid(y_sym)[0][0] == 14.0, (grid(y_tf), grid(y_sym))
assert y_tf.shape == y_sym.shape == (1, 2, 2, 1), "same shape, different numbers"
assert grid(dx_by_hand) == grid(dx_primitive) == grid(xg.grad), "dx = conv(dilated dy, flipped kernel)"
assert grid(dw_by_hand) == dw_primitive.reshape(3, 3).tolist(), "dw = correlation of padded x with dilated dy"
for three in adjoint:
    assert max(three) - min(three) < 1e-9 * max(1.0, abs(three[0])), f"adjointness fails: {three}"
assert err < 1e-6
assert by_chain_rule == by_recipe == [14.0, 21.0, 35.0 + 22.0, 33.0], (by_chain_rule, by_recipe)
lesson.finish()
