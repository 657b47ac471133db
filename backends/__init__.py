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
_INSTANCES = {}  # name -> the default instance; (name, resolved options) -> an instance
# What `get_backend(None)` means: a tensor or layer made without backend= lives here. Ops
# refuse to mix backends (tinyeffnet.engine.autograd), so a forgotten backend= is an error
# at the first op, never a silent copy on the wrong backend.
DEFAULT_BACKEND = "python"


def register_backend(name, target):
    """Register a backend class (or "module:Class" path) under `name`."""
    _REGISTRY[name] = target
    for key in [k for k in _INSTANCES if k == name or (isinstance(k, tuple) and k[0] == name)]:
        del _INSTANCES[key]


def available_backends():
    return sorted(_REGISTRY)


def backend_class(name):
    """The class registered as `name`, imported but not instantiated: what it states
    (`dtypes`, `compute_dtypes`) can be read before any device is touched."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}: choose one of {', '.join(available_backends())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        try:
            target = getattr(importlib.import_module(module), cls)
        except ImportError as e:
            raise ImportError(f"backend {name!r} needs a package that is not installed ({e.name}); "
                              f"install it with: pip install -e '.[{name}]'") from None
    return target


def get_backend(name=None, **options):
    """The backend registered as `name` (None: DEFAULT_BACKEND), made with `options`
    (e.g. `get_backend("jax", depthwise="conv")`). One shared instance per name and set of
    options, defaults filled in (the class's `resolve_options`): an instance's choices never
    change, so a different choice is a different instance."""
    if isinstance(name, Backend):
        return name
    if name is None:
        name = DEFAULT_BACKEND
    if not options and name in _INSTANCES:
        return _INSTANCES[name]
    cls = backend_class(name)
    resolve = getattr(cls, "resolve_options", None)
    resolved = resolve(**options) if resolve else options
    key = (name, tuple(sorted(resolved.items())))
    if key not in _INSTANCES:
        _INSTANCES[key] = cls(**resolved)
    if not options:
        _INSTANCES[name] = _INSTANCES[key]
    return _INSTANCES[key]


__all__ = ["Backend", "ContractError", "PRIMITIVES", "DEFAULT_BACKEND", "get_backend", "register_backend",
           "available_backends", "backend_class"]
