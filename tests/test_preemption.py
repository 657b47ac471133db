"""Preempted the way machines really stop, and resumed from what verifies.

- SIGTERM to the whole process group (a VM shutdown, systemd, `kill -TERM -- -PGID`) with
  data workers on, at a random step and at an epoch's end (the evaluation and precise BN need
  the workers): the run stops with the checkpoint of its step, exit 143, and --resume ends
  bit-identically; on both runtimes;
- --resume checks the flags against the config inside the newest verified checkpoint, not
  against the editable config.json (an edited config.json is no way around it);
- data no batch can be built from is refused before the work directory is written;
- one command continues whatever a stopped run left: --resume on a folder holding only a
  claim (a run stopped during set-up), or nothing at all, starts the run; past a corrupt
  newest checkpoint it continues from the newest that verifies, saying which;
- a signal after the last step lets the summary and curves be written, exit 143.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

jax = pytest.importorskip("jax")

from tinyeffnet.training.checkpoint import latest_checkpoint, read_records  # noqa: E402
from tinyeffnet.training.metrics_file import read_metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 12 training images at batch 4: an epoch is 3 steps, then an evaluation with precise BN.
TINY = ["--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16", "--batch-size", "4",
        "--log-every", "1", "--checkpoint-every", "100", "--precise-bn", "8"]
JAX_RUN = ["--backend", "jax"] + TINY + ["--epochs", "2"]
PYTHON_RUN = ["--backend", "python", "--preset", "default"] + TINY + ["--epochs", "2"]


def train(args, **kw):
    return subprocess.run([sys.executable, "-m", "tinyeffnet.train"] + args, cwd=ROOT, capture_output=True,
                          text=True, timeout=900, **kw)


def steps_logged(workdir):
    try:
        return [r["step"] for r in read_metrics(workdir / "metrics.jsonl") if r["kind"] == "step"]
    except OSError:
        return []


def final(workdir):
    """(step, {name: record}) of a run's newest checkpoint."""
    records, meta = read_records(latest_checkpoint(workdir / "checkpoints"))
    return meta["step"], records


def assert_same_as(workdir, uninterrupted):
    step, records = final(workdir)
    want_step, want = uninterrupted
    differ = [n for n in want if records.get(n) != want[n]]
    assert step == want_step and sorted(records) == sorted(want) and not differ, (
        f"the resumed run ends at step {step} with {len(differ)} tensors unlike the uninterrupted run's "
        f"(step {want_step}), e.g. {differ[:3]}")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_fashion_mnist):
    """The uninterrupted runs of both runtimes, to compare the stopped-and-resumed ones with."""
    out = {}
    for name, args in (("jax", JAX_RUN), ("python", PYTHON_RUN)):
        workdir = tmp_path_factory.mktemp("straight") / name
        done = train(args + ["--data", tiny_fashion_mnist, "--workdir", str(workdir), "--workers", "0"])
        assert done.returncode == 0, done.stderr[-3000:]
        out[name] = final(workdir)
    return out


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
@pytest.mark.parametrize("runtime, moment", [("jax", "random step"), ("jax", "epoch end"),
                                             ("python", "epoch end")])
def test_sigterm_to_the_process_group_with_workers_keeps_the_step(runtime, moment, runs, tiny_fashion_mnist,
                                                                   tmp_path):
    args = (JAX_RUN if runtime == "jax" else PYTHON_RUN) + ["--data", tiny_fashion_mnist]
    workdir = tmp_path / "g"
    at = random.randint(1, 4) if moment == "random step" else 3  # step 3 ends the first epoch
    proc = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + args + [
        "--workdir", str(workdir), "--workers", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True)  # its own process group, as a service or a job is
    deadline = time.time() + 600
    while at not in steps_logged(workdir):
        assert time.time() < deadline and proc.poll() is None, f"the run did not reach step {at}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)  # the trainer and its data workers, all at once
    _, err = proc.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.startswith("stopped by SIGTERM after step")]
    assert proc.returncode == 143 and len(lines) == 1 and "Traceback" not in err, (
        f"a SIGTERM to the process group at {moment} {at} ended the run with exit {proc.returncode}: "
        + err[-2000:])
    step = int(lines[0].split("after step ")[1].split(":")[0])
    assert step >= at and latest_checkpoint(workdir / "checkpoints").endswith(f"step-{step:08d}.safetensors"), (
        f"the stop after step {step} did not leave that step's checkpoint")
    resumed = train(args + ["--workdir", str(workdir), "--workers", "0", "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_as(workdir, runs[runtime])


def test_resume_checks_the_flags_against_the_checkpoint_not_an_edited_config_json(runs, tiny_fashion_mnist,
                                                                                    tmp_path):
    args = JAX_RUN + ["--data", tiny_fashion_mnist, "--workers", "0"]
    workdir = tmp_path / "e"
    stopped = train(args + ["--workdir", str(workdir), "--max-steps", "4", "--checkpoint-every", "2"])
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    config_json = workdir / "config.json"
    saved = json.loads(config_json.read_text())
    flags = saved.get("config", saved)  # the flags (older runs kept them at the top)
    flags["lr"], flags["seed"] = 0.5, 7
    config_json.write_text(json.dumps(saved))
    refused = train(args + ["--workdir", str(workdir), "--resume", "--lr", "0.5", "--seed", "7"])
    assert refused.returncode == 2, refused.stderr[-2000:]
    line = refused.stderr.strip().splitlines()[-1]
    assert "--lr: was 0.05, now 0.5" in line and "--seed: was 0, now 7" in line and "step-00000004" in line, line
    config_json.unlink()  # deleted: the checkpoint still says what the run is
    resumed = train(args + ["--workdir", str(workdir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(config_json.read_text())["config"]["lr"] == 0.05  # written again, from the run's own flags
    assert_same_as(workdir, runs["jax"])


def test_undecodable_data_is_refused_before_the_work_dir_is_written(tmp_path):
    data = tmp_path / "noise"
    for split in ("train", "val"):
        for c in ("a", "b"):
            (data / split / c).mkdir(parents=True)
            for i in range(40):
                (data / split / c / f"{i}.png").write_bytes(os.urandom(200))
    workdir = tmp_path / "w"
    out = train(["--backend", "jax", "--variant", "base", "--width", "0.25", "--depth", "0.1", "--image-size", "16",
                 "--batch-size", "4", "--epochs", "1", "--data", str(data), "--workdir", str(workdir),
                 "--workers", "1"])
    line = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 2 and "unreadable images in a row" in line, (out.returncode, out.stderr[-2000:])
    assert not workdir.exists(), f"the refused run wrote {sorted(os.listdir(workdir))}"


def test_resume_starts_a_run_that_stopped_during_set_up_and_continues_past_a_corrupt_checkpoint(
        runs, tiny_fashion_mnist, tmp_path):
    args = JAX_RUN + ["--data", tiny_fashion_mnist, "--workers", "0"]
    workdir = tmp_path / "s"
    workdir.mkdir()
    (workdir / ".claim").write_text("")  # what a run killed while setting up leaves
    stopped = train(args + ["--workdir", str(workdir), "--resume", "--max-steps", "5", "--checkpoint-every", "2"])
    assert stopped.returncode == 0, f"--resume on a folder holding only a claim: {stopped.stderr[-2000:]}"
    assert "the run starts from step 0" in stopped.stdout
    newest = latest_checkpoint(workdir / "checkpoints")
    assert newest.endswith("step-00000005.safetensors")
    with open(newest, "r+b") as f:  # cut short, as a full disk leaves a file
        f.truncate(os.path.getsize(newest) // 2)
    resumed = train(args + ["--workdir", str(workdir), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"skipped {newest}" in resumed.stdout and "resumed from" in resumed.stdout
    said = next(line for line in resumed.stdout.splitlines() if line.startswith("resumed from"))
    assert "step-00000004.safetensors at step 4" in said and "1 newer skipped" in said, said
    assert_same_as(workdir, runs["jax"])
    fresh = tmp_path / "nothing-yet"  # --resume where nothing ran: one command for every case
    started = train(args + ["--workdir", str(fresh), "--resume", "--max-steps", "1"])
    assert started.returncode == 0 and (fresh / "config.json").exists(), started.stderr[-2000:]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs Linux /proc")
def test_a_signal_after_the_last_step_writes_the_summary_and_exits_143(tiny_fashion_mnist, tmp_path):
    workdir = tmp_path / "last"
    proc = subprocess.Popen([sys.executable, "-m", "tinyeffnet.train"] + JAX_RUN + [
        "--data", tiny_fashion_mnist, "--workdir", str(workdir), "--workers", "1", "--max-steps", "3"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while 3 not in steps_logged(workdir):  # logged at the last step's end, before the evaluation
        assert time.time() < deadline and proc.poll() is None, "the run did not reach its last step"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # a second signal does not cut the end short either
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143 and "stopped by SIGTERM after the last step (3): the run is complete" in err, (
        proc.returncode, err[-2000:])
    assert (workdir / "summary.json").exists() and (workdir / "curves.png").exists()
