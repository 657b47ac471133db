"""One writer per work directory: the claim.

Before it writes anything a run claims its folder: `Claim.take` holds an exclusive `flock`
on DIR/.claim (its pid and host written inside) for as long as the run lives. The OS drops
the lock when the process ends, even on kill -9, so no claim goes stale; `holder` tells
whether someone holds it, without taking it. flock works between processes of one machine
and, where the file system supports it (local disks, NFS v4), between machines sharing the
folder. The ablation worker takes a run's claim and hands it down to the run's process
(`CLAIM_FD_ENV`), so that no other worker takes the run in between.
"""
import fcntl
import os
import socket
import time

from .._files import WriteError, make_dirs
from .config import ConfigError

CLAIM_NAME = ".claim"


def claim_path(workdir):
    return os.path.join(workdir, CLAIM_NAME)


# A claim taken by the process that started this one (the ablation worker hands its run's
# claim down to the run's process, so that no other worker takes the run in between).
CLAIM_FD_ENV = "TINYEFFNET_CLAIM_FD"


def _handed_down(workdir):
    """The claim's file descriptor this process inherited for `workdir`, or None."""
    try:
        fd = int(os.environ.get(CLAIM_FD_ENV, ""))
        mine, theirs = os.fstat(fd), os.stat(claim_path(workdir))
    except (ValueError, OSError):
        return None
    return fd if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino) else None


class WorkdirHeld(ConfigError):
    """The work directory is claimed by a live process."""

    def __init__(self, workdir, who):
        self.who = who
        super().__init__(f"{workdir} is in use: {who} holds its claim ({claim_path(workdir)}) and writes it; "
                         "wait for that run to end, or give another --workdir")


def _who(text):
    fields = dict(zip(*[iter(text.split())] * 2))
    if "pid" not in fields:
        return "a process that is starting"
    return f"pid {fields['pid']} on host {fields.get('host', '?')}"


def holder(workdir):
    """Who holds `workdir`'s claim ('pid P on host H'), or None when nobody does. Reads only."""
    try:
        fd = os.open(claim_path(workdir), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _who(os.pread(fd, 256, 0).decode(errors="replace"))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_if_held(workdir):
    if _handed_down(workdir) is not None:
        return
    who = holder(workdir)
    if who:
        raise WorkdirHeld(workdir, who)


class Claim:
    """The exclusive right to write a work directory, held until `release()` or the process ends.
    A context: leaving it releases the claim, and on a ConfigError (the run was refused
    after claiming) also removes what taking it created."""

    def __init__(self, workdir, fd, created_dir, created_file, previous):
        self.workdir, self.fd = workdir, fd
        self._created_dir, self._created_file, self._previous = created_dir, created_file, previous

    @classmethod
    def take(cls, workdir, attempts=20):
        """Claim `workdir` (created if missing) or raise WorkdirHeld naming the holder."""
        path = claim_path(workdir)
        created_dir = not os.path.isdir(workdir)
        make_dirs(workdir)
        for attempt in range(attempts):
            handed_down = _handed_down(workdir)
            try:
                if handed_down is not None:  # its lock is ours already: flock below just confirms it
                    fd, created_file = os.dup(handed_down), False
                else:
                    try:
                        fd, created_file = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
                    except FileExistsError:
                        fd, created_file = os.open(path, os.O_RDWR), False
            except OSError as e:
                raise WriteError(path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # held, or probed by `holder` for a moment: look again shortly
                text = os.pread(fd, 256, 0).decode(errors="replace")
                os.close(fd)
                if attempt == attempts - 1:
                    raise WorkdirHeld(workdir, _who(text)) from None
                time.sleep(0.05)
                continue
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # a refused claimant removed the file it had created: claim the new one
                os.close(fd)
                continue
            previous = os.pread(fd, 256, 0)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} host {socket.gethostname()}\n".encode(), 0)
            return cls(workdir, fd, created_dir, created_file, previous)
        raise WorkdirHeld(workdir, "another process")

    def release(self, undo=False):
        if self.fd is None:
            return
        try:
            if undo and self._created_file:
                os.unlink(claim_path(self.workdir))
                if self._created_dir:
                    os.rmdir(self.workdir)
            elif undo:
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, self._previous, 0)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.release(undo=kind is not None and issubclass(kind, ConfigError))


class NoClaim:
    """What a process that writes nothing (multi-host: all but the first) holds."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def release(self, undo=False):
        pass
