# %% [markdown]
# # Lesson 09: the MBConv block, and the paper's Fig. 1
#
# EfficientNet-B0 is 16 copies of one block, the mobile inverted bottleneck (MBConv),
# with different widths, kernels and strides. In order:
#
# 1. **expand**: 1x1 conv from C_in to e * C_in channels, BN, swish (skipped when e = 1);
# 2. **depthwise**: k x k depthwise conv (the block's stride is here), BN, swish;
# 3. **SE** on the expanded channels (Fig. 1b, the EfficientNet default);
# 4. **project**: 1x1 conv back down to C_out, BN, *no* activation (a "linear bottleneck");
# 5. **skip**: add the block's input, only when stride is 1 and C_in == C_out, with
#    drop-connect on the residual branch during training.
#
# "Inverted": a ResNet bottleneck is wide-narrow-wide; this one is narrow-wide-narrow,
# and the skip connects the narrow ends.
#
# The paper moves step 3: Fig. 1a has no SE at all (MobileNetV2's block), Fig. 1c puts SE
# after the projection, on the C_out output channels. In tinyeffnet that is one field of
# the block's spec, `se_position`: "dw" (1b), "end" (1c) or None (1a).

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("09")
ROOT = course.ROOT


from backends import get_backend
from tinyeffnet import Tensor, functional as F
from tinyeffnet.model.efficientnet import BlockSpec, MBConv, block_specs
from tinyeffnet.engine.gradcheck import check_projection
from tinyeffnet.nn import BatchNorm2d, Conv2d, DepthwiseConv2d, DropConnect, SqueezeExcite, initialize
from tinyeffnet.plotting.diagrams import block_columns

# %%
print(course.source(MBConv, docstring=True, cut=[("def forward", "return h")]))  # its forward: exercise 09.1

# %% [markdown]
# ## Fig. 1a, 1b and 1c side by side
#
# One block shape, three SE positions: B0's stage 3, second block (24 -> 24 channels,
# expand 6, kernel 3, stride 1, so it has a skip). r = int(24 * 0.25) = 6 in both SE
# positions; only the channel count C the SE module sees differs: 144 at "dw", 24 at "end".

# %%
figures = {None: "Fig. 1a (no SE)", "dw": "Fig. 1b (SE after depthwise)", "end": "Fig. 1c (SE at the end)"}
blocks = {}
for position, title in figures.items():
    spec = BlockSpec(stage=3, in_channels=24, out_channels=24, expand_ratio=6, kernel=3, stride=1,
                     se_position=position, drop_rate=0.0)
    blocks[position] = MBConv(spec, backend="meta")
    print(f"{title}: {blocks[position].num_parameters():,} parameters, sub-modules {', '.join(blocks[position]._modules)}")

# %% [markdown]
# The three counts differ only by the SE module: 2 C r + r + C with C = 144 or 24.

# %%
params = {p: b.num_parameters() for p, b in blocks.items()}
se_dw, se_end = params["dw"] - params[None], params["end"] - params[None]
print(f"SE on 144 channels: {se_dw} = 2*144*6 + 6 + 144;  SE on 24 channels: {se_end} = 2*24*6 + 6 + 24")

# %% [markdown]
# The paper's Fig. 1, drawn from these three blocks: each box is one of the block's
# sub-modules, in the order `MBConv.__init__` registers them, which is the order `forward`
# runs them (so the picture cannot drift from the code).

# %%
def layer_boxes(block):
    """(label, kind) of each sub-module of a block, in order, for the drawing."""
    boxes = [(f"input: {block.spec.in_channels} channels", "io")]
    for name, module in block._modules.items():
        if isinstance(module, DepthwiseConv2d):
            boxes.append((f"{module.kernel_size}x{module.kernel_size} depthwise conv, {module.in_channels} ch", "dw"))
        elif isinstance(module, Conv2d):
            boxes.append((f"1x1 conv {module.in_channels} -> {module.out_channels}", "conv"))
        elif isinstance(module, BatchNorm2d):
            boxes.append(("BN" if name == "bn2" else "BN, swish", "bn"))
        elif isinstance(module, SqueezeExcite):
            boxes.append((f"SE on {module.channels} ch, r = {module.reduced}", "se"))
        elif isinstance(module, DropConnect):
            boxes.append(("drop-connect", "act"))
    return boxes + [("+", "add")] if block.spec.has_skip else boxes


lesson.show(block_columns([dict(title=title, layers=layer_boxes(blocks[position]), skip=blocks[position].spec.has_skip)
                           for position, title in figures.items()],
                          "The paper's Fig. 1: MBConv without SE, SE after the depthwise conv, SE at the end",
                          box=(230, 30)), "fig1_blocks")

# %% [markdown]
# Block by block, Fig. 1b has the most parameters: its SE works on the expanded channels
# (in * expand), Fig. 1c's on the output channels.

# %% [markdown]
# And they compute different things in a different order. Following the shapes through
# the meta backend (here at 56x56):

# %%
meta = get_backend("meta")
x = Tensor(meta.full((1, 56, 56, 24), 0.0), meta)
for position, block in blocks.items():
    block.eval()
    print(figures[position], "->", block(x).shape)

# %% [markdown]
# ## When is there a skip?
#
# Adding the input to the output needs equal shapes: stride 1 (same H, W) and C_in ==
# C_out. The first block of each stage changes the channels (and often the stride), so it
# has no skip; the other blocks of a stage do. In B0, 7 blocks have no skip and 9 have one.

# %%
specs = block_specs("base")
lesson.table(["block", "stage", "channels", "stride", "skip", "drop-connect rate"],
             [(i, s.stage, f"{s.in_channels} -> {s.out_channels}", s.stride, "yes" if s.has_skip else "no",
               f"{s.drop_rate:.4f}") for i, s in enumerate(specs)])
noskip = [i for i, s in enumerate(specs) if not s.has_skip]
print("no skip:", noskip)

# %% [markdown]
# The paper's "@noskip" and "@hasskip" variants change the SE of exactly these two sets
# of blocks (lesson 10).
#
# ## Drop-connect (stochastic depth)
#
# During training, a block with a skip drops its whole residual branch for a random
# subset of the images in the batch: for those images the block is the identity. Kept
# branches are divided by the survival probability 1 - rate, so the expected output is
# unchanged and eval (which never drops) needs no correction. The rate grows linearly
# with depth: 0.2 * i / 16 for block i (column above), so deep blocks are dropped more.
#
# Seen on a batch of 8 "branches" of ones with rate 0.5: each image's branch is either all
# 0 or all 2.

# %%
print(course.source(F.drop_connect))
branch = Tensor.ones((8, 2, 2, 3))
dropped = F.drop_connect(branch, 0.5, key=get_backend("python").key(7))
per_image = [sorted(set(dropped.to_flat()[i * 12:(i + 1) * 12])) for i in range(8)]
print("per image:", per_image)
means = []
for seed in range(200):
    means.append(sum(F.drop_connect(branch, 0.5, key=seed).to_flat()) / branch.size)
print(f"mean over 200 keys: {sum(means) / len(means):.3f} (expected 1)")

# %% [markdown]
# ### Exercise 09.1: the block's forward
#
# Write `mbconv_forward(block, x, key)`: what the block computes, from its parts (the
# `__init__` above names them): the expand 1x1 conv, its BN and swish (only when
# `block.spec.expand_ratio != 1`); the depthwise conv, its BN and swish; the SE module
# where `block.spec.se_position` puts it ("dw": right after the depthwise stage, "end":
# after the projection's BN, None: nowhere); the projection 1x1 conv and its BN, with no
# activation (a *linear* bottleneck); and, when `block.spec.has_skip`, the input added
# back, the branch going through `block.drop_connect(h, key)` first. Calling `block(x)`
# or `block.forward` is refused: that is what the check compares with, on seven random
# blocks (expand 1 and more, kernels 3 and 5, strides 1 and 2, SE at "dw", "end" and
# nowhere, with drop-connect, in training and eval mode): the output, the BN statistics it
# moves and the gradients. Your forward then runs the block below, compared with the
# library's on the same weights, input and key, and the gradient check.

# %%
# EXERCISE 09.1: your code here
def mbconv_forward(block, x, key=None):
    raise NotImplementedError


# %%
lesson.exercise("09.1", mbconv_forward)

# %% [markdown]
# The library's, once yours passes:

# %%
lesson.reveal("09.1", course.source(MBConv.forward))

# %% [markdown]
# ## A real block, with gradients
#
# A small block with all the parts (expand, depthwise stride 1, SE, project, skip with
# drop-connect) on the pure-Python backend, in training mode. A fixed key keeps the
# drop-connect mask the same in every forward pass of the finite-difference check. Once
# exercise 09.1 passes, the block runs YOUR forward, first compared with the library's on
# the same weights, BN statistics, input and key: the output, the statistics it moves, and
# every gradient.

# %%
spec = BlockSpec(stage=0, in_channels=4, out_channels=4, expand_ratio=2, kernel=3, stride=1,
                 se_position="dw", drop_rate=0.3)
block = initialize(MBConv(spec), "xavier", seed=3)
names = [n for n, _ in block.named_parameters()]
print(len(names), "parameter arrays:", ", ".join(names))
xg = Tensor.normal(4, (2, 4, 4, 4), requires_grad=True)
key = get_backend("python").key(11)


statistics = block.arrays()["buffers"]


def library_forward(block, x, key):
    return block(x, key)


def run_block(forward, x, *params):
    """(the block's output, its new BN statistics), with `forward` and the parameters given."""
    with block.bind(dict(zip(names, params)), statistics):
        return forward(block, x, key), block.arrays()["buffers"]


def fresh_leaves():
    return [Tensor(xg.data, requires_grad=True)] + [Tensor(p.data, requires_grad=True) for p in block.parameters()]


forward = library_forward
with lesson.plugged("09.1"):  # your forward against the library's: output, BN statistics, gradients
    if lesson.passed("09.1"):
        mine, theirs = fresh_leaves(), fresh_leaves()
        (y_mine, stats_mine), (y_theirs, stats_theirs) = run_block(lesson.answer("09.1"), *mine), \
            run_block(library_forward, *theirs)
        lesson.agrees("your block's output", y_mine, y_theirs)
        for name in stats_theirs:
            lesson.agrees(f"the BN statistic {name} after your forward", stats_mine[name], stats_theirs[name])
        dy = Tensor.normal(5, y_theirs.shape)
        (y_mine * dy).sum().backward()
        (y_theirs * dy).sum().backward()
        for name, m, t in zip(["x"] + names, mine, theirs):
            lesson.agrees(f"the gradient of {name} through your forward", m.grad, t.grad, 1e-8, 1e-11)
        forward = lesson.answer("09.1")
print("the check runs", "YOUR mbconv_forward" if forward is not library_forward else "the library's MBConv.forward")
err = None
with lesson.plugged("09.1"):
    err = check_projection(lambda x, *params: run_block(forward, x, *params)[0], fresh_leaves())
if err is None:  # your forward broke it: the library's
    err = check_projection(lambda x, *params: run_block(library_forward, x, *params)[0], fresh_leaves())
print(f"MBConv gradient check (input and all {len(names)} parameter arrays): error {err:.1e}")

# %% [markdown]
# ## Checks

# %%
assert params[None] < params["end"] < params["dw"], params
assert se_dw == 2 * 144 * 6 + 6 + 144 == 1878 and se_end == 2 * 24 * 6 + 6 + 24 == 318, (se_dw, se_end)
assert all(b.spec.has_skip and "drop_connect" in b._modules for b in blocks.values())
assert noskip == [0, 1, 3, 5, 8, 11, 15] and len(specs) == 16, noskip
assert all(s.drop_rate == 0.2 * i / 16 for i, s in enumerate(specs)), "drop rate 0.2 * i / n"
assert all(p in ([0.0], [2.0]) for p in per_image), "drop-connect drops or keeps a whole sample, rescaled"
assert abs(sum(means) / len(means) - 1.0) < 0.08, "the expected output is unchanged"
no_skip_block = MBConv(BlockSpec(3, 16, 24, 6, 3, 2, "dw", 0.1), backend="meta")
assert "drop_connect" not in no_skip_block._modules, "no skip: no drop-connect"
assert err < 1e-6
assert [kind for _, kind in layer_boxes(blocks["end"])] == ["io", "conv", "bn", "dw", "bn", "conv", "bn", "se", "act",
                                                             "add"], "Fig. 1c: SE after the projection's BN"
assert [kind for _, kind in layer_boxes(blocks["dw"])].index("se") == 5, "Fig. 1b: SE right after the depthwise BN"
lesson.finish()
