"""Stopping a run cleanly on SIGTERM or SIGINT, and every process of it at the same step.

Preemptible machines and cluster schedulers send SIGTERM (then SIGKILL some 30 s later);
Ctrl-C is SIGINT. Once the first step of a process has been compiled and issued, the
training loop arms `StopRequest`, which catches both: the first one asks the loop to stop
after the step in flight (it then flushes the metrics, checkpoints that step and raises
`Stopped`); later ones are noted and ignored, so a second Ctrl-C cannot break the checkpoint
being written. A signal after the last step lets the run finish its summary. The command
exits 128 + the signal's number (143 for SIGTERM, 130 for SIGINT) after one line naming the
step, the checkpoint and the `--resume` command.

Before it is armed, SIGTERM keeps its default action (the process ends at once) and SIGINT
raises KeyboardInterrupt: until a step of this process has run there is nothing a
checkpoint would save (a fresh run starts from its seed, a resumed one from its checkpoint),
and a stop must not wait for a compilation that can outlast a scheduler's grace period.

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
    """The run stopped on a signal after writing the checkpoint of `step` to `checkpoint`
    (None: the signal came after the last step, and the run finished all the same)."""

    def __init__(self, signum, step, checkpoint, workdir):
        self.signum, self.step, self.checkpoint, self.workdir = signum, step, checkpoint, workdir
        self.status = exit_status(signum)
        name = signal.Signals(signum).name
        if checkpoint is None:
            message = (f"stopped by {name} after the last step ({step}): the run is complete, its summary written "
                       f"to {os.path.join(workdir, 'summary.json')}")
        else:
            message = (f"stopped by {name} after step {step}: checkpoint {checkpoint}; continue with: python -m "
                       f"tinyeffnet.train --resume --workdir {workdir} (and the run's other flags)")
        super().__init__(message)


class StopRequest:
    """A context that, once armed, catches SIGTERM and SIGINT (in the main thread; elsewhere
    it does nothing): `signum` is the first one caught, or None."""

    def __init__(self):
        self.signum, self._previous = None, {}

    def __enter__(self):
        return self

    def arm(self):
        """Catch the stop signals from now on (once; again does nothing)."""
        if self._previous:
            return
        try:
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._caught)
        except ValueError:  # not the main thread: signals are not ours to catch
            self.__exit__()

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _caught(self, signum, frame):
        # os.write, not print: a handler may interrupt a print to the same stream.
        if self.signum is None:
            self.signum = signum
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after the step in flight, then writing its "
                        "checkpoint (after the last step: once the summary is written)\n".encode())
        else:
            os.write(2, f"\n{signal.Signals(signum).name} again: still writing the checkpoint, wait (a kill -9 "
                        "now loses nothing either: every file is written atomically)\n".encode())


class StopAgreement:
    """`now()` -> the signal number every process agrees to stop on at this call, or 0."""

    def __init__(self, runtime, request):
        self.request, self.runtime = request, runtime
        self.pending = None

    def arm(self):
        self.request.arm()

    def now(self):
        local = int(self.request.signum or 0)
        if self.runtime.process_count == 1:
            return local
        issued = self.runtime.max_over_processes(local)
        previous, self.pending = self.pending, issued
        return 0 if previous is None else int(self.runtime.to_host(previous))
