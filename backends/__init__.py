"""One registry of array backends: `get_backend("python")`, `get_backend("jax")`.

A backend is a `backends.contract.Backend`; registering one makes the contract test
suite (tests/test_backend_contract.py) run against it.
"""
import importlib

from .contract import Backend, ContractError, PRIMITIVES

# name -> "module:Class", imported on first use so that `python` never needs jax installed
_REGISTRY = {
    "python": "backends.python_backend:PythonBackend",
    "jax": "backends.jax_backend:JaxBackend",
    "meta": "backends.meta_backend:MetaBackend",
}
_INSTANCES = {}
# What `get_backend(None)` means: a tensor or layer made without backend= lives here. Ops
# refuse to mix backends (tinyeffnet.engine.autograd), so a forgotten backend= is an error
# at the first op, never a silent copy on the wrong backend.
DEFAULT_BACKEND = "python"


def register_backend(name, target):
    """Register a backend class (or "module:Class" path) under `name`."""
    _REGISTRY[name] = target
    _INSTANCES.pop(name, None)


def available_backends():
    return sorted(_REGISTRY)


def get_backend(name=None, **options):
    """The backend registered as `name` (one shared instance unless options are given);
    None is DEFAULT_BACKEND."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = DEFAULT_BACKEND
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(available_backends())}")
    if name in _INSTANCES and not options:
        return _INSTANCES[name]
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), cls)
        except ImportError as e:
            raise ImportError(f"backend {name!r} needs a package that is not installed ({e.name}); "
                              f"install it with: pip install -e '.[{name}]'") from None
    backend = target(**options)
    if not options:
        _INSTANCES[name] = backend
    return backend


__all__ = ["Backend", "ContractError", "PRIMITIVES", "DEFAULT_BACKEND", "get_backend", "register_backend",
           "available_backends"]
