# %% [markdown]
# # Lesson 00: how to use this course
#
# tinyeffnet reimplements the paper *"A practical analysis of EfficientNet"*: it trains
# EfficientNet-B0 and six variants that move or remove its squeeze-and-excitation (SE)
# modules (the paper's Table II). Everything sits on a small tensor library written for
# this project: no NumPy, its own reverse-mode autograd, and two interchangeable array
# backends (pure Python to read, JAX to run fast).
#
# The goal of the course: after lessons 00 to 13 you can read every line that runs when
# you type
#
#     python -m tinyeffnet.train --backend jax --variant base
#
# and say why it is there.
#
# **How the lessons are written.** Each lesson is a plain Python file in the jupytext
# "percent" format: `# %%` starts a code cell, `# %% [markdown]` starts a text cell whose
# lines are comments. So a lesson
#
# - reads top to bottom as a chapter (open it in any editor),
# - runs as a script: `python lessons/04_conv2d.py` (from the repository root),
# - opens as a notebook where jupytext is installed (`pip install jupytext`, then open the
#   `.py` file in Jupyter, or `jupytext --to notebook lessons/04_conv2d.py`).
#
# **The lessons never copy library code.** They import it, call it, and print it with
# `inspect.getsource` when you should read it. If a lesson and the library disagree, the
# library wins and the lesson's checks fail.
#
# **Every lesson ends with checks**: plain `assert`s. Running a lesson proves what it
# taught, and the test suite runs them all (`python -m pytest -q tests/test_lessons.py`).

# %%
import ast
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
ROOT = os.path.dirname(HERE) if os.path.basename(HERE) == "lessons" else HERE
sys.path.insert(0, ROOT)  # so that `import tinyeffnet` works without installing the package

# %% [markdown]
# The cell above is the only boilerplate: it finds the repository root (the folder above
# `lessons/`) and puts it on Python's import path. Every lesson starts with it. (With
# `pip install -e .` it would not be needed.)
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

for path, line in repo_map.items():
    print(f"{path:<32} {line[:100]}")

# %% [markdown]
# How the pieces stack, bottom to top:
#
# | layer | files | lessons |
# |---|---|---|
# | arrays: the backend contract and its implementations | `backends/contract.py`, `python_backend.py`, `jax_backend.py`, `meta_backend.py` | 01, 04, 05, 12 |
# | `Tensor` and reverse-mode autograd | `tinyeffnet/engine/tensor.py`, `autograd.py`, `ops.py` | 01, 02 |
# | checking gradients | `tinyeffnet/engine/gradcheck.py` | 03 (and used everywhere after) |
# | stateless ops (conv, batch norm, swish, loss) | `tinyeffnet/engine/functional.py` | 04-07, 11 |
# | layers and the module tree | `tinyeffnet/nn/module.py`, `layers.py`, `init.py` | 05-09 |
# | the network and its variants | `tinyeffnet/model/efficientnet.py`, `stages.py` | 09, 10 |
# | one training step, optimizer, schedule | `tinyeffnet/training/step.py`, `optimizer.py`, `schedule.py` | 11, 12 |
# | the trainer | `tinyeffnet/training/config.py`, `runtime.py`, `loop.py`, `checkpoint.py`, `state.py`, `data_tools/` | 11-13 |
# | the paper's experiment | `tinyeffnet/experiments/ablation.py`, `table2.py` | 13 |
# | the commands | `tinyeffnet/train.py`, `evaluate.py`, `predict.py`, `summary.py`, `ablation.py`, `bench.py` | 00 |
#
# ## The path
#
# | lesson | what it teaches | needs |
# |---|---|---|
# | 00 | this map | - |
# | 01 | `Tensor`, the backend contract, its primitives, the registry, the meta backend | 00 |
# | 02 | autograd: `Function`, the tape, topological order, accumulation, broadcasting, `no_grad` | 01 |
# | 03 | gradient checking with finite differences; catching a wrong backward | 02 |
# | 04 | `conv2d`: NHWC/HWIO, TensorFlow SAME padding, both backward convolutions | 03 |
# | 05 | depthwise convolution and what it saves (MACs via the meta backend) | 04 |
# | 06 | batch norm: train vs eval, moving averages, the closed-form backward | 03 |
# | 07 | stable sigmoid, swish and its lean backward | 03 |
# | 08 | the squeeze-and-excitation module | 04, 07 |
# | 09 | the MBConv block and the paper's Fig. 1a/1b/1c | 05, 06, 08 |
# | 10 | EfficientNet-B0: Table I and the parameter counts of Table II | 09 |
# | 11 | the training loop: loss, SGD + Nesterov, the schedule, real steps in pure Python | 10 |
# | 12 | the JAX backend: one jit program, sharding, TPUs | 11 |
# | 13 | the SE ablation, read like the paper's Table II | 12 |

# %% [markdown]
# ## Where the trainer's command is explained
#
# `python -m tinyeffnet.train --backend jax --variant base` runs
# `tinyeffnet/training/loop.py: train`. Its steps, in order, and the lesson that explains each:

# %%
TRAIN_WALKTHROUGH = [
    ("parse flags into a TrainConfig and fill in a preset", "tinyeffnet/training/config.py", "11, 13"),
    ("pick the runtime: JAX devices, compute dtype, mesh", "tinyeffnet/training/runtime.py", "12"),
    ("open the data and batch it (data_tools.Loader)", "data_tools/loader.py", "11"),
    ("build_model(variant): stem, 16 MBConv blocks, head", "tinyeffnet/model/efficientnet.py", "04-10"),
    ("initialise the weights (Xavier, the paper's choice)", "tinyeffnet/nn/init.py", "10"),
    ("SGD with Nesterov momentum and weight decay", "tinyeffnet/training/optimizer.py", "11, 12"),
    ("one step: forward, our backward, update (jit on JAX)", "tinyeffnet/training/step.py", "02, 11, 12"),
    ("learning rate per step: warmup then cosine", "tinyeffnet/training/schedule.py", "11"),
    ("loss with label smoothing, top-1/top-5", "tinyeffnet/engine/ops.py", "11"),
    ("evaluate, checkpoint, summary.json", "tinyeffnet/training/loop.py", "13"),
]
for what, where, lessons in TRAIN_WALKTHROUGH:
    print(f"{what:<56} {where:<28} lesson {lessons}")

# %% [markdown]
# ## Running the lessons
#
# One lesson: `python lessons/04_conv2d.py`. All of them, in order:
#
#     for f in lessons/[0-9]*.py; do python "$f"; done
#
# or, as the test suite does (one fresh process per lesson):
#
#     python -m pytest -q tests/test_lessons.py
#
# Each lesson runs in seconds on a 2-core CPU. The pure-Python backend is slow (every
# number is a Python float), so the lessons use small tensors and tiny networks; the real
# sizes appear where only shapes are needed (the meta backend, lesson 01 and 10).

# %% [markdown]
# ## Checks

# %%
lessons = sorted(n for n in os.listdir(os.path.join(ROOT, "lessons")) if n[:2].isdigit() and n.endswith(".py"))
numbers = [int(n[:2]) for n in lessons]
assert numbers[:14] == list(range(14)), f"expected lessons 00..13, found {lessons}"
for _, where, _ in TRAIN_WALKTHROUGH:
    assert os.path.exists(os.path.join(ROOT, where)), f"the walkthrough names {where}, which does not exist"
for module in ("backends/contract.py", "tinyeffnet/engine/tensor.py", "tinyeffnet/engine/autograd.py",
               "tinyeffnet/model/efficientnet.py", "tinyeffnet/train.py", "data_tools/loader.py"):
    assert module in repo_map, f"{module} is missing from the repository map"
print(f"{len(lessons)} lessons, {len(repo_map)} modules mapped")
print("ok: lesson 00 checks passed")
