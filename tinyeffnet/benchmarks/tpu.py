"""TPU slices without the hardware: a topology's devices, for compiling ahead of time.

libtpu (`pip install -e '.[jax,tpu]'`) describes a TPU slice by name ("v5e:2x2": four v5e
chips in a 2x2 grid) on any machine: `jax.experimental.topologies` gives its devices, the
training runtime's data-parallel mesh goes over them, and `jit(...).lower(...).compile()`
yields the program that slice would run, with XLA's per-chip memory and cost analyses.
Nothing runs: these are the compiler's figures, not measured times.
"""
import importlib.util
import math
import os
import re

EXAMPLES = "v4:2x2x1, v4:4x4x2, v5e:2x2, v5e:4x4, v5p:2x2x1, v6e:2x2"
INSTALL = "pip install -e '.[jax,tpu]'"
# Chips whose two TensorCores JAX drives as one device ("megacore"), as on the real slice;
# libtpu's default description of them has one device per core.
_MEGACORE = ("v4", "v5p")
# High-bandwidth memory per chip, by the device_kind libtpu reports.
HBM_BYTES = {"TPU v4": 32 * 2 ** 30, "TPU v5 lite": 16 * 2 ** 30, "TPU v5": 95 * 2 ** 30,
             "TPU v6 lite": 32 * 2 ** 30}
GENERATION = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5": "v5p", "TPU v6 lite": "v6e"}


class TopologyError(ValueError):
    """A topology that cannot be had here; the message is one line naming the fix."""


def topology_devices(name):
    """The devices of TPU topology `name` (e.g. "v5e:2x2"), one per chip."""
    if importlib.util.find_spec("libtpu") is None:
        raise TopologyError(f"--topology needs libtpu, which is not installed: {INSTALL}")
    # With libtpu installed, every jax process on the machine takes libtpu's lock file at
    # start (and falls back to the CPU); compiling needs no TPU, so it may share libtpu.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    # Off a TPU VM libtpu warns that it cannot tell this host's TPU type and workers: there
    # are none (the topology name says what to compile for), and set values quiet it.
    for var, value in (("TPU_WORKER_HOSTNAMES", "localhost"), ("TPU_ACCELERATOR_TYPE", "v5litepod-4")):
        os.environ.setdefault(var, value)
    from jax.experimental import topologies
    options = dict(chip_config_name="megacore") if name.split(":")[0].lower() in _MEGACORE else {}
    try:
        return list(topologies.get_topology_desc(name, platform="tpu", **options).devices)
    except Exception as e:  # libtpu's own error type (JaxRuntimeError) carries the reason
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TopologyError(f"--topology {name!r} is not a TPU topology libtpu accepts ({reason[:160]}); "
                            f"use generation:chips per axis, e.g. {EXAMPLES}") from None


def abstract(tree, sharding):
    """Shape, dtype and `sharding` of every array in `tree`: what lower() needs, no data."""
    import jax
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


_ALL_REDUCE = re.compile(r"= (.*?) all-reduce(?:-start)?\(")
_ARRAY = re.compile(r"\b[a-z]+\d*\[([\d,]*)\]")


def all_reduces(hlo_text):
    """(how many all-reduce ops, how many values they sum over the devices) in a compiled
    program's HLO text: in a data-parallel step, every gradient and BN's batch statistics."""
    count = values = 0
    for match in _ALL_REDUCE.finditer(hlo_text):
        count += 1
        for dims in _ARRAY.findall(match.group(1)):
            values += math.prod(int(d) for d in dims.split(",") if d)
    return count, values
