"""Training-curve PNGs: written atomically at the expected size for any amount of data."""
import json
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

from tinyeffnet.plotting.curves import SIZE, plot_metrics
from tinyeffnet.training.metrics_file import read_metrics


def _records(n_steps=300, steps_per_epoch=100):
    records = []
    for s in range(n_steps):
        records.append({"kind": "step", "step": s, "epoch": s // steps_per_epoch,
                        "loss": 7.0 * math.exp(-s / 100) + 0.1 * math.sin(s), "lr": 0.1 * (1 - s / n_steps),
                        "top1": min(1.0, s / n_steps), "top5": min(1.0, 2 * s / n_steps),
                        "images_per_s": 1000 + 50 * math.cos(s)})
        if s % steps_per_epoch == steps_per_epoch - 1:
            records.append({"kind": "epoch", "epoch": s // steps_per_epoch, "step": s,
                            "eval_top1": s / n_steps * 0.9, "eval_top5": s / n_steps, "eval_loss": 2.0})
    return records


@pytest.mark.parametrize("records", [
    _records(),
    [],
    [{"kind": "step", "step": 0, "loss": 2.3, "lr": 0.01}],
    [{"kind": "epoch", "epoch": 0, "step": 10, "eval_top1": 0.5}],
    [{"kind": "step", "step": 1, "loss": float("nan")}, {"kind": "step"}, {"kind": "other"}, "junk"],
], ids=["normal", "empty", "single-step", "single-epoch", "missing-keys"])
def test_png_written_at_expected_size(tmp_path, records):
    path = tmp_path / "curves.png"
    assert plot_metrics(records, path, title="test run") == str(path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == SIZE
        if records:  # something other than white was drawn
            assert image.convert("L").getextrema()[0] < 128
    assert os.listdir(tmp_path) == ["curves.png"]  # no temp file left


def test_read_metrics_skips_truncated_last_line(tmp_path):
    records = _records(20, 10)
    path = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in records)
    last = json.dumps({"kind": "step", "step": 20, "loss": 1.0, "note": "é"})
    path.write_bytes(text.encode() + last.encode()[:-8])  # killed mid-write
    assert read_metrics(path) == records
    path.write_bytes(text.encode() + "\n{bad\n".encode() + last.encode()[:len('{"kind": "step", "step": 20, "loss": 1.0, "note": "') + 1])
    assert read_metrics(path) == records


def test_runs_with_numpy_blocked(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (f"import sys; sys.modules['numpy'] = None; sys.path.insert(0, {root!r})\n"
              "from tinyeffnet.plotting import plot_metrics\n"
              f"plot_metrics([{{'kind': 'step', 'step': 1, 'loss': 2.0}}], {str(tmp_path / 'a.png')!r})\n"
              "print('ok')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
