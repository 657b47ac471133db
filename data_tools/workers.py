"""Worker processes that build batches straight into shared memory.

Sending a batch back through a pipe (pickle, pipe writes and reads, unpickle) cost the
main process ~2 ms of CPU per 224x224 float32 image, more than building the image. So
each in-flight batch gets one of `slots` shared-memory blocks: the worker writes the
pixels there, only labels and counts travel by pipe, and the main process copies each
batch out once into the bytes it hands to the trainer.

Processes are spawned, not forked: forking a process that already runs JAX threads can
deadlock. Workers ignore Ctrl-C; the main process gets it and shuts them down.
"""
import multiprocessing
import signal
import weakref
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import shared_memory

from .batch import build_batch

_dataset = None
_attached = {}  # slot name -> SharedMemory, mapped once per worker


def _start_worker(dataset):
    global _dataset
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _dataset = dataset


def _build_into_slot(slot_name, seed, epoch, indices, batch_size):
    built = build_batch(_dataset, seed, epoch, indices, batch_size)
    if slot_name not in _attached:
        _attached[slot_name] = shared_memory.SharedMemory(name=slot_name)
    buffer = _attached[slot_name].buf
    offset = 0
    for part in built.parts:
        buffer[offset:offset + len(part)] = part
        offset += len(part)
    return built._replace(parts=offset)  # the pixels stay in the slot; send their byte count


def _shut_down(executor, blocks):
    executor.shutdown(wait=True, cancel_futures=True)
    for block in blocks:
        block.close()
        block.unlink()


class WorkerPool:
    """`workers` processes holding `dataset`, with `slots` shared blocks of `slot_bytes`."""

    def __init__(self, dataset, workers, slots, slot_bytes):
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_start_worker, initargs=(dataset,))
        self._blocks = [shared_memory.SharedMemory(create=True, size=slot_bytes) for _ in range(slots)]
        self._free = list(range(slots))
        self._finalizer = weakref.finalize(self, _shut_down, self._executor, self._blocks)

    def submit(self, seed, epoch, indices, batch_size):
        """Start building a batch; the returned job goes to result() or abandon()."""
        if not self._free:
            raise RuntimeError("all shared-memory slots are in use: iterate one batches() generator "
                               "of a Loader at a time (close the other first)")
        slot = self._free.pop()
        future = self._executor.submit(_build_into_slot, self._blocks[slot].name, seed, epoch, indices, batch_size)
        return future, slot

    def result(self, job):
        """(uint8 image bytes, BuiltBatch without parts) of a submitted job."""
        future, slot = job
        try:
            built = future.result()
            with self._blocks[slot].buf[:built.parts] as pixels:
                images = bytes(pixels)
            return images, built
        except BrokenProcessPool:
            self.close()
            raise RuntimeError("a data worker process died (see its error above, or killed by the OS: "
                               "out of memory?): rerun with fewer workers or workers=0") from None
        finally:
            self._free.append(slot)

    def abandon(self, jobs):
        """Drop jobs nobody will read; a job already running finishes first (it writes to its slot)."""
        for future, slot in jobs:
            if not future.cancel():
                try:
                    future.exception()
                except BaseException:  # noqa: BLE001 - the job is dropped; its outcome does not matter
                    pass
            self._free.append(slot)

    @property
    def closed(self):
        return not self._finalizer.alive

    def close(self):
        self._finalizer()
