"""Multi-host start-up: every process runs the same command; JAX's runtime connects them.

- Flags: --coordinator-address HOST:PORT --num-processes N --process-id I (GPU hosts).
- Environment: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, or a Cloud
  TPU pod slice (TPU_WORKER_HOSTNAMES lists several workers), where jax finds them itself.
Nothing is done for a single process. After this, jax.process_index() says which shard of
every global batch this process feeds, and only process 0 logs and writes checkpoints.

Data parallelism: `make_mesh()` puts every device on one 'batch' axis; images and labels
are sharded along it (`batch_sharding`) and the training state is replicated
(`replicated`). Batch norm sums over the global batch (XLA inserts the all-reduce), so
the device count changes no formula, only the order in which floating-point sums are added.
"""
import os

_STARTED = []


def _wants_multi_host(coordinator_address, num_processes):
    if coordinator_address or (num_processes or 1) > 1:
        return True
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")


def initialize(coordinator_address=None, num_processes=None, process_id=None):
    """Connect this process to the others (once per process; later calls do nothing)."""
    if _STARTED or not _wants_multi_host(coordinator_address, num_processes):
        return bool(_STARTED)
    import jax

    from backends.jax_backend import prepare_processes
    if coordinator_address and (num_processes is None or process_id is None):
        raise ValueError("--coordinator-address needs --num-processes and --process-id as well")
    kwargs = {}
    if coordinator_address:
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id)
    prepare_processes()
    jax.distributed.initialize(**kwargs)
    _STARTED.append(True)
    return True


BATCH_AXIS = "batch"


def make_mesh(devices=None):
    """Every device (of every process) on one mesh axis named 'batch'."""
    import jax
    from jax.sharding import Mesh
    return Mesh(jax.devices() if devices is None else devices, (BATCH_AXIS,))


def batch_sharding(mesh):
    """Split axis 0 (the batch) across the mesh."""
    from jax.sharding import NamedSharding, PartitionSpec
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh):
    """A full copy on every device."""
    from jax.sharding import NamedSharding, PartitionSpec
    return NamedSharding(mesh, PartitionSpec())
