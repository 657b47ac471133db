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

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
ROOT = os.path.dirname(HERE) if os.path.basename(HERE) == "lessons" else HERE
sys.path.insert(0, ROOT)

import inspect

from backends import get_backend
from tinyeffnet import Tensor, functional as F
from tinyeffnet.model.efficientnet import BlockSpec, MBConv, block_specs
from tinyeffnet.engine.gradcheck import check_projection
from tinyeffnet.nn import initialize

# %%
print(inspect.getsource(MBConv))

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
    print(f"--- {title}: {blocks[position].num_parameters():,} parameters")
    for name, module in blocks[position].named_modules():
        if name and "." not in name:
            shapes = ", ".join(str(p.shape) for p in module.parameters()[:1])
            print(f"    {name:<15} {type(module).__name__:<16} {shapes}")

# %% [markdown]
# The three counts differ only by the SE module: 2 C r + r + C with C = 144 or 24.

# %%
params = {p: b.num_parameters() for p, b in blocks.items()}
se_dw, se_end = params["dw"] - params[None], params["end"] - params[None]
print(f"SE on 144 channels: {se_dw} = 2*144*6 + 6 + 144;  SE on 24 channels: {se_end} = 2*24*6 + 6 + 24")

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
for i, s in enumerate(specs):
    print(f"block {i:>2} stage {s.stage}: {s.in_channels:>3} -> {s.out_channels:>3}, stride {s.stride}, "
          f"skip {'yes' if s.has_skip else 'no ':<3}  drop-connect rate {s.drop_rate:.4f}")
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
print(inspect.getsource(F.drop_connect))
branch = Tensor.ones((8, 2, 2, 3))
dropped = F.drop_connect(branch, 0.5, key=get_backend("python").key(7))
per_image = [sorted(set(dropped.to_flat()[i * 12:(i + 1) * 12])) for i in range(8)]
print("per image:", per_image)
means = []
for seed in range(200):
    means.append(sum(F.drop_connect(branch, 0.5, key=seed).to_flat()) / branch.size)
print(f"mean over 200 keys: {sum(means) / len(means):.3f} (expected 1)")

# %% [markdown]
# ## A real block, with gradients
#
# A small block with all the parts (expand, depthwise stride 1, SE, project, skip with
# drop-connect) on the pure-Python backend, in training mode. A fixed key keeps the
# drop-connect mask the same in every forward pass of the finite-difference check.

# %%
spec = BlockSpec(stage=0, in_channels=4, out_channels=4, expand_ratio=2, kernel=3, stride=1,
                 se_position="dw", drop_rate=0.3)
block = initialize(MBConv(spec), "xavier", seed=3)
names = [n for n, _ in block.named_parameters()]
print(len(names), "parameter arrays:", ", ".join(names))
xg = Tensor.normal(4, (2, 4, 4, 4), requires_grad=True)
key = get_backend("python").key(11)


def run_block(x, *params):
    with block.bind(dict(zip(names, params))):
        return block(x, key)


leaves = [xg] + [Tensor(p.data, requires_grad=True) for p in block.parameters()]
err = check_projection(run_block, leaves)
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
print("ok: lesson 09 checks passed")
