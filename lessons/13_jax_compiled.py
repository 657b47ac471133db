# %% [markdown]
# # Lesson 13: the JAX backend, one compiled training step
#
# Lesson 12 showed the idea: `jax.jit` traces our Python once, autograd included, into
# one program. This lesson follows a whole EfficientNet training step through it: the
# backend's primitives as `jax` calls, depthwise convolutions by kernel taps on the CPU
# (which you write), the compiled step as one StableHLO program, and its buffers donated.
# Lesson 14 takes the same step to many devices, bfloat16 and many hosts.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks
course.jax_on_the_cpu()  # JAX_PLATFORMS=cpu before JAX starts: this lesson runs on the CPU, whatever the machine has

lesson = course.Lesson("13")
ROOT = course.ROOT

import collections
import json
import re
import subprocess
import time

import jax
import jax.numpy as jnp

from backends import get_backend
from backends import jax_backend
from data_tools import Loader, open_dataset
from tinyeffnet import Tensor, functional as F
from tinyeffnet.training import step as steps
from tinyeffnet.training.optimizer import NesterovSGD, apply_updates, optax_nesterov_sgd
from tinyeffnet.model.efficientnet import build_model
from tinyeffnet.nn import Conv2d
from tinyeffnet.training.runtime import JaxRuntime, make_runtime
from tinyeffnet.plotting.charts import bar_chart

jb, py = get_backend("jax"), get_backend("python")
print("jax", jax.__version__, "devices:", jax.devices())


# %% [markdown]
# ## Every primitive is one or two jax calls
#
# `backends/jax_backend.py` implements the contract of lesson 01 with `jax.numpy` and
# `jax.lax`; the shape and dtype checks stay in `contract.py`, shared. For example:

# %%
print(course.source(jax_backend.JaxBackend._sum))
print(course.source(jax_backend.JaxBackend._conv2d))

# %% [markdown]
# Lesson 12 traced a small loss through these calls and checked its gradient against the
# pure-Python backend and `jax.grad`. Now the pieces of the real training step.
#
# ## Depthwise convolutions on the CPU: by kernel taps
#
# XLA's CPU backend lowers depthwise convolutions, and worst their backward passes, to
# slow generic loops. So on the CPU the JAX backend writes a depthwise conv (and both its
# gradients) as a sum over the k * k kernel taps: a strided slice of the padded input
# times one weight per channel. XLA fuses those into a few passes over memory. GPUs and
# TPUs keep the convolution op, which their libraries do well.
#
# ### Exercise 13.1: depthwise by taps, in jax.numpy
#
# Write `depthwise_taps(x, w, stride, padding)`: x is (N, H, W, C), w the depthwise
# kernel (k, k, 1, C) (one k x k filter per channel, HWIO with groups = C), padding
# ((top, bottom), (left, right)). Pad x once with `jnp.pad`; the output has
# (H + top + bottom - k) // stride + 1 rows (and likewise columns); then for each tap
# (a, b) add the strided slice `xp[:, a:a + (out_h - 1) * stride + 1:stride, b:...]`
# times `w[a, b, 0]` (one weight per channel, broadcast over N, H, W); k comes from w
# (EfficientNet has 3x3 and 5x5 kernels). The check runs it under `jax.jit` and compares
# with `lax.conv_general_dilated(..., feature_group_count=C)` on five convolutions (kernels
# 3 and 5, strides 1 and 2, SAME and uneven padding, a one-row image), and its gradients
# (through `jax.grad`, as an oracle only); then your function runs the gradient
# comparison below.

# %%
# EXERCISE 13.1: your code here
def depthwise_taps(x, w, stride, padding):
    raise NotImplementedError


# %%
lesson.exercise("13.1", depthwise_taps)
with lesson.plugged("13.1"):  # your taps' gradients against XLA's convolution's
    if lesson.passed("13.1"):
        xs_, ws_ = course.randn(jb, 7, (2, 9, 9, 6)), course.randn(jb, 8, (3, 3, 1, 6), 0.3)
        pad_ = ((0, 1), (0, 1))
        loss_of = lambda conv: lambda x, w: (conv(x, w) ** 2).sum()  # noqa: E731
        yours_ = jax.jit(jax.grad(loss_of(lambda x, w: lesson.answer("13.1")(x, w, 2, pad_)), argnums=(0, 1)))(xs_,
                                                                                                             ws_)
        xla_ = jax.jit(jax.grad(loss_of(lambda x, w: jax.lax.conv_general_dilated(
            x, w, (2, 2), pad_, dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)),
            argnums=(0, 1)))(xs_, ws_)
        your_taps_diff = max(lesson.agrees(f"the gradient of {name} through your depthwise_taps", a, b, 1e-5, 1e-4)
                             for name, a, b in zip("xw", yours_, xla_))
        print(f"gradients of YOUR depthwise_taps and of XLA's convolution (stride 2, SAME): largest difference "
              f"{your_taps_diff:.1e}")

# %% [markdown]
# The backend's version (once yours passes), and where the choice is made: once, when a
# backend instance is made, from the platform unless named. `get_backend("jax",
# depthwise="conv")` is an instance of its own (one per set of choices); no instance ever
# changes its choice, so a network built on one computes the same way for its whole life.

# %%
print("depthwise convolutions on this machine:", jb.depthwise, "(the default: taps where jax.default_backend() == 'cpu')")
lesson.reveal("13.1", course.source(jax_backend._depthwise_taps))
print("FORMULATIONS =", jax_backend.FORMULATIONS, "(the CPU's first)")
print(course.source(jax_backend.JaxBackend.resolve_options))

# %%
def depthwise_grads(backend):
    def f(x, w):
        wt = Tensor(w, backend, requires_grad=True)
        xt = Tensor(x, backend, requires_grad=True)
        (F.depthwise_conv2d(xt, wt, stride=2) ** 2).sum().backward()
        return xt.grad.data, wt.grad.data
    return jax.jit(f)


xd = course.randn(jb, 2, (2, 28, 28, 240))
wd = course.randn(jb, 3, (5, 5, 1, 240), 0.1)
timings, results, conv_ops = {}, {}, {}
for form in ("taps", "conv"):
    fn_ = depthwise_grads(get_backend("jax", depthwise=form))
    conv_ops[form] = fn_.lower(xd, wd).as_text().count("stablehlo.convolution")
    results[form] = jax.block_until_ready(fn_(xd, wd))  # compile and run once
    start = time.perf_counter()
    for _ in range(2):
        jax.block_until_ready(fn_(xd, wd))
    timings[form] = (time.perf_counter() - start) / 2
    print(f"depthwise={form:<4}: {conv_ops[form]} convolution ops in the program, "
          f"{timings[form] * 1e3:7.1f} ms per forward + backward (5x5 depthwise, 2 x 28 x 28 x 240)")
taps_diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(results["taps"], results["conv"]))
print(f"the two paths agree to {taps_diff:.1e} (relative, float32)")

# %% [markdown]
# (Timings are printed, never asserted: they depend on the machine and its load.)
#
# ## The training step: the same function, compiled by the runtime

# %%
print(course.source(JaxRuntime.compile_train_step))

# %% [markdown]
# The step is `tinyeffnet/training/step.py: make_train_step`, the very function lesson 11
# ran on the Python backend; the JAX runtime adds only `jax.jit`, donation and shardings,
# and on the CPU one more thing: it compiles the step's two halves (`train_step.halves`:
# the forward and backward, then the update) as two programs, one after the other
# (`StepInTwo`). XLA:CPU holds every kernel of a program in memory until it has compiled
# them all, so the halves take far less memory to compile than the whole; the arithmetic
# is the same. GPUs and TPUs get the whole step as one program.
# The state is a dict pytree: params (float32 masters), buffers (BN moving statistics),
# optax's optimizer state. `donate_argnums=(0,)` donates the old state to the step: XLA
# may write the new state into the old buffers, so the parameters are updated in place
# and device memory holds one copy, not two. The optimizer is optax's
# `add_decayed_weights` + `trace(nesterov=True)`: the same update as `NesterovSGD`
# (lesson 11). Check it on a few numbers:

# %%
names = ["conv.weight", "bn.gamma"]
opt = optax_nesterov_sgd(names, momentum=0.9, weight_decay=1e-4)
p0 = {"conv.weight": jnp.array([1.0, -2.0]), "bn.gamma": jnp.array([1.0, 0.5])}
g0 = {"conv.weight": jnp.array([0.5, 0.25]), "bn.gamma": jnp.array([0.5, -1.0])}
opt_state = opt.init(p0)
p_optax = p0
for _ in range(2):
    updates, opt_state = opt.update(g0, opt_state, p_optax)
    p_optax = apply_updates(jb, p_optax, updates, 0.1)
sgd = NesterovSGD(py, names, momentum=0.9, weight_decay=1e-4)
p_ours = {n: py.from_flat(v.tolist(), v.shape) for n, v in p0.items()}
g_ours = {n: py.from_flat(v.tolist(), v.shape) for n, v in g0.items()}
sgd_state = sgd.init(p_ours)
for _ in range(2):
    updates, sgd_state = sgd.update(g_ours, sgd_state, p_ours)
    p_ours = apply_updates(py, p_ours, updates, 0.1)
optax_diff = max(abs(a - b) for n in names for a, b in zip(p_optax[n].tolist(), py.to_flat(p_ours[n])))
print("two steps, optax:", {n: p_optax[n].tolist() for n in names})
print("two steps, ours: ", {n: py.to_flat(p_ours[n]) for n in names}, f"(largest difference {optax_diff:.1e})")

# %% [markdown]
# ## A tiny EfficientNet, compiled
#
# The tiny network of lesson 11 (width 0.25, depth 0.1), with dropout and drop-connect
# off so that the two backends can be compared number for number.
#
# Two practical details keep this lesson fast on a small CPU:
#
# - `build_model(..., backend="jax")` draws every initial weight with the pure-Python
#   backend's random generator and copies the values over (tinyeffnet/nn/init.py:
#   initialize), so the same seed gives the same network on both backends and XLA compiles
#   no small program per weight shape.
# - The depthwise-by-taps path unrolls k * k slices per depthwise conv, forward and
#   backward, which about doubles XLA's compile time for this network; on 16x16 toy
#   images it saves nothing. So this one network is built on the JAX backend instance
#   made with `depthwise="conv"`, and we ask XLA for less optimisation
#   (`compiler_options`): it compiles faster, and the step runs a little slower. The
#   trainer keeps the defaults: there a step runs thousands of times and the compile
#   happens once.

# %%
start = time.perf_counter()
options = dict(num_classes=10, width=0.25, depth=0.1, bn_momentum=0.9, dropout=0.0, drop_connect=0.0)
net_py = build_model("base", seed=0, **options)
# The same initial weights, as float32, on the instance with depthwise convs as conv ops (see above)
net = build_model("base", seed=0, backend=get_backend("jax", depthwise="conv"), **options)
setup_seconds = time.perf_counter() - start

runtime = make_runtime("jax")  # what train.py uses: devices, compute dtype, mesh, batches to devices
print(runtime.description)
loader = Loader(open_dataset("default", "train", image_size=16), batch_size=8, seed=0)
batch = next(loader.batches(epoch=0))
images, labels, _ = runtime.put_batch(batch, loader.batch_shape, loader.normalization)

optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
state = runtime.put_state(steps.init_state(net, optimizer))
# The whole step as ONE program, jitted as the runtime does on a GPU or TPU (on this CPU the
# runtime would compile its two halves; see above): here we want to see all of it at once.
train_step = jax.jit(steps.make_train_step(net, optimizer, steps.StepOptions(label_smoothing=0.1)), donate_argnums=(0,))
key = runtime.step_key(0, 0)

start = time.perf_counter()
lowered = train_step.lower(state, images, labels, key, 0.05)
trace_seconds = time.perf_counter() - start
hlo = lowered.as_text()
hlo_ops = collections.Counter(re.findall(r"stablehlo\.([a-z_]+)", hlo))
start = time.perf_counter()
compiled = lowered.compile({"xla_backend_optimization_level": 0})  # faster to compile (see above)
compile_seconds = time.perf_counter() - start
print(f"{net.num_parameters():,} parameters; setup {setup_seconds:.1f} s, trace {trace_seconds:.1f} s, "
      f"XLA compile {compile_seconds:.1f} s")
print(f"the whole step is ONE program: {len(hlo.splitlines()):,} lines of StableHLO")
print(f"convolution ops: {hlo_ops['convolution']}, matrix products (dot_general): {hlo_ops['dot_general']}")
conv_lines = [line for line in hlo.splitlines() if "stablehlo.convolution" in line]
conv_kinds = collections.Counter(
    "depthwise weight gradient (batch groups)" if re.search(r"batch_group_count = ([2-9]|\d\d)", line) else
    "depthwise (feature groups)" if re.search(r"feature_group_count = ([2-9]|\d\d)", line) else "dense"
    for line in conv_lines)
conv_layers = [m for _, m in net.named_modules() if isinstance(m, Conv2d)]  # DepthwiseConv2d is one too
groups = {"convolutions": {"convolution", "dot_general"},
          "elementwise arithmetic": {"add", "subtract", "multiply", "divide", "negate", "exponential", "logistic", "log",
                                     "sqrt", "rsqrt", "maximum", "minimum", "select", "compare", "power", "abs",
                                     "log_plus_one", "exponential_minus_one", "convert", "sign", "tanh"},
          "reductions": {"reduce"}, "constants": {"constant"}}
by_group = collections.Counter()
for op, count in hlo_ops.items():
    by_group[next((g for g, ops in groups.items() if op in ops), "data movement and the rest")] += count
print(f"{len(conv_layers)} convolution layers; in the step: {dict(conv_kinds)}, and {hlo_ops['dot_general']} dot_general")
lesson.show(bar_chart([
    dict(title="the step's convolutions, by kind",
         labels=list(conv_kinds) + ["dense convs and classifier (dot_general)"],
         values=list(conv_kinds.values()) + [hlo_ops["dot_general"]],
         note=f"{len(conv_layers)} conv layers and the classifier, 3 ops each (the stem: 2)"),
    dict(title="all StableHLO operations, grouped", labels=[g for g, _ in by_group.most_common()],
         values=[c for _, c in by_group.most_common()], color=(255, 127, 14))],
    "The compiled training step of the tiny B0", size=(1200, 300)), "hlo_ops")

# %% [markdown]
# The left panel is where the arithmetic is: every convolution layer of the network
# appears three times, its forward, its input gradient (none for the stem: the images
# need no gradient) and its weight gradient, and so does the classifier. The depthwise
# layers are `convolution` ops (`feature_group_count` = channels for the forward and the
# input gradient, `batch_group_count` for the weight gradient); on a CPU the backend
# computes the dense ones (1x1 and the stem) as matrix products over image patches,
# `dot_general` (lesson 12), where XLA's CPU matmul is faster. The right panel is everything else, far more
# numerous and far cheaper: data movement (`broadcast_in_dim`, `reshape`, `transpose`,
# `slice`, `pad`), elementwise arithmetic (batch norm, swish, SE, the loss, the
# optimizer), reductions and constants. XLA fuses the elementwise runs between the
# convolutions into single loops over memory.

# %% [markdown]
# Now run it. The first loss must equal the pure-Python backend's loss on the same
# weights and images (same code, float32 against float64). Then ten steps on the same
# images, as in lesson 11.

# %%
loss_py, _, _, _ = steps.forward_loss(net_py, {n: p.data for n, p in net_py.named_parameters()},
                                      {n: b.data for n, b in net_py.named_buffers()},
                                      py.from_flat(loader.normalization.floats(batch.images), loader.batch_shape),
                                      py.from_flat(list(batch.labels), (8,), "int32"),
                                      options=steps.StepOptions(label_smoothing=0.1, compute_dtype="float64"))
old_state = state
losses = []
start = time.perf_counter()
for step in range(10):
    state, metrics = compiled(state, images, labels, runtime.step_key(0, step), 0.05)
    losses.append(runtime.fetch(metrics)["loss"])
run_seconds = (time.perf_counter() - start) / 10
donated = old_state["params"]["fc.weight"].is_deleted()
print(f"first loss: jax {losses[0]:.6f}, python {loss_py.item():.6f}")
print("losses:", [round(v, 4) for v in losses])
print(f"{run_seconds * 1e3:.1f} ms per step; old state donated (its buffers deleted): {donated}")

# %% [markdown]
# Evaluation compiles a second, smaller program, `steps.make_eval_step`: the forward
# in eval mode, summing top-1, top-5 and loss over the batch. The last eval batch is
# padded up to the batch size (every program has one fixed shape), and a 0/1 `valid` mask
# keeps the padding from counting.
#
# ## Checks

# %%
assert conv_ops["taps"] == 0 and conv_ops["conv"] == 3, conv_ops
assert taps_diff < 1e-5, "both depthwise paths compute the same gradients"
assert optax_diff < 1e-6, "optax's chain makes the same update as tinyeffnet/training/optimizer.py"
assert hlo_ops["convolution"] + hlo_ops["dot_general"] == 3 * (len(conv_layers) + 1) - 1, (hlo_ops, len(conv_layers))
assert len(hlo.splitlines()) > 1000
assert abs(losses[0] - loss_py.item()) < 1e-4, (losses[0], loss_py.item())
assert sum(losses[-3:]) / 3 < 0.6 * losses[0], f"the loss should fall on repeated images: {losses}"
assert donated, "the old state was donated to the step"
lesson.finish()
