"""Stopping a run cleanly on SIGTERM or SIGINT, and every process of it at the same step.

Preemptible machines and cluster schedulers send SIGTERM (then SIGKILL some 30 s later);
Ctrl-C is SIGINT. While the training loop runs, `StopRequest` catches both: the first one
asks the loop to stop after the step in flight (it then flushes the metrics, checkpoints
that step and raises `Stopped`); later ones are noted and ignored, so a second Ctrl-C
cannot break the checkpoint being written. The command exits 128 + the signal's number
(143 for SIGTERM, 130 for SIGINT) after one line naming the step, the checkpoint and the
`--resume` command.

Several processes (multi-host) must stop at the same step, and the signal may reach only
one of them. `StopAgreement.now()` is called at the same points by every process: each
call all-reduces (max) this process's signal number into one small array on the devices,
and reads the reduction issued by the call before, which the devices finished during the
step in between, so the host never waits for it. Every process reads the same value at the
same call and stops there: one step after the signal at most. (JAX's own
`reached_preemption_sync_point` reacts to SIGTERM only, not to Ctrl-C.) One process alone
needs no agreement: it stops after the step in flight.
"""
import os
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def exit_status(signum):
    """The shell's status for a process ended by `signum`: 143 for SIGTERM, 130 for SIGINT."""
    return 128 + int(signum)


class Stopped(Exception):
    """The run stopped on a signal after writing the checkpoint of `step` to `checkpoint`."""

    def __init__(self, signum, step, checkpoint, workdir):
        self.signum, self.step, self.checkpoint, self.workdir = signum, step, checkpoint, workdir
        self.status = exit_status(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}: checkpoint {checkpoint}; "
                         f"continue with: python -m tinyeffnet.train --resume --workdir {workdir} (and the run's "
                         "other flags)")


class StopRequest:
    """A context that catches SIGTERM and SIGINT (in the main thread; elsewhere it does nothing):
    `signum` is the first one caught, or None."""

    def __init__(self):
        self.signum, self._previous = None, {}

    def __enter__(self):
        try:
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._caught)
        except ValueError:  # not the main thread: signals are not ours to catch
            self.__exit__()
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _caught(self, signum, frame):
        # os.write, not print: a handler may interrupt a print to the same stream.
        if self.signum is None:
            self.signum = signum
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after the step in flight, then writing a "
                        "checkpoint\n".encode())
        else:
            os.write(2, f"\n{signal.Signals(signum).name} again: still writing the checkpoint, wait (a kill -9 "
                        "now loses nothing either: every file is written atomically)\n".encode())


class StopAgreement:
    """`now()` -> the signal number every process agrees to stop on at this call, or 0."""

    def __init__(self, runtime, request):
        self.request, self.runtime = request, runtime
        self.pending = None
        self._reduce = None
        if runtime.process_count > 1:
            import jax
            import jax.numpy as jnp

            from .distributed import batch_sharding, replicated
            self._jax, self._jnp = jax, jnp
            self._sharding = batch_sharding(runtime.mesh)
            self._local_devices = sum(d.process_index == jax.process_index() for d in runtime.mesh.devices.flat)
            self._reduce = jax.jit(jnp.max, out_shardings=replicated(runtime.mesh))

    def now(self):
        local = int(self.request.signum or 0)
        if self._reduce is None:
            return local
        flags = self._jnp.full((self._local_devices,), local, self._jnp.int32)
        issued = self._reduce(self._jax.make_array_from_process_local_data(self._sharding, flags))
        previous, self.pending = self.pending, issued
        return 0 if previous is None else int(self.runtime.to_host(previous))
