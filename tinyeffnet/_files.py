"""Writing files so that a crash or a kill never leaves a half-written one behind.

Every file tinyeffnet writes (checkpoints, config.json, summary.json, charts, reports)
goes through `atomic_write`: the bytes go to a temporary file in the same folder, are
flushed to disk, and the temporary file is renamed over the final name. Readers see the
old file or the new one, never a mix. Temporary names are `.NAME.tmp-PID-RANDOM`, so a
crash's leftovers are recognisable (and `remove_stale_temps` deletes them).

A write that fails (a full disk, a read-only or unwritable folder) raises `WriteError`:
one line naming the file and the cause. The file's previous version, if any, is intact.

JSON: tinyeffnet writes and prints strict JSON only: a NaN or an infinity becomes null.
"""
import errno
import json
import math
import os
import re
import uuid

_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


class WriteError(OSError):
    """A file could not be written; str() is one line naming the file and the cause."""

    def __init__(self, path, error):
        cause = error.strerror or errno.errorcode.get(error.errno, "") or type(error).__name__
        super().__init__(error.errno, cause, os.fspath(path))
        self.path = os.fspath(path)

    def __str__(self):
        return f"cannot write {self.path}: {self.strerror}"


def json_safe(value):
    """`value` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def dumps(value, **kwargs):
    """Strict JSON text of `value` (NaN and infinities as null)."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def temp_path(path):
    """A fresh temporary name beside `path`."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_dir(directory):
    """Make a rename in `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise WriteError(directory, e) from None


def atomic_write(path, write, binary=False):
    """Call write(file) on a temporary file, fsync it, rename it to `path`; returns `path`."""
    path = os.fspath(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb" if binary else "w") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, WriteError):
            raise WriteError(path, e) from None
        raise
    return path


def append_line(path, line):
    """Append one line and fsync it: a crash loses at most this line, never an earlier one."""
    try:
        with open(path, "a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise WriteError(path, e) from None


def write_json(path, obj):
    return atomic_write(path, lambda f: f.write(dumps(obj, indent=1)))


def read_json_object(path):
    """The JSON object (a dict) in `path`, or None where there is none: missing, unreadable,
    not JSON, or JSON of another kind. For files a run writes and another may be reading."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def make_dirs(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise WriteError(path, e) from None


def remove_stale_temps(directory):
    """Delete temporary files left by writers that died (a live writer's are in use)."""
    # Imported here: data_tools (and Pillow with it) loads only where a cleanup runs, not
    # with every module that writes a file.
    from data_tools.workers import remove_orphans
    remove_orphans(directory, _TMP_RE)
