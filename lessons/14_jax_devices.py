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

lesson = course.Lesson("14")
ROOT = course.ROOT

import json
import math
import random
import subprocess

import jax
import jax.numpy as jnp

from backends import get_backend
from tinyeffnet import Tensor
from tinyeffnet.nn import Conv2d

jb = get_backend("jax")


def randn(seed, shape, scale=1.0):
    """Normal samples drawn on the host (no small XLA program per shape)."""
    rng = random.Random(seed)
    return jb.from_flat([rng.gauss(0.0, scale) for _ in range(math.prod(shape))], shape)


# %% [markdown]
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
out = subprocess.run([sys.executable, "-c", child], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
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
x, w = randn(0, (2, 8, 8, 3)), randn(1, (3, 3, 3, 4), 0.3)
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
# even):

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
# float32, the way the hardware's cast does it, with integer operations on the bits:
# `jax.lax.bitcast_convert_type(x, jnp.uint32)` views the bits (no copy, no conversion);
# round the low 16 bits away to nearest, ties to even (add 0x7FFF plus the lowest bit that
# stays, `(bits >> 16) & 1`, then clear the low 16 bits with `& jnp.uint32(0xFFFF0000)`);
# view the result as float32 again. No `astype(jnp.bfloat16)`: that is what the check
# compares with, on 309 values (ties, values that round to inf, subnormals), under
# `jax.jit`. Then your rounding shows what bfloat16 does to the layer's weights above.

# %%
# EXERCISE 14.1: your code here
def to_bfloat16(x):
    raise NotImplementedError


# %%
lesson.exercise("14.1", to_bfloat16)
if lesson.passed("14.1"):
    w_rounded = jax.jit(lesson.answer("14.1"))(w)
    relative = float(jnp.max(jnp.abs(w_rounded - w) / jnp.abs(w)))
    print(f"the layer's weights through YOUR rounding: largest relative change {relative:.2e} (at most half a step "
          f"of 8 significant bits, 2^-8 = {2 ** -8:.2e}); equal to the cast: {bool(jnp.all(w_rounded == w.astype(jnp.bfloat16).astype(jnp.float32)))}")
    assert relative <= 2 ** -8

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
#    CPU), and the compile happens once per run, so a bigger program costs nothing per step.
#
# ## Checks

# %%
assert sharded["devices"] == 8 and sharded["mesh"] == {"batch": 8}
assert sharded["shards"] == [[2, 4]] * 8 and sharded["total"] == sum(range(64))
assert str(y_bf16.dtype) == "bfloat16" and str(grad_w32.dtype) == "float32"
assert bf16_rounded[1.0 + 2 ** -8] == 1.0 and bf16_rounded[1.0 + 3 * 2 ** -8] == 1.0 + 2 ** -6, "ties to even"
assert bf16_rounded[3.38e38] < float("inf") and bf16_rounded[3.4e38] == float("inf"), "the top of float32 overflows"
lesson.finish()
