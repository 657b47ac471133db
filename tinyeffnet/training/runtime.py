"""What the trainer needs from a backend beyond the layer code: devices, batches, state.

`make_runtime(name, ...)` returns the `Runtime` of a registered backend; both runtimes
implement every method:

  make_optimizer(names, momentum, weight_decay)   Nesterov SGD (optax on JAX, ours in Python)
  compile_train_step(fn) / compile_eval_step(fn)  the functions of tinyeffnet.training.step,
  compile_bn_statistics_step(fn)                  made runnable (JAX: jit programs; on the CPU
                                                  the train step is two, see StepInTwo)
  put_state(state)                                the training state as the step wants it
  put_batch(batch, shape, normalization)          host Batch (uint8 pixels) -> (normalised
                                                  images, labels, valid mask) on the device(s)
  step_key(seed, step)                            the random key of one step (a function of
                                                  both, so a resumed run draws the same keys)
  fetch(values)                                   device scalars -> Python floats (the only
                                                  place the host waits for the device)
  to_host(array)                                  this process's copy of a replicated array
  max_over_processes(value)                       start agreeing on an int across processes;
                                                  read it later with to_host (no waiting now)
  memory_stats()                                  what the backend knows of its peak memory

This module is the one place that maps backend names to runtimes (`RUNTIMES`); everything
else asks a runtime or a backend what it can do.
"""
import abc

from backends import available_backends, backend_class, get_backend
from backends.host_memory import release_free_memory

from .distributed import batch_sharding, initialize, make_mesh, replicated
from .optimizer import NesterovSGD, optax_nesterov_sgd

_KEY_MOD = 2 ** 31 - 1

# After a compile this long the freed compiler memory is handed back to the OS (see
# backends/host_memory.py); the many small programs of eager jax calls are left alone.
_LONG_COMPILE_S = 1.0
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_released_after_compiles = False

# The training step hands its freed memory back every this many steps as well: each step's
# allocations (the gradients passed from one program to the other, the batches) fragment
# glibc's arenas, and without it the resident size creeps up over a run. A release walks
# the whole heap, so not after every step.
_RELEASE_EVERY_STEPS = 20


def checked_compute_dtype(backend_name, dtype):
    """`dtype` if the backend computes in it (None: the runtime's default), else ValueError:
    the one statement of which dtypes a network computes in (the backend's compute_dtypes)."""
    allowed = backend_class(backend_name).compute_dtypes
    if dtype is not None and dtype not in allowed:
        raise ValueError(f"--dtype must be one of {', '.join(allowed)} on the {backend_name} backend, got {dtype!r}")
    return dtype


class Runtime(abc.ABC):
    name = "abstract"
    backend = None
    compute_dtype = None
    process_index, process_count, device_count = 0, 1, 1
    multi_process = False   # whether several processes (hosts) can share a run
    description = ""

    @property
    def is_main(self):
        """Only the first process logs and writes files."""
        return self.process_index == 0

    def step_key(self, seed, step):
        return self.backend.key((seed * 1_000_003 + step) % _KEY_MOD)

    def max_over_processes(self, value):
        """The largest `value` any process gave at this call, as an array to read later (to_host):
        processes agree without the host waiting. One process: the value itself."""
        return value

    def memory_stats(self):
        return self.backend.memory_stats()

    @abc.abstractmethod
    def make_optimizer(self, param_names, momentum=0.9, weight_decay=1e-4): ...

    @abc.abstractmethod
    def compile_train_step(self, train_step): ...

    @abc.abstractmethod
    def compile_eval_step(self, eval_step): ...

    @abc.abstractmethod
    def compile_bn_statistics_step(self, bn_statistics_step): ...

    @abc.abstractmethod
    def put_state(self, state): ...

    @abc.abstractmethod
    def put_batch(self, batch, shape, normalization): ...

    @abc.abstractmethod
    def fetch(self, values): ...

    @abc.abstractmethod
    def to_host(self, array): ...


class PythonRuntime(Runtime):
    """The pure-Python backend: float64, one process, nothing compiled."""
    name = "python"
    description = "python (pure-Python reference backend, float64, 1 process)"

    def __init__(self, dtype=None, coordinator_address=None, num_processes=None, process_id=None):
        if coordinator_address or (num_processes or 1) > 1:
            raise ValueError(f"multi-host training needs a backend that runs on several processes: "
                             f"{' or '.join(multi_process_backends())}")
        self.backend = get_backend(self.name)
        self.compute_dtype = checked_compute_dtype(self.name, dtype) or self.backend.default_compute_dtype

    def make_optimizer(self, param_names, momentum=0.9, weight_decay=1e-4):
        return NesterovSGD(self.backend, param_names, momentum, weight_decay)

    def compile_train_step(self, train_step):
        return train_step

    def compile_eval_step(self, eval_step):
        return eval_step

    def compile_bn_statistics_step(self, bn_statistics_step):
        return bn_statistics_step

    def put_state(self, state):
        return state  # arrays are immutable here: sharing them with the model is safe

    def put_batch(self, batch, shape, normalization):
        b, n = self.backend, shape[0]
        return (b.from_flat(normalization.floats(batch.images), shape, "float64"),
                b.from_flat(batch.labels, (n,), "int32"),
                b.from_flat([1.0] * batch.valid + [0.0] * (n - batch.valid), (n,), "float64"))

    def fetch(self, values):
        return {k: self.backend.to_flat(v)[0] for k, v in values.items()}

    def to_host(self, array):
        return array


class JaxRuntime(Runtime):
    """XLA on every device of every process: data-parallel over one 'batch' mesh axis."""
    name = "jax"
    multi_process = True

    def __init__(self, dtype=None, coordinator_address=None, num_processes=None, process_id=None, devices=None):
        initialize(coordinator_address, num_processes, process_id)
        import jax
        self.jax = jax
        self.backend = get_backend(self.name)
        self.compute_dtype = checked_compute_dtype(self.name, dtype) or self.backend.default_compute_dtype
        _release_memory_after_compiles(jax)
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.mesh = make_mesh(devices)
        # the devices' platform, which a TPU slice compiled for ahead of time on a CPU machine is not
        self.platform = self.mesh.devices.flat[0].platform
        self.device_count = self.mesh.devices.size
        self._data, self._replicated = batch_sharding(self.mesh), replicated(self.mesh)
        self._normalizers = {}
        self._reduce_max = None
        self.description = (f"jax {jax.__version__} on {self.device_count} {jax.devices()[0].platform} device(s) "
                            f"({jax.devices()[0].device_kind}), {self.process_count} process(es), "
                            f"compute {self.compute_dtype}")

    def make_optimizer(self, param_names, momentum=0.9, weight_decay=1e-4):
        return optax_nesterov_sgd(param_names, momentum, weight_decay)

    def _jit(self, fn, **kwargs):
        return self.jax.jit(fn, compiler_options=self.backend.compiler_options(self.platform), **kwargs)

    def compile_train_step(self, train_step):
        # The state is donated: XLA updates it in place instead of holding two copies.
        rep, data = self._replicated, self._data
        halves = getattr(train_step, "halves", None)  # the benchmark's jax.grad step has none
        if halves is None or not self.backend.step_in_two(self.platform):
            return self._jit(train_step, donate_argnums=(0,), in_shardings=(rep, data, data, rep, rep),
                             out_shardings=(rep, rep))
        gradient_step, update_step = halves
        first = self._jit(gradient_step, in_shardings=(rep, data, data, rep), out_shardings=(rep, rep, rep, data))
        second = self._jit(update_step, donate_argnums=(0,), in_shardings=(rep, rep, rep, rep, data, data, rep),
                           out_shardings=(rep, rep))
        return StepInTwo(self.jax, first, second)

    def compile_eval_step(self, eval_step):
        rep, data = self._replicated, self._data
        return self._jit(eval_step, in_shardings=(rep, rep, data, data, data), out_shardings=rep)

    def compile_bn_statistics_step(self, bn_statistics_step):
        # The running totals are donated: updated in place, batch after batch.
        rep, data = self._replicated, self._data
        return self._jit(bn_statistics_step, donate_argnums=(2,), in_shardings=(rep, rep, rep, data, rep),
                         out_shardings=rep)

    def put_state(self, state):
        # Copies: the train step donates its state, and the model must keep its own arrays.
        # (device_put copies without a compiled program per array shape, as jnp.copy would.)
        return self.jax.device_put(state, self._replicated, may_alias=False)

    def put_batch(self, batch, shape, normalization):
        import jax.numpy as jnp
        n = shape[0]
        # uint8 crosses to the device (a quarter of float32's bytes) and is normalised there.
        images = jnp.frombuffer(batch.images, dtype=jnp.uint8).reshape(shape)
        labels = jnp.frombuffer(bytes(batch.labels), dtype=jnp.int32)
        valid = (jnp.arange(n) < batch.valid).astype(jnp.float32)
        put = self.jax.make_array_from_process_local_data
        images = self._normalizer(normalization)(put(self._data, images))
        return images, put(self._data, labels), put(self._data, valid)

    def _normalizer(self, normalization):
        """A jitted uint8 -> float32 (pixel * scale + offset per channel), one per Normalization."""
        if normalization not in self._normalizers:
            import jax.numpy as jnp
            scale = jnp.asarray(normalization.scale, jnp.float32)
            offset = jnp.asarray(normalization.offset, jnp.float32)
            self._normalizers[normalization] = self.jax.jit(lambda x: x.astype(jnp.float32) * scale + offset)
        return self._normalizers[normalization]

    def fetch(self, values):
        return {k: float(self.to_host(v)) for k, v in values.items()}

    def to_host(self, array):
        if getattr(array, "is_fully_addressable", True):
            return array
        return array.addressable_data(0)

    def max_over_processes(self, value):
        if self.process_count == 1:
            return value
        import jax.numpy as jnp
        if self._reduce_max is None:
            self._reduce_max = self.jax.jit(jnp.max, out_shardings=self._replicated)
        local_devices = sum(d.process_index == self.process_index for d in self.mesh.devices.flat)
        flags = jnp.full((local_devices,), value, jnp.int32)
        return self._reduce_max(self.jax.make_array_from_process_local_data(self._data, flags))


# The runtime of each backend that trains; the registry's other backends (meta: shapes only) do not.
RUNTIMES = {"python": PythonRuntime, "jax": JaxRuntime}


def training_backends():
    """The registered backends a network can be trained, evaluated and run on."""
    return tuple(name for name in available_backends() if name in RUNTIMES)


def multi_process_backends():
    return tuple(name for name in training_backends() if RUNTIMES[name].multi_process)


def runtime_class(name):
    if name not in training_backends():
        raise ValueError(f"unknown backend {name!r}: choose {' or '.join(training_backends())}")
    return RUNTIMES[name]


class StepInTwo:
    """A training step run as two compiled programs, the second on the first's results:
    `programs` = (gradient_step, update_step), jitted (see JaxRuntime.compile_train_step).

    Before its first call compiles them, jax's caches are emptied: setting up the model and
    its state compiled a small program for every array shape, none of which runs again."""

    def __init__(self, jax, first, second):
        self.jax, self.programs, self._calls = jax, (first, second), 0

    def lower(self, state, images, labels, key, lr):
        """Both programs lowered for these arguments (arrays or jax.ShapeDtypeStructs): a
        tuple of two jax Lowered, the second for the first's results."""
        first, second = self.programs
        lowered = first.lower(state, images, labels, key)
        return lowered, second.lower(state, *lowered.out_info, labels, lr)

    def __call__(self, state, images, labels, key, lr):
        if self._calls == 0:
            self.jax.clear_caches()
        if self._calls % _RELEASE_EVERY_STEPS == 0:
            release_free_memory()
        self._calls += 1
        first, second = self.programs
        return second(state, *first(state, images, labels, key), labels, lr)


def _release_memory_after_compiles(jax):
    """Once per process: after every long compile, hand the compiler's freed memory back to
    the OS (backends/host_memory.py), so that the step's scratch memory does not come on top."""
    global _released_after_compiles
    if _released_after_compiles:
        return

    def listener(event, seconds, **_):
        if event == _COMPILE_EVENT and seconds >= _LONG_COMPILE_S:
            release_free_memory()

    jax.monitoring.register_event_duration_secs_listener(listener)
    _released_after_compiles = True


def make_runtime(backend, dtype=None, coordinator_address=None, num_processes=None, process_id=None):
    """The runtime of the backend named `backend`; ValueError (one line) for what it cannot do."""
    cls = runtime_class(backend)
    try:
        return cls(dtype, coordinator_address, num_processes, process_id)
    except ImportError:
        raise ValueError(f"--backend {backend} needs a package that is not installed: pip install -e "
                         f"'.[{backend}]'") from None
