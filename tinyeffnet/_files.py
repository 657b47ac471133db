"""Writing files so that a crash or a kill never leaves a half-written one behind.

Every file tinyeffnet writes (checkpoints, config.json, summary.json, charts, reports)
goes through `atomic_write`: the bytes go to a temporary file in the same folder, are
flushed to disk, and the temporary file is renamed over the final name. Readers see the
old file or the new one, never a mix. Temporary names are `.NAME.tmp-PID-RANDOM`, so a
crash's leftovers are recognisable (and `remove_stale_temps` deletes them).
"""
import json
import os
import re
import uuid

_TMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


def temp_path(path):
    """A fresh temporary name beside `path`."""
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_dir(directory):
    """Make a rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_json(path, obj):
    return atomic_write(path, lambda f: json.dump(obj, f, indent=1))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(directory):
    """Delete temporary files left by writers that died (a live writer's are in use)."""
    for name in os.listdir(directory):
        m = _TMP_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
            except FileNotFoundError:
                pass


def is_temp_name(name):
    return bool(_TMP_RE.match(name))
