"""metrics.jsonl: one JSON record per line, appended and fsynced, so a crash loses at most
the line being written. Records: {"kind": "step", "step", "epoch", "loss", "lr", "top1",
"top5", "grad_norm", "images_per_s"} every --log-every steps (grad_norm: the global L2 norm
of the loss gradient, before clipping) and {"kind": "epoch", "eval_top1", ...}
after each evaluation.
"""
import json
import os

from .._files import append_line, atomic_write, dumps


def read_metrics(path):
    """The records of a metrics.jsonl file; unparsable lines (a crash mid-write) are skipped."""
    records = []
    with open(path, "rb") as f:  # bytes: a line cut inside a UTF-8 sequence must not raise
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:  # includes UnicodeDecodeError
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


class MetricsLog:
    """Appends records to metrics.jsonl (only where `enabled`: the main process)."""

    def __init__(self, path, enabled, resume_step=None):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is None:
            atomic_write(path, lambda f: None)
        elif os.path.exists(path):  # drop what the interrupted run logged after its checkpoint
            kept = [r for r in read_metrics(path) if r.get("step", 0) <= resume_step]
            atomic_write(path, lambda f: f.writelines(dumps(r) + "\n" for r in kept))

    def write(self, record):
        if not self.enabled:
            return
        append_line(self.path, dumps(record))

    def records(self):
        return read_metrics(self.path)
