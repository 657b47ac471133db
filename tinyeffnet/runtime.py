"""What the trainer needs from a backend beyond the layer code: devices, batches, state.

`make_runtime("jax" | "python", ...)` returns an object with the same methods for both:
  steps                       the module with make_optimizer / init_state / make_train_step / make_eval_step
  put_batch(batch, shape, normalization)
                              host Batch (uint8 pixels) -> (normalised images, labels, valid
                              mask) on the device(s)
  step_key(seed, step)        the random key of one training step (a function of both, for resume)
  fetch(metrics)              device scalars -> Python floats (the only host synchronisation)
  flatten(state) / unflatten(template, tensors)   training state <-> {name: array} for checkpoints
"""
import math

from backends import get_backend

_KEY_MOD = 2 ** 31 - 1


def _step_seed(seed, step):
    return (seed * 1_000_003 + step) % _KEY_MOD


class PythonRuntime:
    name = "python"
    process_index, process_count, device_count = 0, 1, 1
    is_main = True
    description = "python (pure-Python reference backend, float64, 1 process)"

    def __init__(self, dtype=None):
        from . import python_step
        self.backend = get_backend("python")
        self.steps = python_step
        self.compute_dtype = "float64"
        if dtype not in (None, "float64", "float32"):
            raise ValueError(f"--dtype {dtype} is not available on the python backend (it computes in float64)")
        self.mesh = None

    def put_batch(self, batch, shape, normalization):
        b = self.backend
        n = shape[0]
        return (b.from_flat(normalization.floats(batch.images), shape, "float64"),
                b.from_flat(batch.labels, (n,), "int32"),
                b.from_flat([1.0] * batch.valid + [0.0] * (n - batch.valid), (n,), "float64"))

    def step_key(self, seed, step):
        return self.backend.key(_step_seed(seed, step))

    def fetch(self, values):
        return {k: self.backend.to_flat(v)[0] for k, v in values.items()}

    def flatten(self, state):
        out = {}
        for group in ("params", "buffers"):
            out.update({f"{group}/{n}": a for n, a in state[group].items()})
        out.update({f"opt/{n}": a for n, a in state["opt_state"].items()})
        if "ema" in state:
            for group in ("params", "buffers"):
                out.update({f"ema/{group}/{n}": a for n, a in state["ema"][group].items()})
        return out

    def unflatten(self, template, tensors):
        return _unflatten_dicts(template, tensors, lambda opt: {n: tensors[f"opt/{n}"] for n in opt})

    def local(self, array):
        return array


class JaxRuntime:
    name = "jax"

    def __init__(self, dtype=None, coordinator_address=None, num_processes=None, process_id=None):
        from .distributed import initialize
        initialize(coordinator_address, num_processes, process_id)
        import jax
        from . import jax_step
        self.jax = jax
        self.backend = get_backend("jax")
        self.steps = jax_step
        platform = jax.devices()[0].platform
        self.compute_dtype = dtype or ("float32" if platform == "cpu" else "bfloat16")
        self.process_index, self.process_count = jax.process_index(), jax.process_count()
        self.device_count = jax.device_count()
        self.is_main = self.process_index == 0
        self.mesh = jax_step.make_mesh()
        self._data_sharding = jax_step.batch_sharding(self.mesh)
        self._replicated = jax_step.replicated(self.mesh)
        self._normalizers = {}
        self.description = (f"jax {jax.__version__} on {self.device_count} {platform} device(s) "
                            f"({jax.devices()[0].device_kind}), {self.process_count} process(es), "
                            f"compute {self.compute_dtype}")

    def put_batch(self, batch, shape, normalization):
        import jax.numpy as jnp
        n = shape[0]
        # uint8 crosses to the device (a quarter of float32's bytes) and is normalised there.
        images = jnp.frombuffer(batch.images, dtype=jnp.uint8).reshape(shape)
        labels = jnp.frombuffer(bytes(batch.labels), dtype=jnp.int32)
        valid = (jnp.arange(n) < batch.valid).astype(jnp.float32)
        put = self.jax.make_array_from_process_local_data
        images = self._normalizer(normalization)(put(self._data_sharding, images))
        return images, put(self._data_sharding, labels), put(self._data_sharding, valid)

    def _normalizer(self, normalization):
        """A jitted uint8 -> float32 (pixel * scale + offset per channel), one per Normalization."""
        if normalization not in self._normalizers:
            import jax.numpy as jnp
            scale = jnp.asarray(normalization.scale, jnp.float32)
            offset = jnp.asarray(normalization.offset, jnp.float32)
            self._normalizers[normalization] = self.jax.jit(lambda x: x.astype(jnp.float32) * scale + offset)
        return self._normalizers[normalization]

    def put_state(self, state):
        return self.jax.device_put(state, self._replicated)

    def step_key(self, seed, step):
        return self.jax.random.key(_step_seed(seed, step))

    def fetch(self, values):
        return {k: float(self.local(v)) for k, v in values.items()}

    def local(self, array):
        """This process's replica of a replicated array (all of it on a single host)."""
        if getattr(array, "is_fully_addressable", True):
            return array
        return array.addressable_data(0)

    def flatten(self, state):
        tree = self.jax.tree_util
        out = {}
        for group in ("params", "buffers"):
            out.update({f"{group}/{n}": self.local(a) for n, a in state[group].items()})
        for path, leaf in tree.tree_flatten_with_path(state["opt_state"])[0]:
            out["opt/" + tree.keystr(path)] = self.local(leaf)
        if "ema" in state:
            for group in ("params", "buffers"):
                out.update({f"ema/{group}/{n}": self.local(a) for n, a in state["ema"][group].items()})
        return out

    def unflatten(self, template, tensors):
        tree = self.jax.tree_util

        def opt(opt_state):
            leaves, treedef = tree.tree_flatten_with_path(opt_state)
            values = []
            for path, leaf in leaves:
                value = tensors[f"opt/{tree.keystr(path)}"]
                values.append(value.astype(leaf.dtype).reshape(leaf.shape))
            return treedef.unflatten(values)
        return self.put_state(_unflatten_dicts(template, tensors, opt))


def _unflatten_dicts(template, tensors, opt):
    missing = [k for k in _expected_names(template) if k not in tensors]
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensors of this run's state (e.g. {missing[0]}): "
                         "it was written by another variant, model size, optimizer or --ema-decay setting")
    state = dict(params={n: tensors[f"params/{n}"] for n in template["params"]},
                 buffers={n: tensors[f"buffers/{n}"] for n in template["buffers"]},
                 opt_state=opt(template["opt_state"]))
    if "ema" in template:
        state["ema"] = {g: {n: tensors[f"ema/{g}/{n}"] for n in template["ema"][g]} for g in ("params", "buffers")}
    return state


def _expected_names(template):
    names = [f"{g}/{n}" for g in ("params", "buffers") for n in template[g]]
    if "ema" in template:
        names += [f"ema/{g}/{n}" for g in ("params", "buffers") for n in template["ema"][g]]
    return names


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


def is_finite(value):
    return not (math.isnan(value) or math.isinf(value))
