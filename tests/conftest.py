import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HAVE_JAX = importlib.util.find_spec("jax") is not None

if HAVE_JAX:
    import jax

    # Parity and oracle tests compare in float64; the JAX backend still defaults to float32.
    jax.config.update("jax_enable_x64", True)

# Backends that compute values: the contract suite runs against each.
COMPUTING_BACKENDS = ["python"] + (["jax"] if HAVE_JAX else [])


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CI") and not HAVE_JAX:
        raise pytest.UsageError("CI must install jax (pip install -e '.[test]'): the JAX tests would be skipped")


@pytest.fixture(params=COMPUTING_BACKENDS)
def backend(request):
    from backends import get_backend
    if request.param == "jax":
        try:
            return get_backend("jax")
        except (ImportError, ValueError) as e:
            pytest.fail(f"jax is installed but the jax backend is unavailable: {e}")
    return get_backend(request.param)
