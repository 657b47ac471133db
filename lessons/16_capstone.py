# %% [markdown]
# # Lesson 16: capstone, a variant of your own
#
# The paper asks where the SE module should sit and tries seven answers. You now know
# every piece that answer rests on, so ask your own question: is SE worth its parameters
# in the early, high-resolution stages? Only in the last stage? At the end of the wide
# stage 7? This lesson takes one such variant through the whole course in miniature:
#
# 1. **name it** so that the one model builder, `build_model`, understands it;
# 2. **count it**, by hand and measured;
# 3. **cost the real question**: what the full comparison on the embedded data costs,
#    priced by a short calibration run of its own recipe on this machine;
# 4. **train it against base, time-boxed**: two seeds each with the real ablation
#    runner, sized to about 10 minutes on a 2-core CPU;
# 5. **read it against the seed spread** with the paired statistics of lesson 15: is
#    "base beats your variant" reproduced, contradicted or not resolved?
#
# The time box is `TINYEFFNET_CAPSTONE_MINUTES` (default 10). Below 3 minutes the lesson
# runs a toy on the pure-Python backend instead of JAX (the test suite does, with 0.3):
# its verdict then means nothing, and the lesson says so.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("16")
ROOT = course.ROOT

import atexit
import math
import shutil
import tempfile
import time

from data_tools import Loader, open_dataset
from tinyeffnet.ablation import build_ablation_parser
from tinyeffnet.experiments import runner, table2 as report
from tinyeffnet.experiments.paired import paired_difference, verdict
from tinyeffnet.model.efficientnet import block_specs, build_model
from tinyeffnet.model.spec import VARIANTS, canonical_variant
from tinyeffnet.plotting.canvas import BLUE, GREEN, MUTED, ORANGE, Panel, new_figure
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
# ### Exercise 16.1: your variant
#
# Set `my_variant` to a variant of your own: a network none of the paper's seven builds.
# Careful: a stage range can name one of them under another name, `seend@stage2-8` is the
# paper's `seend@all` and `nose@stage2-8` its `nose@all` (the check compares the networks,
# block by block, not the names). For example `nose@stage2-7` keeps SE only in the last stage (the paper found
# SE in the blocks without a skip cheap to lose; stage 8 has one block, without a skip).
# Until you choose, the lesson goes on with an example, `seend@stage8`.

# %%
# EXERCISE 16.1: your variant here
my_variant = None

# %%
lesson.exercise("16.1", my_variant)
my_variant = lesson.answer("16.1")
EXAMPLE = "seend@stage8"
chosen = canonical_variant(my_variant) if lesson.passed("16.1") else EXAMPLE
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
# ### Exercise 16.2: its parameters, by hand
#
# Write `my_variant_parameters(base_count)`: your variant's parameter count (full B0,
# 1000 classes) from base's count and the block list, without building the network, as in
# lesson 10 (SE on C channels costs 2 C r + r + C, r from the block's input channels).

# %%
# EXERCISE 16.2: your code here
def my_variant_parameters(base_count):
    raise NotImplementedError


# %%
lesson.exercise("16.2", my_variant_parameters, variant=canonical_variant(my_variant) if lesson.passed("16.1") else None)

# %% [markdown]
# Measured, on the meta backend: the full network, and the tiny one we are about to train.

# %%
counts = {v: (build_model(v, backend="meta").num_parameters(),
              build_model(v, num_classes=10, width=0.25, depth=0.1, backend="meta").num_parameters())
          for v in ("base", chosen)}
lesson.table(["variant", "B0, 1000 classes", "tiny (width 0.25, depth 0.1), 10 classes"],
             [(v, f"{full:,}", f"{tiny:,}") for v, (full, tiny) in counts.items()])

# %% [markdown]
# ## 3. What the real question costs
#
# The full comparison on the embedded data: both variants, three seeds, the JAX backend
# and the trainer's default recipe for it (whatever `tinyeffnet/training/config.py`
# currently sets). What one run does, counted before anything is trained: its training
# steps, and its evaluations (after every `eval_every` epochs: precise BN statistics
# measured on `precise_bn` training images, then the whole test split scored, both twice
# when the run keeps an EMA of the weights, once for each set of weights).

# %%
command = f"python -m tinyeffnet.ablation --variants base,{chosen} --seeds 3 --backend jax --workdir runs/{chosen}"
args = build_ablation_parser().parse_args(command.split()[3:])  # the real command line parser accepts it
command_variants = runner.parse_variants(args.variants)
args.variant = "base"
full = config_from_args(args).resolved().check()
train_data = open_dataset(full.data, "train", image_size=full.image_size)
train_images, test_images = len(train_data), len(open_dataset(full.data, "eval", image_size=full.image_size))
steps_per_epoch = Loader(train_data, full.batch_size).steps_per_epoch  # as the trainer's loader batches it


def run_work(cfg, steps):
    """(training images, forward-only images of its evaluations) of one run of `cfg` that
    trains `steps` steps."""
    evaluations = math.ceil(steps / (cfg.eval_every * steps_per_epoch))
    scored = cfg.eval_examples or test_images
    return steps * cfg.batch_size, evaluations * (scored + cfg.precise_bn) * (2 if cfg.ema_decay else 1)


full_runs = len(command_variants) * args.seeds
full_steps = full.max_steps or full.epochs * steps_per_epoch
full_train, full_eval = run_work(full, full_steps)
print(command)
print(f"{full_runs} runs, each {full_steps:,} steps x {full.batch_size} images = {full_train:,} training images "
      f"({full.preset} preset: {full.epochs} epochs at {full.image_size}x{full.image_size}) and {full_eval:,} images "
      "through the evaluations")

# %% [markdown]
# How long that takes depends on the machine, so it is measured: a calibration run of that
# very recipe (the default run, cut to a few steps and a small evaluation) gives this
# machine's training speed and what a run costs whatever its length (the start, the
# compiles, writing the run's files). An image through an evaluation costs about a third of
# a training image (a forward pass, where a training step also runs the input and the
# weight gradients). The price is computed at the end.
#
# ## 4. Training it against base, time-boxed
#
# The same runner, the same recipe for every run, two seeds each, at a smaller scale that
# fits the time box: the tiny network (width 0.25, depth 0.1) at 16x16, with its own short
# recipe (learning rate 0.05 without warmup, no weight averaging, no dropout; BN
# statistics recomputed before evaluation). Two short calibration runs of base come first:
# the full command's recipe of section 3 (for its price; not in a toy run), then this small
# recipe, whose speed sizes the box: the number of steps per run is what four runs can
# afford in the time left.

# %%
budget_minutes = float(os.environ.get("TINYEFFNET_CAPSTONE_MINUTES", "10"))
toy = budget_minutes < 3
box_backend = "python" if toy else "jax"
workdir = tempfile.mkdtemp(prefix="tinyeffnet-lesson16-")
atexit.register(shutil.rmtree, workdir, True)  # deleted when the lesson ends
recipe = dict(backend=box_backend, variant="base", data="default", width=0.25, depth=0.1, image_size=16,
              batch_size=8 if toy else 32, epochs=1, eval_examples=32 if toy else 2000, workers=0,
              log_every=1 if toy else 50, checkpoint_every=10 ** 6,
              # its own short recipe, whatever the presets say: no weight averaging (too few steps
              # for it), BN statistics recomputed before eval where it is cheap, a short warmup
              lr=0.05, warmup_epochs=0.0, ema_decay=0.0, precise_bn=0 if toy else 1024, dropout=0.0,
              drop_connect=0.0, augment="none")
calibration_steps = 2 if toy else 60
full_calibration = None
start = time.time()
with course.stderr_to(os.path.join(workdir, "runs.log")):  # progress bars, not lesson output
    if not toy:  # the full command's own recipe, cut short: the price of section 3
        full_calibration, failed_full_calibration = runner.ablate(
            TrainConfig(**{**vars(full), "max_steps": 12, "eval_examples": 512, "precise_bn": min(full.precise_bn, 512),
                           "checkpoint_every": 10 ** 6}).resolved().check(),
            ["base"], [0], os.path.join(workdir, "calibration-full"), say=lambda *a, **k: None)
        assert not failed_full_calibration, failed_full_calibration
full_calibration_seconds = time.time() - start
start = time.time()
with course.stderr_to(os.path.join(workdir, "runs.log")):
    calibration, failed_calibration = runner.ablate(
        TrainConfig(**recipe, max_steps=calibration_steps).resolved().check(), ["base"], [0],
        os.path.join(workdir, "calibration"), say=lambda *a, **k: None)
calibration_seconds = time.time() - start
speed = calibration["variants"]["base"]["images_per_s"][0] or 1.0  # after the compile
overhead = max(0.0, calibration_seconds - calibration_steps * recipe["batch_size"] / speed)
runs = 4
box_steps = max(2, int((budget_minutes * 60 - full_calibration_seconds - calibration_seconds - runs * overhead) * speed
                       / (runs * recipe["batch_size"])))
box_cfg = TrainConfig(**{**recipe, "epochs": max(1, math.ceil(box_steps * recipe["batch_size"] / train_images))},
                      max_steps=box_steps).resolved().check()
print(f"{'TOY (pure Python, under 3 minutes): the verdict below means nothing. ' if toy else ''}"
      f"calibration: {speed:.0f} images/s after a {overhead:.0f} s start (compile); "
      f"{runs} runs of {box_steps} steps x {recipe['batch_size']} images fit {budget_minutes:g} minutes")

# %%
seeds = [0, 1]
start = time.time()
with course.stderr_to(os.path.join(workdir, "runs.log")):
    table, failed = runner.ablate(box_cfg, ["base", chosen], seeds, workdir)
box_seconds = time.time() - start
paths = report.write_report(table, workdir)
lesson.markdown(report.markdown_table(table))
print(f"the four runs took {box_seconds / 60:.1f} minutes")

# %% [markdown]
# ## 5. Reading it against the seed spread
#
# The paper's claim, for every variant it tried: base is better. For yours, "base beats
# it" is reproduced when the 95% interval of the per-seed differences base - variant lies
# above 0, contradicted when below, not resolved when it holds 0 (lesson 15).

# %%
rows = table["variants"]
top1 = {v: dict(zip(rows[v]["seeds"], rows[v]["top1"])) for v in ("base", chosen)}
for v in ("base", chosen):
    print(f"{v:>16}: top-1 per seed {[f'{t:.4f}' for t in rows[v]['top1']]}, mean {rows[v]['top1_mean']:.4f}, "
          f"sample std {rows[v]['top1_std']:.4f}")
difference = paired_difference(top1["base"], top1[chosen])
claim = verdict(difference)
print(f"base - {chosen}, seed by seed: {[f'{d:+.4f}' for d in difference['differences']]}; mean "
      f"{difference['mean']:+.4f}, 95% interval [{difference['low']:+.4f}, {difference['high']:+.4f}] over "
      f"{difference['n']} seeds")
print(f"'base beats {chosen}': {claim}" + (" (a toy run: this verdict means nothing)" if toy else ""))


def interval_chart(difference, title):
    """Each seed's difference, then their mean and 95% interval, against the zero line."""
    image, draw, fonts = new_figure((760, 460), title)
    panel = Panel(draw, (0, 44, 760, 460), "", fonts)
    each = [100 * d for d in difference["differences"]]
    low, mean, high = (100 * difference[k] for k in ("low", "mean", "high"))
    n = len(each)
    panel.axes([-0.5, n + 0.5], each + [low, high, 0.0], xlabel=f"seed (0-{n - 1}), then ({n}) their mean and 95% interval",
               ylabel="base - variant, top-1 points")
    x0, _, x1, _ = panel.box
    draw.line([(x0, panel.py(0.0)), (x1, panel.py(0.0))], fill=MUTED, width=1)
    draw.text((x0 + 4, panel.py(0.0) - 2), "0: no difference", fill=MUTED, font=fonts["small"], anchor="ld")
    panel.line([(n, low), (n, high)], ORANGE, f"95% interval (t, {n} seeds)", width=3)
    panel.markers(list(enumerate(each)), BLUE, "one seed's difference")
    panel.markers([(n, mean)], GREEN, "their mean")
    panel.draw_legend("bottom-right")
    return image


lesson.show(interval_chart(difference, f"base - {chosen}: top-1 seed by seed, and the paired 95% interval"),
            "paired_interval")

# %% [markdown]
# The chart puts the interval against 0, where "no difference" lies: an interval across
# the zero line is not resolved, however far apart the two means look. Two seeds give a t
# interval with t(0.975, 1) = 12.7: only a difference far larger than its seed-to-seed
# wobble resolves. "Not resolved" is an honest answer, and the usual one
# here; more seeds narrow the interval (t falls to 4.3 with three, and the standard error
# as 1 / sqrt(seeds)); a longer run moves the difference itself.
#
# ## 6. The real command, priced with this machine's speed
#
# The calibration run of section 4 trained the full command's own recipe for a few steps.
# Its training speed (images/s once compiled) and its fixed part (its wall time less its
# steps and its evaluation at that speed) price one run of the recipe at full length:
# fixed part + training images / speed + evaluation images / (3 x speed). The six runs of
# the command run one after another. A toy run (pure Python) trains no full recipe, and
# prices nothing.

# %%
estimate_hours = None
if full_calibration is not None:
    measured = full_calibration["variants"]["base"]
    speed_full, seconds_full, steps_full = measured["images_per_s"][0], measured["seconds"][0], measured["steps"][0]
    cal_train, cal_eval = run_work(TrainConfig(**{**vars(full), "eval_examples": 512,
                                                  "precise_bn": min(full.precise_bn, 512)}), steps_full)
    fixed = max(0.0, seconds_full - (cal_train + cal_eval / 3) / speed_full)
    run_seconds = fixed + (full_train + full_eval / 3) / speed_full
    estimate_hours = full_runs * run_seconds / 3600
    print(f"measured: the calibration run ({steps_full} steps of the {full.preset} recipe) trained {speed_full:,.1f} "
          f"images/s once compiled, and took {seconds_full:,.0f} s, of which {fixed:,.0f} s whatever its length")
    print(f"{command}\n  one run: {fixed:,.0f} s + {full_train:,} / {speed_full:,.1f} s training + {full_eval:,} / "
          f"(3 x {speed_full:,.1f}) s evaluating = {run_seconds / 60:,.0f} minutes; {full_runs} runs one after another: "
          f"about {estimate_hours:,.1f} hours here")
else:
    print(f"{command}\n  not priced: a toy run trains the pure-Python backend only (set TINYEFFNET_CAPSTONE_MINUTES "
          "to 3 or more for the JAX runs and the price)")

# %% [markdown]
# Its `table2.md` reads the same way, with three seeds; on ImageNet (`--data
# imagenet:DIR`) the same command is the paper's experiment with your row added to Table
# II.
#
# ## Checks

# %%
assert canonical_variant(chosen) == chosen and chosen not in VARIANTS
assert changed, "the variant differs from base"
assert counts[chosen][0] != counts["base"][0] and counts[chosen][1] != counts["base"][1]
assert not failed and not failed_calibration, (failed, failed_calibration)
assert list(rows) == ["base", chosen] and all(rows[v]["seeds"] == seeds for v in rows)
assert all(rows[v]["params"] == counts[v][1] for v in rows), "the report counts the network that was trained"
assert all(rows[v]["steps"] == [box_steps] * 2 for v in rows), "every run trained the same number of steps"
assert rows[chosen]["paper"] is None and rows["base"]["paper"]["top1"] == 77.2, "no paper figures for a new variant"
assert difference["n"] == 2 and difference["low"] <= difference["mean"] <= difference["high"]
assert claim in ("reproduced", "contradicted", "not resolved")
assert all(os.path.isfile(p) for p in paths.values())
assert command_variants == ["base", chosen] and args.seeds == 3 and full.backend == "jax"
assert full_train == full_steps * full.batch_size and full_eval > 0
assert toy == (estimate_hours is None) and (toy or estimate_hours > 0)
lesson.finish()
