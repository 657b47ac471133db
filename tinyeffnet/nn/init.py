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


def initialize(model, scheme="xavier", seed=0):
    """Fill every layer's parameters, one key per layer in a fixed (named) order."""
    _check(scheme)
    layers = [m for _, m in model.named_modules() if hasattr(m, "reset_parameters")]
    backend = model.parameters()[0].backend
    keys = backend.split_key(backend.key(seed), len(layers))
    for layer, key in zip(layers, keys):
        layer.reset_parameters(scheme, key)
    return model
