# %% [markdown]
# # Lesson 12: the JAX backend, one compiled program
#
# The pure-Python backend is for reading; it would need weeks for one ImageNet epoch.
# `python -m tinyeffnet.train --backend jax` runs the *same* layer code and the *same*
# autograd on JAX, and gets speed from one idea:
#
# **Trace once, run compiled.** `jax.jit(f)` calls `f` once with abstract "tracer"
# arrays. Every backend primitive on a tracer records an operation instead of computing;
# that includes our autograd's backward walk (lesson 02), which is ordinary Python calling
# primitives. XLA then compiles the recorded program (forward, backward and optimizer
# update together) into fused machine code. Later calls run only the compiled program: the
# Python tape costs nothing per step.
#
# This is why the layer code keeps to three rules: parameters passed in as arguments (`Module.bind`),
# random keys passed in explicitly, and no `.item()` or value-dependent Python branch
# inside a step.

# %%
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()
ROOT = os.path.dirname(HERE) if os.path.basename(HERE) == "lessons" else HERE
sys.path.insert(0, ROOT)

import collections
import inspect
import json
import math
import random
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

jb, py = get_backend("jax"), get_backend("python")
print("jax", jax.__version__, "devices:", jax.devices())


def randn(seed, shape, scale=1.0):
    """Normal samples drawn on the host. (Eager jax.random calls compile one small XLA
    program per shape: fine in a long run, but seconds in a short lesson.)"""
    rng = random.Random(seed)
    return jb.from_flat([rng.gauss(0.0, scale) for _ in range(math.prod(shape))], shape)

# %% [markdown]
# ## Every primitive is one or two jax calls
#
# `backends/jax_backend.py` implements the contract of lesson 01 with `jax.numpy` and
# `jax.lax`; the shape and dtype checks stay in `contract.py`, shared. For example:

# %%
print(inspect.getsource(jax_backend.JaxBackend._sum))
print(inspect.getsource(jax_backend.JaxBackend._conv2d))

# %% [markdown]
# ## Tracing our autograd
#
# A loss written with Tensors, differentiated with OUR backward, and returned as arrays.
# A counter shows how often the Python body runs.

# %%
python_runs = collections.Counter()


def loss_and_grad(x, w):
    python_runs["loss_and_grad"] += 1
    wt = Tensor(w, jb, requires_grad=True)
    loss = F.swish(F.conv2d(Tensor(x, jb), wt, stride=2)).mean()
    loss.backward()
    return loss.data, wt.grad.data


x = randn(0, (2, 8, 8, 3))
w = randn(1, (3, 3, 3, 4), 0.3)
compiled_fn = jax.jit(loss_and_grad)
for _ in range(3):
    loss_value, grad_w = compiled_fn(x, w)
runs_for_three_calls = python_runs["loss_and_grad"]
print("three calls, the Python body ran", runs_for_three_calls, "time")

jaxpr = jax.make_jaxpr(loss_and_grad)(x, w)
ops = collections.Counter(eqn.primitive.name for eqn in jaxpr.jaxpr.eqns)
print(len(jaxpr.jaxpr.eqns), "operations in the traced program:", dict(ops))

# %% [markdown]
# Three calls, one trace. The jaxpr (JAX's record of the trace) holds the forward
# convolution and the weight-gradient convolution of lesson 04, the sigmoid of swish
# twice (forward, and recomputed in its lean backward, lesson 07) and the elementwise
# rest. There is no input-gradient convolution: x does not require a gradient, so
# `Conv2d.backward` skips it (`needs_grad`), and the program never computes it.
#
# Is it right? Two independent references: the pure-Python backend on the same numbers,
# and `jax.grad` (the library never uses JAX's autodiff; the tests and this lesson use it
# only as an oracle).

# %%
def python_reference(x, w):
    xt = Tensor(py.from_flat(x.reshape(-1).tolist(), x.shape), py)
    wt = Tensor(py.from_flat(w.reshape(-1).tolist(), w.shape), py, requires_grad=True)
    loss = F.swish(F.conv2d(xt, wt, stride=2)).mean()
    loss.backward()
    return loss.item(), wt.grad.to_flat()


ref_loss, ref_grad = python_reference(x, w)
oracle = jax.grad(lambda w: jax.nn.silu(jax.lax.conv_general_dilated(
    x, w, (2, 2), [(0, 1), (0, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))).mean())(w)
diff_python = max(abs(a - b) for a, b in zip(grad_w.reshape(-1).tolist(), ref_grad))
diff_oracle = float(jnp.max(jnp.abs(grad_w - oracle)))
print(f"loss: jit {float(loss_value):.7f}, python {ref_loss:.7f}")
print(f"gradient: largest difference to python {diff_python:.1e}, to jax.grad {diff_oracle:.1e} (float32)")

# %% [markdown]
# ## Depthwise convolutions on the CPU: by kernel taps
#
# XLA's CPU backend lowers depthwise convolutions, and worst their backward passes, to
# slow generic loops. So on the CPU the JAX backend writes a depthwise conv (and both its
# gradients) as a sum over the k * k kernel taps: a strided slice of the padded input
# times one weight per channel. XLA fuses those into a few passes over memory. GPUs and
# TPUs keep the convolution op, which their libraries do well. The switch:

# %%
print("depthwise by taps on this machine:", jb.depthwise_taps, "(default: jax.default_backend() == 'cpu')")
print(inspect.getsource(jax_backend._depthwise_taps))

# %%
def depthwise_grads(backend):
    def f(x, w):
        wt = Tensor(w, backend, requires_grad=True)
        xt = Tensor(x, backend, requires_grad=True)
        (F.depthwise_conv2d(xt, wt, stride=2) ** 2).sum().backward()
        return xt.grad.data, wt.grad.data
    return jax.jit(f)


xd = randn(2, (2, 28, 28, 240))
wd = randn(3, (5, 5, 1, 240), 0.1)
timings, results, conv_ops = {}, {}, {}
for taps in (True, False):
    fn_ = depthwise_grads(jax_backend.JaxBackend(depthwise_taps=taps))
    conv_ops[taps] = fn_.lower(xd, wd).as_text().count("stablehlo.convolution")
    results[taps] = jax.block_until_ready(fn_(xd, wd))  # compile and run once
    start = time.perf_counter()
    for _ in range(2):
        jax.block_until_ready(fn_(xd, wd))
    timings[taps] = (time.perf_counter() - start) / 2
    print(f"taps={taps!s:<5}: {conv_ops[taps]} convolution ops in the program, "
          f"{timings[taps] * 1e3:7.1f} ms per forward + backward (5x5 depthwise, 2 x 28 x 28 x 240)")
taps_diff = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(results[True], results[False]))
print(f"the two paths agree to {taps_diff:.1e} (relative, float32)")

# %% [markdown]
# (Timings are printed, never asserted: they depend on the machine and its load.)
#
# ## The training step: the same function, compiled by the runtime

# %%
print(inspect.getsource(JaxRuntime.compile_train_step))

# %% [markdown]
# The step is `tinyeffnet/training/step.py: make_train_step`, the very function lesson 11
# ran on the Python backend; the JAX runtime adds only `jax.jit`, donation and shardings.
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
#   images it saves nothing. We switch it off while tracing this one step, and ask XLA
#   for less optimisation (`compiler_options`): it compiles faster, and the step runs a
#   little slower. The trainer keeps the defaults: there a step runs thousands of times
#   and the compile happens once.

# %%
start = time.perf_counter()
options = dict(num_classes=10, width=0.25, depth=0.1, bn_momentum=0.9, dropout=0.0, drop_connect=0.0)
net_py = build_model("base", seed=0, **options)
net = build_model("base", seed=0, backend="jax", **options)  # the same initial weights, as float32
setup_seconds = time.perf_counter() - start

runtime = make_runtime("jax")  # what train.py uses: devices, compute dtype, mesh, batches to devices
print(runtime.description)
loader = Loader(open_dataset("default", "train", image_size=16), batch_size=8, seed=0)
batch = next(loader.batches(epoch=0))
images, labels, _ = runtime.put_batch(batch, loader.batch_shape, loader.normalization)

optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
state = runtime.put_state(steps.init_state(net, optimizer))
train_step = runtime.compile_train_step(steps.make_train_step(net, optimizer, steps.StepOptions(label_smoothing=0.1)))
key = runtime.step_key(0, 0)

start = time.perf_counter()
jb.depthwise_taps = False  # only for this trace (see above)
lowered = train_step.lower(state, images, labels, key, 0.05)
jb.depthwise_taps = jax.default_backend() == "cpu"
trace_seconds = time.perf_counter() - start
hlo = lowered.as_text()
hlo_ops = collections.Counter(re.findall(r"stablehlo\.([a-z_]+)", hlo))
start = time.perf_counter()
compiled = lowered.compile({"xla_backend_optimization_level": 0})  # faster to compile (see above)
compile_seconds = time.perf_counter() - start
print(f"{net.num_parameters():,} parameters; setup {setup_seconds:.1f} s, trace {trace_seconds:.1f} s, "
      f"XLA compile {compile_seconds:.1f} s")
print(f"the whole step is ONE program: {len(hlo.splitlines()):,} lines of StableHLO; most used ops:")
print("  ", ", ".join(f"{name} {n}" for name, n in hlo_ops.most_common(10)))

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
# ## Many devices: `jax.sharding`
#
# Data parallelism: every device holds the whole state (replicated) and a slice of the
# batch. `distributed.make_mesh()` puts all devices on one mesh axis named "batch";
# `NamedSharding(mesh, PartitionSpec("batch"))` splits an array's first axis along it and
# `PartitionSpec()` replicates. Given these shardings, `jax.jit` compiles the *same* step
# for all devices, and XLA inserts the communication: batch norm's sums and the gradient
# sums become all-reduces over the devices, so the result does not depend on how many
# devices there are.
#
# There is one CPU device here. XLA can pretend to have more:
# `XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before JAX starts) makes 8
# CPU "devices", enough to test sharding on a laptop. We start a fresh Python with it:

# %%
child = r"""
import json, jax, jax.numpy as jnp
from tinyeffnet.training.distributed import batch_sharding, make_mesh, replicated
mesh = make_mesh()
x = jax.device_put(jnp.arange(16 * 4, dtype=jnp.float32).reshape(16, 4), batch_sharding(mesh))
total = jax.jit(lambda x: x.sum(), out_shardings=replicated(mesh))(x)
print(json.dumps(dict(devices=jax.device_count(), mesh=dict(mesh.shape),
                      shards=[list(s.data.shape) for s in x.addressable_shards],
                      spec=str(x.sharding.spec), total=float(total))))
"""
env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=ROOT)
out = subprocess.run([sys.executable, "-c", child], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
assert out.returncode == 0, out.stderr
sharded = json.loads(out.stdout.strip().splitlines()[-1])
print(sharded)

# %% [markdown]
# A (16, 4) batch on 8 devices: each holds 2 rows. The trainer does exactly this with
# `make_train_step(..., mesh=mesh)` (in_shardings: state replicated, images and labels
# split), and `runtime.put_batch` builds the global batch from each process's local rows
# (`jax.make_array_from_process_local_data`).
#
# ## What changes on a TPU (or GPU)
#
# 1. **bfloat16 compute, float32 masters.** `make_runtime` picks compute dtype bfloat16
#    on GPUs and TPUs (float32 on CPU). Images are cast to bf16; each layer casts its
#    float32 parameters to the input's dtype (`self.weight.astype(x.dtype)`), and the
#    `Cast` Function sends the gradient back as float32. BN statistics, the loss and the
#    optimizer stay float32. The same mechanism, tried here on one layer:

# %%
conv = Conv2d(3, 4, 3, backend="jax")
conv.load_state_dict({"weight": w})


def bf16_layer(w32, x):
    with conv.bind({"weight": w32}) as leaves:
        y = conv(Tensor(x.astype(jnp.bfloat16), jb))
        y.astype("float32").sum().backward()
        return y.data, leaves["weight"].grad.data


y_bf16, grad_w32 = jax.jit(bf16_layer)(w, x)
print("activation dtype:", y_bf16.dtype, "| master weight dtype:", w.dtype, "| its gradient dtype:", grad_w32.dtype)

# %% [markdown]
# 2. **Many hosts.** A TPU pod slice (or several GPU machines) runs ONE command on every
#    worker; each process feeds its own shard of every global batch (`Loader(...,
#    process_index, process_count)`), and `jax.distributed.initialize()` connects them
#    (`tinyeffnet/training/distributed.py`). On Cloud TPU the workers find each other:
#
#        gcloud compute tpus tpu-vm ssh NAME --worker=all --command \
#          "cd tinyeffnet && python -m tinyeffnet.train --backend jax --data imagenet:/data/imagenet"
#
#    On GPU machines, one command per host with `--coordinator-address host0:1234
#    --num-processes 2 --process-id 0` (and `--process-id 1` on the second). Only process
#    0 logs and writes checkpoints.

# %%
from tinyeffnet.training import distributed

print(inspect.getsource(distributed.initialize))

# %% [markdown]
# 3. **Convolutions stay convolutions** (`depthwise_taps` is False off the CPU), and the
#    compile happens once per run, so a bigger program costs nothing per step.
#
# ## Checks

# %%
assert runs_for_three_calls == 1, "jit traces the Python body once"
assert ops["conv_general_dilated"] == 2 and ops["logistic"] == 2, "forward conv and dw conv; swish's sigmoid twice"
assert abs(float(loss_value) - ref_loss) < 1e-5 and diff_python < 1e-5 and diff_oracle < 1e-5
assert conv_ops[True] == 0 and conv_ops[False] == 3, conv_ops
assert taps_diff < 1e-5, "both depthwise paths compute the same gradients"
assert optax_diff < 1e-6, "optax's chain makes the same update as tinyeffnet/training/optimizer.py"
assert hlo_ops["convolution"] > 0 and len(hlo.splitlines()) > 1000
assert abs(losses[0] - loss_py.item()) < 1e-4, (losses[0], loss_py.item())
assert sum(losses[-3:]) / 3 < 0.6 * losses[0], f"the loss should fall on repeated images: {losses}"
assert donated, "the old state was donated to the step"
assert sharded["devices"] == 8 and sharded["mesh"] == {"batch": 8}
assert sharded["shards"] == [[2, 4]] * 8 and sharded["total"] == sum(range(64))
assert str(y_bf16.dtype) == "bfloat16" and str(grad_w32.dtype) == "float32"
print("ok: lesson 12 checks passed")
