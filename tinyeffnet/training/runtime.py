"""What the trainer needs from a backend beyond the layer code: devices, batches, state.

`make_runtime("jax" | "python", ...)` returns a `Runtime`; both implement every method:

  make_optimizer(names, momentum, weight_decay)   Nesterov SGD (optax on JAX, ours in Python)
  compile_train_step(fn) / compile_eval_step(fn)  the functions of tinyeffnet.training.step,
  compile_bn_statistics_step(fn)                  made runnable (JAX: one jit program each)
  put_state(state)                                the training state as the step wants it
  put_batch(batch, shape, normalization)          host Batch (uint8 pixels) -> (normalised
                                                  images, labels, valid mask) on the device(s)
  step_key(seed, step)                            the random key of one step (a function of
                                                  both, so a resumed run draws the same keys)
  fetch(values)                                   device scalars -> Python floats (the only
                                                  place the host waits for the device)
  to_host(array)                                  this process's copy of a replicated array
"""
import abc

from backends import get_backend

from .distributed import batch_sharding, initialize, make_mesh, replicated
from .optimizer import NesterovSGD, optax_nesterov_sgd

_KEY_MOD = 2 ** 31 - 1


def _checked_dtype(backend, dtype):
    """`dtype` if the backend computes in it (or None: the runtime's default), else a one-line error."""
    if dtype is not None and dtype not in backend.compute_dtypes:
        raise ValueError(f"--dtype {dtype} is not available on the {backend.name} backend "
                         f"(it computes in {' or '.join(backend.compute_dtypes)})")
    return dtype


class Runtime(abc.ABC):
    name = "abstract"
    backend = None
    compute_dtype = None
    process_index, process_count, device_count = 0, 1, 1
    description = ""

    @property
    def is_main(self):
        """Only the first process logs and writes files."""
        return self.process_index == 0

    def step_key(self, seed, step):
        return self.backend.key((seed * 1_000_003 + step) % _KEY_MOD)

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

    def __init__(self, dtype=None):
        self.backend = get_backend("python")
        self.compute_dtype = _checked_dtype(self.backend, dtype) or self.backend.default_float

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

    def __init__(self, dtype=None, coordinator_address=None, num_processes=None, process_id=None, devices=None):
        initialize(coordinator_address, num_processes, process_id)
        import jax
        self.jax = jax
        self.backend = get_backend("jax")
        platform = jax.devices()[0].platform
        self.compute_dtype = _checked_dtype(self.backend, dtype) or ("float32" if platform == "cpu" else "bfloat16")
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.mesh = make_mesh(devices)
        self.device_count = self.mesh.devices.size
        self._data, self._replicated = batch_sharding(self.mesh), replicated(self.mesh)
        self._normalizers = {}
        self.description = (f"jax {jax.__version__} on {self.device_count} {platform} device(s) "
                            f"({jax.devices()[0].device_kind}), {self.process_count} process(es), "
                            f"compute {self.compute_dtype}")

    def make_optimizer(self, param_names, momentum=0.9, weight_decay=1e-4):
        return optax_nesterov_sgd(param_names, momentum, weight_decay)

    def compile_train_step(self, train_step):
        # The state is donated: XLA updates it in place instead of holding two copies.
        rep, data = self._replicated, self._data
        return self.jax.jit(train_step, donate_argnums=(0,), in_shardings=(rep, data, data, rep, rep),
                            out_shardings=(rep, rep))

    def compile_eval_step(self, eval_step):
        rep, data = self._replicated, self._data
        return self.jax.jit(eval_step, in_shardings=(rep, rep, data, data, data), out_shardings=rep)

    def compile_bn_statistics_step(self, bn_statistics_step):
        # The running totals are donated: updated in place, batch after batch.
        rep, data = self._replicated, self._data
        return self.jax.jit(bn_statistics_step, donate_argnums=(2,), in_shardings=(rep, rep, rep, data, rep),
                            out_shardings=rep)

    def put_state(self, state):
        # Copies: the train step donates its state, and the model must keep its own arrays.
        import jax.numpy as jnp
        return self.jax.device_put(self.jax.tree_util.tree_map(jnp.copy, state), self._replicated)

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


def make_runtime(backend, dtype=None, coordinator_address=None, num_processes=None, process_id=None):
    if backend == "python":
        if coordinator_address or (num_processes or 1) > 1:
            raise ValueError("multi-host training needs --backend jax")
        return PythonRuntime(dtype)
    if backend == "jax":
        try:
            return JaxRuntime(dtype, coordinator_address, num_processes, process_id)
        except ImportError:
            raise ValueError("--backend jax needs jax, jaxlib and optax: pip install -e '.[jax]'") from None
    raise ValueError(f"unknown backend {backend!r}: choose jax or python")
