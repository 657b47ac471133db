"""A run's work directory: what it holds, when it may be written, where a run starts.

    config.json      the flags and the network's ModelSpec; a folder holds a run exactly
                     when it holds a config.json (written first)
    metrics.jsonl    step and epoch records        summary.json, curves.png  at the end
    checkpoints/     step-*.safetensors, best.safetensors

    .claim           the claim: whoever holds its lock writes the folder (pid and host inside)

`check_workdir` refuses to write over another run or to resume one with other flags;
`starting_point` reads the weights a run starts from (its own latest checkpoint, or an
--init-from file); `Checkpoints` saves the state now and then and restores the latest.
All of it is read before the trainer writes anything.

One writer per folder: `Claim.take` holds an exclusive `flock` on DIR/.claim for as long
as the run lives (the OS drops it when the process ends, even on kill -9, so no claim goes
stale); `holder` tells whether someone holds it, without taking it. flock works between
processes of one machine and, where the file system supports it (local disks, NFS v4),
between machines sharing the folder.
"""
import datetime
import fcntl
import os
import socket
import time
from typing import NamedTuple

from data_tools.spec import spec_kind

from .._files import WriteError, make_dirs, read_json_object
from ..model import ModelSpec
from .checkpoint import checkpoint_meta, latest_checkpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, config_differences
from .state import holds_model, model_weights, state_from_tensors, state_to_tensors

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png", "checkpoints")


def default_workdir(cfg):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{cfg.variant.replace('@', '-')}-{cfg.model}-{stamp}")


def checkpoints_dir(workdir):
    return os.path.join(workdir, "checkpoints")


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


def check_workdir(workdir, cfg):
    """Refuse to write over another run, and to resume a run with another recipe."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {workdir} is a file, not a folder: give a new --workdir")
    found = [n for n in RUN_FILES if os.path.exists(os.path.join(workdir, n))]
    if not cfg.resume:
        if found:
            raise ConfigError(f"{workdir} holds another run ({', '.join(found)}): continue it with --resume, or "
                              "give a new --workdir")
        return
    if not cfg.workdir:
        raise ConfigError("--resume needs --workdir: the run folder to continue")
    saved = read_json_object(os.path.join(workdir, "config.json"))
    if saved is None:
        why = "does not exist" if not os.path.isdir(workdir) else "holds no readable config.json"
        raise ConfigError(f"--resume: {workdir} {why}, so there is no run to continue: drop --resume to start one")
    differences = config_differences(saved, cfg)
    if differences:
        raise ConfigError(f"--resume: {workdir} was trained with other flags ({'; '.join(differences)}), so it "
                          "would not continue the same trajectory: resume with the run's own flags, or give a new "
                          "--workdir")


class Start(NamedTuple):
    """What a run takes from the weights it starts from: the network's padding and BN eps,
    the pixels' normalization (None: the dataset's own), and the weights themselves (an
    --init-from file's {name: array}; None when resuming, whose checkpoint is restored whole)."""
    padding: str
    bn_eps: float
    normalization: tuple = None
    weights: dict = None
    path: str = None


def starting_point(cfg, backend, workdir):
    """The Start of a run: its own latest checkpoint when it resumes one (the --init-from file
    is not read again and may be gone), the --init-from checkpoint (of the same width and
    depth; the variant and class count may differ: what fits is loaded), else the defaults.
    The normalization comes with the weights when the run's data is of the kind they were
    trained on (photos, or Fashion-MNIST)."""
    latest = latest_checkpoint(checkpoints_dir(workdir)) if cfg.resume else None
    weights = None
    if latest is not None:
        path, meta = None, checkpoint_meta(latest)
        theirs = ModelSpec.from_meta(meta, latest)
    elif cfg.init_from:
        path = cfg.init_from
        tensors, meta = load_checkpoint(path, backend)
        if not holds_model(tensors):
            raise ValueError(f"--init-from {path} holds no model weights (no params/ tensors): give a tinyeffnet "
                             "checkpoint (published weights: python -m tinyeffnet.convert first)")
        theirs = ModelSpec.from_meta(meta, f"--init-from {path}")
        wanted = theirs.replace(variant=cfg.variant, model=cfg.model, width=cfg.width, depth=cfg.depth)
        if not wanted.same_backbone(theirs):
            width, depth = theirs.multipliers
            raise ValueError(f"--init-from {path} holds a {theirs.model} network (width {width:g}, depth {depth:g}) "
                             f"and this run builds another: train with {theirs.backbone_flags()}")
        weights = model_weights(tensors)
    else:
        default = ModelSpec()
        return Start(default.padding, default.bn_eps)
    same_kind = spec_kind(cfg.data) == spec_kind(theirs.data)
    return Start(theirs.padding, theirs.bn_eps, theirs.normalization if same_kind else None, weights, path)


class Checkpoints:
    """The run's checkpoints/ folder: save the state now and then, restore the latest."""

    def __init__(self, workdir, runtime, spec, cfg, steps_per_epoch):
        self.directory, self.runtime, self.spec, self.cfg = checkpoints_dir(workdir), runtime, spec, cfg
        self.steps_per_epoch = steps_per_epoch
        self.restored_from = None
        self.saved_step = None  # the step of the last checkpoint this run wrote

    def save(self, state, step, metric=None, eval_record=None):
        self.saved_step = step
        tensors = state_to_tensors(state, self.runtime.to_host)  # every process: a local replica needs no peer
        if not self.runtime.is_main:
            return
        meta = dict(self.spec.to_meta(), step=step, epoch=step / self.steps_per_epoch, config=vars(self.cfg),
                    eval=eval_record)
        save_checkpoint(self.directory, step, tensors, self.runtime.backend, meta,
                        keep_last=self.cfg.keep_checkpoints, best_metric=metric)

    def latest(self):
        return latest_checkpoint(self.directory)

    def restore(self, template):
        """(state, step) from the latest checkpoint; refuses one of another network."""
        path = self.latest()
        tensors, meta = load_checkpoint(path, self.runtime.backend)
        differences = ModelSpec.from_meta(meta, path).differences(self.spec)
        if differences:
            field, have, want = differences[0]
            raise ValueError(f"--resume: {path} is a checkpoint of {field} {have!r}, this run has {want!r}; use "
                             f"another --workdir or the same {field}")
        self.restored_from = path
        return self.runtime.put_state(state_from_tensors(template, tensors, path)), int(meta["step"])
