"""The JAX half of `python -m tinyeffnet.bench --backend jax --variant V ...`.

Times our training step (forward + OUR backward + optax, compiled as the trainer's runtime
compiles it) and, in the same process on the same data, the reference: the same forward
differentiated by jax.grad, with the same optax update. This module is the only non-test
place where jax.grad appears.

Beside images/s it reports what XLA says of each compiled program: its temporary memory
(`memory_analysis`) and the bytes it reads and writes (`cost_analysis`). Those depend on
the program, not on the machine, so a CPU can judge the accelerator-shaped program too:
`depthwise="conv"` and `dense="conv"` compile the convolutions as XLA conv ops, as on a
GPU or TPU, instead of the CPU's kernel taps and matrix products; `topology="v5e:2x2"`
compiles for that TPU slice (tinyeffnet.benchmarks.tpu), data parallel over its chips,
with the TPU's formulation, and adds the evaluation step; nothing then runs.

What the process held is measured too: its peak resident memory while compiling each
program and while running its steps (`*_compile_peak_rss_bytes`, `*_steps_peak_rss_bytes`;
Linux, None elsewhere) and over the whole benchmark (`peak_rss_bytes`, as `/usr/bin/time -v`
reports it). On the CPU our step runs as two programs (`custom_programs`: 2, see
training/runtime.py): its temp and total memory are the larger of the two, the rest sums.

What the backend's CPU choices buy, remeasured on the machine at hand:
- the conv formulations (backends/jax_backend.py): run the bench as it is and with
  `--depthwise conv --dense conv`, and compare `custom_img_per_s`;
- huge pages for XLA's per-step scratch memory (backends/host_memory.py): `custom_temp_bytes`
  is that memory; `custom_minor_faults_per_step` and `custom_system_cpu_share` (the kernel's
  share of the process's CPU time while the steps run) say what faulting it in costs. Compare
  a run with `GLIBC_TUNABLES=glibc.malloc.hugetlb=0` (4 KiB pages) and one without it.
"""
import time

try:
    import resource
except ImportError:  # not a Unix: no page-fault counts
    resource = None

import jax
import jax.numpy as jnp

from backends import get_backend
from backends.host_memory import peak_rss_bytes, peak_rss_since_reset, reset_peak_rss

from ..model import build_model
from ..training.distributed import batch_sharding, replicated
from ..training.metrics import all_finite, batch_metrics, global_norm
from ..training.optimizer import apply_updates
from ..training.runtime import JaxRuntime
from ..training.state import state_to_tensors
from ..training.step import StepOptions, forward_loss, init_state, make_eval_step, make_train_step
from .tpu import GENERATION, HBM_BYTES, TopologyError, abstract, all_reduces, topology_devices


def make_jaxgrad_train_step(net, optimizer, options=StepOptions()):
    """The reference step: identical forward, update and metrics (gradient norm, finiteness of
    the new state, as make_train_step with these options), gradients from jax.grad."""
    backend = net.backend

    def train_step(state, images, labels, key, lr):
        def loss_fn(params):
            loss, logits, _, buffers = forward_loss(net, params, state["buffers"], images, labels, key, options)
            return loss.data, (logits.data, buffers)

        (loss, (logits, buffers)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        new = dict(params=apply_updates(backend, state["params"], updates, lr), buffers=buffers, opt_state=opt_state)
        metrics = batch_metrics(backend, loss, logits, labels)
        metrics["grad_norm"] = global_norm(backend, list(grads.values()))
        metrics["finite"] = all_finite(backend, list(state_to_tensors(new).values()))
        return new, metrics

    return train_step


def _peak_memory():
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else int(peak)


class _PeakRss:
    """The process's peak resident memory in each phase of the benchmark, where the OS can
    start its high-water mark again (Linux; None elsewhere), and over the whole process."""

    def __init__(self):
        self.process = peak_rss_bytes()
        self._resettable = False

    def start(self):
        self._fold(peak_rss_bytes())  # the reset lowers it too
        self._resettable = reset_peak_rss()

    def end(self):
        """The peak since start(), or None."""
        peak = peak_rss_since_reset() if self._resettable else None
        self._fold(peak_rss_bytes())
        self._fold(peak)
        return peak

    def _fold(self, peak):
        if peak is not None:
            self.process = max(self.process or 0, peak)


def _compile(jitted, *args):
    """The AOT-compiled program and what XLA says of it: compile seconds, temporary and
    total memory (arguments + outputs - donated + temporaries + code, per device), bytes
    accessed, flops, and the all-reduces between devices."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    seconds = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    sizes = [getattr(memory, f"{k}_size_in_bytes", None)
             for k in ("argument", "output", "alias", "temp", "generated_code")]
    total = None if None in sizes else sizes[0] + sizes[1] - sizes[2] + sizes[3] + sizes[4]
    count, values = all_reduces(compiled.as_text())
    return compiled, dict(compile_s=seconds, temp_bytes=sizes[3], memory_bytes=total,
                          bytes_accessed=(cost or {}).get("bytes accessed"), flops=(cost or {}).get("flops"),
                          all_reduces=count, all_reduced_values=values)


def _compile_step(step, state, images, labels, key, lr):
    """_compile of a training step: one program, or the two of a step the runtime runs in two
    (training.runtime.StepInTwo), the second compiled for the first's results. Of two: the
    larger scratch and total memory (they run one after the other), the sums of the rest."""
    programs = getattr(step, "programs", None)
    if programs is None:
        return _compile(step, state, images, labels, key, lr)
    first, a = _compile(programs[0], state, images, labels, key)
    second, b = _compile(programs[1], state, *first.out_info, labels, lr)
    merged = {k: _merge(k, a[k], b[k]) for k in a}
    return (lambda s, x, y, k, r: second(s, *first(s, x, y, k), y, r)), dict(merged, programs=2)


def _merge(name, a, b):
    if a is None or b is None:
        return None
    return max(a, b) if name in ("temp_bytes", "memory_bytes") else a + b


def _usage():
    return resource.getrusage(resource.RUSAGE_SELF) if resource else None


def _seconds_per_step(compiled, state, images, labels, steps, repeats=3):
    """The median over `repeats` rounds of `steps` steps each (after one warm-up step), and
    over all the rounds: the process's minor page faults per step and the kernel's share of
    its CPU time (None where the OS does not count them)."""
    key, lr = jax.random.key(0), jnp.asarray(0.1, jnp.float32)
    state, metrics = compiled(state, images, labels, key, lr)
    jax.block_until_ready(metrics)
    rounds, before = [], _usage()
    for r in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            state, metrics = compiled(state, images, labels, jax.random.fold_in(key, r * steps + i), lr)
        jax.block_until_ready(metrics)
        rounds.append((time.perf_counter() - t0) / steps)
    faults = system_share = None
    if before is not None:
        after = _usage()
        faults = (after.ru_minflt - before.ru_minflt) / (repeats * steps)
        user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
        system_share = system / (user + system) if user + system > 0 else None
    return sorted(rounds)[len(rounds) // 2], faults, system_share


def step_backend(platform=None, depthwise=None, dense=None):
    """The JAX backend the benchmark builds its model on: the conv formulations of `platform`
    (default: this machine's), unless `depthwise` / `dense` name one (backends/jax_backend.py)."""
    return get_backend("jax", platform=platform, depthwise=depthwise, dense=dense)


def bench_model_jax(args):
    """One benchmark run (see the module docstring); `args` are the bench's flags.
    Raises tinyeffnet.benchmarks.tpu.TopologyError for a topology it cannot have."""
    topology = getattr(args, "topology", None)
    devices = topology_devices(topology) if topology else None
    if devices and args.batch_size % len(devices):
        raise TopologyError(f"--batch-size {args.batch_size} must divide by the {len(devices)} chips of {topology}")
    backend = step_backend("tpu" if devices else None, getattr(args, "depthwise", None), getattr(args, "dense", None))
    formulation = dict(depthwise=backend.depthwise, dense=backend.dense)
    runtime = JaxRuntime(args.dtype, devices=devices)
    net = build_model(args.variant, args.model, args.num_classes, backend=backend)
    optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    options = StepOptions(label_smoothing=0.1, compute_dtype=args.dtype)
    rep, data = replicated(runtime.mesh), batch_sharding(runtime.mesh)
    images = jax.ShapeDtypeStruct((args.batch_size, args.image_size, args.image_size, 3), jnp.float32, sharding=data)
    labels = jax.ShapeDtypeStruct((args.batch_size,), jnp.int32, sharding=data)
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=rep)
    # float32 whether or not jax_enable_x64 is on (the tests turn it on): no float64 on a TPU
    lr = jax.ShapeDtypeStruct((), jnp.float32, sharding=rep)
    state = init_state(net, optimizer)
    result = dict(backend="jax", variant=net.variant, model=net.model_name, image_size=args.image_size,
                  batch_size=args.batch_size, dtype=args.dtype, steps=args.steps, formulation=formulation)
    if devices:
        kind = devices[0].device_kind
        result.update(topology=topology, chips=len(devices), device_kind=kind, generation=GENERATION.get(kind),
                      per_chip_batch=args.batch_size // len(devices), hbm_bytes=HBM_BYTES.get(kind))
    else:
        result.update(device=f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind} x{jax.device_count()}")
    rss = _PeakRss()
    for name, make in (("custom", make_train_step), ("jaxgrad", make_jaxgrad_train_step)):
        rss.start()
        compiled, analysis = _compile_step(runtime.compile_train_step(make(net, optimizer, options)),
                                           abstract(state, rep), images, labels, key, lr)
        analysis["compile_peak_rss_bytes"] = rss.end()
        result.update({f"{name}_{k}": v for k, v in analysis.items()})
        if args.steps:
            rss.start()
            seconds, faults, system_share = _seconds_per_step(compiled, runtime.put_state(state),
                                                              *_batch(args, data), args.steps)
            result.update({f"{name}_img_per_s": args.batch_size / seconds, f"{name}_peak_bytes": _peak_memory(),
                           f"{name}_steps_peak_rss_bytes": rss.end(),
                           f"{name}_minor_faults_per_step": faults, f"{name}_system_cpu_share": system_share})
        del compiled  # the next program is measured without this one's executable
    if args.steps:
        result["ratio"] = result["custom_img_per_s"] / result["jaxgrad_img_per_s"]
    if devices:  # the evaluation step of the same model, as the trainer compiles it
        valid = jax.ShapeDtypeStruct((args.batch_size,), jnp.float32, sharding=data)
        rss.start()
        _, analysis = _compile(runtime.compile_eval_step(make_eval_step(net, options)),
                               abstract(state["params"], rep), abstract(state["buffers"], rep), images, labels, valid)
        result.update({f"eval_{k}": v for k, v in analysis.items()}, eval_compile_peak_rss_bytes=rss.end())
    rss.end()
    result["peak_rss_bytes"] = rss.process
    return result


def _batch(args, sharding):
    """A random batch of images and labels, placed as the step wants it."""
    key = jax.random.key(1)
    images = jax.random.normal(key, (args.batch_size, args.image_size, args.image_size, 3), jnp.float32)
    labels = jax.random.randint(key, (args.batch_size,), 0, args.num_classes, jnp.int32)
    return jax.device_put(images, sharding), jax.device_put(labels, sharding)
