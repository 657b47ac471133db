# %% [markdown]
# # Lesson 15: capstone, a variant of your own
#
# The paper asks where the SE module should sit and tries seven answers. You now know
# every piece that answer rests on, so ask your own question: is SE worth its parameters
# in the early, high-resolution stages? Only in the last stage? At the end of the wide
# stage 7? This lesson takes one such variant through the whole course in miniature:
#
# 1. **name it** so that the one model builder, `build_model`, understands it;
# 2. **count it**, by hand and measured;
# 3. **train it against base over several seeds** with the real ablation runner;
# 4. **read the spread**: is the difference larger than the seed-to-seed noise?
#
# At the lesson's scale (a tiny network, a few steps, pure Python) the answer to 4 means
# little; the lesson ends with the command that asks the real question.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("15")
ROOT = course.ROOT

import atexit
import shutil
import tempfile

from tinyeffnet.ablation import build_ablation_parser
from tinyeffnet.experiments import ablation, table2 as report
from tinyeffnet.model.efficientnet import VARIANTS, block_specs, build_model, canonical_variant
from tinyeffnet.training.config import TrainConfig, config_from_args

# %% [markdown]
# ## 1. Naming a variant
#
# A variant is a name that `block_specs` turns into one SE position per block (lesson 10).
# Besides the paper's seven, the name can say the same two things about a range of Table
# I's stages (2 to 8, the MBConv stages): `seend@stageA-B` moves SE to the end of every
# block in stages A..B, `nose@stageA-B` removes it there (`stageA` alone: one stage). The
# grammar lives in `canonical_variant`, so `train`, `ablation` and `summary` all take it:

# %%
print(course.source(canonical_variant, docstring=True, cut=[("key = str(name)", 'key = "base"'),
                                                            ("raise ValueError", "seend@stage8, nose@stage2-7")]))
for name in ("noSE@stage2-7", "SEend@Stage8", "nose@stage5-5", "efficientnet-b0-seend@stage3-4"):
    print(f"{name!r:>34} -> {canonical_variant(name)!r}")

# %% [markdown]
# ### Exercise 15.1: your variant
#
# Set `my_variant` to a variant of your own: not one of the paper's seven, and not a name
# for base. For example `nose@stage2-7` keeps SE only in the last stage (the paper found
# SE in the blocks without a skip cheap to lose; stage 8 has one block, without a skip).
# Until you choose, the lesson goes on with an example, `seend@stage8`.

# %%
# EXERCISE 15.1: your variant here
my_variant = None

# %%
my_variant = lesson.exercise("15.1", my_variant)
EXAMPLE = "seend@stage8"
chosen = canonical_variant(my_variant) if lesson.passed("15.1") else EXAMPLE
print("the variant of this lesson:", chosen)

# %% [markdown]
# ## 2. Counting it
#
# Which blocks it changes, next to base (full B0):

# %%
base_specs, my_specs = block_specs("base"), block_specs(chosen)
position = {"dw": "after depthwise (1b)", "end": "at the end (1c)", None: "none (1a)"}
lesson.table(["block", "stage", "channels", "skip", "SE in base", f"SE in {chosen}"],
             [(i, b.stage, f"{b.in_channels} -> {b.out_channels}", "yes" if b.has_skip else "no",
               position[b.se_position], ("**" + position[m.se_position] + "**") if m.se_position != b.se_position
               else position[m.se_position]) for i, (b, m) in enumerate(zip(base_specs, my_specs))])
changed = [i for i, (b, m) in enumerate(zip(base_specs, my_specs)) if b.se_position != m.se_position]
print(f"{chosen} changes {len(changed)} of 16 blocks: {changed}")

# %% [markdown]
# ### Exercise 15.2: its parameters, by hand
#
# Write `my_variant_parameters(base_count)`: your variant's parameter count (full B0,
# 1000 classes) from base's count and the block list, without building the network, as in
# lesson 10 (SE on C channels costs 2 C r + r + C, r from the block's input channels).

# %%
# EXERCISE 15.2: your code here
def my_variant_parameters(base_count):
    raise NotImplementedError


# %%
lesson.exercise("15.2", my_variant_parameters, variant=canonical_variant(my_variant) if lesson.passed("15.1") else None)

# %% [markdown]
# Measured, on the meta backend: the full network, and the tiny one we are about to train.

# %%
counts = {v: (build_model(v, backend="meta").num_parameters(),
              build_model(v, num_classes=10, width=0.25, depth=0.1, backend="meta").num_parameters())
          for v in ("base", chosen)}
lesson.table(["variant", "B0, 1000 classes", "tiny (width 0.25, depth 0.1), 10 classes"],
             [(v, f"{full:,}", f"{tiny:,}") for v, (full, tiny) in counts.items()])

# %% [markdown]
# ## 3. Training it against base, over seeds
#
# The ablation runner of lesson 14 trains every variant with the same recipe, the same
# data order and the same seeds, each run in its own process. Two seeds each, the tiny
# network, 8x8 images, 4 steps on the pure-Python backend: a toy that finishes in
# seconds. (The command for the real comparison comes below.)

# %%
workdir = tempfile.mkdtemp(prefix="tinyeffnet-lesson15-")
atexit.register(shutil.rmtree, workdir, True)  # a toy: deleted when the lesson ends
cfg = TrainConfig(backend="python", variant="base", data="default", width=0.25, depth=0.1, image_size=8,
                  batch_size=8, epochs=1, max_steps=4, eval_examples=32, workers=0, log_every=2,
                  checkpoint_every=4).resolved().check()
seeds = [0, 1]
with course.stderr_to(os.path.join(workdir, "runs.log")):  # progress bars, not lesson output
    table, failed = ablation.ablate(cfg, ["base", chosen], seeds, workdir)
paths = report.write_report(table, workdir)
lesson.markdown(report.markdown_table(table))
lesson.show(paths["png"], "my_variant_vs_base")

# %% [markdown]
# ## 4. Reading the spread
#
# Each variant has a top-1 per seed. The report (lesson 14) calls a difference to base
# real only when it is larger than twice the combined seed-to-seed spread:

# %%
rows = table["variants"]
for v in ("base", chosen):
    print(f"{v:>16}: top-1 per seed {[f'{t:.3f}' for t in rows[v]['top1']]}, mean {rows[v]['top1_mean']:.3f}, "
          f"sample std {rows[v]['top1_std']:.3f}")
mine = rows[chosen]
verdict = "larger than" if mine["delta_top1_exceeds_spread"] else "within"
print(f"difference to base {100 * mine['delta_top1']:+.2f} points; 2 x combined std "
      f"{200 * mine['delta_top1_combined_std']:.2f} points: {verdict} the spread")

# %% [markdown]
# With 32 eval images one image is 3 points, and after four steps the networks are still
# close to their random start. Within the spread, the toy cannot tell your variant from
# base, and says so; outside it, two seeds of four steps are still too few to believe it
# (two seeds give a very rough standard deviation). To ask for real, train longer, on
# more data, with more seeds: the same runner, from the command line, on the JAX backend
# (the `default` preset: 32x32, 4 epochs of the 20,000 embedded Fashion-MNIST images):

# %%
command = f"python -m tinyeffnet.ablation --variants base,{chosen} --seeds 3 --backend jax --workdir runs/{chosen}"
print(command)
args = build_ablation_parser().parse_args(command.split()[3:])  # the real command line parser accepts it
command_variants = ablation.parse_variants(args.variants)
args.variant = "base"
command_cfg = config_from_args(args).resolved().check()
print("it trains", command_variants, "with seeds", list(range(command_cfg.seed, command_cfg.seed + args.seeds)),
      f"({command_cfg.preset} preset: {command_cfg.epochs} epochs at {command_cfg.image_size}x{command_cfg.image_size})")

# %% [markdown]
# Read its `table2.md` the same way: the Δ column against 2 x the combined std. Three
# seeds of a few minutes each are the least that gives a spread; if the difference stays
# within it, more seeds narrow the spread (as 1 / sqrt(seeds)), or the difference is
# simply not there. On ImageNet (`--data imagenet:DIR`) the same command is the paper's
# experiment with your row added to Table II.
#
# ## Checks

# %%
assert canonical_variant(chosen) == chosen and chosen not in VARIANTS
assert changed, "the variant differs from base"
assert counts[chosen][0] != counts["base"][0] and counts[chosen][1] != counts["base"][1]
assert not failed, failed
assert list(rows) == ["base", chosen] and all(rows[v]["seeds"] == seeds for v in rows)
assert all(rows[v]["params"] == counts[v][1] for v in rows), "the report counts the network that was trained"
assert rows[chosen]["paper"] is None and rows["base"]["paper"]["top1"] == 77.2, "no paper figures for a new variant"
assert mine["delta_top1_exceeds_spread"] in (True, False) and mine["delta_top1_combined_std"] is not None
assert all(os.path.isfile(p) for p in paths.values())
assert command_variants == ["base", chosen] and args.seeds == 3 and command_cfg.backend == "jax"
lesson.finish()
print("ok: lesson 15 checks passed")
