"""The JAX backend: every primitive is one or two jax.numpy / jax.lax calls.

Everything except `to_flat` and `to_record` traces under `jax.jit`: shapes and dtypes come
from the arguments' static metadata, never from values, so the Tensor tape built at trace
time becomes one XLA program.

The two backward convolutions are written out as `lax.conv_general_dilated` calls (project
rule: our autograd computes gradients; jax's autodiff appears only in tests and in the
benchmark's reference step, tinyeffnet/benchmarks/jax_step.py). They are the
same HLO that jax's own conv transpose rules emit (flipped kernel + lhs_dilation for dx,
batch/feature-swapped dimension numbers + batch_group_count for dw), so XLA's pattern
matchers (cuDNN backward-data / backward-filter, TPU conv emitters) see the shapes they
know, and no physical weight transposes are added: channel swaps go into the dimension
numbers instead.

On the CPU, XLA's convolutions are slow next to its matrix products, so two convolutions
are written another way there (GPUs and TPUs keep the convolution ops, which their
libraries do well; the tests check each formulation against the plain one):
- depthwise (one filter per channel), and both its gradients, `depthwise="taps"`: a sum
  over the k*k kernel taps of strided slices times one weight per channel, which XLA fuses
  into a few passes over memory. The input gradient gathers, for each input pixel, the
  taps that read it (by stride phase), and the weight gradient sums the batch in chunks
  that stay in the CPU's cache (see `_add_back_taps`, `_depthwise_taps_grad_weight`). On a
  map smaller than the kernel only the taps that read some pixel of it are computed
  (`_taps_that_read_x`);
- dense (groups 1), and both its gradients, `dense="matmul"`: matrix products. A 1x1
  stride-1 conv is a (N*H*W, C_in) x (C_in, C_out) product as it stands; a k x k conv (the
  stem) multiplies the k*k strided windows side by side ("im2col").
The choice is made when an instance is made, from its platform unless named:
`get_backend("jax")` is this machine's, `get_backend("jax", depthwise="conv", dense="conv")`
an instance of its own with the conv ops; an instance never changes its choice. What each
formulation saves depends on the machine: `python -m tinyeffnet.bench --backend jax
--variant base` times the step with this machine's choice, and with `--depthwise conv
--dense conv` without it (tinyeffnet/benchmarks/jax_step.py). The commands also run with
huge pages for the host's large blocks of scratch memory (`backends/host_memory.py`).

No numpy in this module (the project is NumPy-free): host data comes in through
`array.array` bytes and `jnp.frombuffer`.
"""
import functools
import operator
import os
from array import array

import jax
import jax.numpy as jnp
from jax import lax

from .contract import RECORD_CODES, Backend, ContractError

_DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
    "float64": jnp.float64,
    "int32": jnp.int32,
}
# How host numbers are packed for jnp.frombuffer; bf16/f16 go through float32 then cast
# (array.array has no 16-bit float code).
_PACK = {"float64": "d", "float32": "f", "bfloat16": "f", "float16": "f", "int32": "i"}
_LOW_PRECISION = ("bfloat16", "float16")
_COMPARE = {"lt": jnp.less, "le": jnp.less_equal, "gt": jnp.greater,
            "ge": jnp.greater_equal, "eq": jnp.equal, "ne": jnp.not_equal}
_NHWC = ("NHWC", "HWIO", "NHWC")

assert array("i").itemsize == 4, "int32 packing assumes a 4-byte C int"


def _skip_absent_tpu():
    """On a machine without TPU chips or an accelerator plugin, JAX runs on the CPU alone.

    Where libtpu is installed (the tpu and test extras: it compiles TPU programs on any
    machine), JAX would otherwise load it and try a TPU client at start-up even with no TPU
    attached: about 100 MB more resident in every process, and its warnings on stderr.
    A choice already made (JAX_PLATFORMS, jax.config) is kept; where JAX cannot tell, nothing
    is changed. Compiling for a TPU slice ahead of time loads libtpu on its own
    (tinyeffnet/benchmarks/tpu.py)."""
    if jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
        return
    try:
        import importlib.metadata
        import pkgutil

        from jax._src import hardware_utils
        chips = hardware_utils.num_available_tpu_chips_and_device_id()[0]
        plugins = list(importlib.metadata.entry_points(group="jax_plugins"))
        try:
            import jax_plugins
            plugins += list(pkgutil.iter_modules(jax_plugins.__path__))
        except ImportError:
            pass
    except Exception:  # a JAX without these internals: leave its choice alone
        return
    if chips == 0 and not plugins:
        jax.config.update("jax_platforms", "cpu")


_skip_absent_tpu()

# Each conv kind's formulations, the CPU's first (see the module docstring).
FORMULATIONS = {"depthwise": ("taps", "conv"), "dense": ("matmul", "conv")}


class JaxBackend(Backend):
    name = "jax"
    dtypes = ("float32", "bfloat16", "float16", "float64", "int32")
    default_float = "float32"

    # float16 would need loss scaling, which the training step does not do, and float64 needs
    # jax_enable_x64 (which only the tests turn on): a network is trained in these.
    compute_dtypes = ("float32", "bfloat16")
    compiles = True

    @classmethod
    def resolve_options(cls, platform=None, depthwise=None, dense=None, precision=None):
        """`platform`: the platform the programs are for ("cpu", "gpu", "tpu"; default: the
        one jax runs on here); it picks the conv formulations, which a TPU program compiled
        ahead of time on a CPU machine wants: platform="tpu".
        `depthwise`: "taps" or "conv" (default: taps on the CPU); `dense`: "matmul" or
        "conv" (default: matmul on the CPU); see the module docstring.
        `precision`: passed to every matmul and conv (None: jax's default, which on GPU/TPU
        may use TF32 / bf16 passes for float32; "highest" for full float32)."""
        platform = platform or jax.default_backend()
        chosen = dict(depthwise=depthwise, dense=dense)
        for kind, forms in FORMULATIONS.items():
            if chosen[kind] is None:
                chosen[kind] = forms[0] if platform == "cpu" else forms[1]
            elif chosen[kind] not in forms:
                raise ValueError(f"{kind}={chosen[kind]!r} is not a formulation of the jax backend: "
                                 f"choose one of {', '.join(forms)}")
        return dict(platform=platform, precision=precision, **chosen)

    def __init__(self, platform=None, depthwise=None, dense=None, precision=None):
        """See resolve_options; the choices are fixed for the instance's life (read-only)."""
        self._options = self.resolve_options(platform, depthwise, dense, precision)

    platform = property(lambda self: self._options["platform"])
    depthwise = property(lambda self: self._options["depthwise"])
    dense = property(lambda self: self._options["dense"])
    precision = property(lambda self: self._options["precision"])

    @property
    def default_compute_dtype(self):
        """float32 on the CPU; bfloat16 on GPUs and TPUs, whose matrix units run it at full rate
        (the training step keeps float32 master weights, BN statistics and loss)."""
        return "float32" if self.platform == "cpu" else "bfloat16"

    @staticmethod
    def compiler_options(platform):
        """XLA options for every program compiled for `platform`'s devices. On the CPU the
        memory-optimized scheduler orders a program's operations so that fewer intermediates
        are alive at once: the training step's scratch memory is less than half (the bench
        reports `custom_temp_bytes`), the arithmetic the same."""
        return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"} if platform == "cpu" else None

    @staticmethod
    def step_in_two(platform):
        """Whether the training step for `platform`'s devices is compiled as two programs (its
        `halves`: the forward and backward, then the update) instead of one. On the CPU: XLA:CPU
        holds every kernel of a program in memory until it has compiled them all, and the
        update gives each of the state's hundreds of arrays kernels of its own, so the halves
        compiled one after the other need far less memory than the whole (that compile was the
        trainer's peak). GPUs and TPUs keep one program: their step's memory is the device's,
        and the compile's host memory never sits beside it."""
        return platform == "cpu"

    def memory_stats(self):
        device = jax.devices()[0]
        peak = (device.memory_stats() or {}).get("peak_bytes_in_use")
        note = None if peak is not None else f"jax's {device.platform} device keeps no peak_bytes_in_use"
        return dict(device=f"{device.platform} ({device.device_kind})", peak_bytes_in_use=peak, note=note)

    def _by_taps(self, w_shape, groups):
        return self.depthwise == "taps" and groups > 1 and w_shape[2] == 1 and w_shape[3] == groups

    def _by_matmul(self, groups):
        return self.dense == "matmul" and groups == 1

    def _dot(self, a, b, contract=((1,), (0,))):
        """a @ b (or another contraction), accumulating 16-bit inputs in float32."""
        low = self.dtype(a) in _LOW_PRECISION
        out = lax.dot_general(a, b, (contract, ((), ())), precision=self.precision,
                              preferred_element_type=jnp.float32 if low else None)
        return out.astype(a.dtype)

    def shape(self, x):
        return tuple(x.shape)

    def dtype(self, x):
        return str(x.dtype)

    @staticmethod
    def _jdt(dtype):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise ContractError("float64 needs jax_enable_x64: call "
                                "jax.config.update('jax_enable_x64', True) first")
        return _DTYPES[dtype]

    # ----------------------------------------------------------------- creation
    def _from_flat(self, data, shape, dtype):
        code = _PACK[dtype]
        try:
            packed = array(code, data)
        except TypeError:  # floats into int32, or other number-like values
            packed = array(code, map(int if code == "i" else float, data))
        host = jnp.frombuffer(packed.tobytes(), _DTYPES["float32" if code == "f" else dtype])
        return host.reshape(shape).astype(self._jdt(dtype))

    def _to_flat(self, x):
        if self.dtype(x) in _LOW_PRECISION:
            x = x.astype(jnp.float32)  # tolist() of 16-bit floats gives numpy scalars
        return x.reshape(-1).tolist()

    # ----------------------------------------------------------------- host bytes
    def _to_record(self, x, dtype):
        try:
            return x.tobytes()  # copies device -> host; works for any committed jax.Array
        except Exception as e:  # a tracer inside jit, a deleted (donated) buffer, ...
            self._fail("to_record", f"cannot read a {dtype} array of shape {self.shape(x)} back from the "
                                    f"device ({type(e).__name__}); save outside jit and before donating the buffer")

    def record_dtype(self, dtype):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            return "float32"
        return super().record_dtype(dtype)

    def _from_record(self, dtype, shape, raw, target):
        if dtype != target:
            # Narrow on the host: jnp.frombuffer would do it too, but with a warning per array.
            values = array(RECORD_CODES[dtype])
            values.frombytes(raw)
            raw = array(RECORD_CODES[target], values).tobytes()
        return jnp.frombuffer(raw, _DTYPES[target]).reshape(shape)

    # ----------------------------------------------------------------- compiling
    def compile(self, fn):
        return jax.jit(fn)

    def _full(self, shape, value, dtype):
        return jnp.full(shape, value, self._jdt(dtype))

    def _key(self, seed):
        # jax.random.key keeps only the low 32 bits of a seed without x64 (all 64 with it):
        # fold the other words, then their count and the sign, in, so that every Python int
        # gets its own key, the same with or without x64.
        if 0 <= seed < 2 ** 32:
            return jax.random.key(seed)
        words, rest = [], abs(seed)
        while rest:
            words.append(rest % 2 ** 32)
            rest //= 2 ** 32
        key = jax.random.key(words[0])
        for word in words[1:] + [2 * len(words) + (seed < 0)]:
            key = jax.random.fold_in(key, word)
        return key

    def _split_key(self, key, n):
        keys = jax.random.split(key, n)
        return [keys[i] for i in range(n)]

    def _uniform(self, key, shape, low, high, dtype):
        return jax.random.uniform(key, shape, self._jdt(dtype), minval=low, maxval=high)

    def _normal(self, key, shape, dtype):
        return jax.random.normal(key, shape, self._jdt(dtype))

    def _astype(self, x, dtype):
        return x.astype(self._jdt(dtype))

    def _one_hot(self, labels, num_classes, dtype):
        return jax.nn.one_hot(labels, num_classes, dtype=self._jdt(dtype))  # out of range: zero row

    # ----------------------------------------------------------------- elementwise
    def _neg(self, x):
        return -x

    def _exp(self, x):
        return jnp.exp(x)

    def _log(self, x):
        return jnp.log(x)

    def _sqrt(self, x):
        return jnp.sqrt(x)

    def _reciprocal(self, x):
        return jnp.reciprocal(x)

    def _sigmoid(self, x):
        return jax.nn.sigmoid(x)

    def _add(self, a, b):
        return a + b

    def _sub(self, a, b):
        return a - b

    def _mul(self, a, b):
        return a * b

    def _div(self, a, b):
        return a / b

    def _maximum(self, a, b):
        return jnp.maximum(a, b)

    def _compare(self, a, b, op):
        return _COMPARE[op](a, b).astype(a.dtype)

    def _where(self, cond, a, b):
        return jnp.where(cond != 0, a, b)

    # ----------------------------------------------------------------- reductions
    def _sum(self, x, axes):
        return jnp.sum(x, axis=axes, keepdims=True)

    def _max(self, x, axes):
        return jnp.max(x, axis=axes, keepdims=True)

    # ----------------------------------------------------------------- movement
    def _reshape(self, x, shape):
        return x.reshape(shape)

    def _permute(self, x, order):
        return jnp.transpose(x, order)

    def _expand(self, x, shape):
        return jnp.broadcast_to(x, shape)

    def _pad(self, x, pads, value):
        return lax.pad(x, jnp.asarray(value, x.dtype), [(lo, hi, 0) for lo, hi in pads])

    def _slice(self, x, starts, stops):
        return lax.slice(x, starts, stops)

    def _recompute_from(self, x):
        # XLA merges equal expressions (CSE), so the backward's sigmoid of x would be the
        # forward's, kept in memory in between. On the CPU a barrier keeps the two apart, and
        # XLA:CPU removes it again before scheduling. The TPU compiler keeps it to the end,
        # where it stops fusions across it (B0's step for v5e:2x2 at 224x224 moved 36.47 GB
        # per chip with it, 26.00 GB without), and GPUs are not measured: x as it is there.
        return lax.optimization_barrier(x) if self.platform == "cpu" else x

    # ----------------------------------------------------------------- processing
    def _matmul(self, a, b):
        if self.dtype(a) in _LOW_PRECISION:  # accumulate in float32, hand back the input dtype
            return jnp.matmul(a, b, precision=self.precision,
                              preferred_element_type=jnp.float32).astype(a.dtype)
        return jnp.matmul(a, b, precision=self.precision)

    # Convolutions keep the input dtype end to end (no preferred_element_type): GPU/TPU
    # conv kernels accumulate 16-bit inputs in float32 already, and it is what jax's own
    # conv VJP emits, so the backward convs stay on the same fast paths.

    def _conv2d(self, x, w, stride, padding, groups):
        if self._by_taps(w.shape, groups):
            (ys, xs), padding = _taps_that_read_x(x.shape[1:3], w.shape[:2], stride, padding)
            return _depthwise_taps(x, w[ys, xs], stride, padding)
        if self._by_matmul(groups):
            patches, (oh, ow) = _patches(x, w.shape, stride, padding)
            return self._dot(patches, w.reshape(-1, w.shape[3])).reshape(x.shape[0], oh, ow, w.shape[3])
        return lax.conv_general_dilated(x, w, (stride, stride), padding,
                                        dimension_numbers=_NHWC, feature_group_count=groups,
                                        precision=self.precision)

    def _conv2d_grad_input(self, dy, w, x_shape, stride, padding, groups):
        # dx = conv(dy dilated by the stride, kernel flipped in H and W, channels swapped
        # within each group), stride 1. Pads: (k - 1 - lo, k - 1 - hi + skipped), where
        # `skipped` are the trailing input rows the forward's stride never reached; they
        # may be negative (padding larger than k - 1), which XLA crops.
        if self._by_taps(w.shape, groups):
            (ys, xs), padding = _taps_that_read_x(x_shape[1:3], w.shape[:2], stride, padding)
            return _depthwise_taps_grad_input(dy, w[ys, xs], x_shape, stride, padding)
        if self._by_matmul(groups):
            cout = w.shape[3]
            d_patches = self._dot(dy.reshape(-1, cout), w.reshape(-1, cout), ((1,), (1,)))
            return _patches_grad(d_patches, x_shape, w.shape, stride, padding)
        _, h, wd, _ = x_shape
        kh, kw, cin_g, cout = w.shape
        _, oh, ow, _ = dy.shape
        (top, bottom), (left, right) = padding
        pads = ((kh - 1 - top, kh - 1 - bottom + (h + top + bottom - kh) - (oh - 1) * stride),
                (kw - 1 - left, kw - 1 - right + (wd + left + right - kw) - (ow - 1) * stride))
        wt = w
        if groups > 1 and cin_g > 1:
            # Channel swap within groups: the transposed conv's output features must be
            # group-major (g, ci) and its input features the group's cout_g. Move the
            # group out of O into I: (kh, kw, cin_g, G, cout_g) -> (kh, kw, G, cin_g, cout_g).
            cout_g = cout // groups
            wt = wt.reshape(kh, kw, cin_g, groups, cout_g).transpose(0, 1, 3, 2, 4)
        # The flip last, right at the conv: XLA folds a reverse that feeds a convolution into
        # the convolution's window (no flipped copy of the kernel); a reshape in between
        # stops it.
        wt = lax.rev(wt.reshape(kh, kw, cin_g * groups, cout // groups), (0, 1))
        # 'HWOI' reads axis 2 (the forward's input channels) as the output features and
        # axis 3 as the input features: the in/out swap costs no transpose.
        return lax.conv_general_dilated(dy, wt, (1, 1), pads, lhs_dilation=(stride, stride),
                                        dimension_numbers=("NHWC", "HWOI", "NHWC"),
                                        feature_group_count=groups, precision=self.precision)

    def _conv2d_grad_weight(self, x, dy, w_shape, stride, padding, groups):
        # dw[ky, kx, ci, o] = sum over (n, oy, ox) of xpad[n, oy*s + ky, ox*s + kx, ci] *
        # dy[n, oy, ox, o]: a correlation of the padded input with the stride-dilated dy
        # (rhs_dilation) in which the batch N is the contracted "feature" axis and the
        # input channels are the "batch" ('CHWN'). Groups: batch_group_count splits x's
        # channels and dy's channels into the same G blocks, giving (kh, kw, cin_g, cout)
        # directly. The bottom/right pad drops the rows the stride skipped (possibly
        # negative), so the result is exactly kh x kw.
        if self._by_taps(w_shape, groups):
            (ys, xs), padding = _taps_that_read_x(x.shape[1:3], w_shape[:2], stride, padding)
            kh, kw = w_shape[:2]
            dw = _depthwise_taps_grad_weight(x, dy, (ys.stop - ys.start, xs.stop - xs.start) + w_shape[2:],
                                             stride, padding)
            return jnp.pad(dw, ((ys.start, kh - ys.stop), (xs.start, kw - xs.stop), (0, 0), (0, 0)))
        if self._by_matmul(groups):
            patches, _ = _patches(x, w_shape, stride, padding)
            return self._dot(patches, dy.reshape(-1, w_shape[3]), ((0,), (0,))).reshape(w_shape)
        _, h, wd, _ = x.shape
        kh, kw, _, _ = w_shape
        _, oh, ow, _ = dy.shape
        (top, bottom), (left, right) = padding
        pads = ((top, bottom - ((h + top + bottom - kh) - (oh - 1) * stride)),
                (left, right - ((wd + left + right - kw) - (ow - 1) * stride)))
        return lax.conv_general_dilated(x, dy, (1, 1), pads, rhs_dilation=(stride, stride),
                                        dimension_numbers=("CHWN", "IHWO", "HWNC"),
                                        batch_group_count=groups, precision=self.precision)


def prepare_processes():
    """Before jax.distributed connects the processes of a multi-host run: CPU processes
    exchange their collectives over TCP (gloo); GPUs and TPUs use their own links."""
    if jax.config.jax_platforms in (None, "", "cpu") and not os.environ.get("TPU_WORKER_HOSTNAMES"):
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        except (AttributeError, ValueError):
            pass


# ---------------------------------------------------------------- depthwise as kernel taps
def _tap(xp, ky, kx, stride, oh, ow):
    """The (n, oh, ow, c) window of the padded input that kernel tap (ky, kx) sees."""
    n, _, _, c = xp.shape
    return lax.slice(xp, (0, ky, kx, 0), (n, ky + (oh - 1) * stride + 1, kx + (ow - 1) * stride + 1, c),
                     (1, stride, stride, 1))


def _taps_that_read_x(in_hw, kernel_hw, stride, padding):
    """Per spatial axis, the kernel taps (a slice) whose windows hold some pixel of x, and
    the padding those taps need. On a map smaller than the kernel (2x2 under a 5x5 kernel
    in B0's last stages at 48x48 input) most taps read padding only: they add zeros to the
    output and their weights' gradient is zero, so they are left out, and the padded copy
    of x the others read is smaller."""
    taps, pads = [], []
    for n, k, (lo, hi) in zip(in_hw, kernel_hw, padding):
        out = (n + lo + hi - k) // stride + 1
        seen = [t for t in range(k) if any(0 <= o * stride + t - lo < n for o in range(out))]
        first, stop = (seen[0], seen[-1] + 1) if seen else (0, k)
        if lo - first < 0 or hi - (k - stop) < 0:
            first, stop = 0, k
        taps.append(slice(first, stop))
        pads.append((lo - first, hi - (k - stop)))
    return tuple(taps), tuple(pads)


def _pad_hw(x, padding, interior=0):
    (top, bottom), (left, right) = padding
    zero = jnp.zeros((), x.dtype)
    return lax.pad(x, zero, ((0, 0, 0), (top, bottom, interior), (left, right, interior), (0, 0, 0)))


def _depthwise_taps(x, w, stride, padding):
    kh, kw = w.shape[:2]
    xp = _pad_hw(x, padding)
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = None
    for ky in range(kh):
        for kx in range(kw):
            term = _tap(xp, ky, kx, stride, oh, ow) * w[ky, kx, 0]
            out = term if out is None else out + term
    return out


def _depthwise_taps_grad_input(dy, w, x_shape, stride, padding):
    kh, kw = w.shape[:2]
    return _add_back_taps(dy, lambda window, ky, kx: window * w[ky, kx, 0], kh, kw, x_shape, stride, padding)


def _add_back_taps(dy, tap_grad, kh, kw, x_shape, stride, padding):
    """dL/dx of the kernel taps' reads of the padded input, gathered per input pixel.

    Tap (ky, kx) read x_pad[oy*s + ky, ox*s + kx] for y[oy, ox]. Write a padded-input row as
    r = s*q + p (its phase p < s): the taps that read it are ky = p + s*i, from output row
    oy = q - i. So each phase (py, px) of dx_pad is a stride-1 sum over its own taps of `dy`
    shifted by (i, j): `tap_grad(window, ky, kx)` turns the shifted window of `dy` (axes 1
    and 2 are oh and ow) into that tap's (n, ., ., c) gradient, and the s*s phases are
    interleaved into dx_pad. Every input pixel sums only the taps that read it, in the
    order of the kernel (scattering each tap's gradient back with interior padding instead
    computes s*s times the sums at stride s, most of them zeros)."""
    (top, bottom), (left, right) = padding
    n, h, wd, c = x_shape
    s, (oh, ow) = stride, dy.shape[1:3]
    qh, qw = -(-(h + top + bottom) // s), -(-(wd + left + right) // s)  # rows, cols per phase
    mi, mj = -(-kh // s), -(-kw // s)  # most taps per phase along each axis
    zero = jnp.zeros((), dy.dtype)
    pads = [(0, 0, 0), (mi - 1, qh - oh, 0), (mj - 1, qw - ow, 0)] + [(0, 0, 0)] * (dy.ndim - 3)
    dyp = lax.pad(dy, zero, pads)  # dyp[mi - 1 + q] = dy[q]; zeros outside dy
    phase_rows = []
    for py in range(s):
        row = []
        for px in range(s):
            terms = [tap_grad(_shifted(dyp, ky // s, kx // s, mi, mj, qh, qw), ky, kx)
                     for ky in range(py, kh, s) for kx in range(px, kw, s)]
            # a phase no tap reads (a kernel smaller than its stride) gets no gradient
            row.append(functools.reduce(operator.add, terms) if terms else jnp.zeros((n, qh, qw, c), dy.dtype))
        phase_rows.append(jnp.stack(row, axis=3))  # (n, qh, qw, px, c)
    dxp = jnp.stack(phase_rows, axis=2).reshape(n, qh * s, qw * s, c)  # row s*q + py, col s*q' + px
    return dxp[:, top:top + h, left:left + wd, :]


def _shifted(dyp, i, j, mi, mj, qh, qw):
    """The (qh, qw) window of the padded dy whose row q holds dy[q - i], column q' dy[q' - j]."""
    start = (0, mi - 1 - i, mj - 1 - j) + (0,) * (dyp.ndim - 3)
    return lax.slice(dyp, start, (dyp.shape[0], start[1] + qh, start[2] + qw) + dyp.shape[3:])


def _depthwise_taps_grad_weight(x, dy, w_shape, stride, padding, chunk_bytes=4 << 20):
    """dw[ky, kx, c] = sum over (n, oy, ox) of tap (ky, kx)'s window of x times dy.

    XLA materialises each tap's window before its sum: over the whole batch the windows of a
    large map do not fit in the CPU's cache, and every tap reads them back from memory. So the
    batch is summed in chunks of about `chunk_bytes` of x (a lax.scan over them), whose
    windows are read back from the cache."""
    n = x.shape[0]
    per = max(1, min(n, chunk_bytes // (x.size // n * x.dtype.itemsize)))
    while n % per:
        per -= 1
    # Long sums of bf16 products lose the gradient: accumulate them in float32 at least.
    acc = jnp.promote_types(dy.dtype, jnp.float32)
    if per == n:
        return _tap_sums(x, dy, w_shape, stride, padding, acc).astype(dy.dtype)

    def add_chunk(total, chunk):
        return total + _tap_sums(*chunk, w_shape, stride, padding, acc), None

    chunks = (x.reshape((n // per, per) + x.shape[1:]), dy.reshape((n // per, per) + dy.shape[1:]))
    return lax.scan(add_chunk, jnp.zeros(w_shape, acc), chunks)[0].astype(dy.dtype)


def _tap_sums(x, dy, w_shape, stride, padding, acc):
    kh, kw, _, c = w_shape
    xp = _pad_hw(x, padding)
    oh, ow = dy.shape[1:3]
    taps = [jnp.sum(_tap(xp, ky, kx, stride, oh, ow) * dy, axis=(0, 1, 2), dtype=acc)
            for ky in range(kh) for kx in range(kw)]
    return jnp.stack(taps).reshape(kh, kw, 1, c)


# ---------------------------------------------------------------- dense convs as matrix products
def _is_pointwise(kh, kw, stride, padding):
    return kh == kw == 1 and stride == 1 and padding == ((0, 0), (0, 0))


def _patches(x, w_shape, stride, padding):
    """(N*OH*OW, kh*kw*C_in) rows of every output pixel's input window, and (OH, OW)."""
    kh, kw, cin, _ = w_shape
    n, h, wd, _ = x.shape
    if _is_pointwise(kh, kw, stride, padding):
        return x.reshape(n * h * wd, cin), (h, wd)
    xp = _pad_hw(x, padding)
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    taps = [_tap(xp, ky, kx, stride, oh, ow) for ky in range(kh) for kx in range(kw)]
    return jnp.concatenate(taps, axis=-1).reshape(n * oh * ow, kh * kw * cin), (oh, ow)


def _patches_grad(d_patches, x_shape, w_shape, stride, padding):
    """dL/dx from dL/d(patches): each tap's window gradient added back where it was read."""
    kh, kw, cin, _ = w_shape
    n, h, wd, _ = x_shape
    if _is_pointwise(kh, kw, stride, padding):
        return d_patches.reshape(x_shape)
    (top, bottom), (left, right) = padding
    oh, ow = (h + top + bottom - kh) // stride + 1, (wd + left + right - kw) // stride + 1
    windows = d_patches.reshape(n, oh, ow, kh * kw, cin)
    return _add_back_taps(windows, lambda window, ky, kx: window[:, :, :, ky * kw + kx, :],
                          kh, kw, x_shape, stride, padding)
