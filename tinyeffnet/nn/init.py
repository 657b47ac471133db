"""Initial weights. Two schemes, both with explicit keys:

- `xavier` (the paper's choice): Glorot uniform, limit sqrt(6 / (fan_in + fan_out)).
- `tf` (the official EfficientNet code): conv normal(0, sqrt(2 / fan_out)) with
  fan_out = k*k*out_channels (k*k for depthwise); dense uniform(+-1 / sqrt(out_features)).
Biases start at 0, batch-norm gamma at 1 and beta at 0.
"""
import math

SCHEMES = ("xavier", "tf")


def _check(scheme):
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")


def _scaled_normal(b, key, shape, std, dtype):
    return b.mul(b.normal(key, shape, dtype), b.full(shape, std, dtype))


def conv_kernel(scheme, key, weight, fan_in, fan_out):
    _check(scheme)
    b, shape, dtype = weight.backend, weight.shape, weight.dtype
    if scheme == "xavier":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return b.uniform(key, shape, -limit, limit, dtype)
    return _scaled_normal(b, key, shape, math.sqrt(2.0 / fan_out), dtype)


def dense_kernel(scheme, key, weight):
    _check(scheme)
    b, (fan_in, fan_out), dtype = weight.backend, weight.shape, weight.dtype
    limit = math.sqrt(6.0 / (fan_in + fan_out)) if scheme == "xavier" else 1.0 / math.sqrt(fan_out)
    return b.uniform(key, weight.shape, -limit, limit, dtype)


def initialize(model, scheme="xavier", seed=0, backend=None):
    """Fill every parameter and buffer, one key per layer in a fixed (named) order.

    The values are always drawn by the pure-Python backend's random generator and then
    moved to `backend` (default: where the model's tensors are), so the same seed gives
    the same initial network on every backend, and JAX compiles no program per shape.
    A model built on the shape-only meta backend stays shapes only.
    """
    _check(scheme)
    from backends import get_backend
    tensors = list(model.state_dict().values())
    target = get_backend(backend) if backend is not None else tensors[0].backend
    host = target if target.shapes_only else get_backend("python")
    dtypes = [t.dtype for t in tensors]
    for t in tensors:
        t.backend = host
        t.data = host.full(t.shape, 0.0, host.default_float)
    layers = [m for _, m in model.named_modules() if hasattr(m, "reset_parameters")]
    for layer, key in zip(layers, host.split_key(host.key(seed), len(layers))):
        layer.reset_parameters(scheme, key)
    if target is not host:
        for t, dtype in zip(tensors, dtypes):
            t.data, t.backend = target.from_flat(host.to_flat(t.data), t.shape, dtype), target
    return model
