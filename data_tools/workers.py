"""Worker processes that build batches straight into shared memory.

Sending a batch back through a pipe (pickle, pipe writes and reads, unpickle) cost the
main process more CPU time per 224x224 image than building the image. So
each in-flight batch gets one of `slots` shared-memory blocks: the worker writes the
pixels there, only labels and counts travel by pipe, and the main process copies each
batch out once into the bytes it hands to the trainer.

Nothing outlives the trainer, even under kill -9:
- the blocks are files in /dev/shm that are unlinked as soon as every worker has mapped
  them, so no name is left behind whatever happens next (a block lives while a process
  maps it); blocks of a process that died before that point are removed by the next pool;
- workers talk to the main process over plain pipes (no named semaphores), and exit when
  the main process is gone: a closed pipe ends their wait for work, and a watchdog thread
  notices a new parent process while they are busy.

Processes are spawned, not forked: forking a process that already runs JAX threads can
deadlock. Workers ignore Ctrl-C and SIGTERM: a terminal's Ctrl-C, a VM shutdown, systemd and
`kill -TERM -- -PGID` signal every process of the group, and the main process may still need
its workers to finish what a stop needs (the epoch's evaluation, say) before it shuts them
down. They are born with both signals blocked, so a signal during their start-up waits for
the ignoring to be in place instead of killing them.
"""
import mmap
import multiprocessing
import os
import re
import signal
import tempfile
import threading
import time
import uuid
import weakref

from .batch import build_batch

_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
_BLOCK_RE = re.compile(r"^tinyeffnet-(\d+)-[0-9a-f]+-\d+$")


# --------------------------------------------------------------------- in the worker
def _exit_when_orphaned(parent_pid):
    while True:
        if os.getppid() != parent_pid:
            os._exit(0)
        time.sleep(0.5)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _worker_main(conn, dataset, block_paths, block_bytes, parent_pid):
    for s in _STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by the parent while it started us
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    blocks = [_map(path, block_bytes) for path in block_paths]
    conn.send("mapped")
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the main process is gone
            return
        if job is None:
            return
        slot, seed, epoch, indices, batch_size = job
        try:
            built = build_batch(dataset, seed, epoch, indices, batch_size)
            offset = 0
            for part in built.parts:
                blocks[slot][offset:offset + len(part)] = part
                offset += len(part)
            reply = ("ok", built._replace(parts=offset))  # the pixels stay in the block
        except Exception as e:  # noqa: BLE001 - handed to the main process, which raises it
            reply = ("error", e)
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _map(path, size):
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


# --------------------------------------------------------------------- in the main process
def pid_alive(pid):
    """Whether process `pid` exists (tinyeffnet's temp-file cleanup asks too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphans(directory, pattern):
    """Delete the files in `directory` whose names match `pattern` (a compiled regex whose
    first group is the pid of the process that made the file) where that process is gone."""
    for name in os.listdir(directory):
        m = pattern.match(name)
        if m and not pid_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def remove_stale_blocks():
    """Delete the blocks of processes that died before unlinking them."""
    remove_orphans(_SHM_DIR, _BLOCK_RE)


def _create_block(size):
    path = os.path.join(_SHM_DIR, f"tinyeffnet-{os.getpid()}-{uuid.uuid4().hex[:8]}-{size}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        return path, mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _unlink_all(paths):
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _shut_down(processes, connections, blocks, paths):
    for conn in connections:
        try:
            conn.send(None)
        except OSError:
            pass
    for p in processes:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
    for conn in connections:
        conn.close()
    _unlink_all(paths)
    for block in blocks:
        block.close()


class WorkerPool:
    """`workers` processes holding `dataset`, with `slots` shared blocks of `slot_bytes`."""

    def __init__(self, dataset, workers, slots, slot_bytes):
        remove_stale_blocks()
        context = multiprocessing.get_context("spawn")
        self._paths, self._blocks, self._processes, self._connections = [], [], [], []
        self._finalizer = weakref.finalize(self, _shut_down, self._processes, self._connections, self._blocks,
                                           self._paths)
        for _ in range(slots):
            path, block = _create_block(max(slot_bytes, 1))
            self._paths.append(path)
            self._blocks.append(block)
        # Blocked here, the stop signals stay blocked in the children until they ignore them; a
        # signal to this process meanwhile waits, and is delivered when the mask is restored.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            for _ in range(workers):
                ours, theirs = context.Pipe()
                process = context.Process(target=_worker_main, daemon=True,
                                          args=(theirs, dataset, self._paths, max(slot_bytes, 1), os.getpid()))
                process.start()
                theirs.close()
                self._processes.append(process)
                self._connections.append(ours)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for conn in self._connections:
            self._receive(conn)  # "mapped"
        _unlink_all(self._paths)  # every worker maps them: the names can go
        self._free = list(range(slots))
        self._next_worker = 0

    def _receive(self, conn):
        try:
            return conn.recv()
        except (EOFError, OSError):
            self.close()
            raise RuntimeError("a data worker process died (see its error above, or killed by the OS: "
                               "out of memory?): rerun with fewer workers or workers=0") from None

    def submit(self, seed, epoch, indices, batch_size):
        """Start building a batch; the returned job goes to result() or abandon()."""
        if not self._free:
            raise RuntimeError("all shared-memory slots are in use: iterate one batches() generator "
                               "of a Loader at a time (close the other first)")
        slot = self._free.pop()
        worker = self._next_worker
        self._next_worker = (worker + 1) % len(self._connections)
        self._connections[worker].send((slot, seed, epoch, list(indices), batch_size))
        return worker, slot

    def result(self, job):
        """(uint8 image bytes, BuiltBatch without parts) of a submitted job, in submission order."""
        worker, slot = job
        try:
            status, value = self._receive(self._connections[worker])
            if status == "error":
                raise value
            return bytes(self._blocks[slot][:value.parts]), value
        finally:
            self._free.append(slot)

    def abandon(self, jobs):
        """Drop jobs nobody will read; each worker finishes its job first (it writes to its block)."""
        for worker, slot in jobs:
            if not self.closed:
                try:
                    self._receive(self._connections[worker])
                except RuntimeError:
                    pass
            self._free.append(slot)

    @property
    def closed(self):
        return not self._finalizer.alive

    def close(self):
        self._finalizer()
