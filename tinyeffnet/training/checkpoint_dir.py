"""A run's folder of checkpoints, as the trainer keeps it.

`save_checkpoint` writes DIR/step-NNNNNNNN.safetensors (the format: checkpoint.py), points
DIR/best.safetensors at it when its metric beats the best so far, and prunes all but the
newest few; `CheckpointDir` is a run's folder: it saves the training state with the run's
record (its ModelSpec and config) and restores the latest on --resume.

Crash safety: a step file appears only by `os.replace` of a fully written, fsynced temp
file; the best symlink is replaced the same way before any pruning, so a kill -9 at any
moment leaves every visible name complete and `best.safetensors` pointing at a file that
exists.
"""
import math
import os

from backends.host_memory import release_free_memory

from .. import _safetensors as safetensors_file
from .._files import WriteError, fsync_dir, make_dirs, remove_stale_temps, temp_path
from .checkpoint import (BEST_NAME, CheckpointError, best_checkpoint, checkpoint_bytes, checkpoint_meta,
                         latest_checkpoint, load_checkpoint, records_of, step_files, step_path)
from .state import state_to_tensors


def _metric_of(path):
    """The best_metric recorded in a checkpoint, or None if absent or unreadable."""
    try:
        value = checkpoint_meta(path).get("best_metric")
    except CheckpointError:
        return None
    return value if isinstance(value, (int, float)) and not math.isnan(value) else None


def save_checkpoint(directory, step, tensors, backend, meta, keep_last=3, best_metric=None,
                    higher_is_better=True):
    """Write DIR/step-NNNNNNNN.safetensors atomically, update best.safetensors, prune.

    `meta` must be JSON-serialisable (tuples come back as lists); `step`, `best_metric`
    and `format_version` are added to it. `best_metric` (e.g. eval top-1) makes this step
    the best when it beats the metric stored in the current best. `keep_last` newest step
    files survive pruning (None keeps all); the best's target and the file just written
    are never deleted. Returns the path written.
    """
    step = int(step)
    if keep_last is not None and int(keep_last) < 1:
        raise CheckpointError(f"keep_last={keep_last} would delete every checkpoint "
                              "(use 1 or more, or None to keep all)")
    if "step" in meta and meta["step"] != step:
        raise CheckpointError(f"meta says step {meta['step']} but step={step} was passed "
                              "(pass the same step to both)")
    if best_metric is not None and not isinstance(best_metric, (int, float)):
        raise CheckpointError(f"best_metric must be a number, got {best_metric!r}")
    directory = os.fspath(directory)
    make_dirs(directory)
    path = step_path(directory, step)
    blob = checkpoint_bytes(path, records_of(path, tensors, backend),
                 {**meta, "step": step, "best_metric": best_metric, "higher_is_better": bool(higher_is_better)})

    # Read the current best before writing: the new file may replace the best's target.
    best_path = best_checkpoint(directory)
    best_value = _metric_of(best_path) if best_path else None

    safetensors_file.write(path, blob)

    if best_metric is not None and not math.isnan(best_metric):
        better = (best_value is None or os.path.abspath(best_path) == os.path.abspath(path)
                  or (best_metric > best_value if higher_is_better else best_metric < best_value))
        if better:
            link_tmp = temp_path(os.path.join(directory, BEST_NAME))
            try:
                os.symlink(os.path.basename(path), link_tmp)  # relative: the dir can move
                os.replace(link_tmp, os.path.join(directory, BEST_NAME))
            except OSError as e:
                raise WriteError(os.path.join(directory, BEST_NAME), e) from None
            fsync_dir(directory)
            best_path = path

    if keep_last is not None:
        files = step_files(directory)
        protected = {os.path.basename(path)}
        if best_path:
            protected.add(os.path.basename(best_path))
        for s in sorted(files)[:-int(keep_last)]:
            if files[s] not in protected:
                try:
                    os.unlink(os.path.join(directory, files[s]))
                except FileNotFoundError:
                    pass
    remove_stale_temps(directory)
    return path


def newest_verified(directory, backend):
    """(found, skipped): `found` is (path, tensors, meta) of the newest step file in `directory`
    that reads and verifies, its tensors on `backend` (None when none does); `skipped` is
    [(path, why)] of the newer ones that did not (a write cut short by a full disk, a flipped
    bit)."""
    files, skipped = step_files(directory), []
    for step in sorted(files, reverse=True):
        path = os.path.join(directory, files[step])
        try:
            tensors, meta = load_checkpoint(path, backend)
        except CheckpointError as e:
            skipped.append((path, str(e)))
            continue
        return (path, tensors, meta), skipped
    return None, skipped


class CheckpointDir:
    """A run's checkpoints/ folder: the training state saved now and then, each file with the
    run's record (`record`: its ModelSpec's metadata and config), the step and epoch, and the
    evaluation it was scored by; the newest `keep_last` and the best kept."""

    def __init__(self, directory, runtime, record, keep_last, steps_per_epoch):
        self.directory, self.runtime, self.record = directory, runtime, record
        self.keep_last, self.steps_per_epoch = keep_last, steps_per_epoch
        self.saved_step = None  # the step of the last checkpoint this run wrote

    def save(self, state, step, eval_record=None, metric=None):
        """Checkpoint the state after `step`; `metric` (eval top-1) competes for best."""
        self.saved_step = step
        tensors = state_to_tensors(state, self.runtime.to_host)  # every process: a local replica needs no peer
        if not self.runtime.is_main:
            return
        meta = dict(self.record, step=step, epoch=step / self.steps_per_epoch, eval=eval_record)
        save_checkpoint(self.directory, step, tensors, self.runtime.backend, meta, keep_last=self.keep_last,
                        best_metric=metric)
        # The file's bytes (the whole state, serialised), and the evaluation's before them at an
        # epoch's end, were freed in blocks that glibc keeps for later mallocs: hand them back
        # before the next step maps its scratch memory on top.
        release_free_memory()

    def path(self, step):
        return step_path(self.directory, step)

    def latest(self):
        return latest_checkpoint(self.directory)

