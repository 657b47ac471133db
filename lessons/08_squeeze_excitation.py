# %% [markdown]
# # Lesson 08: squeeze-and-excitation
#
# A convolution treats all its output channels alike. Squeeze-and-excitation (SE) lets
# the network re-weight its channels *per image*: a tiny side network looks at the whole
# feature map and outputs one gate in (0, 1) per channel. The paper under study asks
# where in the MBConv block this module should sit, or whether it is needed at all.
#
# The module (paper Fig. 1d), on an (N, H, W, C) input:
#
# 1. **squeeze**: global average pool -> (N, 1, 1, C), one number per channel;
# 2. **reduce**: 1x1 conv with bias C -> r, then swish (the paper's text says ReLU; the
#    official EfficientNet uses swish, as everywhere);
# 3. **expand**: 1x1 conv with bias r -> C, then sigmoid: the gates;
# 4. **excite**: multiply the input by its gates, broadcast over H and W.
#
# The bottleneck width is r = max(1, int(block_input_channels * 0.25)): a quarter of the
# channels that enter the MBConv *block*, not of the channels the SE module sees.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("08")
ROOT = course.ROOT


from backends import get_backend
from tinyeffnet import Tensor, functional as F
from tinyeffnet.model.efficientnet import SE_RATIO, block_specs
from tinyeffnet.engine.gradcheck import check_projection
from tinyeffnet.nn import DepthwiseConv2d, SqueezeExcite, initialize

# %% [markdown]
# ## Exercise 08.1: the SE forward
#
# Write `se_forward(x, w_reduce, b_reduce, w_expand, b_expand)`: the four steps above on
# an NHWC Tensor x with C channels, with Tensor operations (`x.mean(axis=(1, 2),
# keepdims=True)`, `F.conv2d(s, w)` for a 1x1 convolution with a kernel of shape
# (1, 1, C, r), `+ bias`, `F.swish`, `F.sigmoid`, `*`). The check runs the library's
# `SqueezeExcite` with random weights on five random shapes and compares the values and
# the gradients of x and the four parameters; then your module runs the lesson's checks of
# the gates and of the gradient, each compared with the library's module on the same
# weights and input.

# %%
# EXERCISE 08.1: your code here
def se_forward(x, w_reduce, b_reduce, w_expand, b_expand):
    raise NotImplementedError


# %%
lesson.exercise("08.1", se_forward)

# %% [markdown]
# The library's module, once yours passes:

# %%
lesson.reveal("08.1", course.source(SqueezeExcite, docstring=True))

# %% [markdown]
# The two "fully connected" layers are 1x1 convolutions on a 1x1 map: the same thing,
# and it keeps everything NHWC.
#
# ## r in B0
#
# In base B0 the SE module sits after the depthwise conv, on the *expanded* channels
# (in * expand ratio). The first blocks:

# %%
rows = []
for i, spec in enumerate(block_specs("base")[:6]):
    mid = spec.in_channels * spec.expand_ratio
    r = max(1, int(spec.in_channels * SE_RATIO))
    rows.append((i, spec.in_channels, mid, r))
    print(f"block {i}: input {spec.in_channels:>3} channels, SE on {mid:>3} channels, r = {r}")

# %% [markdown]
# Block 0 (expand ratio 1) squeezes 32 channels through 8; block 1 squeezes 96 expanded
# channels through only 4, because its input has 16 channels. The `max(1, ...)` matters
# only for very thin networks (width multipliers below 1), where int(3 * 0.25) would be 0.

# %% [markdown]
# ## Parameters
#
# reduce: C * r weights + r biases; expand: r * C weights + C biases. In all,
# 2 C r + r + C.

# %%
se = SqueezeExcite(96, 4)
n_params = se.num_parameters()
print("SE(96, r=4):", n_params, "parameters =", "2*96*4 + 4 + 96")
for name, p in se.named_parameters():
    print(f"  {name:<15} {p.shape}")

# %% [markdown]
# ## The gates are per channel
#
# Run a module with random weights on a random input. The output divided by the input is
# the gate: it must be the same at every pixel of one (image, channel), differ between
# channels and images, and lie in (0, 1).

# %%
initialize(se, "xavier", seed=0)


def yours(module):
    """Exercise 08.1's se_forward with `module`'s weights, called as the module is."""
    return lambda x: lesson.answer("08.1")(x, module.reduce.weight, module.reduce.bias, module.expand.weight,
                                           module.expand.bias)


x = Tensor.normal(1, (2, 3, 3, 96))
y = se(x)
with lesson.plugged("08.1"):  # your SE, on the same weights and input as the library's
    if lesson.passed("08.1"):
        y_yours = yours(se)(x)
        lesson.agrees("your se_forward on the lesson's module (same weights, same input)", y_yours, y)
        y = y_yours
print("the checks below run on", "YOUR se_forward" if lesson.passed("08.1") else "the library's SqueezeExcite")
xs, ys = x.to_flat(), y.to_flat()
gates = {}
for index, (a, b) in enumerate(zip(xs, ys)):
    n, c = index // (3 * 3 * 96), index % 96
    gates.setdefault((n, c), []).append(b / a)
spread = max(max(g) - min(g) for g in gates.values())
first = {key: g[0] for key, g in gates.items()}
print("image 0, gates of channels 0-4:", [round(first[(0, c)], 4) for c in range(5)])
print("image 1, gates of channels 0-4:", [round(first[(1, c)], 4) for c in range(5)])
print(f"largest spread of one gate over the 9 pixels: {spread:.1e}")

# %% [markdown]
# ## Gradients
#
# SE is built from ops we have already checked (mean, conv, swish, sigmoid, a broadcast
# multiply); its gradient flows through both paths to x: directly through the product
# and through the gates. A projection check covers all of it, including the biases.

# %%
small = initialize(SqueezeExcite(6, 2), "xavier", seed=1)
xg = Tensor.normal(2, (2, 3, 3, 6), requires_grad=True)
names = [n for n, _ in small.named_parameters()]


def se_with(forward):
    """forward(x), run with the module's parameters bound to the given tensors."""
    def run(x, *params):
        with small.bind(dict(zip(names, params))):
            return forward(x)
    return run


def fresh_leaves():
    return [Tensor(xg.data, requires_grad=True)] + [Tensor(p.data, requires_grad=True) for p in small.parameters()]


err = check_projection(se_with(small), fresh_leaves())
with lesson.plugged("08.1"):  # your SE: its gradients against the library's, then finite differences
    if lesson.passed("08.1"):
        dy = Tensor.normal(3, xg.shape)
        mine, theirs = fresh_leaves(), fresh_leaves()
        (se_with(yours(small))(*mine) * dy).sum().backward()
        (se_with(small)(*theirs) * dy).sum().backward()
        for name, m, t in zip(["x"] + names, mine, theirs):
            lesson.agrees(f"the gradient of {name} through your SE", m.grad, t.grad, 1e-8, 1e-11)
        err = check_projection(se_with(yours(small)), fresh_leaves())
print(f"SE gradient check (input and all 4 parameters): error {err:.1e}")

# %% [markdown]
# (`Module.bind` puts given arrays into a module's parameter slots for one call: the same
# mechanism the JAX training step uses to pass parameters into a compiled function,
# lesson 13.)
#
# ## Cheap in multiplies, not free
#
# Block 1 of B0 at 224x224: the depthwise 3x3 conv on 96 channels at 56x56 (stride 2 from
# 112), then the SE module on those 96 channels. Its arithmetic has three parts: the
# average pool adds up every value; the two 1x1 convolutions on the pooled (1, 1, c)
# vector do their MACs; the gates multiply every value.

# %% [markdown]
# The meta backend counts the multiply-accumulates of convolutions and matrix products
# only, the usual convention of MAC tables (lesson 10's too):

# %%
meta = get_backend("meta")
meta.macs = 0
h = Tensor(meta.full((1, 112, 112, 96), 0.0), meta)
h = DepthwiseConv2d(96, 3, stride=2, backend="meta")(h)
dw_macs = meta.macs
SqueezeExcite(96, 4, backend="meta")(h)
se_macs = meta.macs - dw_macs
pool_adds = gate_multiplies = h.size  # one of each per value of the (1, 56, 56, 96) map
se_operations_total = pool_adds + se_macs + gate_multiplies
lesson.table(["", "operations", "against the depthwise conv"], [
    ("depthwise 3x3 conv (MACs)", f"{dw_macs:,}", "100%"),
    ("SE: two 1x1 convs (MACs)", f"{se_macs:,}", f"{se_macs / dw_macs:.3%}"),
    ("SE: average pool (adds)", f"{pool_adds:,}", f"{pool_adds / dw_macs:.1%}"),
    ("SE: gates (multiplies)", f"{gate_multiplies:,}", f"{gate_multiplies / dw_macs:.1%}"),
    ("SE in all", f"{se_operations_total:,}", f"{se_operations_total / dw_macs:.1%}")])

# %% [markdown]
# Counted as MACs, SE is 768 operations: 0.028% of the depthwise conv, "free". But the
# pool and the gates touch every one of the 301,056 values of the feature map, and add
# 602,112 operations: 22% of the depthwise conv's count, each of them a read of memory
# (and the gate multiply a write too), which is what costs time on a real device. SE is
# also not free in *parameters* on the deep, wide blocks (lesson 10: SE accounts for
# 636,540 of B0's 5.29M weights). Both are why the paper asks whether every block needs
# one.
#
# ## Checks

# %%
assert rows[0] == (0, 32, 32, 8) and rows[1] == (1, 16, 96, 4) and rows[3] == (3, 24, 144, 6), rows
assert max(1, int(3 * SE_RATIO)) == 1, "r never drops to 0"
assert n_params == 2 * 96 * 4 + 4 + 96 == 868
assert spread < 1e-12, "one gate per (image, channel), constant over H and W"
assert all(0.0 < g < 1.0 for g in first.values()), "sigmoid gates lie in (0, 1)"
assert len({round(g, 12) for g in first.values()}) > 100, "gates differ between channels and images"
assert err < 1e-6
assert se_macs == 2 * 96 * 4 == 768 and dw_macs == 56 * 56 * 96 * 9, (se_macs, dw_macs)
assert pool_adds + gate_multiplies == 602_112 and se_operations_total == 602_880
assert 0.2 < se_operations_total / dw_macs < 0.25, "SE's elementwise work is about a fifth of the depthwise conv's"
lesson.finish()
