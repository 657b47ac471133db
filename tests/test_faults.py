"""The trainer under mistakes, faults and divergence: nothing already written is lost,
nothing is misreported.

- a work directory holding another run is refused untouched, --resume refuses a recipe
  that changes the trajectory (bad flags: tests/test_config.py);
- a full disk at each single write of a run: one line naming the file, exit 1, and what
  was written before still loads (injected at every fsync, and for real on a small tmpfs
  where this machine allows mounting one);
- NaN injected into the parameters or the BN statistics: the run stops naming the step and
  the last finite checkpoint; no checkpoint holding a non-finite value is written;
- kill -9 of the trainer (alone, and with its process group) leaves no process and no
  shared-memory or semaphore entry behind, and --resume continues;
- a warning (an unreadable image) is printed on its own line, not into the progress bar.
"""
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

jax = pytest.importorskip("jax")

from backends import get_backend  # noqa: E402
from tinyeffnet.train import main as train_main  # noqa: E402
from tinyeffnet.training.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from tinyeffnet.training.metrics_file import read_metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--backend", "jax", "--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16",
         "--batch-size", "16", "--epochs", "1", "--eval-examples", "32", "--workers", "0", "--log-every", "1"]
PY = get_backend("python")


def run_cli(args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "tinyeffnet.train"] + args, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, **kw)


def snapshot(folder):
    """{relative path: bytes} of every file under `folder` (symlinks as their target)."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, folder)
            out[rel] = ("link:" + os.readlink(path)) if os.path.islink(path) else open(path, "rb").read()
    return out


def assert_everything_written_still_loads(workdir):
    """config.json and every checkpoint load; metrics.jsonl lines parse; all values finite."""
    if os.path.exists(os.path.join(workdir, "config.json")):
        json.load(open(os.path.join(workdir, "config.json")))
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
        assert len(read_metrics(os.path.join(workdir, "metrics.jsonl"))) == len(lines)
    ckpts = os.path.join(workdir, "checkpoints")
    for name in sorted(os.listdir(ckpts)) if os.path.isdir(ckpts) else []:
        if name.endswith(".safetensors"):
            tensors, _ = load_checkpoint(os.path.join(ckpts, name), PY)
            for key, value in tensors.items():
                values = PY.to_flat(value)
                assert all(v == v and abs(v) != float("inf") for v in values), f"{name}: {key} is not finite"


def one_error_line(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("faults") / "run"
    out = run_cli(SMALL + ["--workdir", str(workdir), "--max-steps", "3", "--checkpoint-every", "1"])
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


# ------------------------------------------------------------------ the work directory
def test_a_reused_work_dir_is_refused_and_left_untouched(finished):
    before = snapshot(finished)
    out = run_cli(SMALL + ["--workdir", str(finished), "--max-steps", "2"])
    line = one_error_line(out.stderr)
    assert out.returncode == 2 and str(finished) in line and "--resume" in line and "new --workdir" in line, line
    assert snapshot(finished) == before


def test_resume_refuses_another_recipe_listing_the_flags(finished, capsys):
    before = snapshot(finished)
    status = train_main(SMALL + ["--workdir", str(finished), "--resume", "--image-size", "32", "--batch-size", "8",
                                 "--max-steps", "9"])
    line = one_error_line(capsys.readouterr().err)
    assert status == 2 and "--image-size: was 16, now 32" in line and "--batch-size: was 16, now 8" in line
    assert "--max-steps" not in line  # extending a run is what --resume is for
    assert snapshot(finished) == before


def test_a_work_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    occupied = tmp_path / "taken"
    occupied.write_text("not a folder")
    assert train_main(SMALL + ["--workdir", str(occupied)]) == 2
    assert "is a file, not a folder" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------ full disk, at every write
def _count_fsyncs(monkeypatch, tmp_path, capsys):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    assert train_main(SMALL + ["--workdir", str(tmp_path / "count"), "--max-steps", "2",
                               "--checkpoint-every", "1"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", real)
    return len(calls)


def test_a_full_disk_at_each_write_is_one_line_and_keeps_what_was_written(monkeypatch, tmp_path, capsys):
    writes = _count_fsyncs(monkeypatch, tmp_path, capsys)
    assert writes >= 10  # config, metrics lines, two checkpoints, summary, curves
    real = os.fsync
    for failing in range(1, writes + 1):
        calls = []

        def fsync(fd, calls=calls, failing=failing):
            calls.append(fd)
            if len(calls) == failing:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
        workdir = tmp_path / f"w{failing}"
        status = train_main(SMALL + ["--workdir", str(workdir), "--max-steps", "2", "--checkpoint-every", "1"])
        monkeypatch.setattr(os, "fsync", real)
        line = one_error_line(capsys.readouterr().err)
        assert status == 1, (failing, line)
        assert line.startswith(f"error: cannot write {workdir}") and "No space left on device" in line, line
        assert_everything_written_still_loads(workdir)


def _mount_tmpfs(path, size):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def test_a_real_full_disk_mid_run(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "3m"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights): the injected test above "
                    "covers every write")
    try:
        workdir = disk / "run"
        out = run_cli(SMALL + ["--workdir", str(workdir), "--max-steps", "40", "--checkpoint-every", "1",
                               "--keep-checkpoints", "40"])
        line = one_error_line(out.stderr)
        assert out.returncode == 1 and "No space left on device" in line and str(workdir) in line, line
        assert latest_checkpoint(workdir / "checkpoints") is not None
        assert_everything_written_still_loads(workdir)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_work_dir_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert train_main(SMALL + ["--workdir", str(tmp_path / "file" / "run"), "--max-steps", "1"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot write {tmp_path / 'file' / 'run'}: Not a directory" in line, line


def test_a_read_only_work_dir_is_one_line(tmp_path):
    disk = tmp_path / "ro"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root and mount rights)")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        out = run_cli(SMALL + ["--workdir", str(disk / "run"), "--max-steps", "1"])
        line = one_error_line(out.stderr)
        assert out.returncode == 1 and f"cannot write {disk / 'run'}: Read-only file system" in line, line
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# ------------------------------------------------------------------ divergence
@pytest.mark.parametrize("where", ["params", "buffers"])
def test_nan_injected_stops_the_run_naming_the_step_and_the_last_finite_checkpoint(where, monkeypatch, tmp_path,
                                                                                    capsys):
    import jax.numpy as jnp

    from tinyeffnet.training.runtime import JaxRuntime
    compile_train_step = JaxRuntime.compile_train_step

    def compile_with_poison(self, train_step):
        compiled = compile_train_step(self, train_step)
        calls = []

        def step(state, *args):
            calls.append(1)
            if len(calls) == 3:  # before the third step: NaN in one array
                group = dict(state[where])
                name = sorted(group)[0]
                group[name] = group[name].at[0].set(jnp.nan)
                state = dict(state, **{where: group})
            return compiled(state, *args)
        return step

    monkeypatch.setattr(JaxRuntime, "compile_train_step", compile_with_poison)
    workdir = tmp_path / "nan"
    status = train_main(SMALL + ["--workdir", str(workdir), "--max-steps", "6", "--checkpoint-every", "1"])
    line = one_error_line(capsys.readouterr().err)
    kept = workdir / "checkpoints" / "step-00000002.safetensors"
    assert status == 1 and "training diverged at step 3" in line and f"the last finite checkpoint is {kept}" in line
    assert latest_checkpoint(workdir / "checkpoints") == str(kept)
    assert not (workdir / "summary.json").exists()
    assert_everything_written_still_loads(workdir)


def test_a_huge_learning_rate_never_scores_a_diverged_model(tmp_path):
    workdir = tmp_path / "lr"
    out = run_cli(SMALL + ["--workdir", str(workdir), "--max-steps", "4", "--lr", "1e6", "--warmup-epochs", "0"])
    if out.returncode == 0:  # survived four steps with finite numbers: then its score must be a real one
        summary = json.load(open(workdir / "summary.json"))
        assert summary["top1"] < 0.5
    else:
        assert out.returncode == 1 and "training diverged at step" in one_error_line(out.stderr)
    assert_everything_written_still_loads(workdir)


# ------------------------------------------------------------------ kill -9
def _descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc") or not os.path.isdir("/dev/shm"), reason="needs Linux /proc and /dev/shm")
@pytest.mark.parametrize("kill", ["trainer", "process group"])
def test_kill_9_leaves_no_process_and_no_shared_memory_and_resume_continues(kill, tmp_path):
    workdir = tmp_path / "k"
    shm_before = set(os.listdir("/dev/shm"))
    cmd = [sys.executable, "-m", "tinyeffnet.train"] + SMALL + [
        "--workdir", str(workdir), "--max-steps", "400", "--checkpoint-every", "1", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while latest_checkpoint(workdir / "checkpoints") is None:
            assert time.time() < deadline and proc.poll() is None, "no checkpoint was written"
            time.sleep(0.2)
        time.sleep(random.uniform(0.0, 1.0))  # anywhere: between, or in the middle of, writes
        family = _descendants(proc.pid)
        assert family, "the data workers should be running"
    finally:
        if kill == "trainer":
            proc.send_signal(signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 60  # a hang guard, not a speed check: the workers exit within a second or two
    while any(_alive(p) for p in family) and time.time() < deadline:
        time.sleep(0.2)
    assert not [p for p in family if _alive(p)], "processes of the killed trainer are still alive"
    time.sleep(0.5)  # the resource tracker unlinks what it tracked once its last holder is gone
    # Blocks are named tinyeffnet-<owner pid>-...: those of a trainer another test runs at the
    # same time (pytest -n) are not this one's; anything else new counts.
    ours = {proc.pid, *family}
    left = {n for n in set(os.listdir("/dev/shm")) - shm_before
            if not (m := re.match(r"tinyeffnet-(\d+)-", n)) or int(m.group(1)) in ours}
    assert not left, f"shared memory or semaphores left behind: {sorted(left)}"
    step = json.loads(json.dumps(load_checkpoint(latest_checkpoint(workdir / "checkpoints"), PY)[1]))["step"]
    resumed = run_cli(SMALL + ["--workdir", str(workdir), "--max-steps", str(step + 1), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]


# ------------------------------------------------------------------ warnings and the progress bar
def test_a_warning_is_printed_on_its_own_line_not_into_the_progress_bar(tmp_path):
    from PIL import Image
    for c in ("cat", "dog"):
        (tmp_path / "data" / "train" / c).mkdir(parents=True)
        (tmp_path / "data" / "val" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20, 20), (40 * i, 100, 200 if c == "cat" else 0)).save(
                tmp_path / "data" / "train" / c / f"{i}.JPEG")
            Image.new("RGB", (20, 20), (40 * i, 100, 0)).save(tmp_path / "data" / "val" / c / f"{i}.JPEG")
    (tmp_path / "data" / "train" / "cat" / "broken.JPEG").write_bytes(b"not a jpeg")
    out = run_cli(["--backend", "jax", "--width", "0.25", "--depth", "0.1", "--data", str(tmp_path / "data"),
                   "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--augment", "none", "--workers",
                   "0", "--log-every", "1", "--workdir", str(tmp_path / "w")])
    assert out.returncode == 0, out.stderr[-3000:]
    at = out.stderr.index("skipping unreadable image")
    assert at == 0 or out.stderr[at - 1] in "\r\n", repr(out.stderr[max(0, at - 80):at + 40])
