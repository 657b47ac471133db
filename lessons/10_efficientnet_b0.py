# %% [markdown]
# # Lesson 10: EfficientNet-B0 and the paper's variants
#
# Now the whole network (paper Table I): a 3x3 stride-2 stem conv to 32 channels, 16
# MBConv blocks in 7 stages, a 1x1 conv to 1280 channels, global average pooling,
# dropout 0.2 and a fully connected layer to the 1000 classes. Every conv is followed by
# BN and swish except the blocks' projections (lesson 09).
#
# `tinyeffnet/model/efficientnet.py: build_model(variant, model, num_classes, init, seed)` is
# the one way to make a network. What network it is (variant, model size, classes, width,
# depth, padding, BN eps, and how its pixels are fed) is one frozen record, a `ModelSpec`
# (`tinyeffnet/model/spec.py`): `net.spec`, recorded in every checkpoint, and what
# `build_model(spec)` rebuilds the network from. We run it on the meta backend: full-size B0
# at 224x224 costs milliseconds, because no number is ever computed.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("10")
ROOT = course.ROOT

import math

from tinyeffnet.model.efficientnet import (B0_STAGES, PAPER_TABLE2, SE_RATIO, EfficientNet, block_specs, build_model,
                                     round_filters, round_repeats)
from tinyeffnet.model.spec import VARIANTS
from tinyeffnet.nn import init as initializers
from tinyeffnet.model.stages import summarize
from tinyeffnet.plotting.charts import bar_chart

# %% [markdown]
# ## Table I, measured
#
# `tinyeffnet/summary.py` runs the real forward pass on the meta backend, stage by stage,
# and reads off resolutions, channels, parameters and multiply-accumulates
# (`python -m tinyeffnet.summary` prints the same).

# %%
base = summarize("base")
lesson.table(["stage", "operator", "input resolution", "channels", "blocks", "parameters", "MACs"],
             [(r["stage"], r["operator"], "x".join(map(str, r["resolution"])), r["channels"], r["blocks"],
               f"{r['params']:,}", f"{r['macs']:,}") for r in base["stages"]])
print(f"total: {base['params']:,} parameters, {base['macs']:,} MACs ({base['macs'] / 1e9:.3f} G)")
stage_names = [f"{r['stage']}: {r['operator']}" for r in base["stages"]]
lesson.show(bar_chart([
    dict(title="parameters per stage", labels=stage_names, values=[r["params"] for r in base["stages"]]),
    dict(title="multiply-accumulates per stage", labels=stage_names, values=[r["macs"] for r in base["stages"]],
         color=(255, 127, 14))], "EfficientNet-B0 at 224x224 (Table I), measured on the meta backend"),
    "table1_stages")

# %% [markdown]
# Compare with the paper's Table I: the resolution column is each stage's *input*
# resolution (224, 112, 112, 56, 28, 14, 14, 7, 7), then channels 32, 16, 24, 40, 80, 112,
# 192, 320, 1280, 1000 and blocks 1, 1, 2, 2, 3, 3, 4, 1. Two facts to take away:
#
# - the FC layer (1280 * 1000 + 1000 = 1,281,000) and stage 7 hold over half the weights;
# - the MACs are spread out: the cheap early layers run at high resolution.
#
# 0.386 G MACs for one 224x224 image (convolutions, SE and FC; the usual convention,
# counting BN, swish and pooling as free).
#
# ## Table II: the parameter counts of the seven variants
#
# A variant says where SE sits in which blocks (lesson 09): `seend@X` moves it after the
# projection, `nose@X` removes it, for X = the blocks without a skip (`noskip`), with one
# (`hasskip`) or `all`. `block_specs` gives each block its SE position; the part that
# reads the variant:

# %%
print(course.source(block_specs, cut=[("variant, model = canonical_variant", "width, depth = multipliers"),
                                      ("raw = []", "cin = cout")]))

# %%
counts = {variant: EfficientNet(variant, backend="meta").num_parameters() for variant in VARIANTS}
lesson.table(["variant", "parameters (ours, exact)", "paper", "block"],
             [(v, f"{n:,}", f"{PAPER_TABLE2[v][0]}M", PAPER_TABLE2[v][3]) for v, n in counts.items()])

# %% [markdown]
# ## Recomputing them by hand
#
# Only the SE modules differ between variants. An SE module on C channels with bottleneck
# r costs 2 C r + r + C (lesson 08), with r = max(1, int(C_in * 0.25)) from the block's
# input channels; C is the expanded width in * e at "dw" and the output width at "end".
# So each variant's count is the base count minus, for each changed block, the SE it had
# plus the SE it gets. The noSE variants only take away; from the block list alone:

# %%
def se_params(channels, block_in):
    r = max(1, int(block_in * SE_RATIO))
    return 2 * channels * r + r + channels


def nose_count(variant, base_count):
    total = base_count
    for spec in block_specs(variant):
        if spec.se_position is None:  # the SE this block had after its depthwise conv is gone
            total -= se_params(spec.in_channels * spec.expand_ratio, spec.in_channels)
    return total


by_hand = {v: nose_count(v, counts["base"]) for v in ("nose@noskip", "nose@hasskip", "nose@all")}
print("by hand:", by_hand)
se_total = counts["base"] - counts["nose@all"]
print(f"all 16 SE modules of B0 together: {se_total:,} parameters ({se_total / counts['base']:.1%})")

# %% [markdown]
# ### Exercise 10.1: the SEend counts by hand
#
# Write `seend_parameters(variant, base_count)` for the three seend@X variants: for each
# block whose SE moves to the end (`block_specs(variant)` says "end"), take away the SE it
# had on in * expand channels and add one on its out channels. Mind which channel count
# the bottleneck r comes from. Start with seend@hasskip (4,906,788); the check tries all
# three and seend@stage3-5. Count by hand: a model built inside your function (on any
# backend) is refused, since counting one is what the check does.

# %%
# EXERCISE 10.1: your code here
def seend_parameters(variant, base_count):
    raise NotImplementedError


# %%
lesson.exercise("10.1", seend_parameters)

# %% [markdown]
# And the base count itself, from Table I's stage list (B0_STAGES) and nothing else:
# stem 3*3*3*32 + BN; per block [expand 1x1 + BN] + depthwise k*k*mid + BN + SE +
# project 1x1 + BN; head 1x1 to 1280 + BN; FC with bias. BN has 2 trained values per
# channel (gamma, beta) and 2 moving statistics that are not trained.

# %%
total, bn_channels, c_in = 3 * 3 * 3 * 32, 32, 32
for e, k, s, c_out, repeats in B0_STAGES:
    for _ in range(repeats):
        mid = c_in * e
        expand = (c_in * mid) if e != 1 else 0
        total += expand + k * k * mid + se_params(mid, c_in) + mid * c_out
        bn_channels += (mid if e != 1 else 0) + mid + c_out
        c_in = c_out
total += c_in * 1280 + 1280 * 1000 + 1000
bn_channels += 1280
total += 2 * bn_channels
print(f"B0 from Table I: {total:,} trainable, {2 * bn_channels:,} BN moving statistics")

# %% [markdown]
# The paper rounds to 5.29M, 5.16M, ... : all seven of our exact counts round to its
# numbers, which is good evidence that we built the same networks.
#
# ## Initial weights
#
# `build_model(..., init="xavier")` (the default, as in the paper) fills every conv and
# dense kernel with Glorot uniform values in +-sqrt(6 / (fan_in + fan_out)), with
# TensorFlow's fans: k*k*C_in and k*k*C_out for a conv (k*k*C and k*k for a depthwise
# kernel, stored as (k, k, C, 1) in TensorFlow). `init="tf"` is the official EfficientNet
# scheme. Biases start at 0, BN gamma at 1 and beta at 0.

# %%
print(course.source(initializers.conv_kernel))
tiny = build_model("base", num_classes=10, width=0.25, depth=0.1, seed=0)   # pure Python, 127k weights
stem = tiny.stem_conv
fan_in, fan_out = stem.fans
limit = math.sqrt(6.0 / (fan_in + fan_out))
values = stem.weight.to_flat()
print(f"stem {stem.weight.shape}: fans {fan_in}, {fan_out}; limit {limit:.4f}; "
      f"drawn in [{min(values):.4f}, {max(values):.4f}]")

# %% [markdown]
# ### Exercise 10.2: the Xavier bound
#
# Write `xavier_limit(kernel, c_in, c_out, depthwise)`: the bound sqrt(6 / (fan_in +
# fan_out)) of a k x k convolution's initial weights, with TensorFlow's fans as described
# above (mind the depthwise case). The check compares with the fans the library's layers
# report.

# %%
# EXERCISE 10.2: your code here
def xavier_limit(kernel, c_in, c_out, depthwise):
    raise NotImplementedError


# %%
lesson.exercise("10.2", xavier_limit)

# %% [markdown]
# ## Compound scaling: B1 to B7
#
# The EfficientNet family scales width (channels, rounded to multiples of 8), depth
# (repeats, rounded up) and resolution together. The same builder makes them all:

# %%
print(course.source(round_filters))
scaled = {}
for model in ("b1", "b4", "b7"):
    s = summarize("base", model)
    scaled[model] = s["params"]
    print(f"{model}: {s['params']:>11,} parameters, {s['macs'] / 1e9:6.2f} G MACs at {s['image_size']}x{s['image_size']}")

# %% [markdown]
# ## Checks

# %%
expected = {"base": 5_288_548, "seend@noskip": 5_159_764, "seend@hasskip": 4_906_788, "seend@all": 4_778_004,
            "nose@noskip": 5_110_376, "nose@hasskip": 4_830_180, "nose@all": 4_652_008}
assert counts == expected, f"Table II parameter counts: {counts}"
assert by_hand == {v: expected[v] for v in by_hand}, f"hand recomputation: {by_hand}"
assert total == 5_288_548 and 2 * bn_channels == 42_016 == base["buffers"], (total, bn_channels)
for variant, n in counts.items():
    assert round(n / 1e6, 2) == PAPER_TABLE2[variant][0], f"{variant}: {n} does not round to the paper's number"
assert base["macs"] == 385_814_752 and round(base["macs"] / 1e9, 3) == 0.386, base["macs"]
assert [r["resolution"][0] for r in base["stages"]] == [224, 112, 112, 56, 28, 14, 14, 7, 7, 1]
assert [r["channels"] for r in base["stages"]] == [32, 16, 24, 40, 80, 112, 192, 320, 1280, 1000]
assert [r["blocks"] for r in base["stages"][1:8]] == [1, 2, 2, 3, 3, 4, 1]
assert base["stages"][-1]["params"] == 1_281_000
assert se_total == 636_540
assert (fan_in, fan_out) == (27, 9 * 8) and -limit <= min(values) and max(values) <= limit
assert scaled == {"b1": 7_794_184, "b4": 19_341_616, "b7": 66_347_960}, scaled
assert round_repeats(3, 3.1) == 10 and round_filters(32, 2.0) == 64 and round_filters(1280, 1.4) == 1792
lesson.finish()
