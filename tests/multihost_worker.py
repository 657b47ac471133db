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

from tinyeffnet.distributed import initialize  # noqa: E402

initialize(args.coordinator, args.num_processes, args.process_id)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from tinyeffnet import jax_step  # noqa: E402
from tinyeffnet.efficientnet import build_model  # noqa: E402

net = build_model("base", num_classes=10, backend="jax", width=0.25, depth=0.1, seed=0)
opt = jax_step.make_optimizer([n for n, _ in net.named_parameters()])
mesh = jax_step.make_mesh()
step = jax_step.make_train_step(net, opt, 0.1, "float32", mesh=mesh)
state = jax.device_put(jax_step.init_state(net, opt), jax_step.replicated(mesh))
images = jax.random.normal(jax.random.key(1), (16, 16, 16, 3), jnp.float32)
labels = jnp.arange(16, dtype=jnp.int32) % 10
per = 16 // jax.process_count()
mine = slice(jax.process_index() * per, (jax.process_index() + 1) * per)
put = lambda a: jax.make_array_from_process_local_data(jax_step.batch_sharding(mesh), a[mine])
for i in range(2):
    state, metrics = step(state, put(images), put(labels), jax.random.key(i), 0.01)
if jax.process_index() == 0:
    local = lambda a: a.addressable_data(0)
    with open(args.out, "w") as f:
        json.dump(dict(process_count=jax.process_count(),
                       params={n: jax.device_get(local(a)).ravel().tolist() for n, a in state["params"].items()}), f)
