# %% [markdown]
# # Lesson 14: many devices, bfloat16, many hosts
#
# Lesson 13 compiled one training step for one device. The trainer runs the same step on
# many devices (data parallel, `jax.sharding`), in bfloat16 on GPUs and TPUs with float32
# master weights, and on many hosts at once. Each is a few lines in
# `tinyeffnet/training/runtime.py` and `distributed.py`; this lesson shows them on the
# CPU, simulating 8 devices.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks
course.jax_on_the_cpu()  # JAX_PLATFORMS=cpu before JAX starts: this lesson runs on the CPU, whatever the machine has

lesson = course.Lesson("14")
ROOT = course.ROOT

import json
import math
import subprocess

import jax
import jax.numpy as jnp

from backends import get_backend
from tinyeffnet import Tensor
from tinyeffnet.nn import Conv2d

jb = get_backend("jax")



# %% [markdown]
# ## Many devices: `jax.sharding`
#
# Data parallelism: every device holds the whole state (replicated) and a slice of the
# batch. `distributed.make_mesh()` puts all devices on one mesh axis named "batch";
# `NamedSharding(mesh, PartitionSpec("batch"))` splits an array's first axis along it and
# `PartitionSpec()` replicates. Given these shardings, `jax.jit` compiles the *same* step
# for all devices, and XLA inserts the communication: batch norm's sums and the gradient
# sums become all-reduces over the devices, so the result does not depend on how many
# devices there are, up to the order of floating-point sums: 8 devices add the same
# numbers in another order than 1, and float addition is not associative, so the results
# agree to rounding, not bit for bit (measured below).
#
# This lesson pins JAX to the CPU (`course.jax_on_the_cpu()` in the first cell sets
# `JAX_PLATFORMS=cpu` before JAX starts), so there is one CPU device here whatever the
# machine has; without that variable, on a GPU machine or a TPU VM, `jax.devices()` lists
# the accelerator's devices, and those are what the trainer uses. XLA can also pretend to
# have more CPU devices: `XLA_FLAGS=--xla_force_host_platform_device_count=8` (set before
# JAX starts) makes 8 CPU "devices", enough to test sharding on a laptop. We start a fresh
# Python with it:

# %%
child = r"""
import json, random, jax, jax.numpy as jnp
from tinyeffnet.training.distributed import batch_sharding, make_mesh, replicated
mesh = make_mesh()
x = jax.device_put(jnp.arange(16 * 4, dtype=jnp.float32).reshape(16, 4), batch_sharding(mesh))
total = jax.jit(lambda x: x.sum(), out_shardings=replicated(mesh))(x)
rng = random.Random(0)
r = jnp.asarray([rng.gauss(0.0, 1.0) for _ in range(64 * 1000)], jnp.float32).reshape(64, 1000)
on_one = jax.jit(lambda r: r.sum())(jax.device_put(r, jax.devices()[0]))
on_eight = jax.jit(lambda r: r.sum(), out_shardings=replicated(mesh))(jax.device_put(r, batch_sharding(mesh)))
print(json.dumps(dict(devices=jax.device_count(), mesh=dict(mesh.shape),
                      shards=[list(s.data.shape) for s in x.addressable_shards],
                      spec=str(x.sharding.spec), total=float(total), random_sum_one=float(on_one),
                      random_sum_eight=float(on_eight))))
"""
env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", PYTHONPATH=ROOT)
out = subprocess.run([sys.executable, "-c", child], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
assert out.returncode == 0, out.stderr
sharded = json.loads(out.stdout.strip().splitlines()[-1])
print(sharded)
order_difference = sharded["random_sum_eight"] - sharded["random_sum_one"]
print(f"64,000 random float32 numbers summed on 1 device: {sharded['random_sum_one']!r}, on 8: "
      f"{sharded['random_sum_eight']!r} (difference {order_difference:.1e}: the order of the additions)")

# %% [markdown]
# A (16, 4) batch on 8 devices: each holds 2 rows. Its sum is exact either way (small
# integers); the random numbers' sums may differ in the last bits, as float32 sums in
# another order do. The trainer does exactly this with
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
x, w = course.randn(jb, 0, (2, 8, 8, 3)), course.randn(jb, 1, (3, 3, 3, 4), 0.3)
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
# bfloat16 is float32 with the significand cut from 24 bits (23 stored) to 8 (7 stored):
# the same 8-bit exponent, so nearly the same range, but not quite. Its largest finite
# value is about 3.3895e38 against float32's 3.4028e38, and a float32 near the top of the
# range (from about 3.3961e38 up) rounds to inf in bfloat16. 8 bits of significand give
# log10(2^8) = 2.4 significant decimal digits: 1.0 and 1.0078125 are neighbours. A
# float32 turns into bfloat16 by keeping its top 16 bits, rounded to nearest (ties to
# even), as JAX's cast (XLA's convert) does here:

# %%
bf16_cases = (1.0, 3.14159265, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 65504.0, 1e-30, 3.38e38, 3.4e38)
bf16_rounded = {}
for value in bf16_cases:
    bf16_rounded[value] = float(jnp.asarray(value, jnp.float32).astype(jnp.bfloat16))
    print(f"{value!r:>22} -> bfloat16 {bf16_rounded[value]!r}")
print("largest finite: float32", float(jnp.finfo(jnp.float32).max), " bfloat16", float(jnp.finfo(jnp.bfloat16).max))
print("significant decimal digits (log10 of 2^significand bits): float32",
      round(math.log10(2 ** 24), 1), " bfloat16", round(math.log10(2 ** 8), 1))

# %% [markdown]
# ### Exercise 14.1: bfloat16 rounding, in JAX
#
# Write `to_bfloat16(x)` for a float32 JAX array: every value rounded to bfloat16, kept as
# float32, bit for bit as JAX's cast above, with integer operations on the bits:
# `jax.lax.bitcast_convert_type(x, jnp.uint32)` views the bits (no copy, no conversion);
# round the low 16 bits away to nearest, ties to even (add 0x7FFF plus the lowest bit that
# stays, `(bits >> 16) & 1`, then clear the low 16 bits with `& jnp.uint32(0xFFFF0000)`);
# view the result as float32 again. One case that arithmetic gets wrong: a NaN (exponent
# bits all ones, a non-zero significand) whose set bits are all among the low 16 would
# become inf, and one whose carry runs over the top would become 0. The cast keeps a NaN a
# NaN: the quiet NaN 0x7FC00000 with x's sign bit (`jnp.where(jnp.isnan(x), ...)`). No
# `astype(jnp.bfloat16)`: that is what the check compares with, bit for bit, on 319 values
# (ties, values that round to inf, subnormals, zeros, infinities, 6 NaNs), under `jax.jit`.
# Then your rounding shows what bfloat16 does to the layer's weights above.

# %%
# EXERCISE 14.1: your code here
def to_bfloat16(x):
    raise NotImplementedError


# %%
lesson.exercise("14.1", to_bfloat16)
with lesson.plugged("14.1"):  # your rounding of the layer's weights, against the cast
    if lesson.passed("14.1"):
        w_rounded = jax.jit(lesson.answer("14.1"))(w)
        lesson.agrees("the layer's weights through your rounding", w_rounded,
                       w.astype(jnp.bfloat16).astype(jnp.float32), 0.0, 0.0)
        relative = float(jnp.max(jnp.abs(w_rounded - w) / jnp.abs(w)))
        print(f"the layer's weights through YOUR rounding: largest relative change {relative:.2e} (at most half a "
              f"step of 8 significant bits, 2^-8 = {2 ** -8:.2e}), equal to the cast")

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

print(course.source(distributed.initialize))

# %% [markdown]
# 3. **Convolutions stay convolutions** (`get_backend("jax").depthwise` is "conv" off the
#    CPU). Two costs stay apart there: the compile, paid once per program (the training
#    step, the evaluation step) at the start of a run, grows with the program's size, e.g.
#    with the k x k slices the taps path unrolls on the CPU; the time of a step is what the
#    compiled program does at every call, its arithmetic and memory traffic, which the
#    program's length does not measure. Lesson 13 timed trace, compile and step apart, and
#    `python -m tinyeffnet.bench` reports the step's images/s and the compile time
#    separately.
#
# ## Checks

# %%
assert sharded["devices"] == 8 and sharded["mesh"] == {"batch": 8}
assert sharded["shards"] == [[2, 4]] * 8 and sharded["total"] == sum(range(64))
assert abs(order_difference) <= 1e-5 * 64_000 ** 0.5 * 8, "the same sum up to float32 rounding"
assert str(y_bf16.dtype) == "bfloat16" and str(grad_w32.dtype) == "float32"
assert bf16_rounded[1.0 + 2 ** -8] == 1.0 and bf16_rounded[1.0 + 3 * 2 ** -8] == 1.0 + 2 ** -6, "ties to even"
assert bf16_rounded[3.38e38] < float("inf") and bf16_rounded[3.4e38] == float("inf"), "the top of float32 overflows"
lesson.finish()
