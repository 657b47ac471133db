# %% [markdown]
# # Lesson 01: tensors and backends
#
# A neural network is a few dozen operations on n-dimensional arrays, repeated. This
# lesson separates the two things tinyeffnet keeps apart:
#
# - the **backend**: an array library (pure Python, JAX, or "meta", which has shapes
#   but no numbers) that offers a fixed set of about thirty *primitive* operations;
# - the **Tensor**: a backend array plus what autograd needs. Layer code only ever talks
#   to Tensors and primitives, so the same EfficientNet runs on every backend.
#
# Why bother? Because the pure-Python backend is short enough to read and step through,
# while the JAX backend compiles the very same layer code for CPUs, GPUs and TPUs. When
# both agree, you can trust the fast one.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks
course.jax_on_the_cpu()  # JAX_PLATFORMS=cpu before JAX starts: this lesson has no use for a GPU or TPU

lesson = course.Lesson("01")
ROOT = course.ROOT

import inspect

import backends
from backends import ContractError, PRIMITIVES, available_backends, get_backend, register_backend
from backends.python_backend import PythonBackend
from tinyeffnet import Tensor

# %% [markdown]
# ## A Tensor from nested lists
#
# `Tensor(values)` flattens nested lists into a flat row-major list plus a shape. On the
# pure-Python backend (the default) the array *is* exactly that: a `PyArray` with a flat
# list of Python floats, a shape and a dtype string.

# %%
t = Tensor([[1, 2, 3], [4, 5, 6]])
print(t)
print("the backend array:", t.data)
print("flat data:", t.data.data, "shape:", t.data.shape)
print("back to nested lists:", t.tolist())

# %% [markdown]
# Row-major means the last axis moves fastest: element `[i, j]` of a `(2, 3)` array sits
# at flat position `i * 3 + j`. So `[1, 2]` (the number 6) is at position 5.
#
# The pure-Python backend computes in float64 (Python floats), the JAX backend in float32
# by default. Integers exist only as `int32` (for class labels).

# %%
labels = Tensor([3, 1, 4], dtype="int32")
print(labels, labels.tolist())

# %% [markdown]
# ### Exercise 01.1: where does an element live?
#
# Write `flat_index(index, shape)`: the position of element `index` (a tuple such as
# `(n, h, w, c)`) in the flat row-major list of an array of `shape`. For `(1, 2)` in a
# `(2, 3)` array it is 5. Hint: go through the axes from the first, multiplying what you
# have so far by the next axis's size.
#
# Fill in the cell below (in a notebook: edit and run it; as a script: edit this file),
# then run the check after it.

# %%
# EXERCISE 01.1: your code here
def flat_index(index, shape):
    raise NotImplementedError


# %%
lesson.exercise("01.1", flat_index)

# %% [markdown]
# ## The backend contract
#
# `backends/contract.py: class Backend` lists every operation layer code may ask for.
# Here they are, grouped by what they do:

# %%
print(len(PRIMITIVES), "primitives:")
groups = {
    "create": ["from_flat", "to_flat", "full", "key", "split_key", "uniform", "normal", "astype", "one_hot"],
    "unary": ["neg", "exp", "log", "sqrt", "reciprocal", "sigmoid"],
    "binary (same shape)": ["add", "sub", "mul", "div", "maximum", "compare", "where"],
    "reduce (keep rank)": ["sum", "max"],
    "movement": ["reshape", "permute", "expand", "pad", "slice"],
    "recomputation": ["recompute_from"],
    "processing": ["matmul", "conv2d", "conv2d_grad_input", "conv2d_grad_weight"],
}
lesson.table(["group", "primitives"], [(group, ", ".join(f"`{n}`" for n in names)) for group, names in groups.items()])

# %% [markdown]
# A few rules make the set small:
#
# - **Binary ops take equal shapes.** There is no implicit broadcasting in a backend:
#   `expand` grows size-1 axes explicitly. (The Tensor layer broadcasts for you, lesson 02.)
# - **Reductions keep rank**: summing a `(2, 3)` array over axis 1 gives `(2, 1)`, so
#   `sum` and `expand` are exactly each other's gradient.
# - **Randomness is explicit**: `key(seed)` and `split_key(key)` make keys, and every
#   random op takes one. Nothing global, so a JAX program can be traced and replayed.
# - **One primitive changes no value**: `recompute_from(x)` returns x. A backward reads
#   what its forward kept through it, so that a compiler recomputes what the backward
#   derives from x (a sigmoid, say) where it is needed, instead of keeping the forward's
#   copy in memory from the forward to the backward (lesson 07 uses it).

# %%
py = get_backend("python")
a = py.from_flat([1, 2, 3, 4, 5, 6], (2, 3))
row_sums = py.sum(a, (1,))
print("sum over axis 1:", py.shape(row_sums), py.to_flat(row_sums))
print("expanded back:  ", py.to_flat(py.expand(row_sums, (2, 3))))

# %% [markdown]
# ### Exercise 01.2: broadcasting, in flat storage
#
# `expand` is the one primitive that broadcasts: every axis of size 1 may grow, its values
# repeated along it. Write `expand_flat(values, shape, new_shape)`: the flat row-major list
# of the expanded array, from the flat list `values` of an array of `shape` (same rank as
# `new_shape`). With exercise 01.1 it is a few lines: walk the positions of the result in
# row-major order (`itertools.product`) and read each one's source, where a grown axis can
# only be read at index 0. The check compares with the python backend on shapes that grow
# in front, in the middle and at the end; below, your function then expands the row sums.

# %%
# EXERCISE 01.2: your code here
def expand_flat(values, shape, new_shape):
    raise NotImplementedError


# %%
lesson.exercise("01.2", expand_flat)
with lesson.plugged("01.2"):  # your expand, compared with the backend's on the row sums
    if lesson.passed("01.2"):
        mine = lesson.answer("01.2")(py.to_flat(row_sums), (2, 1), (2, 3))
        print("your expand of the row sums:", mine)
        lesson.agrees("your expand of the row sums", mine, py.expand(row_sums, (2, 3)), 0.0, 0.0)

# %% [markdown]
# ## One place checks every result
#
# Every public method of `Backend` (1) validates its arguments, (2) works out the
# result's shape and dtype from the arguments alone, and (3) calls the backend's
# implementation (the same name with a leading underscore) through `_run`, which holds
# the result to that shape and dtype. Read it:

# %%
print(course.source(backends.contract.Backend._run))
print(course.source(backends.contract.Backend._binary_op))

# %% [markdown]
# Wrong arguments fail at once, with the op name and the shapes in the message:

# %%
b23 = py.full((2, 3), 1.0)
b3 = py.full((3,), 1.0)
try:
    py.add(b23, b3)
except ContractError as e:
    add_error = str(e)
    print("ContractError:", add_error)

# %% [markdown]
# And a backend that computes a wrong shape cannot go unnoticed. Here is a deliberately
# broken backend whose `sum` forgets the "keep rank" rule. We register it under a new
# name, exactly as a real backend would be registered:

# %%
class ForgetfulBackend(PythonBackend):
    name = "forgetful"

    def _sum(self, x, axes):
        out = super()._sum(x, axes)
        out.shape = tuple(d for i, d in enumerate(out.shape) if i not in axes)  # drops the axes: wrong
        return out


register_backend("forgetful", ForgetfulBackend)
bad = get_backend("forgetful")
try:
    bad.sum(bad.full((2, 3), 1.0), (1,))
except ContractError as e:
    broken_error = str(e)
    print("ContractError:", broken_error)

# %% [markdown]
# ## The registry
#
# `get_backend(name)` returns one shared instance per name. Backends are imported on
# first use, so the pure-Python path never needs JAX installed.

# %%
print("registered:", available_backends())
print("get_backend is the registry:", inspect.getsource(backends.get_backend).splitlines()[0])
assert get_backend("python") is py
jax_loaded_before = "backends.jax_backend" in sys.modules
jx = get_backend("jax")  # imports jax now
print("jax backend module loaded before the first get_backend('jax'):", jax_loaded_before)
print("jax backend:", jx.name, "default float:", jx.default_float)

# %% [markdown]
# The same Tensor code on the JAX backend gives the same numbers (in float32):

# %%
x_py = Tensor([[0.5, -1.0, 2.0]])
x_jx = Tensor([[0.5, -1.0, 2.0]], backend="jax")
y_py = (x_py * x_py + 1.0).sum()
y_jx = (x_jx * x_jx + 1.0).sum()
print("python:", y_py.item(), y_py.dtype, "| jax:", y_jx.item(), y_jx.dtype)  # 1.25 + 2 + 5 = 8.25

# %% [markdown]
# ## The meta backend: shapes without numbers
#
# Since the contract already derives every result's shape and dtype, a backend that
# *only* does that is almost free to write: `backends/meta_backend.py` skips the
# computation and returns a `MetaArray(shape, dtype)`. It also counts the
# multiply-accumulates (MACs) of `conv2d` and `matmul`. Layer code runs on it unchanged,
# which is how lesson 10 measures a full EfficientNet at 224x224 in milliseconds.

# %%
meta = get_backend("meta")
meta.macs = 0
img = Tensor(meta.full((1, 224, 224, 3), 0.0), meta)
kernel = Tensor(meta.full((3, 3, 3, 32), 0.0), meta)
from tinyeffnet import functional as F

out = F.conv2d(img, kernel, stride=2)
print(out, "MACs:", meta.macs)
try:
    out.tolist()
except TypeError as e:
    print("TypeError:", e)

# %% [markdown]
# The stem convolution of B0: each of the 112 x 112 x 32 outputs is a sum of
# 3 x 3 x 3 = 27 products, so 112 * 112 * 32 * 27 = 10,838,016 MACs (the first row of
# Table I in lesson 10).

# %% [markdown]
# ## Checks

# %%
assert t.shape == (2, 3) and t.dtype == "float64" and t.backend.name == "python"
assert t.data.data == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "row-major flat storage"
assert t.data.data[1 * 3 + 2] == 6.0, "element [1, 2] sits at flat position 1*3 + 2"
assert labels.dtype == "int32"
assert len(PRIMITIVES) == sum(len(v) for v in groups.values()) == 34, "the grouped list covers every primitive"
assert sorted(p for v in groups.values() for p in v) == sorted(PRIMITIVES)
assert py.shape(row_sums) == (2, 1) and py.to_flat(row_sums) == [6.0, 15.0], "reductions keep rank"
assert "add" in add_error and "(2, 3)" in add_error and "(3,)" in add_error, add_error
assert "broke the contract in sum" in broken_error, broken_error
assert not jax_loaded_before, "nothing before get_backend('jax') should import the JAX backend"
assert abs(y_py.item() - 8.25) < 1e-12 and abs(y_jx.item() - 8.25) < 1e-5, (y_py.item(), y_jx.item())
assert y_jx.dtype == "float32"
assert out.shape == (1, 112, 112, 32)
assert meta.macs == 112 * 112 * 32 * 27 == 10_838_016, meta.macs
lesson.finish()
