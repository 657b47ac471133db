# %% [markdown]
# # Lesson 00: how to use this course
#
# tinyeffnet reimplements the paper *Practical Analysis on Architecture of EfficientNet*
# (Hoang and Jo): it trains EfficientNet-B0 and six variants that move or remove its
# squeeze-and-excitation (SE) modules (the paper's Table II). Everything sits on a small
# tensor library written for this project: no NumPy, its own reverse-mode autograd, and two
# interchangeable array backends (pure Python to read, JAX to run fast).
#
# The goal of the course: after lessons 00 to 16 you can read every line that runs when
# you type
#
#     python -m tinyeffnet.train --backend jax --variant base
#
# and say why it is there, and you have added a variant of your own and measured it.
#
# **How the lessons are written.** Each lesson is a plain Python file in the jupytext
# "percent" format: `# %%` starts a code cell, `# %% [markdown]` starts a text cell whose
# lines are comments. So a lesson
#
# - reads top to bottom as a chapter (open it in any editor),
# - runs as a script: `python lessons/04_conv2d.py` (from anywhere),
# - opens as a notebook: `pip install -e '.[test]'` (jupytext, nbconvert, ipykernel), then
#   `jupytext --to notebook --set-kernel python3 --execute lessons/04_conv2d.py` writes
#   and runs `lessons/04_conv2d.ipynb` (from any folder, given the lesson's path); open it
#   in Jupyter, or open the `.py` file directly in JupyterLab with jupytext installed:
#   right-click, "Open With", "Notebook".
#
# **You do, see and check.** Every lesson from 01 on has **exercises**: a cell marked
# `# EXERCISE NN.k` holds a function (or class, or value) for you to write, and the cell
# after it checks what you wrote. Until you write it, the check prints what to do and the
# lesson goes on; a wrong answer is told what is wrong. Reference solutions are in
# `lessons/solutions/` (`TINYEFFNET_SOLUTIONS=1 python lessons/04_conv2d.py` runs a lesson
# with them). **Figures** show what is better seen than read: inline in a notebook; as a
# script they are saved to `lessons/figures/` (or `$TINYEFFNET_FIGURES`) and the path is
# printed.
#
# **The lessons never copy library code.** They import it, call it, and print the lines
# worth reading with `inspect.getsource`. If a lesson and the library disagree, the
# library wins and the lesson's checks fail.
#
# **Every lesson ends with checks**: plain `assert`s. Running a lesson proves what it
# taught, and the test suite runs them all, with and without the solutions
# (`python -m pytest -q tests/test_lessons.py`).

# %%
import ast
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("00")
ROOT = course.ROOT

# %% [markdown]
# The cell above is the boilerplate every lesson starts with. The package, installed with
# `pip install -e .` from the repository root, knows where it lives; the folder above it is
# the repository, whatever folder you start Python or Jupyter in. `lessons/course.py` is
# the course's own helper (figures, tables, exercise checks), not part of the library.
#
# ## The map of the repository
#
# Three top-level packages (tinyeffnet with its sub-packages). Rather than a hand-written list that goes stale, we read the first line
# of every module's docstring straight from the source files (with `ast`, without
# importing anything).

# %%
PACKAGES = ("backends", "tinyeffnet", "tinyeffnet/engine", "tinyeffnet/nn", "tinyeffnet/model", "tinyeffnet/training",
            "tinyeffnet/experiments", "tinyeffnet/plotting", "tinyeffnet/benchmarks", "data_tools")


def first_line(path):
    with open(path, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no docstring)"


repo_map = {}
for package in PACKAGES:
    folder = os.path.join(ROOT, package)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            repo_map[f"{package}/{name}"] = first_line(os.path.join(folder, name))

lesson.table(["module", "what it is (its docstring's first line)"], [(f"`{p}`", line) for p, line in repo_map.items()])

# %% [markdown]
# How the pieces stack, bottom to top:
#
# | layer | files | lessons |
# |---|---|---|
# | arrays: the backend contract and its implementations | `backends/contract.py`, `python_backend.py`, `jax_backend.py`, `meta_backend.py` | 01, 04, 05, 13, 14 |
# | `Tensor` and reverse-mode autograd | `tinyeffnet/engine/tensor.py`, `autograd.py`, `ops.py` | 01, 02 |
# | checking gradients | `tinyeffnet/engine/gradcheck.py` | 03 (and used everywhere after) |
# | stateless ops (conv, batch norm, swish, loss) | `tinyeffnet/engine/functional.py` | 04-07, 11 |
# | layers and the module tree | `tinyeffnet/nn/module.py`, `layers.py`, `init.py` | 05-09 |
# | the network and its variants | `tinyeffnet/model/spec.py`, `efficientnet.py`, `stages.py` | 09, 10 |
# | one training step, optimizer, schedule | `tinyeffnet/training/step.py`, `optimizer.py`, `schedule.py` | 11-13 |
# | the trainer | `tinyeffnet/training/config.py`, `runtime.py`, `loop.py`, `rundir.py`, `claim.py`, `evaluation.py`, `checkpoint.py`, `checkpoint_dir.py`, `state.py`, `metrics.py`, `data_tools/` | 11-15 |
# | the paper's experiment | `tinyeffnet/experiments/runner.py`, `table2/`, `paired.py` | 15, 16 |
# | charts and figures (Pillow only) | `tinyeffnet/plotting/` | every lesson's figures |
# | the commands | `tinyeffnet/train.py`, `evaluate.py`, `predict.py`, `summary.py`, `ablation.py`, `bench.py` | 00 |
#
# ## The path
#
# | lesson | what it teaches | you write | needs |
# |---|---|---|---|
# | 00 | this map | - | - |
# | 01 | `Tensor`, the backend contract, its primitives, the registry, the meta backend | a flat index; the backend's `expand` | 00 |
# | 02 | autograd: `Function`, the tape (drawn), topological order, accumulation, broadcasting, `no_grad` | a backward by hand; a `Tanh` Function; **backward itself**; the broadcast reduction | 01 |
# | 03 | gradient checking with finite differences; catching a wrong backward | the error's Taylor prediction; a numerical gradient | 02 |
# | 04 | `conv2d`: NHWC/HWIO, TensorFlow SAME padding, both backward convolutions derived | SAME padding; **conv2d's forward and both gradients**, run as a Function | 03 |
# | 05 | depthwise convolution and what it saves (MACs via the meta backend) | the cost of a separable conv | 04 |
# | 06 | batch norm: train vs eval, moving averages, the closed-form backward | **BN's forward and backward**, run as a Function | 03 |
# | 07 | stable sigmoid, swish and its lean backward | a stable softplus; swish' | 03 |
# | 08 | the squeeze-and-excitation module and its real cost | **the SE forward** | 04, 07 |
# | 09 | the MBConv block and the paper's Fig. 1a/1b/1c | **the MBConv forward with its skip** | 05, 06, 08 |
# | 10 | EfficientNet-B0: Table I and the parameter counts of Table II | SEend's counts by hand; the Xavier bound | 09 |
# | 11 | the training loop: loss, SGD + Nesterov, the schedule, real images, real steps | the smoothing floor; one Nesterov step; **the training step** | 10 |
# | 12 | JAX tracing: a tracer of our own records our tape, then `jax.jit` does (a jaxpr printed) | a jit-safe leaky ReLU | 11 |
# | 13 | the JAX backend: primitives, depthwise by taps, the compiled step (StableHLO), donation | **depthwise by taps in jax.numpy** | 12 |
# | 14 | many devices (sharding), bfloat16 with float32 masters, many hosts | bfloat16 rounding in JAX | 13 |
# | 15 | the SE ablation, read like the paper's Table II; paired statistics over seeds | the paired interval | 14 |
# | 16 | capstone: a variant of your own, counted, trained against base over seeds | your variant; its count | 15 |
#
# In bold: the pieces of the engine you write, which the lesson then runs on.

# %% [markdown]
# ## Where the trainer's command is explained
#
# `python -m tinyeffnet.train --backend jax --variant base` runs
# `tinyeffnet/training/loop.py: train`. Its steps, in order, and the lesson that explains each:

# %%
TRAIN_WALKTHROUGH = [
    ("parse flags into a TrainConfig and fill in a preset", "tinyeffnet/training/config.py", "11, 15"),
    ("pick the runtime: JAX devices, compute dtype, mesh", "tinyeffnet/training/runtime.py", "13, 14"),
    ("open the data and batch it (data_tools.Loader)", "data_tools/loader.py", "11"),
    ("the network's ModelSpec (flags, data, the weights it starts from)", "tinyeffnet/model/spec.py", "10"),
    ("build_model(spec): stem, 16 MBConv blocks, head", "tinyeffnet/model/efficientnet.py", "04-10"),
    ("initialise the weights (Xavier, the paper's choice)", "tinyeffnet/nn/init.py", "10"),
    ("SGD with Nesterov momentum and weight decay", "tinyeffnet/training/optimizer.py", "11, 13"),
    ("one step: forward, our backward, update (jit on JAX)", "tinyeffnet/training/step.py", "02, 11, 12, 13"),
    ("learning rate per step: warmup then cosine", "tinyeffnet/training/schedule.py", "11"),
    ("loss with label smoothing", "tinyeffnet/engine/functional.py", "11"),
    ("top-1/top-5 and the other batch metrics", "tinyeffnet/training/metrics.py", "11"),
    ("the work directory: checkpoints, starting point, resume", "tinyeffnet/training/rundir.py", "11, 15"),
    ("evaluate (precise BN, EMA), summary.json", "tinyeffnet/training/evaluation.py", "15"),
]
lesson.table(["step", "where", "lesson"], [(what, f"`{where}`", lessons) for what, where, lessons in TRAIN_WALKTHROUGH])

# %% [markdown]
# ## Running the lessons
#
# One lesson: `python lessons/04_conv2d.py`. All of them, in order:
#
#     for f in lessons/[0-9]*.py; do python "$f"; done
#
# or, as the test suite does (one fresh process per lesson, with and without the
# reference solutions, and three lessons executed as notebooks):
#
#     python -m pytest -q tests/test_lessons.py
#
# Each lesson runs in under a minute on a 2-core CPU, most in a few seconds, but the
# capstone (lesson 16), whose real comparison is time-boxed to about 10 minutes. The
# pure-Python backend is slow (every number is a Python float), so the lessons use small
# tensors and tiny networks; the real sizes appear where only shapes are needed (the meta
# backend, lessons 01, 05, 08 and 10).
#
# A lesson's last line sums it up: how many of its exercises are passed, to do and wrong,
# and that its own checks hold. It says `lesson NN passed` only when every exercise is.

# %% [markdown]
# ## Checks

# %%
lessons = sorted(n for n in os.listdir(os.path.join(ROOT, "lessons")) if n[:2].isdigit() and n.endswith(".py"))
numbers = [int(n[:2]) for n in lessons]
assert numbers == list(range(17)), f"expected lessons 00..16, found {lessons}"
for _, where, _ in TRAIN_WALKTHROUGH:
    assert os.path.exists(os.path.join(ROOT, where)), f"the walkthrough names {where}, which does not exist"
for module in ("backends/contract.py", "tinyeffnet/engine/tensor.py", "tinyeffnet/engine/autograd.py",
               "tinyeffnet/model/efficientnet.py", "tinyeffnet/train.py", "data_tools/loader.py"):
    assert module in repo_map, f"{module} is missing from the repository map"
for name in lessons[1:]:
    number = name[:2]
    assert course.checks.of_lesson(number), f"lesson {number} has no exercise"
    for folder in ("solutions", "checks"):
        assert os.path.isfile(os.path.join(ROOT, "lessons", folder, name)), f"lesson {number} has no {folder} file"
print(f"{len(lessons)} lessons, {len(course.checks.every())} exercises, {len(repo_map)} modules mapped")
lesson.finish()
