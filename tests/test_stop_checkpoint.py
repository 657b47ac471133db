"""The checkpoint a stopped run writes holds the state after the step it names.

SIGTERM stops a run after the step in flight with a checkpoint of that step
(tinyeffnet/training/preemption.py). Here the signal is sent from inside the trainer while it
appends a metrics line in the middle of an epoch, the run is left to stop, and its own
checkpoint (step-N) is compared tensor by tensor with an uninterrupted run that kept a
checkpoint after every step: it must be that run's step-N, and if it is another step's, the
message says whose. Resuming and the rest of the signal handling: tests/test_faults.py.
"""
import os
import re
import signal

import pytest

from tinyeffnet.train import main as train_main
from tinyeffnet.training.checkpoint import read_records

# The tiny preset's randomness (augmentation, dropout, drop-connect) with an EMA and momentum,
# so every group of the state (params, buffers, opt, ema) moves at every step.
RUN = ["--backend", "python", "--preset", "tiny", "--variant", "base", "--width", "0.1", "--depth", "0.4",
       "--image-size", "16", "--batch-size", "4", "--epochs", "2", "--warmup-epochs", "0.5", "--ema-decay", "0.9",
       "--eval-examples", "4", "--workers", "0", "--log-every", "1", "--keep-checkpoints", "100", "--seed", "5"]
STEPS = 6           # 12 training images, batch 4: 3 steps per epoch
SIGNAL_AT_LINE = 5  # metrics lines: steps 1-3, the epoch record, step 4 (written once step 5 ran), ...
STOP_LINE = re.compile(r"stopped by SIGTERM after step (\d+): checkpoint (\S+);")


@pytest.fixture(scope="module")
def every_step(tiny_fashion_mnist, tmp_path_factory):
    """{step: {tensor name: record}} of an uninterrupted run checkpointed after every step."""
    workdir = tmp_path_factory.mktemp("stop") / "straight"
    assert train_main(RUN + ["--data", tiny_fashion_mnist, "--workdir", str(workdir), "--checkpoint-every", "1"]) == 0
    out = {}
    for name in os.listdir(workdir / "checkpoints"):
        if re.fullmatch(r"step-\d+\.safetensors", name):
            records, meta = read_records(str(workdir / "checkpoints" / name))
            out[meta["step"]] = records
    assert sorted(out) == list(range(1, STEPS + 1)), sorted(out)
    return out


def sigterm_at_metrics_line(monkeypatch, n):
    """Send this process SIGTERM while the trainer fsyncs its n-th metrics.jsonl line (a
    whole-name match: the empty log's temporary file written before the loop does not count)."""
    real, seen = os.fsync, [0]

    def fsync(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) == "metrics.jsonl":
            seen[0] += 1
            if seen[0] == n:
                # without the trainer's handler, SIGTERM would end pytest itself
                assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), \
                    "the trainer catches no SIGTERM while it writes its metrics"
                os.kill(os.getpid(), signal.SIGTERM)
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def whose_state(records, every_step):
    """The steps of the uninterrupted run whose checkpoint holds exactly these tensors."""
    return [step for step, want in sorted(every_step.items())
            if sorted(want) == sorted(records) and all(records[n] == want[n] for n in want)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="finds the metrics file's writes through /proc")
def test_the_stops_checkpoint_holds_the_state_after_its_step(every_step, tiny_fashion_mnist, tmp_path, monkeypatch,
                                                               capsys):
    workdir = tmp_path / "stopped"
    sigterm_at_metrics_line(monkeypatch, SIGNAL_AT_LINE)
    status = train_main(RUN + ["--data", tiny_fashion_mnist, "--workdir", str(workdir), "--checkpoint-every", "100"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    stops = STOP_LINE.findall(err)
    assert status != 0, f"the run was not stopped: it wrote fewer than {SIGNAL_AT_LINE} metrics lines, or fsyncs none"
    assert status == 128 + signal.SIGTERM and len(stops) == 1, \
        f"SIGTERM after a step: exit {status}, not 143 with one stop line: {err[-2000:]}"
    step, path = int(stops[0][0]), stops[0][1]
    assert 0 < step <= STEPS, f"the run says it stopped after step {step} of {STEPS}"
    name = f"step-{step:08d}"
    assert os.path.basename(path) == f"{name}.safetensors" and os.path.isfile(path), \
        f"the stop after step {step} names the checkpoint {path}"
    records, meta = read_records(path)
    assert meta["step"] == step, f"the stop's checkpoint {name} says it is of step {meta['step']}"
    owners = whose_state(records, every_step)
    if owners != [step]:
        differ = [n for n in every_step[step] if records.get(n) != every_step[step][n]]
        held = (f"holds the state after step {owners[0]}" if owners else
                f"holds the state of no step of the uninterrupted run ({len(differ)} of {len(every_step[step])} "
                f"tensors differ from its step {step}'s, e.g. {differ[:3]})")
        pytest.fail(f"the stop's checkpoint {name} {held}; a stop after step {step} must keep the state after "
                    f"step {step}")
