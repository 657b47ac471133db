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
  shared-memory or semaphore entry behind, and --resume continues (no stale claim either);
- SIGTERM or SIGINT at a random step, or in the middle of a checkpoint's write and again
  while the stop's checkpoint is written: the run stops after the step with a checkpoint
  of it, one line, exit 143 / 130, the data workers gone, and --resume ends with the very
  parameters of an uninterrupted run; readers of the folder meanwhile see whole files;
- two processes of one multi-host run, the signal sent to one: both stop at the same step;
- one writer per work directory: trainers started together on one new folder (one runs,
  the other is refused naming it, nothing interleaved), and --resume of a live run refused;
- ablation workers sharing a folder: two started together train each run once and write
  the table once; a worker killed (kill -9, with its run) leaves its run to another one;
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
from tinyeffnet.training.checkpoint import (latest_checkpoint, load_checkpoint, read_records,  # noqa: E402
                                            resolve_checkpoint, verify_checkpoint)
from tinyeffnet.training.metrics_file import read_metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--backend", "jax", "--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16",
         "--batch-size", "16", "--epochs", "1", "--eval-examples", "32", "--workers", "0", "--log-every", "1"]
PY = get_backend("python")


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(request):
    """The trainers this module starts share JAX's persistent compilation cache (in
    .pytest_cache): each compiles the same tiny network, and loading it is much faster."""
    cache = getattr(request.config, "cache", None)
    if cache is None or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache.mkdir("jax-compilation-cache")))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        yield


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


# ------------------------------------------------------------------ SIGTERM / SIGINT: stop, save, resume
STOPPABLE = SMALL + ["--max-steps", "12", "--checkpoint-every", "100"]
STOP_LINE = re.compile(r"^stopped by (SIG[A-Z]+) after step (\d+): checkpoint (\S+); continue with: "
                       r"python -m tinyeffnet.train --resume --workdir (\S+) ", re.M)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight") / "run"
    out = run_cli(STOPPABLE + ["--workdir", str(workdir)])
    assert out.returncode == 0, out.stderr[-3000:]
    return final_tensors(workdir)


def final_tensors(workdir):
    """(step, {name: record}, {step: loss}) of a run's last checkpoint and its log."""
    records, meta = read_records(latest_checkpoint(workdir / "checkpoints"))
    losses = {r["step"]: r["loss"] for r in read_metrics(workdir / "metrics.jsonl") if r["kind"] == "step"}
    return meta["step"], records, losses


def _steps_logged(workdir):
    try:
        return sum(1 for line in open(workdir / "metrics.jsonl") if '"kind": "step"' in line)
    except OSError:
        return 0


def stopped_line(stderr, status, signame):
    lines = STOP_LINE.findall(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    name, step, checkpoint, workdir = lines[0]
    assert name == signame and status == 128 + getattr(signal, signame), (status, lines)
    return int(step), checkpoint, workdir


def resume_and_compare(workdir, step, uninterrupted):
    """The stopped run's checkpoint is of `step`; --resume ends where the uninterrupted run did."""
    assert latest_checkpoint(workdir / "checkpoints") == str(workdir / "checkpoints" / f"step-{step:08d}.safetensors")
    assert_everything_written_still_loads(workdir)
    resumed = run_cli(STOPPABLE + ["--workdir", str(workdir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want_step, want, want_losses = uninterrupted
    got_step, got, got_losses = final_tensors(workdir)
    assert got_step == want_step == 12 and sorted(got) == sorted(want)
    differ = [n for n in want if got[n] != want[n]]
    assert not differ, f"{len(differ)} tensors differ from the uninterrupted run's, e.g. {differ[:3]}"
    assert got_losses == want_losses


def _read_whole(workdir, read):
    """What evaluate and predict read (resolve_checkpoint) verifies: never a half-written file."""
    try:
        path = resolve_checkpoint(workdir)
        complete = verify_checkpoint(path)
    except (ValueError, FileNotFoundError):  # none yet, or pruned between finding and opening it
        return
    assert complete, f"{path} was read half-written"
    read.add(path)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_sigterm_at_a_random_step_saves_it_stops_the_workers_and_resume_is_bit_identical(tmp_path, uninterrupted):
    """Readers meanwhile (a checkpoint every step) see whole files only."""
    workdir = tmp_path / "t"
    proc = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + STOPPABLE[:-2] + [
        "--checkpoint-every", "1", "--workdir", str(workdir), "--workers", "2"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    at, read = random.randint(3, 7), set()
    deadline = time.time() + 300
    while _steps_logged(workdir) < at:
        assert time.time() < deadline and proc.poll() is None, "the run did not get going"
        _read_whole(workdir, read)
    family = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    sent = time.time()
    _, err = proc.communicate(timeout=120)  # a hang guard: it stops after one step and one checkpoint
    took = time.time() - sent
    step, checkpoint, named = stopped_line(err, proc.returncode, "SIGTERM")
    assert at <= step < 12 and named == str(workdir), (at, step, named)
    print(f"SIGTERM at step {at}: stopped after step {step}, exit {proc.returncode}, {took:.2f} s after the signal")
    assert read, "no checkpoint was read while the run wrote them"
    time.sleep(0.5)
    assert family and not [p for p in family if _alive(p)], "the data workers outlived the trainer"
    assert not (workdir / "summary.json").exists()
    resume_and_compare(workdir, step, uninterrupted)


# The trainer, with os.fsync sending it signals: PLAN is a JSON list of [signal, a pattern of a
# file name, n]: the signal is sent at the n-th fsync of a file whose name (not its folder)
# matches the pattern whole (counted from the previous signal), so it lands in the middle of
# that file's write. Whole names, because a temporary file holds its target's name: the
# `.metrics.jsonl.tmp-...` that starts an empty log before the first step (and before the
# trainer catches signals) must not count as a metrics line.
SIGNALLING_TRAINER = """
import json, os, re, signal, sys
real, plan, seen = os.fsync, json.loads(sys.argv[1]), [0]
def fsync(fd):
    if plan and re.fullmatch(plan[0][1], os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))):
        seen[0] += 1
        if seen[0] == plan[0][2]:
            os.kill(os.getpid(), getattr(signal, plan.pop(0)[0]))
            seen[0] = 0
    return real(fd)
os.fsync = fsync
from tinyeffnet.train import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
@pytest.mark.parametrize("case", ["mid-checkpoint", "again-while-saving"])
def test_signals_mid_write_keep_everything_and_resume_is_bit_identical(case, tmp_path, uninterrupted):
    workdir = tmp_path / "m"
    n = random.randint(1, 5)
    if case == "mid-checkpoint":  # a checkpoint every step; SIGINT while step n's is written
        plan, every = [["SIGINT", r"\.step-.*\.tmp-.*", n]], "1"
    else:  # SIGINT while a metrics line is written, SIGTERM while the stop's checkpoint is
        plan, every = [["SIGINT", r"metrics\.jsonl", n], ["SIGTERM", r"\.step-.*\.tmp-.*", 1]], "100"
    out = subprocess.run([sys.executable, "-c", SIGNALLING_TRAINER, json.dumps(plan)] + STOPPABLE[:-2]
                         + ["--checkpoint-every", every, "--keep-checkpoints", "100", "--workdir", str(workdir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    step, checkpoint, _ = stopped_line(out.stderr, out.returncode, "SIGINT")
    if case == "mid-checkpoint":
        assert step == n, (n, step)
    else:
        assert "SIGTERM again: still writing the checkpoint" in out.stderr, out.stderr[-2000:]
    assert not [name for name in os.listdir(workdir / "checkpoints") if ".tmp-" in name]
    resume_and_compare(workdir, step, uninterrupted)


# ------------------------------------------------------------------ one writer per work directory
def _claimed_by(workdir):
    try:
        return open(workdir / ".claim").read().split()
    except OSError:
        return []


def test_a_live_run_s_work_dir_is_refused_naming_it_and_resume_too(tmp_path):
    workdir = tmp_path / "live"
    holder = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + SMALL + [
        "--workdir", str(workdir), "--max-steps", "400"], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while _steps_logged(workdir) < 1:
            assert time.time() < deadline and holder.poll() is None, "the run did not get going"
            time.sleep(0.1)
        assert _claimed_by(workdir)[:2] == ["pid", str(holder.pid)]
        before = {k: v for k, v in snapshot(workdir).items() if k != "metrics.jsonl" and "checkpoints" not in k}
        for extra in ([], ["--resume"]):
            out = run_cli(SMALL + ["--workdir", str(workdir), "--max-steps", "400"] + extra)
            line = one_error_line(out.stderr)
            assert out.returncode == 2 and f"pid {holder.pid} on host " in line and "in use" in line, line
        after = snapshot(workdir)
        assert {k: after[k] for k in before} == before
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=120)
    assert holder.returncode == 143


def test_two_trainers_started_together_on_one_new_work_dir(tmp_path):
    workdir = tmp_path / "w"
    procs = {v: subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + SMALL + [
        "--variant", v, "--workdir", str(workdir), "--max-steps", "3"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for v in ("base", "nose@all")}
    outs = {v: p.communicate(timeout=600) for v, p in procs.items()}
    status = {v: p.returncode for v, p in procs.items()}
    assert sorted(status.values()) == [0, 2], (status, {v: o[1][-2000:] for v, o in outs.items()})
    winner = next(v for v in status if status[v] == 0)
    loser = next(v for v in status if status[v] == 2)
    line = one_error_line(outs[loser][1])
    assert (f"pid {procs[winner].pid} on host " in line or "holds another run" in line), line
    config = json.load(open(workdir / "config.json"))
    summary = json.load(open(workdir / "summary.json"))
    assert config["variant"] == summary["variant"] == winner
    steps = [r["step"] for r in read_metrics(workdir / "metrics.jsonl") if r["kind"] == "step"]
    assert steps == [1, 2, 3], steps
    assert load_checkpoint(latest_checkpoint(workdir / "checkpoints"), PY)[1]["variant"] == winner


def _free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stop_at_the_same_step_with_one_checkpoint(tmp_path):
    """The signal reaches the second process only (the one that writes nothing): both stop after the same step."""
    workdir, port = tmp_path / "mp", _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + SMALL + [
        "--workdir", str(workdir), "--max-steps", "400", "--checkpoint-every", "1000", "--coordinator-address",
        f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        at, deadline = random.randint(2, 5), time.time() + 300
        while _steps_logged(workdir) < at:
            assert time.time() < deadline and all(p.poll() is None for p in procs), "the run did not get going"
            time.sleep(0.05)
        procs[1].send_signal(signal.SIGTERM)
        errs = [p.communicate(timeout=120)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    stops = [stopped_line(err, p.returncode, "SIGTERM") for p, err in zip(procs, errs)]
    assert stops[0] == stops[1] and stops[0][0] >= at, stops
    step = stops[0][0]
    assert os.listdir(workdir / "checkpoints") == [f"step-{step:08d}.safetensors"]
    assert_everything_written_still_loads(workdir)
    assert max(r["step"] for r in read_metrics(workdir / "metrics.jsonl") if r["kind"] == "step") == step


# ------------------------------------------------------------------ ablation workers sharing one folder
VARIANTS_RUN = ["base", "nose@all"]
SHARED = ["--variants", ",".join(VARIANTS_RUN), "--data", "default", "--backend", "jax", "--width", "0.25",
          "--depth", "0.1", "--batch-size", "16", "--image-size", "16", "--eval-examples", "32", "--epochs", "1",
          "--workers", "0", "--log-every", "1"]


def _worker(workdir, *extra):
    """An ablation worker; it inherits the environment, with the module's compilation cache."""
    return subprocess.Popen([sys.executable, "-m", "tinyeffnet.ablation", "--workdir", str(workdir)] + SHARED
                            + list(extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _steps(folder):
    with open(folder / "metrics.jsonl") as f:
        return [r["step"] for r in map(json.loads, f) if r["kind"] == "step"]


def test_two_workers_split_the_runs_and_write_the_table_once(tmp_path):
    workers = [_worker(tmp_path, "--max-steps", "3") for _ in range(2)]
    outs = [w.communicate(timeout=900) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in outs]
    for v in VARIANTS_RUN:  # each run trained by one worker, once: its steps logged once each
        assert sum(out.count(f"{v} seed 0: training") for out, _ in outs) == 1, [out for out, _ in outs]
        assert _steps(tmp_path / v / "seed-0") == [1, 2, 3]
    assert sorted("wrote " in out for out, _ in outs) == [False, True]
    assert sum("already holds this table" in out for out, _ in outs) == 1
    with open(tmp_path / "table2.json") as f:
        table = json.load(f)
    assert list(table["variants"]) == VARIANTS_RUN and not table.get("failed")
    assert all(table["variants"][v]["top1"] is not None for v in VARIANTS_RUN)


def test_a_killed_worker_leaves_its_run_to_another(tmp_path):
    steps = ["--max-steps", "30", "--checkpoint-every", "1"]  # killed after its first checkpoint, long before step 30
    first = _worker(tmp_path, *steps)
    run = tmp_path / VARIANTS_RUN[0] / "seed-0"
    try:
        deadline = time.time() + 600
        while not (run / "checkpoints").is_dir() or not os.listdir(run / "checkpoints"):
            assert time.time() < deadline and first.poll() is None, "the first worker did not get going"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its run's process: a machine lost
        first.communicate()
    second = _worker(tmp_path, *steps)
    out, err = second.communicate(timeout=900)
    assert second.returncode == 0, err[-3000:]
    assert f"{VARIANTS_RUN[0]} seed 0: resuming from step-" in out and f"{VARIANTS_RUN[1]} seed 0: training" in out
    assert "wrote " in out
    with open(tmp_path / "table2.json") as f:
        table = json.load(f)
    assert list(table["variants"]) == VARIANTS_RUN and not table.get("failed")
    for v in VARIANTS_RUN:
        assert json.load(open(tmp_path / v / "seed-0" / "summary.json"))["steps"] == 30
