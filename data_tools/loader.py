"""Batches for the trainer: deterministic, sharded across hosts, resumable, optionally parallel.

A batch is Batch(images, labels, valid):
- images: bytes, uint8 RGB, NHWC row-major, shape (batch_size, size, size, 3), not yet
  normalised: the runtime applies the dataset's `normalization` on the device
  (data_tools/pixels.py says why);
- labels: array('i') of batch_size class indices;
- valid: how many examples at the front are real. Training batches are always full (the
  epoch's last partial global batch is dropped). The last eval batch is padded up to
  batch_size by repeating its real examples, so every eval image is seen exactly once.

Determinism: the epoch's order is a function of (seed, epoch), and example `index` is
augmented by random.Random(stable_seed(seed, epoch, index, 0)); neither depends on the
worker count, on which worker builds which batch, or on where iteration started, so
`start_step` resumes with exactly the batches an uninterrupted run would have produced.

Host sharding: with process_count hosts, global batch `step` covers positions
[step * G, (step + 1) * G) of the epoch order, G = batch_size * process_count, and host p
gets the contiguous slice [p * batch_size, (p + 1) * batch_size) of it.

Unreadable files never stop an epoch: training substitutes the next example, eval leaves
the file out and lowers `valid` (data_tools/batch.py says why). Each bad file is logged
once (logger "data_tools.loader") and kept in Loader.unreadable_files.
"""
import collections
import logging
import random
from array import array
from typing import NamedTuple

from .batch import build_batch, check_readable, stable_seed
from .errors import DataError
from .workers import WorkerPool

log = logging.getLogger(__name__)
PROBED_EXAMPLES = 8  # how many examples check_readable decodes: enough to tell a damaged dataset


class Batch(NamedTuple):
    images: bytes
    labels: array
    valid: int


def epoch_order(num_examples, seed, epoch, shuffle):
    """Dataset indices in the order epoch `epoch` visits them."""
    order = list(range(num_examples))
    if shuffle:
        random.Random(stable_seed("order", seed, epoch)).shuffle(order)
    return order


class Loader:
    """Batches of one dataset split (from data_tools.open_dataset) for one host.

    workers=0 builds batches in this process; workers=N uses N worker processes
    (data_tools/workers.py), keeping at most workers * prefetch batches in flight. With
    workers, use the Loader as a context manager or call close() when done, and guard the
    main script with `if __name__ == "__main__":` (spawned workers import it).
    """

    def __init__(self, dataset, batch_size, *, seed=0, workers=0, prefetch=2, process_index=0, process_count=1,
                 log_unreadable=True):
        for name, value, low in (("batch_size", batch_size, 1), ("workers", workers, 0),
                                 ("prefetch", prefetch, 1), ("process_count", process_count, 1)):
            if not isinstance(value, int) or value < low:
                raise DataError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(process_index, int) or not 0 <= process_index < process_count:
            raise DataError(f"process_index must be in 0..{process_count - 1}, got {process_index!r}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.workers = workers
        self.prefetch = prefetch
        self.process_index = process_index
        self.process_count = process_count
        self.global_batch_size = batch_size * process_count
        if self.training and len(dataset) < self.global_batch_size:
            raise DataError(f"{dataset.description} has {len(dataset)} examples, fewer than one global batch of "
                            f"{self.global_batch_size}: lower the batch size")
        self.unreadable_files = {}
        self.log_unreadable = log_unreadable  # False: the caller reports unreadable_files itself (predict)
        self._pool = None

    @property
    def training(self):
        return self.dataset.training

    @property
    def num_examples(self):
        return len(self.dataset)

    @property
    def class_names(self):
        return self.dataset.class_names

    @property
    def num_classes(self):
        return self.dataset.num_classes

    @property
    def image_size(self):
        return self.dataset.image_size

    @property
    def normalization(self):
        """The dataset's per-channel pixel mean and std (data_tools.pixels.Normalization)."""
        return self.dataset.normalization

    @property
    def batch_shape(self):
        return (self.batch_size, self.image_size, self.image_size, 3)

    @property
    def steps_per_epoch(self):
        if self.training:
            return self.num_examples // self.global_batch_size
        return -(-self.num_examples // self.global_batch_size)

    def __len__(self):
        return self.steps_per_epoch

    def batches(self, epoch, start_step=0):
        """Generator of this host's Batch for each step of `epoch`, from `start_step` on."""
        steps = self.steps_per_epoch
        if not isinstance(start_step, int) or not 0 <= start_step <= steps:
            raise DataError(f"start_step must be in 0..{steps} (steps per epoch), got {start_step!r}")
        return self._generate(epoch, start_step, steps)

    def _generate(self, epoch, start_step, steps):
        order = epoch_order(self.num_examples, self.seed, epoch, self.training)
        shards = (self._shard(order, step) for step in range(start_step, steps))
        if self.workers == 0:
            for indices in shards:
                built = build_batch(self.dataset, self.seed, epoch, indices, self.batch_size)
                yield self._accept(b"".join(built.parts), built)
            return
        pool = self._running_pool()
        pending = collections.deque()
        try:
            for indices in shards:
                pending.append(pool.submit(self.seed, epoch, indices, self.batch_size))
                if len(pending) >= self.workers * self.prefetch:
                    yield self._accept(*pool.result(pending.popleft()))
            while pending:
                yield self._accept(*pool.result(pending.popleft()))
        finally:
            # Reached on generator close, Ctrl-C and errors: drop work nobody will read.
            pool.abandon(pending)

    def check_readable(self):
        """Decode the first examples of this host's first batch here, in this process: a
        DataError now for data no batch could be built from (data_tools.batch.check_readable),
        before a run writes anything."""
        indices = self._shard(epoch_order(self.num_examples, self.seed, 0, self.training), 0)
        check_readable(self.dataset, self.seed, 0, indices[:PROBED_EXAMPLES])

    def _shard(self, order, step):
        start = step * self.global_batch_size + self.process_index * self.batch_size
        return order[start:start + self.batch_size]

    def _running_pool(self):
        if self._pool is None or self._pool.closed:
            slot_bytes = self.batch_size * self.image_size * self.image_size * 3
            self._pool = WorkerPool(self.dataset, self.workers, self.workers * self.prefetch, slot_bytes)
        return self._pool

    def _accept(self, images, built):
        for source, reason in built.unreadable:
            if source not in self.unreadable_files:
                self.unreadable_files[source] = reason
                action = "replaced by another example" if self.training else "left out of its eval batch"
                if self.log_unreadable:
                    log.warning("skipping unreadable image %s (%s); %s", source, reason, action)
        return Batch(images, array("i", built.labels), built.valid)

    @property
    def unreadable_count(self):
        return len(self.unreadable_files)

    def close(self):
        """Stop the worker processes (a later batches() call starts new ones)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
