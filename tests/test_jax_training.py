"""The JAX backend runs the same layer code: parity with the Python backend, jax.grad as an
oracle (tests only), data parallelism over 8 devices and over 2 processes."""
import json
import os
import socket
import subprocess
import sys

import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from backends import get_backend  # noqa: E402
from tinyeffnet import Tensor, functional as F  # noqa: E402
from tinyeffnet.engine import ops  # noqa: E402
from tinyeffnet.training import step as steps  # noqa: E402
from tinyeffnet.training.step import StepOptions  # noqa: E402
from tinyeffnet.model.efficientnet import BlockSpec, MBConv, build_model  # noqa: E402
from tinyeffnet.nn import BatchNorm2d, Conv2d, DepthwiseConv2d, Linear, SqueezeExcite  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY, JX = get_backend("python"), get_backend("jax")
F64 = StepOptions(label_smoothing=0.1, compute_dtype="float64")


def copy_weights(src, dst):
    """Load src's parameters and buffers into dst, whatever their backends."""
    sb, db = src.parameters()[0].backend, dst.parameters()[0].backend
    dst.load_state_dict({n: db.from_flat(sb.to_flat(t.data), t.shape, "float64") for n, t in src.state_dict().items()})


def to_jax(x):
    return JX.from_flat(PY.to_flat(x.data), x.shape, "float64")


def assert_close(a, b, tol=1e-9, what="", floor=1e-6):
    """Relative to the largest value, floored: a gradient that is 0 in exact arithmetic
    (a BN beta feeding another train-mode BN) is compared with the scale of the others."""
    a, b = list(a), list(b)
    scale = max([abs(v) for v in b] + [floor])
    err = max(abs(x - y) for x, y in zip(a, b)) / scale
    assert err <= tol, f"{what}: relative error {err:.2e}"


def assert_grads_close(ours, ref, to_flat_ours, to_flat_ref, what):
    ref = {n: to_flat_ref(g) for n, g in ref.items()}
    top = max(abs(v) for g in ref.values() for v in g)
    for n, g in ref.items():
        assert_close(to_flat_ours(ours[n]), g, what=f"{what} gradient of {n}", floor=1e-6 * top)


def grads_on(module, backend, x):
    """(output, input gradient, parameter gradients) of a weighted sum of the module's output."""
    def run(params, buffers, x):
        with module.bind(params, buffers) as leaves:  # buffers bound too: BN must not keep a tracer
            xt = Tensor(x, backend, requires_grad=True)
            out = module(xt)
            weights = backend.from_flat([((i * 7) % 11) / 11 - 0.5 for i in range(out.size)], out.shape,
                                        "float64")
            (out * Tensor(weights, backend)).sum().backward()
            return out.data, xt.grad.data, {n: leaves[n].grad.data for n in params}

    params = {n: p.data for n, p in module.named_parameters()}
    buffers = {n: b.data for n, b in module.named_buffers()}
    return (jax.jit(run) if backend is JX else run)(params, buffers, x)


LAYERS = [
    (lambda b: Conv2d(3, 4, 3, stride=2, bias=True, backend=b, dtype="float64"), (2, 7, 6, 3)),
    (lambda b: DepthwiseConv2d(4, 5, stride=2, backend=b, dtype="float64"), (2, 8, 8, 4)),
    (lambda b: Conv2d(4, 6, 1, backend=b, dtype="float64"), (2, 3, 3, 4)),
    (lambda b: Linear(5, 3, backend=b, dtype="float64"), (4, 5)),
    (lambda b: BatchNorm2d(3, backend=b, dtype="float64"), (4, 2, 2, 3)),
    (lambda b: SqueezeExcite(6, 2, backend=b, dtype="float64"), (2, 3, 3, 6)),
    (lambda b: MBConv(BlockSpec(3, 4, 4, 6, 3, 1, "end", 0.0), backend=b, dtype="float64"), (2, 5, 5, 4)),
    (lambda b: MBConv(BlockSpec(3, 4, 6, 6, 5, 2, "dw", 0.0), backend=b, dtype="float64"), (2, 6, 6, 4)),
    (lambda b: MBConv(BlockSpec(3, 4, 4, 1, 3, 1, None, 0.0), backend=b, dtype="float64"), (2, 4, 4, 4)),
]


@pytest.mark.parametrize("make,xs", LAYERS)
def test_every_layer_same_values_and_gradients_on_both_backends(make, xs):
    py_layer = make("python")
    for i, (_, p) in enumerate(py_layer.named_parameters()):
        p.data = PY.uniform(100 + i, p.shape, 0.5 if p.ndim == 1 else -1.0, 1.5 if p.ndim == 1 else 1.0)
    jx_layer = make("jax")
    copy_weights(py_layer, jx_layer)
    x = PY.uniform(7, xs, -1.0, 1.0)
    for mode in ("train", "eval"):
        py_layer.train(mode == "train")
        jx_layer.train(mode == "train")
        out_p, gx_p, gw_p = grads_on(py_layer, PY, x)
        out_j, gx_j, gw_j = grads_on(jx_layer, JX, to_jax(Tensor(x)))
        assert_close(JX.to_flat(out_j), PY.to_flat(out_p), what=f"{mode} forward")
        assert_close(JX.to_flat(gx_j), PY.to_flat(gx_p), what=f"{mode} input gradient")
        assert_grads_close(gw_j, gw_p, JX.to_flat, PY.to_flat, mode)


def test_tiny_b0_same_loss_gradients_and_bn_statistics_on_both_backends():
    common = dict(num_classes=5, width=0.25, depth=0.1, dropout=0.0, drop_connect=0.0, seed=1)
    py_net = build_model("seend@hasskip", backend="python", **common)
    jx_net = build_model("seend@hasskip", backend="jax", dtype="float64", **common)
    copy_weights(py_net, jx_net)
    x = PY.uniform(3, (3, 16, 16, 3), -1.0, 1.0)
    labels = [0, 4, 2]
    results = []
    for net, b, xx in ((py_net, PY, x), (jx_net, JX, to_jax(Tensor(x)))):
        params = {n: p.data for n, p in net.named_parameters()}
        buffers = {n: t.data for n, t in net.named_buffers()}
        y = b.from_flat(labels, (3,), "int32")
        run = lambda params, buffers, xx, y, net=net: steps.gradients(net, params, buffers, xx, y, None, F64)
        results.append((jax.jit(run) if b is JX else run)(params, buffers, xx, y))
    (loss_p, logits_p, g_p, buf_p), (loss_j, logits_j, g_j, buf_j) = results
    assert_close(JX.to_flat(loss_j), PY.to_flat(loss_p), what="loss")
    assert_close(JX.to_flat(logits_j), PY.to_flat(logits_p), what="logits")
    assert_grads_close(g_j, g_p, JX.to_flat, PY.to_flat, "train")
    for n in buf_p:
        assert_close(JX.to_flat(buf_j[n]), PY.to_flat(buf_p[n]), what=f"BN statistic {n}")


def test_our_backward_equals_jax_grad_on_b0():
    """The oracle: full-width B0 (all 16 blocks, small image), float64, every parameter."""
    net = build_model("base", num_classes=10, backend="jax", dtype="float64", seed=0)
    params = {n: p.data for n, p in net.named_parameters()}
    buffers = {n: b.data for n, b in net.named_buffers()}
    images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3), jnp.float64)
    labels = jnp.array([1, 7], jnp.int32)
    key = jax.random.key(3)  # dropout and drop-connect on: the same masks for both

    def both(params):
        ours = steps.gradients(net, params, buffers, images, labels, key, F64)[2]
        loss = lambda p: steps.forward_loss(net, p, buffers, images, labels, key, F64)[0].data
        return ours, jax.grad(loss)(params)

    ours, ref = jax.jit(both)(params)
    top = max(float(jnp.max(jnp.abs(g))) for g in ref.values())
    for n in params:
        # Relative to the tensor's own size; exact zeros (a BN beta feeding another BN) by the global scale.
        scale = max(float(jnp.max(jnp.abs(ref[n]))), 1e-6 * top)
        err = float(jnp.max(jnp.abs(ours[n] - ref[n]))) / scale
        assert err <= 1e-9, f"{n}: our gradient differs from jax.grad by {err:.2e} (relative)"


SHARDING_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp
from tinyeffnet.model import build_model
from tinyeffnet.training.distributed import batch_sharding
from tinyeffnet.training.runtime import JaxRuntime
from tinyeffnet.training.step import StepOptions, init_state, make_train_step
assert jax.device_count() == 8, jax.devices()
net = build_model("base", num_classes=10, backend="jax", width=0.25, depth=0.1, seed=0)
images = jax.random.normal(jax.random.key(1), (16, 16, 16, 3), jnp.float32)
labels = jnp.arange(16, dtype=jnp.int32) % 10
out = {}
for devices in (1, 8):
    runtime = JaxRuntime("float32", devices=jax.devices()[:devices])
    opt = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    step = runtime.compile_train_step(make_train_step(net, opt, StepOptions(label_smoothing=0.1)))
    state = runtime.put_state(init_state(net, opt))
    x = jax.device_put(images, batch_sharding(runtime.mesh))
    y = jax.device_put(labels, batch_sharding(runtime.mesh))
    for i in range(2):
        # lr 0.01: the devices differ only in the float32 summation order of the batch
        # reductions, and that noise reaches the parameters through lr * gradient.
        state, metrics = step(state, x, y, jax.random.key(i), 0.01)
    if devices == 8:
        assert len(x.sharding.device_set) == 8
    out[devices] = {g: {n: jax.device_get(a).ravel().tolist() for n, a in state[g].items()}
                    for g in ("params", "buffers")}
print(json.dumps(out))
"""


def test_eight_devices_match_one_device():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8")
    run = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for group in ("params", "buffers"):
        for name, one in out["1"][group].items():
            eight = out["8"][group][name]
            err = max(abs(a - b) for a, b in zip(one, eight))
            assert err <= 1e-5, f"{group} {name}: 8 devices differ from 1 by {err:.2e}"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process():
    port = _free_port()
    worker = os.path.join(ROOT, "tests", "multihost_worker.py")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    outs = [os.path.join(os.environ.get("TMPDIR", "/tmp"), f"tinyeffnet-mh-{port}-{i}.json") for i in range(3)]
    procs = [subprocess.Popen([sys.executable, worker, "--process-id", str(i), "--num-processes", "2",
                               "--coordinator", f"127.0.0.1:{port}", "--out", outs[i]], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    single = subprocess.run([sys.executable, worker, "--out", outs[2]], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    multi, one = json.load(open(outs[0])), json.load(open(outs[2]))
    assert multi["process_count"] == 2 and one["process_count"] == 1
    for name, values in one["params"].items():
        err = max(abs(a - b) for a, b in zip(values, multi["params"][name]))
        assert err <= 1e-5, f"{name}: two processes differ from one by {err:.2e}"
    for path in outs:
        if os.path.exists(path):
            os.remove(path)


def test_bfloat16_compute_keeps_float32_masters_statistics_and_loss():
    from tinyeffnet.training.runtime import JaxRuntime
    from tinyeffnet.training.step import init_state, make_train_step
    runtime = JaxRuntime("bfloat16")
    net = build_model("base", num_classes=10, backend="jax", width=0.25, depth=0.1, seed=0)
    opt = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    step = runtime.compile_train_step(make_train_step(net, opt, StepOptions(label_smoothing=0.1,
                                                                            compute_dtype="bfloat16")))
    state = runtime.put_state(init_state(net, opt))
    images = jax.random.normal(jax.random.key(1), (8, 16, 16, 3), jnp.float32)
    labels = jnp.arange(8, dtype=jnp.int32) % 10
    for i in range(2):
        state, metrics = step(state, images, labels, jax.random.key(i), 0.05)
    assert all(a.dtype == jnp.float32 for group in ("params", "buffers") for a in state[group].values())
    assert metrics["loss"].dtype == jnp.float32 and bool(jnp.isfinite(metrics["loss"]))
    assert float(metrics["finite"]) == 1.0
    # the convolutions did run in bf16: the step's program holds bf16 convolutions (on the CPU
    # the runtime compiles the step as two programs, the gradient half holds them)
    lowered = step.lower(state, images, labels, jax.random.key(0), 0.05)
    hlo = "".join(part.as_text() for part in (lowered if isinstance(lowered, tuple) else (lowered,)))
    assert "bf16" in hlo


def test_cpu_step_in_two_programs_and_memory_schedule_change_no_bit():
    """On the CPU the runtime compiles the step as two programs with XLA's memory-optimized
    scheduler (less memory to compile and to run). Both are the same arithmetic: three steps
    give the state and metrics of the whole step jitted as one program with XLA's default
    options, bit for bit."""
    from tinyeffnet.training.runtime import JaxRuntime, StepInTwo
    runtime = JaxRuntime("float32")
    if not runtime.backend.step_in_two(runtime.platform):
        pytest.skip(f"the runtime keeps one program on {runtime.platform}")
    net = build_model("base", num_classes=10, backend="jax", width=0.25, depth=0.1, seed=0)
    opt = runtime.make_optimizer([n for n, _ in net.named_parameters()])
    make = lambda: steps.make_train_step(net, opt, StepOptions(label_smoothing=0.1))  # noqa: E731
    images = jax.random.normal(jax.random.key(1), (8, 16, 16, 3), jnp.float32)
    labels = jnp.arange(8, dtype=jnp.int32) % 10
    programs = dict(two=runtime.compile_train_step(make()),
                    one_default=jax.jit(make(), donate_argnums=(0,)),
                    one_scheduled=jax.jit(make(), donate_argnums=(0,),
                                          compiler_options=runtime.backend.compiler_options("cpu")))
    assert isinstance(programs["two"], StepInTwo)
    results = {}
    for name, step in programs.items():
        state = runtime.put_state(steps.init_state(net, opt, ema=True))
        for i in range(3):
            state, metrics = step(state, images, labels, jax.random.key(i), 0.05)
        flat = {f"{group}/{n}": a for group in ("params", "buffers") for n, a in state[group].items()}
        flat.update({f"ema/{n}": a for n, a in state["ema"]["params"].items()})
        flat.update({f"metrics/{n}": a for n, a in metrics.items()})
        results[name] = {k: jax.device_get(a).tobytes() for k, a in flat.items()}
    reference = results["one_default"]
    for name in ("two", "one_scheduled"):
        differ = sorted(k for k in reference if results[name][k] != reference[k])
        assert not differ, f"{name}: {len(differ)} arrays differ from the one-program step, e.g. {differ[:3]}"


class _SwishKeepingItsSigmoid(ops.Swish):
    """Swish whose backward reads x directly, not through recompute_from."""

    def backward(self, g):
        bk = self.backend
        s = bk.sigmoid(self.x)
        one = bk.full(bk.shape(s), 1.0, bk.dtype(s))
        return (bk.mul(g, bk.mul(s, bk.add(one, bk.mul(self.x, bk.sub(one, s))))),)


def _conv_bn_swish_conv(swish):
    """The jitted gradient of sum(w * conv(swish(bn(conv(x))))) in float32 with a given Swish
    Function: (function, its arguments)."""
    conv1, bn, conv2 = Conv2d(8, 32, 1, backend=JX), BatchNorm2d(32, backend=JX).train(), Conv2d(32, 8, 1, backend=JX)
    buffers = {n: b.data for n, b in bn.named_buffers()}  # bound too: BN must not keep a tracer

    def run(w1, gamma, beta, w2, x, weights):
        with conv1.bind({"weight": w1}), bn.bind({"gamma": gamma, "beta": beta}, buffers) as bn_leaves, \
                conv2.bind({"weight": w2}):
            xt = Tensor(x, JX, requires_grad=True)
            out = conv2(swish.apply(bn(conv1(xt))))
            (out * Tensor(weights, JX)).sum().backward()
            return out.data, xt.grad.data, bn_leaves["gamma"].grad.data, bn_leaves["beta"].grad.data

    k = jax.random.split(jax.random.key(3), 6)
    shapes = ((1, 1, 8, 32), (32,), (32,), (1, 1, 32, 8), (16, 32, 32, 8), (16, 32, 32, 8))
    w1, gamma, beta, w2, x, weights = (jax.random.normal(key, shape, jnp.float32) for key, shape in zip(k, shapes))
    args = (w1, 1.0 + 0.1 * gamma, 0.1 * beta, w2, x, weights)
    return jax.jit(run), args


def test_swish_backward_recomputes_its_sigmoid_under_xla():
    """Swish keeps only x and recomputes the sigmoid in its backward; XLA would merge that
    sigmoid with the forward's (CSE) and keep the forward's from the forward to the backward,
    unless the backward reads x through recompute_from. What XLA keeps is its temp memory:
    the library's Swish needs at least one (16, 32, 32, 32) float32 array (2 MiB) less than
    the same Swish reading x directly, and computes the same values."""
    temp, results = {}, {}
    for swish in (ops.Swish, _SwishKeepingItsSigmoid):
        fn, args = _conv_bn_swish_conv(swish)
        compiled = fn.lower(*args).compile(compiler_options=JX.compiler_options(jax.devices()[0].platform))
        temp[swish], results[swish] = compiled.memory_analysis().temp_size_in_bytes, compiled(*args)
    assert temp[_SwishKeepingItsSigmoid] - temp[ops.Swish] >= 16 * 32 * 32 * 32 * 4, temp
    for a, b in zip(results[ops.Swish], results[_SwishKeepingItsSigmoid]):
        assert_close(jax.device_get(a).ravel().tolist(), jax.device_get(b).ravel().tolist(), 1e-6)
