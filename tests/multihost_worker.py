"""One process of the multi-host test: two of these (or one alone) train the same tiny B0
for two steps on the same global batch; each process feeds only its half of the batch."""
import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--process-id", type=int, default=0)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--coordinator", default=None)
parser.add_argument("--out", required=True)
args = parser.parse_args()

from tinyeffnet.training.runtime import JaxRuntime  # noqa: E402

# JaxRuntime connects the processes (jax.distributed) before anything touches jax's devices.
runtime = JaxRuntime("float32", args.coordinator, args.num_processes, args.process_id)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from tinyeffnet.model import build_model  # noqa: E402
from tinyeffnet.training.distributed import batch_sharding  # noqa: E402
from tinyeffnet.training.step import StepOptions, init_state, make_train_step  # noqa: E402

net = build_model("base", num_classes=10, backend="jax", width=0.25, depth=0.1, seed=0)
opt = runtime.make_optimizer([n for n, _ in net.named_parameters()])
step = runtime.compile_train_step(make_train_step(net, opt, StepOptions(label_smoothing=0.1)))
state = runtime.put_state(init_state(net, opt))
images = jax.random.normal(jax.random.key(1), (16, 16, 16, 3), jnp.float32)
labels = jnp.arange(16, dtype=jnp.int32) % 10
per = 16 // jax.process_count()
mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
put = lambda a: jax.make_array_from_process_local_data(batch_sharding(runtime.mesh), a[mine])
for i in range(2):
    state, metrics = step(state, put(images), put(labels), jax.random.key(i), 0.01)
if jax.process_index() == 0:
    local = lambda a: a.addressable_data(0)
    with open(args.out, "w") as f:
        json.dump(dict(process_count=jax.process_count(),
                       params={n: jax.device_get(local(a)).ravel().tolist() for n, a in state["params"].items()}), f)
