# %% [markdown]
# # Lesson 05: depthwise convolution
#
# A full k x k convolution from C_in to C_out channels mixes space and channels at once:
# every output is a sum of k * k * C_in products. MobileNet's idea, which EfficientNet's
# MBConv block inherits, is to split the two jobs:
#
# - a **depthwise** k x k convolution filters each channel on its own (space only);
# - a **pointwise** 1x1 convolution mixes the channels (channels only).
#
# Together they are a *depthwise separable* convolution. This lesson shows that the
# depthwise one is just `conv2d` with `groups == channels`, and counts what the split
# saves, with the meta backend.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("05")
ROOT = course.ROOT


from backends import get_backend
from tinyeffnet import Tensor, functional as F
from tinyeffnet.engine.gradcheck import check_projection
from tinyeffnet.nn import Conv2d, DepthwiseConv2d
from tinyeffnet.plotting.charts import bar_chart

# %% [markdown]
# ## Groups
#
# `conv2d(x, w, groups=G)` splits the C_in input channels into G groups and the C_out
# output channels into G groups; group g's outputs see only group g's inputs. The kernel
# is HWIO with I = C_in / G. With G = C_in = C_out, each channel has its own k x k filter:
# the kernel is (k, k, 1, C).

# %%
print(course.source(F.depthwise_conv2d))
print(course.source(DepthwiseConv2d, docstring=True))

# %% [markdown]
# A 2-channel image: channel 0 holds ones, channel 1 zeros. A depthwise 3x3 kernel
# cannot leak channel 0 into channel 1, whatever its weights.

# %%
x = Tensor([[[[1.0, 0.0]] * 4] * 4])                 # (1, 4, 4, 2)
w = Tensor.normal(0, (3, 3, 1, 2))                   # one 3x3 filter per channel
y = F.depthwise_conv2d(x, w)
channel1 = [v for i, v in enumerate(y.to_flat()) if i % 2 == 1]
print("output", y.shape, "channel 1 stays", set(channel1))

# %% [markdown]
# Channel c of the output is the ordinary convolution of channel c of the input with
# filter c. We check that by slicing (the `slice` primitive):

# %%
x = Tensor.normal(1, (2, 6, 6, 3))
w = Tensor.normal(2, (5, 5, 1, 3))
y = F.depthwise_conv2d(x, w, stride=2)
per_channel_diffs = []
for c in range(3):
    xc = x.slice((0, 0, 0, c), (2, 6, 6, c + 1))
    wc = w.slice((0, 0, 0, c), (5, 5, 1, c + 1))
    yc = F.conv2d(xc, wc, stride=2)
    y_c = y.slice((0, 0, 0, c), (2, 3, 3, c + 1))
    per_channel_diffs.append(max(abs(p - q) for p, q in zip(yc.to_flat(), y_c.to_flat())))
print("depthwise output vs per-channel convolutions, largest difference:", max(per_channel_diffs))

# %% [markdown]
# Its gradients are the two backward convolutions of lesson 04 with the same `groups`,
# and they pass a finite-difference check like any other op:

# %%
xg = Tensor.normal(3, (2, 6, 6, 4), requires_grad=True)
wg = Tensor.normal(4, (3, 3, 1, 4), requires_grad=True)
err = check_projection(lambda x, w: F.depthwise_conv2d(x, w, stride=2), [xg, wg])
print(f"depthwise stride-2 gradient check: error {err:.1e}")

# %% [markdown]
# ## What the split saves: count it
#
# The meta backend (lesson 01) runs layer code on shapes alone and adds up the
# multiply-accumulates (MACs) of every `conv2d` and `matmul`. Take the shapes of B0's
# stage 4, first block: a 56 x 56 input with 144 channels (24 expanded 6x), a 5 x 5
# kernel with stride 2, then a projection to 40 channels.
#
# - full 5x5 conv, 144 -> 40: 28 * 28 outputs * 40 channels * (5 * 5 * 144) products;
# - depthwise 5x5 on 144 channels: 28 * 28 * 144 * (5 * 5), then pointwise 144 -> 40:
#   28 * 28 * 40 * 144.
#
# The ratio is 1 / C_out + 1 / k^2 = 1/40 + 1/25: about 6.5% of the work.

# %%
meta = get_backend("meta")


def macs_and_params(layers, x_shape):
    meta.macs = 0
    h = Tensor(meta.full(x_shape, 0.0), meta)
    for layer in layers:
        h = layer(h)
    return meta.macs, sum(layer.num_parameters() for layer in layers), h.shape


full = [Conv2d(144, 40, 5, stride=2, backend="meta")]
separable = [DepthwiseConv2d(144, 5, stride=2, backend="meta"), Conv2d(144, 40, 1, backend="meta")]
full_macs, full_params, full_shape = macs_and_params(full, (1, 56, 56, 144))
sep_macs, sep_params, sep_shape = macs_and_params(separable, (1, 56, 56, 144))
print(f"full 5x5 conv:        {full_macs:>12,} MACs {full_params:>8,} weights -> {full_shape}")
print(f"depthwise + 1x1:      {sep_macs:>12,} MACs {sep_params:>8,} weights -> {sep_shape}")
print(f"ratio: {sep_macs / full_macs:.4f} (1/40 + 1/25 = {1 / 40 + 1 / 25:.4f})")
lesson.show(bar_chart([
    dict(title="multiply-accumulates", labels=["full 5x5 conv", "depthwise + 1x1"], values=[full_macs, sep_macs]),
    dict(title="weights", labels=["full 5x5 conv", "depthwise + 1x1"], values=[full_params, sep_params],
         color=(255, 127, 14))], "B0 stage 4, first block: 56x56x144 -> 28x28x40", size=(1040, 200)), "separable_cost")

# %% [markdown]
# ### Exercise 05.1: the cost of a separable convolution
#
# Write `separable_cost(h, w, c_in, c_out, k, stride)` -> (MACs, weights) of a depthwise
# k x k convolution (SAME padding, the given stride) followed by a 1x1 convolution to
# c_out channels, on an (h, w, c_in) input, without biases: by hand, from the shapes, as
# the list above does (building layers inside your function is refused: that is what the
# check compares with). The check builds the two layers on the meta backend and compares
# with its counts on three shapes of B0 and three random ones.

# %%
# EXERCISE 05.1: your code here
def separable_cost(h, w, c_in, c_out, k, stride):
    raise NotImplementedError


# %%
lesson.exercise("05.1", separable_cost)

# %% [markdown]
# The weights shrink the same way: 5 * 5 * 144 * 40 for the full kernel against
# 5 * 5 * 144 + 144 * 40 for the pair.
#
# **A caveat worth knowing.** Fewer MACs is not the same as less time. A depthwise conv
# does little arithmetic per byte it reads, so it is limited by memory, not by the
# multipliers; and some compilers lower it badly. On the CPU, XLA's depthwise backward
# was slow enough that the JAX backend computes depthwise convs as a sum over the k * k
# kernel taps instead (lesson 13).
#
# ## Checks

# %%
assert set(channel1) == {0.0}, "a depthwise conv never mixes channels"
assert max(per_channel_diffs) < 1e-12, "depthwise = one ordinary conv per channel"
assert err < 1e-6
assert full_macs == 28 * 28 * 40 * 5 * 5 * 144 == 112_896_000, full_macs
assert sep_macs == 28 * 28 * 144 * 5 * 5 + 28 * 28 * 40 * 144 == 7_338_240, sep_macs
assert full_params == 5 * 5 * 144 * 40 and sep_params == 5 * 5 * 144 + 144 * 40
assert abs(sep_macs / full_macs - (1 / 40 + 1 / 25)) < 1e-12
assert full_shape == sep_shape == (1, 28, 28, 40)
assert DepthwiseConv2d(144, 5).weight.shape == (5, 5, 1, 144), "depthwise kernel is (k, k, 1, C)"
lesson.finish()
