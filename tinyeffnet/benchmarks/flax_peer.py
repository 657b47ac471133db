"""The flax peer of `python -m tinyeffnet.bench --backend jax --variant base --topology T --steps 0`:
a plain flax.linen EfficientNet-B0 training step compiled for the same TPU slice, for XLA's
per-chip analyses side by side with ours.

Same work as our bench's step: B0 (TensorFlow "same" padding, BN momentum 0.99 and eps 1e-3,
SE after the depthwise conv with r = in_channels / 4, swish, dropout 0.2, drop-connect 0.2
scaled by block index), float32 parameters and bfloat16 compute (`--dtype`), BN statistics
and loss in float32, cross-entropy with label smoothing 0.1, gradients from jax.grad, the
optax update of ours (weight decay 1e-4 on all but BN's scale and offset, then Nesterov
momentum 0.9, then params - lr * update), state donated. Data parallel over every chip of
the topology: images and labels split on the batch axis, the state replicated, so XLA sums
the gradients and BN's batch statistics over the chips. Nothing runs: these are the
compiler's figures, not measured times. Prints one JSON line.

flax is no dependency of tinyeffnet; give it a virtualenv of its own:

    python3 -m venv /tmp/flaxpeer && /tmp/flaxpeer/bin/pip install 'jax[tpu]' flax optax
    /tmp/flaxpeer/bin/python tinyeffnet/benchmarks/flax_peer.py --topology v5e:2x2 --image-size 224 --batch-size 512

This file is a standalone script: nothing in tinyeffnet imports it.
"""
import argparse
import json
import os
import time

# As in tinyeffnet/benchmarks/tpu.py: share libtpu with other jax processes, quiet its
# warnings about the TPU VM this machine is not.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from jax.experimental import topologies  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: E402

# (expand ratio, kernel, stride of the first block, output channels, repeats)
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class MBConv(nn.Module):
    cin: int
    cout: int
    expand: int
    kernel: int
    stride: int
    drop_rate: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train):
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)
        conv = lambda c, k, s=1, groups=1: nn.Conv(c, (k, k), (s, s), "SAME", feature_group_count=groups,
                                                  use_bias=False, dtype=self.dtype)
        h = x
        hidden = self.cin * self.expand
        if self.expand != 1:
            h = nn.swish(bn()(conv(hidden, 1)(h)))
        h = nn.swish(bn()(conv(hidden, self.kernel, self.stride, hidden)(h)))
        s = jnp.mean(h, axis=(1, 2), keepdims=True)
        s = nn.swish(nn.Conv(max(1, int(self.cin * 0.25)), (1, 1), dtype=self.dtype)(s))
        h = h * nn.sigmoid(nn.Conv(hidden, (1, 1), dtype=self.dtype)(s))
        h = bn()(conv(self.cout, 1)(h))
        if self.stride == 1 and self.cin == self.cout:
            if train and self.drop_rate > 0:
                keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - self.drop_rate, (h.shape[0], 1, 1, 1))
                h = h * keep.astype(h.dtype) / (1 - self.drop_rate)
            h = h + x
        return h


class EfficientNetB0(nn.Module):
    num_classes: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, train):
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=self.dtype)
        x = x.astype(self.dtype)
        x = nn.swish(bn()(nn.Conv(32, (3, 3), (2, 2), "SAME", use_bias=False, dtype=self.dtype)(x)))
        blocks = [(e, k, s if i == 0 else 1, c) for e, k, s, c, r in B0_STAGES for i in range(r)]
        cin = 32
        for index, (e, k, s, c) in enumerate(blocks):
            x = MBConv(cin, c, e, k, s, 0.2 * index / len(blocks), self.dtype)(x, train)
            cin = c
        x = nn.swish(bn()(nn.Conv(1280, (1, 1), use_bias=False, dtype=self.dtype)(x)))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(0.2, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


def make_optimizer(weight_decay=1e-4, momentum=0.9):
    """Ours: decoupled-in-the-gradient weight decay on all but BN's scale and bias, Nesterov trace."""
    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: not any("BatchNorm" in str(getattr(k, "key", "")) for k in path), params)
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=decay_mask),
                       optax.trace(decay=momentum, nesterov=True))


def make_train_step(model, optimizer, num_classes, label_smoothing=0.1):
    def train_step(state, images, labels, key, lr):
        def loss_fn(params):
            logits, updates = model.apply({"params": params, "batch_stats": state["batch_stats"]}, images, True,
                                          rngs={"dropout": key}, mutable=["batch_stats"])
            targets = optax.smooth_labels(jax.nn.one_hot(labels, num_classes), label_smoothing)
            loss = optax.softmax_cross_entropy(logits, targets).mean()
            return loss, (logits, updates["batch_stats"])

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = jax.tree_util.tree_map(lambda p, u: p - lr * u, state["params"], updates)
        top1 = jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))
        return dict(params=params, batch_stats=stats, opt_state=opt_state), dict(loss=loss, top1=top1)

    return train_step


def topology_devices(name):
    megacore = dict(chip_config_name="megacore") if name.split(":")[0].lower() in ("v4", "v5p") else {}
    return list(topologies.get_topology_desc(name, platform="tpu", **megacore).devices)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default="v5e:2x2")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=512, help="global batch (all chips)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = p.parse_args()
    devices = topology_devices(args.topology)
    mesh = Mesh(devices, ("batch",))
    rep, data = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))
    model = EfficientNetB0(args.num_classes, jnp.dtype(args.dtype))
    optimizer = make_optimizer()
    images = jax.ShapeDtypeStruct((args.batch_size, args.image_size, args.image_size, 3), jnp.float32, sharding=data)
    labels = jax.ShapeDtypeStruct((args.batch_size,), jnp.int32, sharding=data)

    def init():
        variables = model.init(jax.random.key(0), jnp.zeros((1, args.image_size, args.image_size, 3)), False)
        return dict(params=variables["params"], batch_stats=variables["batch_stats"],
                    opt_state=optimizer.init(variables["params"]))

    state = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), jax.eval_shape(init))
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep)
    lr = jax.ShapeDtypeStruct((), jnp.float32, sharding=rep, weak_type=True)
    step = jax.jit(make_train_step(model, optimizer, args.num_classes), donate_argnums=(0,),
                   in_shardings=(rep, data, data, rep, rep), out_shardings=(rep, rep))
    t0 = time.perf_counter()
    compiled = step.lower(state, images, labels, key, lr).compile()
    seconds = time.perf_counter() - t0
    memory, cost = compiled.memory_analysis(), compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    hlo = compiled.as_text()
    print(json.dumps(dict(
        peer=f"flax {__import__('flax').__version__} linen EfficientNet-B0, jax {jax.__version__}, optax",
        topology=args.topology, chips=len(devices), device_kind=devices[0].device_kind,
        image_size=args.image_size, batch_size=args.batch_size, per_chip_batch=args.batch_size // len(devices),
        dtype=args.dtype, flax_compile_s=round(seconds, 1), flax_temp_bytes=memory.temp_size_in_bytes,
        flax_memory_bytes=(memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
                           + memory.temp_size_in_bytes + memory.generated_code_size_in_bytes),
        flax_bytes_accessed=cost.get("bytes accessed"), flax_flops=cost.get("flops"),
        flax_all_reduces=hlo.count(" all-reduce(") + hlo.count(" all-reduce-start("))))


if __name__ == "__main__":
    main()
