import importlib.util
import os
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HAVE_JAX = importlib.util.find_spec("jax") is not None

# Test programs run a few steps each, so XLA's compile time dominates: ask for the cheaper
# optimisation level, and share compiled programs between the test processes (the trainer
# tests run the same small configuration many times). Set before jax is imported; child
# processes inherit both.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                               " --xla_llvm_disable_expensive_passes=true").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="tinyeffnet-test-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

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


@pytest.fixture(scope="session")
def tiny_fashion_mnist(tmp_path_factory):
    """`fashion-mnist:DIR` of 12 train and 8 eval images (the embedded data's first ones):
    with batch 4 an epoch is 3 steps, so a run of a few steps crosses epoch boundaries."""
    from data_tools.fashion_mnist import FILES, SIDE, read_split
    from data_tools.idx import write_idx
    from data_tools.datasets import EMBEDDED_SUBSET
    directory = tmp_path_factory.mktemp("tiny-fashion-mnist")
    for split, count in (("train", 12), ("eval", 8)):
        images, labels = read_split(EMBEDDED_SUBSET, split)
        image_name, label_name = FILES[split]
        write_idx(str(directory / image_name), (count, SIDE, SIDE), images[:count * SIDE * SIDE])
        write_idx(str(directory / label_name), (count,), labels[:count])
    return f"fashion-mnist:{directory}"
